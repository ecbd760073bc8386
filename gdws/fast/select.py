"""optimize_for_inference: replace every GDWS layer by its fastest exact form, timed on the target device.

Eval-mode inference only: BatchNorms that directly follow a conv are folded (running statistics baked
in), and the returned model is in eval mode. Selection per layer:
1. one forward pass with hooks records each GDWS layer's real input (shape, dtype, memory format);
2. every form of gdws.fast.candidates.build_forms is built, checked against the straightforward form
   on that input (max abs error <= atol * max(1, |reference|)), and timed in interleaved rounds
   (gdws.fast.timing.time_rounds);
3. among the forms within measured noise of the fastest (gdws.fast.timing.choose_within_noise) the
   simplest in ``SIMPLICITY`` order is kept: the dense What conv first, so noise never makes a layer
   slower than its dense equivalent, and repeated calls agree unless forms are really within noise.
The network's plain convs (all of a dense model's) get the same choice between NCHW and channels_last as
the dense forms of GDWS layers, so that a dense baseline optimised by this function is a fair one.
Finally the whole model is timed against the all-dense-What and all-straightforward variants, paired by
round, and the same rule picks among them (all-dense, then the per-layer choice, then all-straightforward),
which guards against interactions between layers.
With ``runtime="onnxruntime"`` or ``"openvino"`` every candidate (a layer's form, a whole model) is exported and
compiled for that runtime at its real input shape (gdws.fast.runtimes) and timed there, among the forms that
export as graphs (EXPORT_FORMS: the layout is the runtime's own business, so no channels_last variants): the
returned model is the one to export for that runtime.
"""
from __future__ import annotations

import copy
import warnings

import pandas as pd
import torch
from torch import nn

from gdws.core.layer import GDWSConv2d
from gdws.fast.candidates import build_forms
from gdws.fast.fold import fold_into
from gdws.fast.forms import Dense, PlainChannelsLast, Straightforward
from gdws.fast.forms_explicit import Zero
from gdws.fast.runtimes import check_runtime, runtime_module
from gdws.fast.spec import GDWSSpec
from gdws.fast.timing import capture_inputs, choose_within_noise, time_rounds

DENSE_FORMS = ("dense", "dense_cl")
# the forms an exported graph can hold (unfold's matmuls and the channels_last variants are PyTorch-eager layouts)
EXPORT_FORMS = ("zero", "dense", "straightforward", "stacked", "grouped", "padded")
# simplest first: fewest ops and layout changes; a form later in the list must be measurably faster to be kept
SIMPLICITY = ("zero", "dense", "dense_cl", "straightforward", "straightforward_cl", "padded", "padded_cl", "grouped",
              "grouped_cl", "stacked", "stacked_cl", "unfold")
MODEL_PREFERENCE = ("dense", "selected", "straightforward")


def _max_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.float() - ref.float()).abs().max()) if ref.numel() else 0.0


