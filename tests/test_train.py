"""Training: attacks stay in the eps-ball, each method trains sanely, schedule, checkpoint/resume, configs."""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from hydra.utils import instantiate

from gdws.data import SyntheticDataModule
from gdws.train import (AdversarialTraining, AttackView, FastTraining, PGDTraining, StandardTraining, TRADESTraining,
                        TrainingTooLong, best_checkpoint_callback, last_checkpoint_callback, quiet_lightning,
                        resume_checkpoint)
from gdws.train.estimate import format_duration
from conftest import compose_config

REPO = Path(__file__).resolve().parents[1]
EPS = 8 / 255
RECIPES = {"pgd": PGDTraining, "trades": TRADESTraining, "fgsm_rs": FastTraining, "standard": StandardTraining}


def tiny_model() -> nn.Module:
    """A small CNN with BatchNorm (so train/eval modes matter)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(4),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def tiny_data(**kw) -> SyntheticDataModule:
    return SyntheticDataModule(**{"num_train": 160, "num_test": 32, "val_size": 32, "batch_size": 32,
                                  "eval_batch_size": 32, **kw})


def trainer(**kw) -> pl.Trainer:
    return pl.Trainer(**{"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
                         "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0,
                         "max_epochs": 1, **kw})


@pytest.mark.parametrize("method,kwargs", [("pgd", dict(steps=5, step_size=2 / 255)),
                                           ("trades", dict(steps=5, step_size=2 / 255)),
                                           ("fgsm_rs", dict(step_size=10 / 255))])
def test_training_attacks_stay_in_ball_and_raise_loss(method, kwargs):
    model = tiny_model()
    x, y = tiny_data().train_images(32, augment=False)
    model.train()
    adv = RECIPES[method](model, eps=EPS, **kwargs).training_attack(AttackView(model))(x, y)
    assert model.training  # mode restored after the eval-mode attack
    assert (adv - x).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > EPS / 2
    # The attack must beat random corner noise of the same size on the loss it maximises (in eval mode).
    noisy = (x + EPS * torch.randn_like(x).sign()).clamp(0, 1)
    model.eval()
    with torch.no_grad():
        clean, attacked, random = model(x), model(adv), model(noisy)
    if method == "trades":
        def kl(z):
            return F.kl_div(F.log_softmax(z, 1), F.softmax(clean, 1), reduction="batchmean")
        assert kl(attacked) > 2 * kl(random)
    else:
        assert F.cross_entropy(attacked, y) > F.cross_entropy(random, y) > 0


def test_fp16_attack_view_keeps_gradient_sign():
    model = tiny_model().eval()
    x = torch.rand(8, 3, 32, 32, requires_grad=True)
    y = torch.randint(0, 10, (8,))
    g32 = torch.autograd.grad(F.cross_entropy(AttackView(model)(x), y), x)[0]
    g16 = torch.autograd.grad(F.cross_entropy(AttackView(model, torch.float16)(x), y), x)[0]
    agree = (g32.sign() == g16.sign()).float().mean()
    assert g16.abs().gt(0).float().mean() > 0.95 and agree > 0.9


@pytest.mark.parametrize("method,amp", [("pgd", False), ("trades", False), ("fgsm_rs", False), ("standard", False),
                                        ("pgd", True)])
def test_each_method_trains(method, amp):
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    attack = {"standard": {}, "fgsm_rs": dict(step_size=4 / 255)}.get(method, dict(steps=2, step_size=4 / 255))
    module = RECIPES[method](model, epochs=1, val_attack_steps=3, amp=amp, channels_last=amp, lr=0.05, **attack)
    tr = trainer(limit_train_batches=3)
    tr.fit(module, datamodule=tiny_data())
    m = tr.callback_metrics
    assert tr.global_step == 3
    assert math.isfinite(float(m["train/loss"])) and 0 <= float(m["train/acc"]) <= 1
    assert 0 <= float(m["val/acc_rob"]) <= float(m["val/acc_nat"]) <= 1
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_trades_beta_weights_the_kl_term(monkeypatch):
    # loss = CE(f(x), y) + beta * KL(f(x) || f(x')), for beta 0, 6, 12 on one fixed x' (the attack itself is
    # tested above; TRADES' start sits where the KL gradient is ~0, so its sign steps differ run to run).
    model = tiny_model().eval()  # eval mode: the loss's forward passes leave no BN statistics behind
    x, y = tiny_data().train_images(32, augment=False)
    x_other = torch.rand_like(x)  # any fixed x' far enough from x for the KL term to stand above float32 rounding
    monkeypatch.setattr(TRADESTraining, "training_attack", lambda self, view: lambda images, labels: x_other)
    losses = {}
    for beta in (0.0, 6.0, 12.0):
        module = instantiate(_compose("train=trades", f"train.trades_beta={beta}").train, model=model)
        losses[beta] = float(module.training_loss(x, y)[0].detach())
    with torch.no_grad():
        assert losses[0.0] == pytest.approx(float(F.cross_entropy(model(x), y)))
    kl_term = losses[6.0] - losses[0.0]
    # each loss is a float32 near 2.3: its rounding (a few 1e-7) is what the differences can be checked to
    rounding = 8 * torch.finfo(torch.float32).eps * max(losses.values())
    assert kl_term > 1e-3 and losses[12.0] - losses[0.0] == pytest.approx(2 * kl_term, abs=rounding)


def test_lr_schedule_at_fractions_of_epochs():
    module = StandardTraining(tiny_model(), epochs=8, milestones=[0.5, 0.75], lr=0.1, lr_gamma=0.1)
    conf = module.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()  # (no gradients: a no-op that keeps the optimizer/scheduler call order valid)
        sched.step()
    assert lrs == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="train=standard"):  # the shared base is not a recipe
        AdversarialTraining(tiny_model())
    with pytest.raises(ValueError, match="train=trades"):  # a label that disagrees with the class that trains
        PGDTraining(tiny_model(), method="trades")
    with pytest.raises(ValueError, match="fractions"):
        PGDTraining(tiny_model(), milestones=[100, 150])
    with pytest.raises(ValueError, match="positive"):
        TRADESTraining(tiny_model(), steps=0)


class EpochOrder(pl.Callback):
    """Records the data-order epoch of the resident training loader at each epoch start."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seen.append(trainer.train_dataloader.sampler.epoch)


