"""Step 1 of a run: give the model its weights, by loading `weights.path` or by (resumable) training.

Trained networks live in content-addressed folders: ``<data>-<model>-w<width>-<method>-e<epochs>-<hash>``
under ``paths.checkpoints_dir``, the hash covering everything that determines the weights. So a sweep over a
training hyper-parameter trains each distinct network once, and a sweep over conversion settings reuses one.
"""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock
from hydra.utils import instantiate
from lightning_fabric.utilities.rank_zero import _get_rank
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger
from torch import nn

from gdws.errors import CannotRun, as_refusal
from gdws.pipeline.context import resolve_device, settings_key, to_plain

# Trainer keys that change where/how fast training runs but not the weights it produces.
_RUNTIME_TRAINER_KEYS = {
    "accelerator", "devices", "strategy", "num_nodes", "enable_progress_bar", "enable_model_summary",
    "log_every_n_steps", "default_root_dir", "num_sanity_val_steps", "callbacks", "logger", "benchmark",
    "deterministic", "profiler",
}
# Train keys that change how a training is run, not the weights it produces.
_RUNTIME_TRAIN_KEYS = {"allow_long"}
_DONE = "done.json"
_RECORD = "training_config.yaml"


@dataclass
class Weights:
    """Where the model's weights came from."""

    path: Path          # the checkpoint file that was loaded
    recipe: str         # train.method when trained here, "loaded" for weights.path, "pretrained" for a zoo model
    train_s: float      # seconds spent training in this run (0 when loaded or reused)
    trained_here: bool  # True when this run (not an earlier one) did the training


def training_config(cfg: DictConfig) -> dict:
    """The parts of the config that determine the trained weights (hashed into the folder name)."""
    data = to_plain(cfg.data)
    trainer = {k: v for k, v in to_plain(cfg.trainer).items() if k not in _RUNTIME_TRAINER_KEYS}
    return {
        "model": to_plain(cfg.model),
        "train": {k: v for k, v in to_plain(cfg.train).items() if k not in _RUNTIME_TRAIN_KEYS},
        "data": {k: data.get(k) for k in ("_target_", "train_subset", "val_size", "batch_size", "seed")},
        "trainer": trainer,
    }


def checkpoint_dir(cfg: DictConfig) -> Path:
    """``paths.ckpt_dir`` when given, else the content-addressed folder of this training config."""
    if cfg.paths.get("ckpt_dir"):
        return Path(str(cfg.paths.ckpt_dir))
    # From config values only (not Hydra's group choices), so scripts composing the config find the same folder.
    m, data = cfg.model, str(cfg.data.get("_target_", "")).rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    prefix = f"{data}-{m.get('name')}-w{m.get('width')}-{cfg.train.get('method')}-e{cfg.train.get('epochs')}"
    return Path(str(cfg.paths.checkpoints_dir)) / f"{prefix}-{settings_key(training_config(cfg), 12)}"


def obtain_weights(cfg: DictConfig, model: nn.Module, datamodule, logger: Logger | None) -> Weights:
    """Load ``cfg.weights.path`` into ``model``, or train it with ``cfg.train``/``cfg.trainer``.

    A finished training in the checkpoint folder is reused, an interrupted one resumes from last.ckpt, and
    concurrent jobs needing the same weights wait on a file lock so that each network is trained once.
    Third-party files are read with the restricted unpickler unless ``weights.trusted``; the project's own
    checkpoints (Lightning files holding tensors and plain values) need no more than that either. A
    ``weights.path`` that cannot be read or does not fit the model is refused (gdws.errors) with the loader's message.
    """
    from gdws.models import load_checkpoint

    source = getattr(model, "weights_source", None)  # a zoo model (model=robustbench) built with its weights
    if source and not cfg.weights.get("path"):
        return Weights(path=Path(source), recipe="pretrained", train_s=0.0, trained_here=False)
    if cfg.weights.get("path"):
        path = Path(str(cfg.weights.path)).expanduser()
        try:
            load_checkpoint(model, path, trusted=bool(cfg.weights.get("trusted", False)))
        except (FileNotFoundError, RuntimeError) as err:  # the user's file: unreadable, or another network's
            raise as_refusal(err) from err
        return Weights(path=path, recipe="loaded", train_s=0.0, trained_here=False)
    ckpt_dir = checkpoint_dir(cfg)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # The lock keeps separate jobs from training the same network twice. Extra DDP ranks (processes that
    # Lightning or srun started for this same job, rank from the environment) must not wait on it: rank 0
    # holds it while waiting for them inside trainer.fit.
    lock = FileLock(str(ckpt_dir / ".train.lock")) if (_get_rank() or 0) == 0 else nullcontext()
    with lock:
        _check_training_config(ckpt_dir, cfg)
        best, train_s = finished_checkpoint(ckpt_dir), 0.0
        if best is None:
            start = time.perf_counter()
            best = _train(cfg, model, datamodule, logger, ckpt_dir)
            train_s = time.perf_counter() - start
    load_checkpoint(model, best)
    return Weights(path=best, recipe=str(cfg.train.method), train_s=train_s, trained_here=train_s > 0)


