"""One complete experiment run: weights -> prune -> GDWS -> evaluate -> metrics -> one logged row.

``run(cfg)`` is what run.py calls with the composed Hydra config; each step lives in its own module.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import nn

from gdws.eval import evaluate
from gdws.metrics import count_macs, measure_fps, size_mb
from gdws.pipeline.context import resolve_device
from gdws.pipeline.row import build_row
from gdws.pipeline.transform import apply_gdws, apply_prune
from gdws.pipeline.weights import obtain_weights
from gdws.tracking import append_row, build_logger, finish_logger, log_summary, write_json

__all__ = ["run"]


def _build_model(cfg: DictConfig) -> nn.Module:
    """Instantiate ``cfg.model`` without its pipeline-only ``checkpoint`` key."""
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)  # resolve while the parent config is attached
    model_cfg.pop("checkpoint", None)
    return instantiate(model_cfg)


def _speed(cfg: DictConfig, model: nn.Module, device: torch.device) -> dict:
    """FPS at batch 1 and throughput at a large batch on ``device`` (empty when metrics.fps is off).

    With ``metrics.fast_inference`` the timed network is ``gdws.fast.optimize_for_inference(model)`` (same
    function; BN folded and each GDWS layer in its fastest exact form), chosen anew for each batch size,
    for dense and GDWS models alike so that their speeds compare.
    """
    m = cfg.metrics
    if not m.fps:
        return {}
    size = tuple(m.input_size)

    def timed(batch_size: int) -> dict:
        net = model
        if m.fast_inference:
            from gdws.fast import optimize_for_inference

            net = optimize_for_inference(model, torch.rand(batch_size, *size, device=device), device=device)
        return measure_fps(net, size, batch_size, device, warmup=int(m.warmup), min_run_time=float(m.min_run_time))

    single, batch = timed(int(m.fps_batch_size)), timed(int(m.throughput_batch_size))
    return {
        "fps": round(single["fps"], 2),
        "throughput": round(batch["fps"], 2),
        "threads": single["threads"],
        "device": f"{single['device']} ({single['device_name']})",
        "fast_inference": bool(m.fast_inference),
    }


def run(cfg: DictConfig) -> dict:
    """Run the experiment described by ``cfg`` and return the row appended to ``cfg.paths.runs_csv``.

    Under multi-process DDP training (trainer=ddp) only global rank 0 goes on after training; the other
    ranks return an empty dict.
    """
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    device = resolve_device(str(cfg.device))
    out_dir = Path(cfg.paths.output_dir)
    logger = build_logger(cfg.get("logger"))
    failed = True
    try:
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        model = _build_model(cfg)
        weights = obtain_weights(cfg, model, datamodule, logger)
        if rank_zero_only.rank != 0:  # extra DDP ranks only help training; rank 0 evaluates and logs
            failed = False
            return {}
        model = apply_prune(cfg, model.to(device).eval(), datamodule, weights.path)
        pruned = cfg.prune.get("_target_") is not None
        input_size = tuple(cfg.metrics.input_size)
        facts = {
            "recipe": weights.recipe,
            "checkpoint": weights.path,
            "size_MB_dense": round(size_mb(model, nonzero=pruned), 4),
            "macs_dense": count_macs(model, input_size),
            "train_s": round(weights.train_s, 1),
        }
        model, gdws_facts = apply_gdws(cfg, model, datamodule, weights.path, device, out_dir)
        facts.update(gdws_facts)
        datamodule.setup("test")
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)  # same PGD random starts for every variant
        start = time.perf_counter()
        facts.update(evaluate(model, datamodule.test_dataloader(), cfg.attack, progress=bool(cfg.progress)))
        facts["eval_s"] = round(time.perf_counter() - start, 1)
        facts["size_MB"] = round(size_mb(model, nonzero=pruned), 4)
        facts["macs"] = count_macs(model, input_size)
        facts.update(_speed(cfg, model, device))
        row = build_row(cfg, facts)
        log_summary(logger, row, hparams=OmegaConf.to_container(cfg, resolve=True))
        write_json(out_dir / "row.json", row)
        append_row(cfg.paths.runs_csv, row)  # last: a run that failed earlier leaves no row
        failed = False
        return row
    finally:
        finish_logger(logger, failed=failed)
