"""optimize_for_inference: replace every GDWS layer by its fastest exact form, timed on the target device.

Eval-mode inference only: BatchNorms that directly follow a conv are folded (running statistics baked
in), and the returned model is in eval mode. Selection per layer:
1. one forward pass with hooks records each GDWS layer's real input (shape, dtype, memory format);
2. every form of gdws.fast.candidates.build_forms is built, checked against the straightforward form
   on that input (max abs error <= atol * max(1, |reference|)), and timed with torch.utils.benchmark
   (blocked_autorange medians, 3 interleaved rounds, median of them);
3. the fastest wins, but a dense What conv is kept unless another form beats it by more than
   ``tie_tol`` (relative), so noise never makes a layer slower than its dense equivalent.
Finally the whole model is timed against the all-dense-What and all-straightforward variants and the
fastest (all-dense on ties) is returned, which guards against interactions between layers.
"""
from __future__ import annotations

import copy
import statistics
import warnings

import pandas as pd
import torch
from torch import nn
from torch.utils import benchmark

from gdws.core.layer import GDWSConv2d
from gdws.fast.fold import fold_into
from gdws.fast.candidates import build_forms
from gdws.fast.forms import Dense, Straightforward
from gdws.fast.forms_explicit import Zero
from gdws.fast.spec import GDWSSpec

DENSE_FORMS = ("dense", "dense_cl")


def time_call(module: nn.Module, x: torch.Tensor, min_run_time: float) -> benchmark.Measurement:
    """blocked_autorange measurement of ``module(x)`` under inference_mode (the Timer syncs CUDA)."""
    with torch.inference_mode():
        module(x)  # warm-up: oneDNN primitive creation, lazy compilation
        timer = benchmark.Timer("m(x)", globals={"m": module, "x": x}, num_threads=torch.get_num_threads())
        return timer.blocked_autorange(min_run_time=min_run_time)


def time_interleaved(modules: dict[str, nn.Module], x: torch.Tensor, min_run_time: float,
                     rounds: int = 3) -> dict[str, float]:
    """Median seconds of each module on ``x``: ``rounds`` round-robin passes, median of the pass medians.

    Interleaving spreads bursts of load from other processes over all candidates instead of one.
    """
    runs: dict[str, list[float]] = {k: [] for k in modules}
    for _ in range(rounds):
        for key, module in modules.items():
            runs[key].append(time_call(module, x, min_run_time / rounds).median)
    return {k: statistics.median(v) for k, v in runs.items()}


def _capture_inputs(model: nn.Module, names: list[str], x: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Real input of each named layer in one forward pass, and the model's output."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda _m, args, n=n: inputs.__setitem__(n, args[0].detach().clone(memory_format=torch.preserve_format)))
        for n in names]
    try:
        with torch.inference_mode():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return inputs, out


def _max_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.float() - ref.float()).abs().max()) if ref.numel() else 0.0


def _select(timings: dict[str, float], tie_tol: float) -> str:
    """Fastest form; the fastest dense form unless beaten by more than tie_tol (relative)."""
    best = min(timings, key=timings.get)
    dense = [f for f in DENSE_FORMS if f in timings]
    if dense:
        best_dense = min(dense, key=timings.get)
        if timings[best] >= timings[best_dense] * (1.0 - tie_tol):
            return best_dense
    return best