def optimize_for_inference(model: nn.Module, example_input: torch.Tensor, device: torch.device | str | None = None,
                           *, forms: tuple[str, ...] | None = None, fold_bn: bool = True,
                           min_run_time: float = 0.1, rounds: int = 5, tie_tol: float = 0.05, atol: float = 1e-4,
                           report: bool = False, runtime: str = "torch") -> nn.Module | tuple[nn.Module, pd.DataFrame]:
    """A copy of ``model`` (eval mode, on ``device``) whose GDWS layers use their fastest exact form.

    example_input: a batch of the shape to optimise for (batch size matters: re-optimise per batch size).
    device: target device (default: example_input's). forms: restrict candidate form names (see
    gdws.fast.forms.build_forms; the dense forms are always candidates). fold_bn: fold BNs that directly
    follow a conv. min_run_time: seconds of timing per candidate form, spread over ``rounds`` interleaved
    rounds; tie_tol: the smallest relative difference treated as real (see gdws.fast.timing).
    report=True also returns a DataFrame with one row per GDWS layer: name, input shape, C, M, stride, G,
    max g, layer_choice (the layer's simplest form within noise of its fastest), fastest, tied (the forms
    within noise), noise (relative, of the runner-up's comparison), chosen (form in the returned model:
    layer_choice, or the dense/straightforward form if the model-level check preferred all of those),
    t_<form> (median seconds); attrs 't_model_selected' / 't_model_dense' / 't_model_straightforward' hold
    the model-level medians when that check ran, 'model_tied' the variants within noise of the fastest and
    'model_choice' the variant returned, 'plain_layouts' the layout chosen for each plain conv (``dense`` or
    ``dense_cl``: the network's other convs, a dense model's all, get the layout choice GDWS layers get, by
    the same timing rule). Outputs equal the input model's to ``atol`` (checked;
    RuntimeError otherwise). Inference only: a model in training mode is copied into eval mode with a warning.
    runtime: what the candidates are timed on (gdws.fast.runtimes.RUNTIMES; not torch: CPU, EXPORT_FORMS only).
    """
    if not isinstance(example_input, torch.Tensor):
        raise ValueError("example_input must be a Tensor batch, e.g. torch.rand(1, 3, 32, 32)")
    if model.training:
        warnings.warn("optimize_for_inference is for eval-mode inference only (BN folded, running stats used); "
                      "the returned model is in eval mode and must not be trained")
    device = torch.device(device) if device is not None else example_input.device
    check_runtime(runtime, device)
    model = copy.deepcopy(model).eval().to(device)
    x = example_input.to(device)
    names = [n for n, m in model.named_modules() if isinstance(m, GDWSConv2d)]
    plain_convs = [n for n, m in model.named_modules()  # the convs GDWS left dense (not the parts of GDWS layers)
                   if type(m) is nn.Conv2d and not any(n.startswith(g + ".") for g in names)]
    if not names:
        warnings.warn("optimize_for_inference: the model has no GDWS layers; only BN folding and the convs' "
                      "memory layout were chosen")
    inputs, ref_out = capture_inputs(model, names + plain_convs, x)
    specs = {n: GDWSSpec.from_layer(model.get_submodule(n)) for n in names}
    if fold_bn:
        fold_into(model, specs)
    if forms is not None:
        forms = tuple(forms) + DENSE_FORMS + ("zero",)
    if runtime != "torch":
        forms = tuple(f for f in (forms or EXPORT_FORMS) if f in EXPORT_FORMS)
    rows, fallbacks = [], {}
    for name in names:
        spec, xin = specs[name], inputs[name]
        exact = _exact_forms(name, spec, xin, forms, atol)
        choice = choose_within_noise(time_rounds(compiled(exact, xin, runtime), xin, min_run_time, rounds),
                                     SIMPLICITY, tie_tol)
        model.set_submodule(name, exact[choice.name])
        dense_names = [f for f in DENSE_FORMS if f in exact]
        best_dense = exact[min(dense_names, key=choice.medians.get)] if dense_names else Dense(spec)
        # G == 0: What is zero, and its constant form is never slower than a zero-weight conv
        plain = exact.get("straightforward", Straightforward(spec)) if spec.G > 0 else exact.get("zero", Zero(spec))
        fallbacks[name] = {"dense": best_dense if spec.G > 0 else plain, "straightforward": plain}
        runner_up = sorted(choice.medians, key=choice.medians.get)[1:2]
        rows.append({"name": name, "input_shape": tuple(xin.shape), "C": spec.in_channels, "M": spec.out_channels,
                     "stride": spec.stride[0], "G": spec.G, "g_max": int(spec.g.max()) if spec.in_channels else 0,
                     "layer_choice": choice.name, "chosen": choice.name, "fastest": choice.fastest,
                     "tied": ",".join(choice.tied), "noise": choice.noise[runner_up[0]] if runner_up else 0.0,
                     **{f"t_{k}": v for k, v in choice.medians.items()}})
    layouts = {}  # a runtime lays out its graph itself
    if runtime == "torch":
        layouts = _choose_plain_layouts(model, plain_convs, inputs, min_run_time, rounds, tie_tol)
    model, model_times = _guard_model_level(model, fallbacks, x, min_run_time, rounds, tie_tol, rows, runtime)
    model_times["plain_layouts"] = layouts
    with torch.inference_mode():
        err = _max_err(model(x), ref_out)
    if err > atol * max(1.0, float(ref_out.abs().max())):
        raise RuntimeError(f"optimised model differs from the input model by {err:.2e} (> atol={atol}); "
                           "please report this (pass forms=('straightforward',) to avoid the failing form)")
    table = pd.DataFrame(rows)
    table.attrs.update(model_times)
    return (model, table) if report else model


