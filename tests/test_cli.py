"""`gdws convert` -> `gdws export` round trip on a small model, and the CLI's errors."""
from __future__ import annotations

import json

import onnxruntime as ort
import pytest
import torch

from gdws.cli import load_converted_file, main
from gdws.core import GDWSConv2d
from gdws.models import create_model


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet20", width=0.5)
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    return path, model


def test_convert_then_export_round_trip(checkpoint, tmp_path, capsys, one_thread):
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


def test_cli_errors_are_clear(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "missing.pt"), "--model", "resnet20", "--beta", "0.1",
                 "-o", str(tmp_path / "o.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert "gdws convert" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: a budget is required
        main(["convert", "x.pt", "--model", "resnet20", "-o", "o.pt"])
    assert main([]) == 2 and "convert" in capsys.readouterr().out