def _check_training_config(ckpt_dir: Path, cfg: DictConfig) -> None:
    """Record the training config in ``ckpt_dir``; refuse a folder (given by paths.ckpt_dir) trained differently."""
    wanted = training_config(cfg)
    record = ckpt_dir / _RECORD
    if not record.exists():
        record.write_text(yaml.safe_dump(wanted, sort_keys=True))
        return
    found = yaml.safe_load(record.read_text())
    if found != wanted:
        diff = sorted(
            f"{section}.{key}"
            for section in wanted
            for key in set(wanted[section]) | set(found.get(section, {}))
            if wanted[section].get(key) != found.get(section, {}).get(key)
        )
        raise CannotRun(
            f"checkpoint folder {ckpt_dir} holds a training with a different config (differs in: {diff}). "
            "Leave paths.ckpt_dir unset (each training config gets its own folder), or pick another folder."
        )


def finished_checkpoint(ckpt_dir: Path) -> Path | None:
    """The best checkpoint of a finished training in ``ckpt_dir``, or None.

    done.json names it relative to the folder, so a moved or re-mounted project still finds it (older
    files held an absolute path: only its file name is used).
    """
    done = ckpt_dir / _DONE
    if not done.exists():
        return None
    best = ckpt_dir / Path(json.loads(done.read_text())["best"]).name
    return best if best.is_file() else None


def _train(cfg: DictConfig, model: nn.Module, datamodule, logger: Logger | None, ckpt_dir: Path) -> Path:
    """Fit ``model`` (resuming from last.ckpt when present) and return the best checkpoint's path."""
    from gdws.train import (SpectralLog, accelerator_options, best_checkpoint_callback, last_checkpoint_callback,
                            quiet_lightning, resume_checkpoint)

    quiet_lightning()  # the console keeps what a user acts on (progress, the time estimate, warnings, errors)
    module = instantiate(cfg.train, model=model)
    callback = best_checkpoint_callback(str(ckpt_dir))
    # last.ckpt after every epoch (resume); spectra.csv: does training give GDWS spectral decay?
    callbacks = [callback, last_checkpoint_callback(str(ckpt_dir)), SpectralLog(ckpt_dir)]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger if logger is not None else False,
                          **accelerator_options(resolve_device(str(cfg.device)), int(cfg.trainer.get("devices", 1))))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(str(ckpt_dir)))
    # Without any validation epoch there is no "best"; the final weights are then the result.
    best = Path(callback.best_model_path or ckpt_dir / "last.ckpt")
    if not best.is_file():
        raise CannotRun(
            f"training finished but wrote no checkpoint in {ckpt_dir}; check trainer.limit_val_batches/"
            "val_check_interval (the best checkpoint is chosen on val/acc_rob)"
        )
    if trainer.is_global_zero:  # one writer under DDP
        (ckpt_dir / _DONE).write_text(json.dumps({"best": best.name, "epochs": trainer.current_epoch}) + "\n")
    return best