def compiled(modules: dict[str, nn.Module], x: torch.Tensor, runtime: str) -> dict[str, nn.Module]:
    """``modules`` as the runtime runs them at x's shape (torch: as they are), to be timed alike."""
    if runtime == "torch":
        return modules
    return {k: runtime_module(m, x, runtime) for k, m in modules.items()}


def _choose_plain_layouts(model: nn.Module, names: list[str], inputs: dict[str, torch.Tensor], min_run_time: float,
                          rounds: int, tie_tol: float) -> dict[str, str]:
    """Give each plain conv (BN already folded) the layout GDWS layers may choose, channels_last or not, by the
    same timing and tie rule; returns {name: 'dense' or 'dense_cl'}. Without this a dense baseline would lose
    to a GDWS network whose layers run in the faster layout, a gain GDWS has nothing to do with."""
    chosen = {}
    for name in names:
        conv = model.get_submodule(name)
        options = {"dense": conv, "dense_cl": PlainChannelsLast(conv)}
        choice = choose_within_noise(time_rounds(options, inputs[name], min_run_time, rounds), SIMPLICITY, tie_tol)
        model.set_submodule(name, options[choice.name])
        chosen[name] = choice.name
    return chosen


def _exact_forms(name: str, spec: GDWSSpec, xin: torch.Tensor, forms: tuple[str, ...] | None,
                 atol: float) -> dict[str, nn.Module]:
    """The candidate forms of one layer that match the straightforward (or zero) form on its real input."""
    with torch.no_grad():  # not inference_mode: the forms' buffers must stay usable outside it
        ref = (Straightforward(spec) if spec.G > 0 else Zero(spec))(xin)
        exact = {}
        for fname, form in build_forms(spec, include=forms).items():
            err = _max_err(form(xin), ref)
            if err > atol * max(1.0, float(ref.abs().max())):
                warnings.warn(f"{name}: form {fname} differs by {err:.2e}; not a candidate")
                continue
            exact[fname] = form
    return exact


def _guard_model_level(model: nn.Module, layers: dict[str, dict[str, nn.Module]], x: torch.Tensor,
                       min_run_time: float, rounds: int, tie_tol: float,
                       rows: list[dict], runtime: str) -> tuple[nn.Module, dict]:
    """Time the whole model with the per-layer choice, all-dense What and all-straightforward forms.

    Keeps the first of MODEL_PREFERENCE within noise of the fastest and returns it with the medians.
    Per-layer times need not add up (caches, layouts), so this keeps the result never slower than dense
    as a whole, beyond noise.
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
    choice = choose_within_noise(time_rounds(compiled({"selected": model, **variants}, x, runtime), x,
                                             3 * min_run_time, rounds), MODEL_PREFERENCE, tie_tol)
    best, times = choice.name, choice.medians
    if best != "selected":
        if "selected" in choice.tied:
            why = (f"the all-{best} model ({times[best] * 1e3:.3f} ms) and the per-layer choice "
                   f"({times['selected'] * 1e3:.3f} ms) are within noise of the fastest variant (neither is slower by "
                   f"> {tie_tol * 100:.0f} % in all rounds but one), and all-{best} is simpler")
        else:
            why = (f"the per-layer choice ({times['selected'] * 1e3:.3f} ms) is slower than the all-{choice.fastest} "
                   f"model ({times[choice.fastest] * 1e3:.3f} ms) by > {tie_tol * 100:.0f} % in all rounds but one")
        warnings.warn(f"model-level check: {why}; using the all-{best} model")
        for r in rows:
            r["chosen"] = layers[r["name"]][best].form_name
        model = variants[best]
    return model, {"model_choice": best, "model_tied": ",".join(choice.tied),
                   **{f"t_model_{k}": v for k, v in times.items()}}
