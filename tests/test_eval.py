"""gdws.eval: accuracies against a closed-form optimum, attacks built from conf/attack, model-mode handling."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gdws.eval import PGD, NoAttack, attack_spec, build_attack, evaluate
from conftest import compose_config

EPS = 2 / 255
FINE_PGD = PGD(eps=EPS, step_size=EPS / 4, steps=20)


def _attack_cfg(option: str, *overrides: str):
    """The ``attack`` node run.py gets for ``attack=<option>`` (interpolations resolved against the whole config)."""
    return compose_config([f"attack={option}", *overrides]).attack


def _linear_problem(n: int = 200, seed: int = 0, classes: int = 2):
    """A linear model with logits -/+ z/2, z = w.(x - 0.5), on 3x4x4 images; labels sign(z), 10 % flipped.

    Further classes (for AutoAttack's targeted losses) get logit -100 and can never win.
    For a linear model the worst l_inf perturbation inside [0, 1] is known in closed form: move every
    pixel by eps against the true class, clipped to the box. That gives the exact robust accuracy.
    """
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(48, generator=g).sign()
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, classes))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.fill_(-100.0)
        model[1].weight[:2] = torch.stack([-w, w]) / 2
        model[1].bias[:2] = torch.stack([w.sum(), -w.sum()]) / 4  # logits -/+ z/2
    x = torch.rand(n, 3, 4, 4, generator=g)
    z = (x.flatten(1) - 0.5) @ w
    y = (z > 0).long()
    flip = torch.rand(n, generator=g) < 0.1
    y[flip] = 1 - y[flip]
    s = torch.where(y == 1, 1.0, -1.0)[:, None] * w  # direction that increases the true-class margin
    x_worst = (x.flatten(1) - EPS * s).clamp(0, 1)
    z_worst = (x_worst - 0.5) @ w
    clean_ok = (z > 0).long() == y
    robust_ok = clean_ok & ((z_worst > 0).long() == y)
    return model.eval(), x, y, clean_ok, robust_ok


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def test_pgd_accuracy_matches_closed_form_optimum(one_thread):
    model, x, y, clean_ok, robust_ok = _linear_problem()
    torch.manual_seed(0)
    out = evaluate(model, _loader(x, y), FINE_PGD, progress=False)
    assert out["n_eval"] == len(y)
    assert out["A_nat"] == pytest.approx(100 * clean_ok.float().mean().item())
    assert out["A_rob"] == pytest.approx(100 * robust_ok.float().mean().item())
    assert 0 < out["A_rob"] < out["A_nat"] < 100  # the problem is built so that the attack matters


def test_attack_autoattack_config_reaches_the_optimum_on_a_linear_model(one_thread):
    # attack=autoattack as run.py composes it (n_classes from data, seed from the run), evaluated as the pipeline does.
    cfg = _attack_cfg("autoattack", f"attack.eps={EPS}")
    assert cfg.n_classes == 10 and cfg.seed == 0
    model, x, y, clean_ok, robust_ok = _linear_problem(n=48, seed=1, classes=10)
    out = evaluate(model, _loader(x, y, batch_size=48), cfg, progress=False)  # one batch: each attack runs once
    assert out["n_eval"] == 48 and out["A_nat"] == pytest.approx(100 * clean_ok.float().mean().item())
    assert out["A_rob"] == pytest.approx(100 * robust_ok.float().mean().item())
    assert out["A_rob"] < out["A_nat"]


def test_adversarial_images_stay_within_eps_and_the_unit_box():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)).eval()
    x = torch.rand(16, 3, 8, 8)
    x[:4] = 0.0  # pixels on the box edges: the attack must clip, not leave [0, 1]
    x[4:8] = 1.0
    y = torch.randint(0, 10, (16,))
    x_adv = PGD(eps=8 / 255, step_size=2 / 255, steps=5).on(model)(x, y)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 4 / 255  # it did move


def test_train_mode_model_is_warned_evaluated_in_eval_mode_and_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():  # running statistics far from any batch's: train and eval outputs differ
        model[1].running_mean.fill_(5.0)
        model[1].running_var.fill_(0.01)
    x, y = torch.rand(64, 3, 8, 8), torch.randint(0, 3, (64,))
    model.eval()
    with torch.no_grad():
        expected = 100 * (model(x).argmax(1) == y).float().mean().item()
        train_mode_acc = 100 * (model.train()(x).argmax(1) == y).float().mean().item()
    assert expected != train_mode_acc
    running_mean = model[1].running_mean.clone()
    model.train()
    with pytest.warns(UserWarning, match="train mode"):
        out = evaluate(model, _loader(x, y), NoAttack(), progress=False)
    assert out["A_nat"] == pytest.approx(expected)
    assert out["A_rob"] is None
    assert model.training
    assert torch.equal(model[1].running_mean, running_mean)  # eval mode: statistics untouched


def test_attack_configs_build_the_attack_they_describe():
    # The paper's attack as conf/attack/pgd.yaml gives it, and a CLI override of it.
    assert attack_spec(_attack_cfg("pgd")) == "pgd100-step1/255-eps8/255-rs"
    assert build_attack(_attack_cfg("pgd", "attack.steps=20")) == PGD(eps=8 / 255, step_size=1 / 255, steps=20)
    assert attack_spec(_attack_cfg("autoattack")) == "autoattack-standard-Linf-eps8/255"
    assert attack_spec(_attack_cfg("none")) == "none"
    attack = build_attack(_attack_cfg("pgd", "attack.random_start=false", "attack.step_size=0.0078431372549"))
    assert attack.spec() == "pgd100-step2/255-eps8/255-nors"


def test_none_attack_reports_clean_accuracy_only():
    model, x, y, clean_ok, _ = _linear_problem()
    out = evaluate(model, _loader(x, y, batch_size=30), _attack_cfg("none"), progress=False)
    assert out == {"A_nat": pytest.approx(100 * clean_ok.float().mean().item()), "A_rob": None, "n_eval": len(y)}


def test_bad_attack_values_are_refused_before_the_model_is_touched():
    model = _linear_problem()[0].train()
    with pytest.raises(ValueError, match="8/255"):  # eps given in 1/255 units instead of [0, 1]
        evaluate(model, _loader(torch.rand(4, 3, 4, 4), torch.zeros(4, dtype=torch.long)), _attack_cfg("pgd", "attack.eps=8"))
    assert model.training
    with pytest.raises(ValueError, match="positive"):
        build_attack(_attack_cfg("pgd", "attack.steps=0"))
    with pytest.raises(ValueError, match="_target_"):  # an old-style config that names the attack by a string
        build_attack({"name": "pgd", "eps": 8 / 255})
