"""OpenVINO deployment: the IR equals PyTorch on GDWS networks (non-uniform g, G = 0, shortcuts), the CLI writes it,
and a missing extra is one clear error."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

import gdws
from gdws.cli import main
from gdws.cli.artifact import load_converted_file
from gdws.core import GDWSConv2d
from gdws.models import create_model
from bn_stats import randomize_bn

ATOL = 1e-4


def _vgg_non_uniform() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("vgg16", width=0.125).eval()
    converted, _ = gdws.convert(model, beta=0.3, force=True)  # random weights: GDWS would not save MACs
    layers = [m for m in converted.modules() if isinstance(m, GDWSConv2d)]
    assert layers and any(len(set(m.g.tolist())) > 1 for m in layers)  # g differs between channels
    return converted


def _with_removed_layer() -> nn.Module:
    torch.manual_seed(1)
    conv = nn.Conv2d(8, 16, 3, padding=1)
    removed = GDWSConv2d.from_conv(conv, max_channels=0)
    assert removed.num_intermediate == 0
    kept = GDWSConv2d.from_conv(nn.Conv2d(16, 8, 3, padding=1, stride=2), beta=0.2)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), removed, nn.ReLU(), kept,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()


def _resnet() -> nn.Module:
    torch.manual_seed(2)
    model = randomize_bn(create_model("resnet20", width=0.5).eval(), 0.5, (0.5, 2.0))  # so that folding is exercised
    return gdws.convert(model, macs_ratio=2.0)[0]


@pytest.mark.parametrize("build", [_vgg_non_uniform, _with_removed_layer, _resnet])
def test_openvino_ir_equals_pytorch(build, tmp_path, one_thread):
    pytest.importorskip("openvino")
    from gdws.fast.openvino_runtime import compile_openvino, export_openvino, openvino_runner
    import openvino as ov

    model = build()
    x = torch.rand(3, 3, 32, 32)
    files = export_openvino(model, x, tmp_path / "ir")
    assert files["max_abs_diff"] <= ATOL and (tmp_path / "ir" / "model.bin").is_file()
    # the IR on disk keeps a dynamic batch: run it again at another batch size on fresh inputs
    y = torch.randn(5, 3, 32, 32)
    out = openvino_runner(compile_openvino(ov.Core().read_model(files["xml"]), batch_size=5))(y.numpy())
    with torch.inference_mode():
        ref = model(y).numpy()
    assert np.abs(out - ref).max() <= ATOL * max(1.0, float(np.abs(ref).max()))


def test_export_refuses_an_ir_that_differs(tmp_path, one_thread):
    pytest.importorskip("openvino")
    from gdws.fast.openvino_runtime import export_openvino

    model = _with_removed_layer()
    other = _with_removed_layer()
    with torch.no_grad():
        other[-1].bias.add_(1.0)  # the reference differs by exactly 1 in every logit
    with pytest.raises(RuntimeError, match="differs from PyTorch by 1.0"):
        export_openvino(model, torch.rand(1, 3, 32, 32), tmp_path / "ir", reference=other)


def test_cli_exports_openvino_and_says_where(tmp_path, capsys, one_thread, one_call_timing):
    pytest.importorskip("openvino")
    torch.manual_seed(0)
    ckpt, out, ir = tmp_path / "ckpt.pt", tmp_path / "conv.pt", tmp_path / "ir"
    torch.save(create_model("resnet20", width=0.5).state_dict(), ckpt)
    assert main(["convert", str(ckpt), "--model", "resnet20", "--width", "0.5", "--macs-ratio", "2",
                 "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--openvino", str(ir), "--min-run-time", "0.005"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["openvino_xml"] == str(ir / "model.xml") and (ir / "model.xml").is_file()
    assert report["max_abs_diff_vs_pytorch"] <= ATOL and report["openvino_fps"] > 0
    # the forms chosen on OpenVINO, one per converted layer: only forms an exported graph holds
    counts = dict(item.split(":") for item in report["forms"].split())
    layers = sum(isinstance(m, GDWSConv2d) for m in load_converted_file(out)[0].modules())
    assert sum(map(int, counts.values())) == layers
    assert set(counts) <= {"zero", "dense", "straightforward", "stacked", "grouped", "padded"}


def test_missing_extra_is_one_clear_error(tmp_path, capsys, monkeypatch):
    from gdws.fast.openvino_runtime import EXTRA, export_openvino
    from gdws.fast.runtimes import check_runtime

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` now raises ImportError
    with pytest.raises(RuntimeError, match=r'pip install -e "\.\[openvino\]"'):
        export_openvino(nn.Identity(), torch.rand(1, 3, 32, 32), tmp_path / "ir")
    with pytest.raises(RuntimeError, match="OpenVINO is not installed"):
        check_runtime("openvino")
    assert main(["export", str(tmp_path / "any.pt"), "--openvino", str(tmp_path / "ir")]) == 1
    err = capsys.readouterr().err
    assert EXTRA in err and err.count("\n") == 1 and not (tmp_path / "ir").exists()
    with pytest.raises(ValueError, match="runtime must be one of"):
        check_runtime("tensorrt")


def test_a_smoke_run_times_fps_on_openvino(run_smoke, capsys):
    pytest.importorskip("openvino")
    from gdws.fast.openvino_runtime import openvino_version

    # a timing budget of a few calls per measurement: the point is what runs the networks, not their rates
    row = run_smoke("gdws.macs_ratio=1.5", "attack=none", "metrics.runtime=openvino", "metrics.min_run_time=0.003",
                    "metrics.throughput_batch_size=8", "metrics.warmup=1")
    assert row["runtime"] == "openvino" and row["runtime_version"] == openvino_version()
    assert row["gdws_layers"] > 0 and row["threads"] == 1
    for key in ("fps", "fps_dense", "throughput", "throughput_dense"):
        assert row[key] > 0, key
    assert f"timed on   openvino {openvino_version()}, 1 threads" in capsys.readouterr().out


def test_a_run_asking_for_a_missing_runtime_stops_before_anything_runs(run_smoke, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(RuntimeError, match=r'pip install -e "\.\[openvino\]"'):
        run_smoke("metrics.runtime=openvino")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_every_exported_form_is_exact_on_the_runtime(runtime, one_thread):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    from gdws.fast.candidates import build_forms
    from gdws.fast.runtimes import runtime_module
    from gdws.fast.select import EXPORT_FORMS
    from gdws.fast.spec import GDWSSpec

    torch.manual_seed(3)
    g = torch.tensor([3, 2, 2, 1, 3, 2, 0, 3])  # non-uniform, one channel unused; padded allowed (8 * 3 <= 2 * 16)
    layer = GDWSConv2d(8, 12, 3, g, stride=2, padding=1)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_()
    spec = GDWSSpec.from_layer(layer)
    removed = GDWSSpec.from_layer(GDWSConv2d.from_conv(nn.Conv2d(8, 12, 3, stride=2, padding=1), max_channels=0))
    x = torch.randn(2, 8, 15, 15)
    forms = {**build_forms(spec, include=EXPORT_FORMS), **{f"removed_{k}": v for k, v in
                                                            build_forms(removed, include=EXPORT_FORMS).items()}}
    assert set(forms) == {"straightforward", "stacked", "grouped", "padded", "dense", "removed_zero", "removed_dense"}
    for name, form in forms.items():
        with torch.no_grad():
            ref = form(x)
        out = runtime_module(form, x, runtime)(x)
        assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max())), name


def test_latency_tables_are_measured_on_the_runtime(tmp_path, one_thread):
    pytest.importorskip("openvino")
    from gdws.fast.latency_table import LayerShape, latency_table

    conv = nn.Conv2d(4, 6, 3, padding=1)
    shape = LayerShape.of(conv, torch.zeros(1, 4, 8, 8))
    torch_table = latency_table(shape, "cpu", tmp_path, min_run_time=0.001)
    ov_table = latency_table(shape, "cpu", tmp_path, min_run_time=0.001, runtime="openvino")
    assert len(list(tmp_path.rglob("*.json"))) == 2  # one table per runtime, cached apart
    assert ov_table["G"] == torch_table["G"] and ov_table["dense_form"] == "dense"  # no channels_last on a runtime
    assert set(ov_table["form"]) <= {"zero", "straightforward"} and all(t > 0 for t in ov_table["seconds"][1:])
