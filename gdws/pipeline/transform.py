"""Steps 2 and 3 of a run: the pruning hook and the GDWS conversion (with cached alphas).

Each step returns the model and the facts of what it did; the result row is built from those facts.
Derived artifacts are keyed by a fingerprint of the weights they came from and kept under the project's
own folders (``paths.checkpoints_dir``, ``paths.cache_dir``), never next to a user's checkpoint.
"""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gdws.pipeline.calibration import calibration_mode, calibration_set, calibration_settings
from gdws.pipeline.context import settings_key, to_plain
from gdws.utils import weights_fingerprint


def apply_prune(cfg: DictConfig, model: nn.Module, datamodule) -> tuple[nn.Module, dict]:
    """Prune ``model`` with the callable named by ``cfg.prune._target_`` (unchanged for ``prune=none``).

    The callable gets ``model``, ``datamodule``, a ``work_dir`` keyed by the weights' fingerprint and the
    pruning settings (so reruns reuse or resume its work) and every key of ``cfg.prune`` except ``method``.
    Facts: ``prune_method`` and ``prune_ratio`` (empty when nothing was pruned).
    """
    if cfg.prune.get("_target_") is None:
        return model, {}
    settings = {k: v for k, v in to_plain(cfg.prune).items() if k != "method"}
    method = str(cfg.prune.get("method"))
    name = f"{cfg.model.get('name')}-{weights_fingerprint(model)}-{method}-{settings_key(settings)}"
    work_dir = Path(str(cfg.paths.checkpoints_dir)) / "pruned" / name
    work_dir.mkdir(parents=True, exist_ok=True)
    prune_fn = instantiate(OmegaConf.create(settings), _partial_=True)
    pruned = prune_fn(model=model, datamodule=datamodule, work_dir=str(work_dir))
    return pruned, {"prune_method": method, "prune_ratio": cfg.prune.get("ratio")}


def conversion_layers(cfg: DictConfig, model: nn.Module) -> list[str]:
    """The convs that ``convert`` considers under ``cfg.gdws`` (include, exclude, skip_first): the layers
    that need alphas. (convert may still keep some of them dense where GDWS gains no MACs.)"""
    from gdws.core.discovery import default_example_input, skip_reasons, trace_layers

    traces = trace_layers(model, default_example_input(model, tuple(cfg.metrics.input_size)))
    g = cfg.gdws
    reasons = skip_reasons(traces, include=to_plain(g.include), exclude=to_plain(g.exclude),
                           skip_first=bool(g.skip_first))
    return [name for name, reason in reasons.items() if not reason]


def _alphas(cfg: DictConfig, model: nn.Module, datamodule, device: torch.device):
    """The per-layer alphas of ``cfg.gdws.alphas`` for exactly the layers to convert: None, or computed once
    and cached under ``paths.cache_dir`` keyed by the weights' fingerprint and every setting that matters."""
    from gdws.core import compute_alphas, load_alphas, save_alphas

    g = cfg.gdws
    mode = str(g.alphas).lower() if g.alphas is not None else "none"
    if mode == "none":
        return None
    layers = conversion_layers(cfg, model)
    attack = to_plain(g.alpha_attack) if mode == "pgd" else None
    data = {k: cfg.data.get(k) for k in ("_target_", "train_subset", "val_size")}
    settings = {"mode": mode, "n": g.alpha_samples, "attack": attack, "layers": layers, "data": data}
    cache = (Path(str(cfg.paths.cache_dir)) / "alphas"
             / f"{weights_fingerprint(model)}-{mode}-n{g.alpha_samples}-{settings_key(settings)}.pt")
    if cache.is_file():
        return load_alphas(cache)
    datamodule.setup("fit")
    images, labels = datamodule.train_images(int(g.alpha_samples), seed=0, augment=True)
    kwargs = dict(attack="pgd", eps=attack["eps"], step_size=attack["step_size"], steps=attack["steps"]) if attack else dict(attack=None)
    alphas = compute_alphas(model, images.to(device), labels=labels.to(device), batch_size=int(g.alpha_batch_size),
                            layers=layers, **kwargs)
    try:
        save_alphas(alphas, cache)
    except OSError as exc:  # e.g. a read-only cache folder: still usable, just not cached
        warnings.warn(f"could not cache alphas at {cache}: {exc}")
    return alphas


def apply_gdws(cfg: DictConfig, model: nn.Module, datamodule, device: torch.device, out_dir: Path,
               constraint: str | None) -> tuple[nn.Module, dict]:
    """Convert ``model`` with GDWS under the one active ``constraint`` (unchanged when it is None).

    Returns the converted model and facts for the result row: the constraint, the alpha mode, the number of
    layers really converted, and seconds spent; the per-layer report goes to ``out_dir``/gdws_report.csv.
    """
    if constraint is None:
        return model, {}
    from gdws.conversion import convert

    g = cfg.gdws
    start = time.perf_counter()
    alphas = _alphas(cfg, model, datamodule, device)
    alphas_s = time.perf_counter() - start
    name, _, _ = constraint.partition("=")
    budget = {name: g[name]}
    if name == "speedup":  # measured latency: on the run's device, at the FPS batch size; tables cached per device
        budget.update(device=device, latency_cache=str(Path(str(cfg.paths.cache_dir)) / "latency"),
                      latency_time=float(cfg.metrics.select_time), runtime=str(cfg.metrics.get("runtime", "torch")),
                      allow_removal=bool(g.get("allow_removal", False)),
                      example_input=torch.rand(int(cfg.metrics.fps_batch_size), *cfg.metrics.input_size, device=device))
    start = time.perf_counter()
    calibration = calibration_set(cfg, model, datamodule)
    calibration_s = time.perf_counter() - start
    settings = calibration_settings(g)
    start = time.perf_counter()
    converted, report = convert(
        model, alphas=alphas, input_size=tuple(cfg.metrics.input_size), include=to_plain(g.include),
        exclude=to_plain(g.exclude), skip_first=bool(g.skip_first), implicit=bool(g.implicit),
        force=bool(g.force), calibration=calibration, calibration_settings=settings, **budget,
    )
    convert_s = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    report.to_csv(out_dir / "gdws_report.csv", index=False)
    return converted.to(device).eval(), {
        "gdws_constraint": constraint,
        "gdws_alphas": str(g.alphas).lower() if g.alphas is not None else "none",
        # implicit: the converted layers run as dense convs with weight What (same function, dense MACs)
        "gdws_form": "implicit" if g.implicit else "explicit",
        "gdws_layers": int(report["converted"].sum()),
        # converted with G = 0: the layer's output is its bias alone (a budget may remove whole layers)
        "gdws_removed": int((report["converted"] & (report["G"] == 0)).sum()),
        "gdws_speedup_measured": report.attrs.get("speedup_measured"),
        # data-aware conversion (gdws.core.calibration): what the calibration set was and what used it
        "gdws_calibration": calibration_mode(g),
        "gdws_calibration_samples": None if calibration is None else int(calibration.shape[0]),
        "gdws_whiten": None if calibration is None else settings.whiten,
        "gdws_refit": None if calibration is None else settings.refit,
        # resolved: fisher=null turns it on wherever it applies (gdws.core.settings)
        "gdws_fisher": None if calibration is None else bool(report.attrs.get("calibration_fisher")),
        "gdws_refit_rounds": None if calibration is None else settings.refit_rounds,
        "alphas_s": round(alphas_s, 3),
        "calibration_s": round(calibration_s, 3),
        "convert_s": round(convert_s, 3),
    }
