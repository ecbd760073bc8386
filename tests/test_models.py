"""Model zoo: registry, exact sizes, normalisation, forward/backward and GDWS conversion of every model."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from gdws.models import Normalize, create_model, list_models, register_model
from gdws.models.normalize import DATASET_STATS

pytestmark = pytest.mark.usefixtures("one_thread")

PAPER_MODELS = ["vgg16_hydra", "vgg16", "preact_resnet18", "preact_resnet50", "wrn28_4", "mobilenet_v1",
                "mobilenet_v2", "resnet18_dws", "resnet20", "robnet_free"]
# Trainable parameters at width 1.0 (reproduction.md section 1). resnet18_dws is only known as 5.5 MB.
EXPECTED_PARAMS = {
    "vgg16_hydra": 15_311_818, "vgg16": 14_728_266, "preact_resnet18": 11_172_170, "preact_resnet50": 23_513_162,
    "wrn28_4": 5_849_050, "mobilenet_v1": 3_217_226, "mobilenet_v2": 2_236_682, "resnet20": 269_722,
    "robnet_free": 5_439_790,
    # the rest of He et al.'s CIFAR ResNet family (option-A shortcuts), as in the published checkpoints
    "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018, "resnet110": 1_727_962,
}
EXPECTED_MB = {"resnet18_dws": (5.5, 0.05)}
SMALL = 0.25  # width for the tests that run the network


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def on_meta(name: str, **kwargs) -> nn.Module:
    """``create_model`` on the meta device: shapes and counts without initialising the weights (ResNet-50, RobNet)."""
    with torch.device("meta"):
        return create_model(name, **kwargs)


def test_registry_has_every_paper_model():
    assert set(PAPER_MODELS) <= set(list_models())


def test_unknown_name_lists_available_models():
    with pytest.raises(ValueError, match="unknown model 'vgg17'.*preact_resnet18.*robnet_free"):
        create_model("vgg17")


@pytest.mark.parametrize("kwargs", [{"checkpoint": None}, {"base_width": 8, "depth": 3}, {"width": 0}, {"width": -1.0}, {"num_classes": 0}, {"normalize": "imagenet21k"},
                                    {"normalize": ((0.5, 0.5), (0.2, 0.2, 0.2))}, {"normalize": ((0.5,) * 3, (0.0,) * 3)}])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError):
        create_model("resnet20", **kwargs)


def test_duplicate_registration_is_refused():
    def resnet20(**kw):  # same name as a registered builder
        return nn.Identity()

    with pytest.raises(ValueError, match="registered twice"):
        register_model(resnet20)


@pytest.mark.parametrize("name", list_models())
def test_exact_parameter_count(name):
    model = on_meta(name)
    if name in EXPECTED_MB:
        target, tol = EXPECTED_MB[name]
        assert abs(n_params(model) * 4 / 2**20 - target) <= tol
    else:
        assert name in EXPECTED_PARAMS, f"add the paper's parameter count of {name} to EXPECTED_PARAMS"
        assert n_params(model) == EXPECTED_PARAMS[name]
    # Normalisation statistics are buffers, never parameters nor checkpoint keys.
    assert not any("normalize" in k for k in model.state_dict())
    assert not any("normalize" in k for k, _ in model.named_parameters())


def test_resnet20_base_width_40_is_the_6_4_mb_variant():
    model = create_model("resnet20", base_width=40)
    assert n_params(model) == 1_676_530
    assert round(n_params(model) * 4 / 2**20, 2) == 6.40


def test_num_classes_sets_the_output_layer():
    out = create_model("vgg16", num_classes=7, width=SMALL).eval()(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 7)


@pytest.mark.parametrize("name", list_models())
def test_width_scales_channels(name):
    small, half = on_meta(name, width=SMALL), on_meta(name, width=0.5)
    assert n_params(small) < n_params(half)
    assert first_conv(half).out_channels > first_conv(small).out_channels
    # Depthwise convs stay depthwise at any width (groups == channels).
    for m in small.modules():
        if isinstance(m, nn.Conv2d) and m.groups > 1:
            assert m.groups == m.in_channels == m.out_channels


@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, width=SMALL).train()
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([1, 3])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert first_conv(model).weight.grad.abs().sum() > 0  # the gradient reaches the stem


def test_normalize_is_applied_inside_the_model():
    torch.manual_seed(0)
    with_norm = create_model("resnet20", width=SMALL, normalize="svhn").eval()
    without = create_model("resnet20", width=SMALL, normalize=None).eval()
    without.load_state_dict(with_norm.state_dict())
    x = torch.rand(3, 3, 32, 32)
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in DATASET_STATS["svhn"])
    torch.testing.assert_close(with_norm(x), without((x - mean) / std))
    custom = create_model("resnet20", width=SMALL, normalize=(DATASET_STATS["svhn"][0], DATASET_STATS["svhn"][1])).eval()
    custom.load_state_dict(with_norm.state_dict())
    torch.testing.assert_close(custom(x), with_norm(x))


def test_normalize_module_values_and_device_move():
    norm = Normalize("cifar10")
    x = torch.full((1, 3, 2, 2), 0.5)
    expected = torch.tensor([(0.5 - m) / s for m, s in zip(*DATASET_STATS["cifar10"])]).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(x), expected.expand(1, 3, 2, 2))
    assert {n for n, _ in norm.named_buffers()} == {"mean", "std"} and norm.state_dict() == {}
    assert torch.equal(Normalize(None)(x), x) and torch.equal(Normalize("none")(x), x)
    assert norm.double()(x.double()).dtype == torch.float64


def candidate_convs(model: nn.Module) -> list[nn.Conv2d]:
    """Convs the GDWS defaults may convert: dense (groups 1), K > 1, not the first conv."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return [c for c in convs[1:] if c.groups == 1 and c.kernel_size != (1, 1)]


@pytest.mark.parametrize("name", list_models())
def test_gdws_conversion(name):
    from gdws.core import convert  # the core package's public API (CONTRACTS.md)

    torch.manual_seed(0)
    model = create_model(name, width=SMALL).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    candidates = candidate_convs(model)
    # A "moderate" budget on random weights: half the squared norm of the median candidate layer.
    norms = sorted(float(c.weight.detach().square().sum()) for c in candidates)
    beta = 0.5 * norms[len(norms) // 2] if norms else 1.0
    converted, report = convert(model, beta=beta)
    with torch.no_grad():
        out = converted(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    grouped = report[report.groups > 1]
    assert (~grouped.converted).all() and (grouped.reason == "grouped/depthwise").all()
    if candidates:
        assert report.converted.sum() > 0
        assert report.macs_after.sum() < report.macs_before.sum()
    else:  # depthwise-separable nets: nothing dense and K > 1 besides the stem, so nothing may change
        assert len(grouped) > 0 and not report.converted.any()
        assert report.macs_after.sum() == report.macs_before.sum()
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("name", [n for n in list_models() if candidate_convs(on_meta(n, width=SMALL))])
def test_lossless_gdws_conversion_keeps_the_function(name):
    from gdws.core import convert

    torch.manual_seed(0)
    model = create_model(name, width=SMALL).eval()
    x = torch.rand(2, 3, 32, 32)
    # beta = 0 keeps every component, so every layer's GDWS form is exact (force: even when it costs more).
    converted, report = convert(model, beta=0.0, force=True)
    assert report.converted.sum() == len(candidate_convs(model))
    with torch.no_grad():
        torch.testing.assert_close(converted(x), model(x), rtol=1e-4, atol=1e-4)