def optimize_for_inference(model: nn.Module, example_input: torch.Tensor, device: torch.device | str | None = None,
                           *, forms: tuple[str, ...] | None = None, fold_bn: bool = True,
                           min_run_time: float = 0.1, tie_tol: float = 0.05, atol: float = 1e-4,
                           report: bool = False) -> nn.Module | tuple[nn.Module, pd.DataFrame]:
    """A copy of ``model`` (eval mode, on ``device``) whose GDWS layers use their fastest exact form.

    example_input: a batch of the shape to optimise for (batch size matters: re-optimise per batch size).
    device: target device (default: example_input's). forms: restrict candidate form names (see
    gdws.fast.forms.build_forms; the dense forms are always candidates). fold_bn: fold BNs that directly
    follow a conv. report=True also returns a DataFrame with one row per GDWS layer: name, input shape, C, M,
    stride, G, max g, layer_choice (fastest form of the layer alone), chosen (form in the returned model:
    layer_choice, or the dense/straightforward form if the model-level check preferred all of those),
    t_<form> (median seconds); attrs 't_model_selected' / 't_model_dense' / 't_model_straightforward' hold
    the model-level medians when that check ran. Outputs equal the input model's to ``atol`` (checked; RuntimeError
    otherwise). Inference only: a model in training mode is copied into eval mode with a warning.
    """
    if not isinstance(example_input, torch.Tensor):
        raise ValueError("example_input must be a Tensor batch, e.g. torch.rand(1, 3, 32, 32)")
    if model.training:
        warnings.warn("optimize_for_inference is for eval-mode inference only (BN folded, running stats used); "
                      "the returned model is in eval mode and must not be trained")
    device = torch.device(device) if device is not None else example_input.device
    model = copy.deepcopy(model).eval().to(device)
    x = example_input.to(device)
    names = [n for n, m in model.named_modules() if isinstance(m, GDWSConv2d)]
    if not names:
        warnings.warn("optimize_for_inference: the model has no GDWS layers; only BN folding was applied")
    inputs, ref_out = _capture_inputs(model, names, x)
    specs = {n: GDWSSpec.from_layer(model.get_submodule(n)) for n in names}
    if fold_bn:
        fold_into(model, specs)
    if forms is not None:
        forms = tuple(forms) + DENSE_FORMS + ("zero",)
    rows, fallbacks = [], {}
    for name in names:
        spec, xin = specs[name], inputs[name]
        with torch.no_grad():  # not inference_mode: the forms' buffers must stay usable outside it
            ref_form = Straightforward(spec) if spec.G > 0 else Zero(spec)
            ref = ref_form(xin)
            cands = build_forms(spec, include=forms)
            exact = {}
            for fname, form in cands.items():
                err = _max_err(form(xin), ref)
                if err > atol * max(1.0, float(ref.abs().max())):
                    warnings.warn(f"{name}: form {fname} differs by {err:.2e}; not a candidate")
                    continue
                exact[fname] = form
        timings = time_interleaved(exact, xin, min_run_time)
        choice = _select(timings, tie_tol)
        model.set_submodule(name, cands[choice])
        dense_names = [f for f in DENSE_FORMS if f in timings]
        best_dense = cands[min(dense_names, key=timings.get)] if dense_names else Dense(spec)
        # G == 0: What is zero, and its constant form is never slower than a zero-weight conv
        fallbacks[name] = {"dense": best_dense if spec.G > 0 else cands.get("zero", ref_form),
                           "straightforward": cands.get("straightforward", cands.get("zero", ref_form))}
        rows.append({"name": name, "input_shape": tuple(xin.shape), "C": spec.in_channels, "M": spec.out_channels,
                     "stride": spec.stride[0], "G": spec.G, "g_max": int(spec.g.max()) if spec.in_channels else 0,
                     "layer_choice": choice, "chosen": choice, **{f"t_{k}": v for k, v in timings.items()}})
    model, model_times = _guard_model_level(model, fallbacks, x, min_run_time, tie_tol, rows)
    with torch.inference_mode():
        err = _max_err(model(x), ref_out)
    if err > atol * max(1.0, float(ref_out.abs().max())):
        raise RuntimeError(f"optimised model differs from the input model by {err:.2e} (> atol={atol}); "
                           "please report this (pass forms=('straightforward',) to avoid the failing form)")
    table = pd.DataFrame(rows)
    table.attrs.update(model_times)
    return (model, table) if report else model


def _guard_model_level(model: nn.Module, layers: dict[str, dict[str, nn.Module]], x: torch.Tensor,
                       min_run_time: float, tie_tol: float, rows: list[dict]) -> tuple[nn.Module, dict]:
    """Time the whole model with the per-layer choice, all-dense What and all-straightforward forms.

    Returns the fastest (all-dense on ties within tie_tol) and the medians. Per-layer times need not add
    up (caches, layouts), so this keeps the result never slower than dense as a whole.
    """
    variants = {}
    for kind in ("dense", "straightforward"):
        if all(r["chosen"] == layers[r["name"]][kind].form_name for r in rows):
            continue  # identical to the per-layer choice
        alt = copy.deepcopy(model)
        for name, forms in layers.items():
            alt.set_submodule(name, forms[kind])
        variants[kind] = alt
    if not variants:
        return model, {}
    times = time_interleaved({"selected": model, **variants}, x, 3 * min_run_time)
    best = min(times, key=times.get)
    if "dense" in times and times["dense"] <= times[best] / (1.0 - tie_tol):
        best = "dense"
    if best != "selected":
        warnings.warn(f"model-level check: all-{best} forms ({times[best] * 1e3:.3f} ms) beat the per-layer "
                      f"choice ({times['selected'] * 1e3:.3f} ms); using them")
        for r in rows:
            r["chosen"] = layers[r["name"]][best].form_name
        model = variants[best]
    return model, {f"t_model_{k}": v for k, v in times.items()}
