"""Step 1 of a run: give the model its weights, by loading `model.checkpoint` or by (resumable) training."""
from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import yaml
from filelock import FileLock
from lightning_fabric.utilities.rank_zero import _get_rank
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger
from torch import nn

from gdws.pipeline.context import to_plain

# Trainer keys that change where/how fast training runs but not the weights it produces.
_RUNTIME_TRAINER_KEYS = {
    "accelerator", "devices", "strategy", "num_nodes", "enable_progress_bar", "enable_model_summary",
    "log_every_n_steps", "default_root_dir", "num_sanity_val_steps", "callbacks", "logger", "benchmark",
    "deterministic", "profiler",
}
_DONE = "done.json"


@dataclass
class Weights:
    """Where the model's weights came from."""

    path: Path          # the checkpoint file that was loaded
    recipe: str         # train.method when trained here, "loaded" for model.checkpoint
    train_s: float      # seconds spent training in this run (0 when loaded or reused)


def obtain_weights(cfg: DictConfig, model: nn.Module, datamodule, logger: Logger | None) -> Weights:
    """Load ``cfg.model.checkpoint`` into ``model``, or train it with ``cfg.train``/``cfg.trainer``.

    Training uses the deterministic folder ``cfg.paths.ckpt_dir``: a finished training there is reused,
    an interrupted one resumes from last.ckpt, and concurrent jobs needing the same weights wait on a
    file lock so that each network is trained once. The best checkpoint (val/acc_rob) is loaded.
    """
    from gdws.models import load_checkpoint

    checkpoint = cfg.model.get("checkpoint")
    if checkpoint:
        path = Path(str(checkpoint)).expanduser()
        load_checkpoint(model, path)  # raises FileNotFoundError / RuntimeError naming the file
        return Weights(path=path, recipe="loaded", train_s=0.0)
    ckpt_dir = Path(cfg.paths.ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    # The lock keeps separate jobs from training the same network twice. Extra DDP ranks (processes that
    # Lightning or srun started for this same job, rank from the environment) must not wait on it: rank 0
    # holds it while waiting for them inside trainer.fit.
    lock = FileLock(str(ckpt_dir / ".train.lock")) if (_get_rank() or 0) == 0 else nullcontext()
    with lock:
        _check_training_config(ckpt_dir, cfg)
        best, train_s = _finished(ckpt_dir), 0.0
        if best is None:
            start = time.perf_counter()
            best = _train(cfg, model, datamodule, logger, ckpt_dir)
            train_s = time.perf_counter() - start
    load_checkpoint(model, best)
    return Weights(path=best, recipe=str(cfg.train.method), train_s=train_s)


def _training_config(cfg: DictConfig) -> dict:
    """The parts of the config that determine the trained weights (compared on reuse)."""
    model = {k: v for k, v in to_plain(cfg.model).items() if k != "checkpoint"}
    data = to_plain(cfg.data)
    trainer = {k: v for k, v in to_plain(cfg.trainer).items() if k not in _RUNTIME_TRAINER_KEYS}
    return {
        "model": model,
        "train": to_plain(cfg.train),
        "data": {k: data.get(k) for k in ("_target_", "train_subset", "val_size", "batch_size", "seed")},
        "trainer": trainer,
    }


def _check_training_config(ckpt_dir: Path, cfg: DictConfig) -> None:
    """Record the training config in ``ckpt_dir``; refuse to reuse a folder trained differently."""
    wanted = _training_config(cfg)
    record = ckpt_dir / "training_config.yaml"
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
        raise RuntimeError(
            f"checkpoint folder {ckpt_dir} holds a training with a different config (differs in: {diff}). "
            "Pass paths.ckpt_dir=<new folder> for this configuration, or delete that folder to retrain."
        )


def _finished(ckpt_dir: Path) -> Path | None:
    """The best checkpoint of a finished training in ``ckpt_dir``, or None."""
    done = ckpt_dir / _DONE
    if not done.exists():
        return None
    best = Path(json.loads(done.read_text())["best"])
    return best if best.is_file() else None


def _train(cfg: DictConfig, model: nn.Module, datamodule, logger: Logger | None, ckpt_dir: Path) -> Path:
    """Fit ``model`` (resuming from last.ckpt when present) and return the best checkpoint's path."""
    from gdws.train import best_checkpoint_callback, resume_checkpoint

    module = instantiate(cfg.train, model=model)
    callback = best_checkpoint_callback(str(ckpt_dir))
    trainer = instantiate(cfg.trainer, callbacks=[callback], logger=logger if logger is not None else False)
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_checkpoint(str(ckpt_dir)))
    # Without any validation epoch there is no "best"; the final weights are then the result.
    best = Path(callback.best_model_path or ckpt_dir / "last.ckpt")
    if not best.is_file():
        raise RuntimeError(
            f"training finished but wrote no checkpoint in {ckpt_dir}; check trainer.limit_val_batches/"
            "val_check_interval (the best checkpoint is chosen on val/acc_rob)"
        )
    if trainer.is_global_zero:  # one writer under DDP
        (ckpt_dir / _DONE).write_text(json.dumps({"best": str(best), "epochs": trainer.current_epoch}) + "\n")
    return best
