"""compute_alphas: equals the per-sample, per-class autograd loop (eq. 8), eval mode, no .grad leakage, PGD."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gdws.core import compute_alphas, convert, load_alphas, pgd_attack, save_alphas
from gdws.core.alphas import weighted_channel_sq_norms
from gdws.core.alphas_reference import compute_alphas_loop


class TinyNet(nn.Module):
    """Convs with every padding kind, BN, an in-place ReLU and a grouped conv."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 8, 2, padding="same", padding_mode="reflect"), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, padding=2, dilation=2, padding_mode="circular"), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.Conv2d(8, 7, (3, 2), padding="valid"),
        )
        self.fc = nn.Linear(7, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture()
def net() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet().double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model


def _close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-5, atol=0), k


def test_clean_alphas_equal_loop_eval_mode_no_grad_leak(net):
    x = torch.rand(5, 3, 8, 8, dtype=torch.float64)
    net.train()  # compute_alphas must switch to eval itself and restore train mode
    stats = [b.clone() for b in net.buffers()]
    junk = {n: torch.randn_like(p) for n, p in net.named_parameters()}
    for n, p in net.named_parameters():
        p.grad = junk[n].clone()
    alphas = compute_alphas(net, x, attack=None, batch_size=2)
    assert list(alphas) == ["features.3", "features.6", "features.8", "features.11"]  # skip rules of convert()
    assert net.training and all(torch.equal(a, b) for a, b in zip(stats, net.buffers()))
    assert all(torch.equal(p.grad, junk[n]) for n, p in net.named_parameters())
    for n, p in net.named_parameters():
        p.grad = None
    reference = compute_alphas_loop(net, x, list(alphas))
    _close(alphas, reference)
    assert all(a.sum() > 0 for a in alphas.values())
    # a train-mode (batch statistics) computation would give different numbers
    with torch.no_grad():
        assert not torch.allclose(net.train()(x), net.eval()(x))


def test_layers_argument_matches_convert_defaults(net):
    _, report = convert(net, beta=0.1, input_size=(3, 8, 8), force=True)
    assert set(report.loc[report.reason == "", "name"]) == set(
        compute_alphas(net, torch.rand(2, 3, 8, 8, dtype=torch.float64), attack=None))
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    one = compute_alphas(net, x, attack=None, layers=["features.0"])
    _close(one, compute_alphas_loop(net, x, ["features.0"]))


def test_pgd_inputs(net):
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 5, (4,))
    adv = pgd_attack(net, x, y, eps=0.1, step_size=0.03, steps=4, seed=3)
    assert (adv - x).abs().max() <= 0.1 + 1e-12 and adv.min() >= 0 and adv.max() <= 1
    loss = nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(net.eval()(adv), y) > loss(net(x), y)
    alphas = compute_alphas(net, x, y, attack="pgd", eps=0.1, step_size=0.03, steps=4, seed=3, batch_size=3)
    _close(alphas, compute_alphas(net, adv, attack=None, batch_size=3))
    _close(alphas, compute_alphas_loop(net, adv, list(alphas)))


def test_save_load_and_bad_input(net, tmp_path):
    alphas = compute_alphas(net, torch.rand(2, 3, 8, 8, dtype=torch.float64), attack=None)
    save_alphas(alphas, tmp_path / "a" / "alphas.pt")
    loaded = load_alphas(tmp_path / "a" / "alphas.pt")
    assert all(torch.equal(loaded[k], alphas[k]) for k in alphas)
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a valid alpha file"):
        load_alphas(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError, match="compute_alphas"):
        load_alphas(tmp_path / "missing.pt")
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="attack must be"):
        compute_alphas(net, x, attack="fgsm")
    with pytest.raises(ValueError, match="groups=1"):
        compute_alphas(net, x, attack=None, layers=["features.10"])
    with pytest.raises(ValueError, match="labels must be"):
        compute_alphas(net, x, torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("cfg", [dict(padding=1), dict(stride=2, padding="valid"), dict(padding="same", dilation=2)])
def test_direct_and_gram_reductions_agree_with_explicit_gradients(cfg):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, **cfg).double()
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    delta = torch.randn(5, *conv(x).shape, dtype=torch.float64)
    w = torch.rand(5, 2, dtype=torch.float64)
    expected = torch.zeros(3, dtype=torch.float64)
    for j in range(5):
        for n in range(2):
            (g,) = torch.autograd.grad(conv(x[n:n + 1]), conv.weight, delta[j, n:n + 1])
            expected += w[j, n] * g.square().sum((0, 2, 3))
    for method in ("direct", "gram"):
        assert torch.allclose(weighted_channel_sq_norms(conv, delta, x, w, method), expected, rtol=1e-10)
