"""gdws.eval: accuracies against a brute-force optimum, attack budgets, model-mode handling."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from gdws.eval import attack_spec, build_attack, evaluate

EPS = 2 / 255
PGD = {"name": "pgd", "eps": EPS, "step_size": EPS / 4, "steps": 20, "random_start": True}


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
    out = evaluate(model, _loader(x, y), PGD, progress=False)
    assert out["n_eval"] == len(y)
    assert out["A_nat"] == pytest.approx(100 * clean_ok.float().mean().item())
    assert out["A_rob"] == pytest.approx(100 * robust_ok.float().mean().item())
    assert 0 < out["A_rob"] < out["A_nat"] < 100  # the problem is built so that the attack matters


def test_autoattack_reaches_the_optimum_on_a_linear_model(one_thread):
    model, x, y, clean_ok, robust_ok = _linear_problem(n=48, seed=1, classes=10)
    cfg = {"name": "autoattack", "eps": EPS, "norm": "Linf", "version": "standard", "n_classes": 10, "seed": 0}
    out = evaluate(model, _loader(x, y), cfg, progress=False)
    assert out["A_rob"] == pytest.approx(100 * robust_ok.float().mean().item())
    assert out["A_rob"] <= out["A_nat"]


def test_adversarial_images_stay_within_eps_and_the_unit_box():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)).eval()
    x = torch.rand(16, 3, 8, 8)
    x[:4] = 0.0  # pixels on the box edges: the attack must clip, not leave [0, 1]
    x[4:8] = 1.0
    y = torch.randint(0, 10, (16,))
    attack = build_attack(model, {**PGD, "eps": 8 / 255, "step_size": 2 / 255, "steps": 5})
    x_adv = attack(x, y)
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
        out = evaluate(model, _loader(x, y), {"name": "none"}, progress=False)
    assert out["A_nat"] == pytest.approx(expected)
    assert out["A_rob"] is None
    assert model.training
    assert torch.equal(model[1].running_mean, running_mean)  # eval mode: statistics untouched


def test_max_samples_and_bad_attack_names():
    model, x, y, clean_ok, _ = _linear_problem()
    out = evaluate(model, _loader(x, y, batch_size=30), {"name": "none"}, max_samples=70, progress=False)
    assert out["n_eval"] == 70
    assert out["A_nat"] == pytest.approx(100 * clean_ok[:70].float().mean().item())
    with pytest.raises(ValueError, match="attack.name"):
        evaluate(model, _loader(x, y), {"name": "fgsm"}, progress=False)
    with pytest.raises(ValueError, match="8/255"):
        build_attack(model, {**PGD, "eps": 8})


def test_attack_spec_names_the_paper_attack():
    paper = {"name": "pgd", "eps": 8 / 255, "step_size": 1 / 255, "steps": 100, "random_start": True}
    assert attack_spec(paper) == "pgd100-step1/255-eps8/255-rs"
    assert attack_spec({"name": "autoattack", "eps": 8 / 255}) == "autoattack-standard-Linf-eps8/255"
    assert attack_spec({"name": "none"}) == "none"
