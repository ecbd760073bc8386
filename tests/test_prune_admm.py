"""ADMM channel pruning: the filter projection, which convs are prunable, masked == physically removed, the
paper's sizes after removal, and the pruning end to end."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gdws.data import SyntheticDataModule
from gdws.metrics import count_macs, size_mb
from gdws.models import create_model
from gdws.prune import (admm_prune, attach_masks, channel_plan, dependency_graph, filter_projection,
                        fold_parametrizations, group_masks, prunable_convs, remove_channels)

FAST = dict(steps=1, step_size=8 / 255, val_attack_steps=1)


def with_random_statistics(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial affine parameters and running statistics (an untrained model's are 0/1)."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_projection_zeroes_exactly_the_share_of_smallest_filters():
    torch.manual_seed(0)
    w = torch.randn(16, 8, 3, 3)
    z = filter_projection(w, 0.25)
    zero = (z.reshape(16, -1) == 0).all(1)
    assert int(zero.sum()) == 4
    norms = w.reshape(16, -1).norm(dim=1)
    assert norms[zero].max() < norms[~zero].min()
    assert torch.equal(z[~zero], w[~zero])
    assert int((filter_projection(w, 0.99).reshape(16, -1) != 0).any(1).sum()) == 1  # one filter always stays


@pytest.mark.parametrize("name,expected", [
    ("vgg16", [f"features.{i}" for i in (0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40)]),
    ("preact_resnet18", [f"layer{s}.{b}.conv1" for s in range(1, 5) for b in range(2)]),
])
def test_prunable_convs_keep_the_residual_width(name, expected, one_thread):
    model = create_model(name, width=0.125).eval()
    assert prunable_convs(model, dependency_graph(model)) == expected


@pytest.mark.parametrize("name", ["vgg16", "preact_resnet18"])
def test_removal_computes_what_the_masked_model_computes(name, one_thread):
    torch.manual_seed(0)
    model = with_random_statistics(create_model(name, width=0.25))
    graph = dependency_graph(model)
    plan = channel_plan(model, 0.5, prunable_convs(model, graph))
    attach_masks(model, group_masks(model, graph, plan))  # the masks of ADMM's retraining
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        masked = model(x)
    dense_size = size_mb(fold_parametrizations(model))
    remove_channels(model, plan)
    with torch.no_grad():
        assert torch.allclose(model(x), masked, atol=1e-5)
    assert size_mb(model) < 0.6 * dense_size
    for conv_name, channels in plan.items():
        conv = model.get_submodule(conv_name)
        assert conv.out_channels + len(channels) == 2 * conv.out_channels  # exactly half removed


@pytest.mark.parametrize("name,sizes", [("vgg16", (31.6, 14.0, 3.5)), ("preact_resnet18", (32.1, 21.7, 11.2))])
def test_sizes_after_removal_match_the_paper(name, sizes, one_thread):
    for ratio, expected in zip((0.25, 0.5, 0.75), sizes):
        torch.manual_seed(0)
        model = create_model(name).eval()
        plan = channel_plan(model, ratio, prunable_convs(model, dependency_graph(model)))
        remove_channels(model, plan)
        assert size_mb(model) == pytest.approx(expected, abs=0.2), (name, ratio)


def test_admm_prune_removes_the_channels(tmp_path, one_thread):
    torch.manual_seed(0)
    model = create_model("preact_resnet18", width=0.125).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = SyntheticDataModule(num_train=96, num_test=32, val_size=32, batch_size=32, eval_batch_size=32)
    pruned = admm_prune(model, data, str(tmp_path), ratio=0.5, admm_epochs=2, admm_epoch=1, retrain_epochs=1,
                        recipe=FAST, limit_train_batches=2, limit_val_batches=1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert pruned.layer2[0].conv1.out_channels == model.layer2[0].conv1.out_channels // 2
    assert pruned.layer2[0].conv2.out_channels == model.layer2[0].conv2.out_channels  # residual width stays
    assert count_macs(pruned, (3, 32, 32)) < 0.75 * count_macs(model, (3, 32, 32))
    assert not pruned.training
    # The ADMM phase ran its Z/U update (rho grew once) and the retraining kept the pruned channels at zero.
    admm = torch.load(tmp_path / "admm" / "latest.ckpt", weights_only=True)["state_dict"]
    assert float(admm["admm_rho"]) == pytest.approx(1.3e-3)
    assert all(torch.isfinite(p).all() for p in pruned.parameters())
