"""Running one resumable training phase of a pruning method inside its work folder, and guarding that folder.

Layout of a work folder: ``prune.json`` (which weights and settings it belongs to) and one sub-folder per phase
holding ``latest.ckpt`` (every epoch, for resuming), ``best.ckpt`` (highest val/acc_rob) and, once the phase
finished, ``done.json`` naming the checkpoint that is its result.
"""
from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from gdws.train import accelerator_options, best_checkpoint_callback, last_checkpoint_callback
from gdws.utils import weights_fingerprint

_RECORD = "prune.json"
_DONE = "done.json"
_LATEST = "latest"


def check_ratio(ratio: Any) -> float:
    """``ratio`` as a float in [0, 1) (the share of weights or channels removed), else one ValueError."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 <= float(ratio) < 1.0:
        raise ValueError(f"prune.ratio must be a number in [0, 1) (the share removed, e.g. 0.9), got {ratio!r}")
    return float(ratio)


def claim_work_dir(work_dir: str | Path, model: nn.Module, method: str, settings: dict) -> Path:
    """Create ``work_dir`` for pruning ``model`` with ``method``/``settings``, or check that it already is one.

    A folder recorded for other weights or settings, or holding checkpoints without a record, raises one
    RuntimeError before anything is written, so its contents are never mixed with (or overwritten by) this run.
    """
    path = Path(work_dir)
    wanted = {"method": method, "weights": weights_fingerprint(model), "settings": json.loads(json.dumps(settings, default=str))}
    record = path / _RECORD
    if record.is_file():
        found = json.loads(record.read_text())
        if found != wanted:
            diff = sorted(k for k in wanted if found.get(k) != wanted[k])
            raise RuntimeError(f"work_dir {path} holds the {found.get('method')} pruning of other weights or settings "
                               f"(differs in: {diff}); pass an empty folder (its files were left untouched)")
        return path
    if path.is_dir() and any(path.rglob("*.ckpt")):
        raise RuntimeError(f"work_dir {path} holds checkpoints of an unknown model (no {_RECORD}); pass an empty "
                           "folder (its files were left untouched)")
    path.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(wanted, indent=1, sort_keys=True) + "\n")
    return path


def run_phase(module: pl.LightningModule, datamodule: pl.LightningDataModule, phase_dir: Path, device: torch.device,
              select: str = "best", **trainer_options) -> None:
    """Train ``module`` for ``module.hparams.epochs`` epochs in ``phase_dir`` and load the chosen weights into it.

    An interrupted phase resumes from ``latest.ckpt``; a finished one (``done.json``) is not trained again, its
    result is loaded. ``select``: ``best`` (highest val/acc_rob, the last epoch when there is no validation) or
    ``last``. ``trainer_options`` go to the Trainer (e.g. limit_train_batches, limit_val_batches).
    """
    if select not in ("best", "last"):
        raise ValueError(f"select must be 'best' or 'last', got {select!r}")
    done = phase_dir / _DONE
    if not done.is_file():
        phase_dir.mkdir(parents=True, exist_ok=True)
        best_cb, latest_cb = best_checkpoint_callback(str(phase_dir)), last_checkpoint_callback(str(phase_dir), _LATEST)
        trainer = pl.Trainer(max_epochs=int(module.hparams.epochs), callbacks=[best_cb, latest_cb], logger=False,
                             num_sanity_val_steps=0, inference_mode=False, enable_model_summary=False,
                             **accelerator_options(device), **trainer_options)
        latest = phase_dir / f"{_LATEST}.ckpt"
        # The pipeline hands over its model in eval mode and Lightning keeps modules' modes: train BN for real.
        module.train()
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(latest) if latest.is_file() else None)
        best = Path(best_cb.best_model_path) if best_cb.best_model_path else None
        result = best if select == "best" and best is not None else latest
        if not result.is_file():
            raise RuntimeError(f"pruning phase in {phase_dir} wrote no checkpoint (trainer options {trainer_options})")
        done.write_text(json.dumps({"result": result.name, "epochs": trainer.current_epoch}) + "\n")
    name = json.loads(done.read_text())["result"]
    # Our own Lightning files: tensors and plain values only, so the restricted unpickler reads them.
    state = torch.load(phase_dir / name, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    module.to(device).eval()
