"""The pruning phases' plumbing: resuming an interrupted phase, reusing a finished one, and one clear error
(with nothing written or lost) for a bad ratio, a model without prunable layers and another model's folder."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_method
from omegaconf import OmegaConf
from torch import nn

from gdws.data import SyntheticDataModule
from gdws.models import create_model
from gdws.prune import admm_prune, hydra_prune
from gdws.prune.modules import ADMMTraining
from gdws.prune.phase import claim_work_dir, run_phase

CONF = Path(__file__).resolve().parents[1] / "conf"
FAST = dict(steps=1, step_size=8 / 255, val_attack_steps=1)
CPU = torch.device("cpu")


def tiny_data() -> SyntheticDataModule:
    return SyntheticDataModule(num_train=96, num_test=32, val_size=32, batch_size=32, eval_batch_size=32)


class Interrupted(ADMMTraining):
    """ADMM training that counts its steps and can fail as epoch ``fail_at`` starts (before the Z/U update)."""

    def __init__(self, *args, fail_at: int = -1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fail_at, self.steps_run = fail_at, 0

    def on_train_epoch_start(self) -> None:
        if self.current_epoch == self.fail_at:
            raise RuntimeError("simulated crash")
        super().on_train_epoch_start()

    def training_step(self, batch, batch_idx):
        self.steps_run += 1
        return super().training_step(batch, batch_idx)


def phase(model: nn.Module, **kw) -> Interrupted:
    return Interrupted(model, targets=["features.0"], ratio=0.5, admm_epoch=1, epochs=3, milestones=[], **FAST, **kw)


def test_an_interrupted_phase_resumes_where_it_stopped(tmp_path, one_thread):
    torch.manual_seed(0)
    model, data, limits = create_model("vgg16", width=0.125), tiny_data(), dict(limit_train_batches=2, limit_val_batches=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_phase(phase(model, fail_at=1), data, tmp_path, CPU, select="last", **limits)
    assert torch.load(tmp_path / "latest.ckpt", weights_only=True)["epoch"] == 0
    resumed = phase(model)
    run_phase(resumed, data, tmp_path, CPU, select="last", **limits)
    assert resumed.steps_run == 2 * 2  # epochs 1 and 2 only, 2 batches each
    # Z/U/rho came back from the checkpoint and the updates of epochs 1 and 2 both happened exactly once.
    assert float(resumed.admm_rho) == pytest.approx(1e-3 * 1.3 ** 2)
    assert json.loads((tmp_path / "done.json").read_text())["epochs"] == 3
    again = phase(create_model("vgg16", width=0.125))
    run_phase(again, data, tmp_path, CPU, select="last", **limits)  # finished: loaded, not retrained
    assert again.steps_run == 0
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), resumed.state_dict().values()))


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, "0.5", True, None])
@pytest.mark.parametrize("prune", [hydra_prune, admm_prune])
def test_a_ratio_outside_zero_one_is_refused_before_anything_is_written(prune, ratio, tmp_path):
    with pytest.raises(ValueError, match=r"prune.ratio must be a number in \[0, 1\)"):
        prune(create_model("vgg16", width=0.125).eval(), tiny_data(), str(tmp_path / "work"), ratio=ratio)
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("prune,model,match", [
    (hydra_prune, nn.Sequential(nn.Flatten(), nn.ReLU()), "no Conv2d or Linear"),
    (admm_prune, nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), "no conv whose output channels"),
])
def test_a_model_without_prunable_layers_is_refused(prune, model, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        prune(model.eval(), tiny_data(), str(tmp_path / "work"), ratio=0.5)
    assert not (tmp_path / "work").exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_of_another_model_is_refused_and_left_intact(tmp_path):
    torch.manual_seed(0)
    work = tmp_path / "work"
    claim_work_dir(work, create_model("vgg16", width=0.125), "hydra", {"ratio": 0.9})
    (work / "prune").mkdir()
    (work / "prune" / "latest.ckpt").write_bytes(b"another model's checkpoint")
    before = snapshot(work)
    other = create_model("vgg16", width=0.125).eval()  # same architecture, other weights
    with pytest.raises(RuntimeError, match="holds the hydra pruning of other weights or settings"):
        hydra_prune(other, tiny_data(), str(work), ratio=0.9)
    with pytest.raises(RuntimeError, match="holds the hydra pruning"):
        admm_prune(other, tiny_data(), str(work), ratio=0.5)
    assert snapshot(work) == before
    (work / "prune.json").unlink()  # checkpoints without a record: unknown origin, refused too
    with pytest.raises(RuntimeError, match="holds checkpoints of an unknown model"):
        hydra_prune(other, tiny_data(), str(work), ratio=0.9)
    assert (work / "prune" / "latest.ckpt").read_bytes() == b"another model's checkpoint"


@pytest.mark.parametrize("option,scale", [("hydra", "paper"), ("admm", "paper"), ("hydra", "smoke"), ("admm", "smoke")])
def test_prune_configs_resolve_to_the_callables_arguments(option, scale):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"prune={option}", f"scale={scale}"])
    prune = OmegaConf.to_container(cfg.prune, resolve=True)
    fn = get_method(prune.pop("_target_"))
    assert prune.pop("method") == option
    inspect.signature(fn).bind(model=None, datamodule=None, work_dir="w", **prune)  # every key is an argument
    # Paper defaults (reproduction.md section 3) at paper scale; the batch limits follow the scale's trainer.
    if scale != "paper":
        assert max(v for k, v in prune.items() if k.endswith("_epochs")) <= 2
    elif option == "hydra":
        assert (prune["prune_epochs"], prune["prune_lr"], prune["finetune_epochs"], prune["finetune_lr"]) == (20, 0.1, 100, 0.01)
        assert (prune["momentum"], prune["weight_decay"], prune["loss"]) == (0.9, 1e-4, "trades")
    else:
        assert (prune["admm_epochs"], prune["admm_lr"], prune["admm_epoch"], prune["rho"], prune["rho_growth"]) == (200, 0.01, 20, 1e-3, 1.3)
        assert (prune["retrain_epochs"], prune["retrain_lr"], prune["retrain_milestones"]) == (200, 0.01, [0.4, 0.75])
    assert prune["limit_train_batches"] == cfg.trainer.limit_train_batches
    assert prune["recipe"]["steps"] == cfg.train.steps