def test_checkpoint_and_resume(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    data = tiny_data()
    assert resume_checkpoint(str(ckpt_dir)) is None
    module = PGDTraining(tiny_model(), epochs=2, steps=1, val_attack_steps=1)
    tr = trainer(max_epochs=1, limit_train_batches=2, enable_checkpointing=True,
                 callbacks=[best_checkpoint_callback(str(ckpt_dir)), last_checkpoint_callback(str(ckpt_dir))])
    tr.fit(module, datamodule=data)  # "interrupted" after the first epoch
    assert (ckpt_dir / "best.ckpt").is_file() and (ckpt_dir / "last.ckpt").is_file()
    saved = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 2 and all(k.startswith("model.") for k in saved["state_dict"])
    resumed = PGDTraining(tiny_model(), epochs=2, steps=1, val_attack_steps=1)
    cb = best_checkpoint_callback(str(ckpt_dir))
    epochs = EpochOrder()
    tr2 = trainer(max_epochs=2, limit_train_batches=2, enable_checkpointing=True,
                  callbacks=[cb, last_checkpoint_callback(str(ckpt_dir)), epochs])
    tr2.fit(resumed, datamodule=data, ckpt_path=resume_checkpoint(str(ckpt_dir)))
    assert tr2.global_step == 4 and tr2.current_epoch == 2  # continued, not restarted
    assert epochs.seen == [1]  # only the second epoch ran, with the second epoch's data order
    assert torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 4
    assert cb.best_model_path.endswith("best.ckpt") and cb.best_model_score is not None
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["best.ckpt", "last.ckpt"]


def _compose(*overrides: str):
    """The config run.py would compose for ``overrides``."""
    return compose_config(overrides)


def _compose_train(recipe: str, *overrides: str) -> AdversarialTraining:
    """The training module run.py builds for ``train=<recipe>`` (plus ``overrides``) on the tiny model."""
    return instantiate(_compose(f"train={recipe}", *overrides).train, model=tiny_model())


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_train_option_builds_its_recipe_and_takes_overrides(recipe):
    module = _compose_train(recipe, "train.epochs=3", "train.lr=0.05")
    assert type(module) is RECIPES[recipe] and module.hparams.method == recipe
    conf = module.configure_optimizers()  # the overrides reach the optimiser and its schedule
    assert conf["optimizer"].defaults["lr"] == 0.05 and conf["lr_scheduler"]["scheduler"].milestones
    other = "standard" if recipe != "standard" else "pgd"
    with pytest.raises(Exception, match=f"train={other}"):  # a label override cannot mislabel the recipe
        _compose_train(recipe, f"train.method={other}")


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "conf" / "trainer").glob("*.yaml")))
def test_trainer_configs(name):
    cfg = _compose(f"trainer={name}", "train.epochs=3")
    tr = instantiate(cfg.trainer, accelerator="cpu", logger=False, enable_checkpointing=False)
    assert isinstance(tr, pl.Trainer) and tr.max_epochs == 3  # follows train.epochs


