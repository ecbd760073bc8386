"""`gdws convert` -> `gdws export` round trip on a small model, and the CLI's errors."""
from __future__ import annotations

import json
import warnings

import onnxruntime as ort
import pytest
import torch

from gdws.cli import main
from gdws.cli.artifact import load_converted_file
from gdws.fast import latency_table as latency_table_module
from gdws.core import GDWSConv2d
from gdws.models import create_model


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet20", width=0.5)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path, model


def test_convert_then_export_round_trip(checkpoint, tmp_path, capsys, one_thread, one_call_timing):
    ckpt, model = checkpoint
    out, onnx_file = tmp_path / "conv.pt", tmp_path / "m.onnx"
    assert main(["convert", str(ckpt), "--model", "resnet20", "--width", "0.5", "--macs-ratio", "2", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layers_converted"] > 0 and summary["mac_ratio"] >= 2.0 - 1e-6
    rebuilt, meta = load_converted_file(out)
    assert meta["model"] == "resnet20" and meta["width"] == 0.5 and meta["macs_ratio"] == 2.0
    assert sum(isinstance(m, GDWSConv2d) for m in rebuilt.modules()) == summary["layers_converted"]
    assert main(["export", str(out), "--onnx", str(onnx_file), "--min-run-time", "0.005"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["max_abs_diff_vs_pytorch"] <= 1e-4 and report["ort_fps"] > 0
    x = torch.rand(4, 3, 32, 32)
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert abs(sess.run(None, {"input": x.numpy()})[0] - rebuilt(x).numpy()).max() <= 1e-4


@pytest.mark.parametrize("timing", ["one call", pytest.param("blocked_autorange", marks=pytest.mark.slow)])
def test_convert_with_speedup_reports_each_layer(checkpoint, tmp_path, capsys, monkeypatch, one_thread, timing,
                                                 request):
    """--speedup end to end on synthetic latency tables; selection and the final timing are real (in the default
    suite timed one call per measurement, conftest.one_call_timing; gdws.fast.timing's own timing in the slow one)."""
    def fake_table(shape, device, min_run_time=0.05, rounds=5, runtime="torch"):
        grid = shape.grid()
        return {"G": grid, "seconds": [1e-6 * (1 + g) for g in grid], "form": ["straightforward"] * len(grid),
                "dense_seconds": 1e-3, "dense_form": "dense"}

    monkeypatch.setattr(latency_table_module, "measure_table", fake_table)
    if timing == "one call":
        request.getfixturevalue("one_call_timing")
    ckpt, _ = checkpoint
    out = tmp_path / "fast.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a missed target on this tiny, noisy model only warns
        assert main(["convert", str(ckpt), "--model", "resnet20", "--width", "0.5", "--speedup", "1.2",
                     "--latency-cache", str(tmp_path / "cache"), "--latency-time", "0.002", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["speedup"] == 1.2 and summary["speedup_requested"] == 1.2 and summary["speedup_measured"] > 0
    assert summary["layers"] and {"name", "G", "form", "latency_ms", "error"} <= set(summary["layers"][0])
    assert load_converted_file(out)[1]["speedup"] == 1.2


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.pt"), "--model", "resnet20", "--beta", "0.1",
                 "-o", str(tmp_path / "o.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert "gdws convert" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: a budget is required
        main(["convert", "x.pt", "--model", "resnet20", "-o", "o.pt"])
    assert main([]) == 2 and "convert" in capsys.readouterr().out


def test_convert_refuses_code_executing_checkpoints_unless_trusted(tmp_path, capsys, one_thread):
    import argparse

    import torch

    from gdws.models import create_model

    path = tmp_path / "old.pth"
    torch.save({"args": argparse.Namespace(arch="resnet20"), "state_dict": create_model("resnet20").state_dict()}, path)
    cmd = ["convert", str(path), "--model", "resnet20", "--beta", "0.1", "-o", str(tmp_path / "o.pt")]
    assert main(cmd) == 1 and "--trusted" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="full unpickling"):
        assert main([*cmd, "--trusted"]) == 0
    assert (tmp_path / "o.pt").is_file()
