"""One complete experiment run: weights -> prune -> GDWS -> evaluate -> metrics -> one logged row.

``run(cfg)`` is what run.py calls with the composed Hydra config; each step lives in its own module.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch import nn

from gdws.errors import as_refusal
from gdws.eval import build_attack, evaluate
from gdws.fast.runtimes import check_runtime
from gdws.metrics import count_macs, measure_speed, size_mb
from gdws.pipeline.context import resolve_device
from gdws.pipeline.row import build_row
from gdws.pipeline.transform import apply_gdws, apply_prune
from gdws.pipeline.validate import validate
from gdws.pipeline.weights import obtain_weights
from gdws.tracking import append_row, build_logger, finish_logger, log_summary, run_summary, write_json


def build_model(cfg: DictConfig) -> nn.Module:
    """Instantiate ``cfg.model`` (resolved while the parent config is attached)."""
    return instantiate(OmegaConf.to_container(cfg.model, resolve=True))


def run(cfg: DictConfig) -> dict:
    """Run the experiment described by ``cfg``, append its row to ``cfg.paths.runs_csv`` and return the row.

    The config is validated first (nothing is trained or loaded before it passes). With ``stage=train`` the
    run stops once the weights exist and returns an empty dict. Under multi-process DDP training
    (trainer=ddp) only global rank 0 goes on after training; the other ranks return an empty dict.
    The run ends by printing its summary (accuracies, size, MACs and speed against the dense network, paths).
    """
    constraint = validate(cfg)
    attack = build_attack(cfg.attack)  # a bad attack setting fails here, before any training
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    device = resolve_device(str(cfg.device))
    if cfg.metrics.fps:  # the FPS runtime: known, installed (an optional extra) and able to run on the device
        try:
            check_runtime(str(cfg.metrics.runtime), device)
        except ValueError as err:  # the user's setting: a refusal (run.py prints it alone)
            raise as_refusal(err) from err
    out_dir = Path(cfg.paths.output_dir)
    logger = build_logger(cfg.get("logger"))
    failed = True
    try:
        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        model = build_model(cfg)
        weights = obtain_weights(cfg, model, datamodule, logger)
        if rank_zero_only.rank != 0 or cfg.stage == "train":  # extra DDP ranks only help training
            if rank_zero_only.rank == 0:
                how = (f"trained in {weights.train_s:.0f} s" if weights.trained_here
                       else weights.recipe if weights.recipe in ("loaded", "pretrained") else "an earlier training")
                print(f"stage=train: the network is ready ({how}): {weights.path}", flush=True)
            failed = False
            return {}
        input_size = tuple(cfg.metrics.input_size)
        dense = {"size_MB_dense": round(size_mb(model), 4), "macs_dense": count_macs(model, input_size)}
        m = cfg.metrics
        model = model.to(device).eval()
        # the dense network, kept to be timed beside the transformed one (one process, one load); copied only
        # when a transformation is asked for
        asked = constraint is not None or cfg.prune.get("_target_") is not None
        reference = copy.deepcopy(model) if m.fps and m.fps_vs_dense and asked else None
        model, facts = apply_prune(cfg, model, datamodule)
        pruned = bool(facts)  # size counts non-zero weights only (the paper's size of a pruned network)
        facts.update(dense, recipe=weights.recipe, checkpoint=weights.path, train_s=round(weights.train_s, 1))
        model, gdws_facts = apply_gdws(cfg, model, datamodule, device, out_dir, constraint)
        facts.update(gdws_facts)
        datamodule.setup("test")
        pl.seed_everything(int(cfg.seed), workers=True, verbose=False)  # same PGD random starts for every variant
        start = time.perf_counter()
        facts.update(evaluate(model, datamodule.test_dataloader(), attack, progress=bool(cfg.progress)))
        facts.update(attack=attack.spec(), eval_s=round(time.perf_counter() - start, 1))
        facts["size_MB"] = round(size_mb(model, nonzero=pruned), 4)
        facts["macs"] = count_macs(model, input_size)
        if m.fps:
            transformed = pruned or bool(facts.get("gdws_layers"))
            facts.update(measure_speed(model, input_size, device, fps_batch_size=m.fps_batch_size,
                                       throughput_batch_size=m.throughput_batch_size,
                                       fast_inference=m.fast_inference, warmup=m.warmup, min_run_time=m.min_run_time,
                                       select_time=m.select_time, reference=reference if transformed else None,
                                       rounds=m.fps_rounds, runtime=str(m.runtime)))
        row = build_row(cfg, facts)
        log_summary(logger, row, hparams=OmegaConf.to_container(cfg, resolve=True))
        write_json(out_dir / "row.json", row)
        append_row(cfg.paths.runs_csv, row)  # last: a run that failed earlier leaves no row
        print(run_summary(row, runs_csv=cfg.paths.runs_csv, run_dir=out_dir), flush=True)
        failed = False
        return row
    finally:
        finish_logger(logger, failed=failed)