class StopAfter(pl.Callback):
    """Ends the fit after ``steps`` training steps."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        trainer.should_stop = trainer.global_step >= self.steps


@pytest.mark.parametrize("allow_long", [False, True])
def test_a_days_long_cpu_training_stops_after_its_first_steps_unless_allowed(allow_long, capsys):
    # 10 million epochs of 4 steps: far more than a day on any CPU
    module = StandardTraining(tiny_model(), epochs=10**7, val_attack_steps=0, allow_long=allow_long)
    tr = trainer(max_epochs=10**7, limit_train_batches=5, callbacks=[StopAfter(5)])
    if allow_long:
        tr.fit(module, datamodule=tiny_data())
        assert tr.global_step == 5  # went on past the timed steps
    else:
        ways = (r"weights\.path=FILE.*model=robustbench.*scale=cpu.*device=cuda.*train\.allow_long=true"
                r".*train\.amp=true")
        with pytest.raises(TrainingTooLong, match=f"on the CPU would take about [0-9.]+ days .*{ways}"):
            tr.fit(module, datamodule=tiny_data())
        assert tr.global_step == 3  # one warm-up step and two timed ones
    printed = capsys.readouterr().out
    assert re.search(r"training time estimate: [0-9.]+ days for 40,000,000 steps \([0-9.e-]+ s/step on cpu", printed)


def test_a_short_training_prints_its_estimate_and_runs(capsys):
    module = StandardTraining(tiny_model(), epochs=2, val_attack_steps=0)
    tr = trainer(max_epochs=2, limit_train_batches=3)
    tr.fit(module, datamodule=tiny_data())
    assert tr.global_step == 6 and "training time estimate: " in capsys.readouterr().out
    assert [format_duration(s) for s in (12.4, 250, 3 * 3600 + 50 * 60, 23.6 * 86400)] == [
        "12 s", "4 min 10 s", "3 h 50 min", "23.6 days"]


class Lines(logging.Handler):
    """Keeps the messages that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_lightning_start_up_noise_is_kept_off_the_console(tmp_path, recwarn):
    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    quiet_lightning()
    lines = Lines()
    logger = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    logger.addHandler(lines)
    try:
        (tmp_path / "training_config.yaml").write_text("{}\n")  # the pipeline's folders are never empty
        tr = trainer(limit_train_batches=1, limit_val_batches=1, enable_checkpointing=True,
                     callbacks=[last_checkpoint_callback(str(tmp_path))])
        tr.fit(StandardTraining(tiny_model(), epochs=1, val_attack_steps=0), datamodule=tiny_data())
        rank_zero_info("a line a user acts on")
    finally:
        logger.removeHandler(lines)
    assert lines.messages == ["a line a user acts on"]  # no litlogger tip, accelerator inventory, limit echoes
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)]
    assert (tmp_path / "last.ckpt").is_file()
