"""HYDRA: exact per-layer sparsity, straight-through gradients to the scores, the two phases end to end, and
GDWS (LEGO) on a layer with exact zeros."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gdws
from gdws.data import SyntheticDataModule
from gdws.models import create_model
from gdws.prune import attach_scores, hydra_prune, sparsity
from gdws.prune.scores import kept_count

FAST = dict(steps=1, step_size=8 / 255, val_attack_steps=1)


def tiny_data() -> SyntheticDataModule:
    return SyntheticDataModule(num_train=96, num_test=32, val_size=32, batch_size=32, eval_batch_size=32)


def test_masks_keep_exactly_the_fraction_in_every_layer(one_thread):
    torch.manual_seed(0)
    model = create_model("vgg16", width=0.125)
    layers = attach_scores(model, ratio=0.75)
    assert len(layers) == 14  # 13 convs and the classifier: first and last included
    for name in layers:
        layer = model.get_submodule(name)
        w = layer.parametrizations.weight.original
        kept = int((layer.weight != 0).sum())
        assert kept == kept_count(w.numel(), 0.75) == round(0.25 * w.numel())
        # Scores start at sqrt(6 / fan_in) * w / max|w|, so the first mask is magnitude pruning.
        scores = layer.parametrizations.weight[0].scores
        assert torch.allclose(scores, math.sqrt(6 / w[0].numel()) * w / w.abs().max())
        assert (layer.weight != 0).sum() == (w.abs() >= w.abs().flatten().topk(kept).values.min()).sum()
    assert sparsity(model)["features.0"] == pytest.approx(1 - round(0.25 * 216) / 216)


def test_straight_through_gradient_reaches_every_score():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, bias=False)
    attach_scores(conv, ratio=0.5)
    x, r = torch.randn(2, 3, 6, 6), torch.randn(2, 4, 4, 4)
    (conv(x) * r).sum().backward()
    w, scores = conv.parametrizations.weight.original, conv.parametrizations.weight[0].scores
    mask = (conv.weight != 0).float()
    w_eff = (w * mask).detach().requires_grad_(True)
    (F.conv2d(x, w_eff) * r).sum().backward()
    # d loss / d score = (d loss / d effective weight) * w, passed straight through the top-k (and |.|).
    expected = w_eff.grad * w.detach() * scores.detach().sign()
    assert torch.allclose(scores.grad, expected, atol=1e-6)
    assert (scores.grad[mask == 0] != 0).any()  # pruned weights' scores learn too: that is what moves the mask
    assert w.grad is not None and (w.grad[mask == 0] == 0).all()


def test_hydra_prune_phases_give_a_plain_sparse_model(tmp_path, one_thread):
    torch.manual_seed(0)
    model = create_model("vgg16", width=0.125).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned = hydra_prune(model, tiny_data(), str(tmp_path), ratio=0.9, prune_epochs=1, finetune_epochs=1,
                         recipe=FAST, limit_train_batches=2, limit_val_batches=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is untouched
    assert set(pruned.state_dict()) == set(before)  # ordinary modules: masks folded in
    for name, layer in pruned.named_modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            assert int((layer.weight != 0).sum()) == kept_count(layer.weight.numel(), 0.9), name
    # Prune phase: weights frozen, scores and BN affine trained; finetune: weights trained under the mask.
    prune_state = torch.load(tmp_path / "prune" / "latest.ckpt", weights_only=True)["state_dict"]
    assert torch.equal(prune_state["model.features.3.parametrizations.weight.original"], before["features.3.weight"])
    assert not torch.equal(prune_state["model.features.1.weight"], before["features.1.weight"])
    mask = pruned.features[3].weight != 0
    assert not torch.equal(pruned.features[3].weight[mask], before["features.3.weight"][mask])
    assert (tmp_path / "finetune" / "done.json").is_file()


def test_lego_is_exact_and_optimal_on_a_pruned_layer():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 3, 3, padding=1)
    attach_scores(conv, ratio=0.8)
    gdws.prune.fold_parametrizations(conv)
    with torch.no_grad():
        conv.weight[:, 1] = 0  # a whole input channel pruned away (what ADMM leaves in the next layer)
    x = torch.randn(2, 4, 8, 8)
    exact = gdws.GDWSConv2d.from_conv(conv, beta=0.0)
    assert torch.allclose(exact(x), conv(x), atol=1e-5)
    assert exact.g[1] == 0  # zero spectra cost nothing
    # LEGO's g for a budget: error within it, and no allocation with fewer components meets it (brute force).
    dec = gdws.core.allocation.Decomposition(conv.weight.detach())
    beta = 0.3 * float(dec.scores.sum())
    layer = gdws.GDWSConv2d.from_conv(conv, beta=beta)
    w_hat = layer.weight_hat().detach()
    assert layer.error <= beta + 1e-9
    assert float(((conv.weight.detach() - w_hat) ** 2).sum()) == pytest.approx(layer.error, rel=1e-4, abs=1e-8)
    best = min(sum(g) for g in itertools.product(range(dec.rank + 1), repeat=4)
               if float(dec.plan(torch.tensor(g)).error) <= beta)
    assert int(layer.g.sum()) == best


def test_gdws_converts_a_hydra_pruned_network_exactly(one_thread):
    torch.manual_seed(0)
    model = create_model("vgg16", width=0.125)
    attach_scores(model, ratio=0.9)
    model = gdws.prune.fold_parametrizations(model).eval()
    converted, report = gdws.convert(model, beta=0.0, force=True)
    assert report["converted"].sum() > 0
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(converted(x), model(x), atol=1e-4)
