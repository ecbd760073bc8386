"""Steps 2 and 3 of a run: the pruning hook and the GDWS conversion (with cached alphas)."""
from __future__ import annotations

import time
import warnings
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gdws.pipeline.context import settings_key, to_plain

ALPHA_MODES = ("none", "pgd", "clean")


def apply_prune(cfg: DictConfig, model: nn.Module, datamodule, weights_path: Path) -> nn.Module:
    """Prune ``model`` with the callable named by ``cfg.prune._target_`` (identity for ``prune=none``).

    The callable gets ``model``, ``datamodule``, a ``work_dir`` next to the weights keyed by the pruning
    settings (so reruns reuse or resume its work) and every key of ``cfg.prune`` except ``method``.
    """
    if cfg.prune.get("_target_") is None:
        return model
    settings = {k: v for k, v in to_plain(cfg.prune).items() if k != "method"}
    work_dir = weights_path.parent / f"prune-{cfg.prune.get('method')}-{settings_key(settings)}"
    work_dir.mkdir(parents=True, exist_ok=True)
    prune_fn = instantiate(OmegaConf.create(settings), _partial_=True)
    return prune_fn(model=model, datamodule=datamodule, work_dir=str(work_dir))


def _alphas(cfg: DictConfig, model: nn.Module, datamodule, weights_path: Path, device: torch.device):
    """The per-layer alphas of ``cfg.gdws.alphas``: None, or computed once and cached next to the weights."""
    from gdws.core import compute_alphas, load_alphas, save_alphas

    g = cfg.gdws
    mode = str(g.alphas).lower() if g.alphas is not None else "none"
    if mode not in ALPHA_MODES:
        raise ValueError(f"gdws.alphas must be one of {ALPHA_MODES}, got {g.alphas!r}")
    if mode == "none":
        return None
    attack = to_plain(g.alpha_attack) if mode == "pgd" else None
    # Everything that changes the alphas: the mode, the samples, the attack and any pruning before.
    data = {k: cfg.data.get(k) for k in ("_target_", "train_subset", "val_size")}
    settings = {"mode": mode, "n": g.alpha_samples, "attack": attack, "prune": to_plain(cfg.prune), "data": data}
    cache = weights_path.parent / f"{weights_path.name}.alphas-{mode}-n{g.alpha_samples}-{settings_key(settings)}.pt"
    if cache.is_file():
        return load_alphas(cache)
    datamodule.setup("fit")
    images, labels = datamodule.train_images(int(g.alpha_samples), seed=0, augment=True)
    kwargs = dict(attack="pgd", eps=attack["eps"], step_size=attack["step_size"], steps=attack["steps"]) if attack else dict(attack=None)
    alphas = compute_alphas(
        model, images.to(device), labels=labels.to(device), batch_size=int(g.alpha_batch_size), **kwargs
    )
    try:
        save_alphas(alphas, cache)
    except OSError as exc:  # e.g. a read-only checkpoint folder: still usable, just not cached
        warnings.warn(f"could not cache alphas at {cache}: {exc}")
    return alphas


def apply_gdws(
    cfg: DictConfig, model: nn.Module, datamodule, weights_path: Path, device: torch.device, out_dir: Path
) -> tuple[nn.Module, dict]:
    """Convert ``model`` with GDWS per ``cfg.gdws`` (unchanged when ``gdws.enabled`` is false).

    Returns the converted model and facts for the result row (conversion seconds, layers converted);
    the per-layer report is written to ``out_dir``/gdws_report.csv.
    """
    g = cfg.gdws
    if not g.get("enabled", False):
        return model, {}
    from gdws.core import convert

    budgets = {k: g.get(k) for k in ("beta", "max_channels", "macs_ratio") if g.get(k) is not None}
    if len(budgets) != 1:
        raise ValueError(
            f"set exactly one of gdws.beta, gdws.max_channels, gdws.macs_ratio (got {budgets or 'none'}); "
            "e.g. gdws.beta=null gdws.macs_ratio=2, or gdws=none to skip the conversion"
        )
    start = time.perf_counter()
    alphas = _alphas(cfg, model, datamodule, weights_path, device)
    alphas_s = time.perf_counter() - start
    start = time.perf_counter()
    converted, report = convert(
        model,
        beta=g.beta,
        max_channels=g.max_channels,
        macs_ratio=g.macs_ratio,
        alphas=alphas,
        input_size=tuple(cfg.metrics.input_size),
        include=to_plain(g.include),
        exclude=to_plain(g.exclude),
        skip_first=bool(g.skip_first),
        implicit=bool(g.implicit),
        force=bool(g.force),
    )
    convert_s = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    report.to_csv(out_dir / "gdws_report.csv", index=False)
    return converted.to(device).eval(), {
        "convert_s": round(convert_s, 3),
        "alphas_s": round(alphas_s, 3),
        "gdws_layers": int(report["converted"].sum()),
    }
