"""CalibrationSettings: defaults and validation in one place, the same object from keywords, config and CLI."""
from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

import gdws
from gdws.cli.commands import main
from gdws.core.settings import CalibrationSettings
from gdws.models import create_model


def test_defaults_are_the_measured_best_and_fisher_follows_whitening() -> None:
    s = CalibrationSettings()
    assert (s.whiten, s.refit, s.refit_rounds, s.calibration_memory) == (True, True, 0, 4.0)
    assert s.use_fisher() and not s.use_fisher(applies=False)
    assert not CalibrationSettings(whiten=False).use_fisher()
    assert CalibrationSettings(whiten=False, fisher=True).use_fisher()
    assert s.residual_target is None and not s.bn_recalibration  # residual targets wherever the refit is sequential
    CalibrationSettings(sequential=False)  # the layer-by-layer path with the default: plain targets, no error


@pytest.mark.parametrize("options, message", [
    ({"whiten": "yes"}, "whiten must be true or false"),
    ({"fisher": 1}, "fisher must be true, false or null"),
    ({"refit_rounds": -1}, "non-negative integer"),
    ({"refit": False, "refit_rounds": 2}, "needs a calibration set and refit=True"),
    ({"ridge": float("nan")}, "ridge"),
    ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ({"calibration_memory": -1}, "calibration_memory"),
    ({"residual_target": True, "sequential": False}, "residual_target=True changes the sequential refit"),
    ({"bn_recalibration": 1}, "bn_recalibration must be true or false"),
    ({"refit_round": 2}, r"unknown calibration setting\(s\) \['refit_round'\]"),
])
def test_a_bad_setting_is_one_clear_error_wherever_it_comes_from(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        CalibrationSettings.from_options(**options)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError, match=message):
        gdws.convert(net, macs_ratio=1.5, input_size=(3, 8, 8), calibration=torch.rand(2, 3, 8, 8), **options)
    if "refit_round" not in options:
        with pytest.raises(ValueError, match=message) as error:
            CalibrationSettings.from_config(OmegaConf.create(options))
        assert str(error.value).startswith("gdws.")  # names the config key


def test_the_settings_object_and_its_keywords_give_the_same_conversion() -> None:
    model, x = create_model("resnet20", width=0.25).eval(), torch.rand(16, 3, 32, 32)
    settings = CalibrationSettings(refit_rounds=1, progress=False)
    a, _ = gdws.convert(model, macs_ratio=2.0, calibration=x, calibration_settings=settings)
    b, _ = gdws.convert(model, macs_ratio=2.0, calibration=x, refit_rounds=1, progress=False)
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), name


def test_the_command_line_takes_every_setting_and_records_them(tmp_path, capsys) -> None:
    model = create_model("resnet20", width=0.25)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    torch.save(torch.rand(16, 3, 32, 32), tmp_path / "calib.pt")
    argv = ["convert", str(tmp_path / "w.pt"), "--model", "resnet20", "--width", "0.25", "--macs-ratio", "2",
            "-o", str(tmp_path / "out.pt"), "--calibration", str(tmp_path / "calib.pt"), "--no-fisher",
            "--refit-rounds", "1", "--calibration-batch-size", "8", "--no-progress"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["calibration_settings"] == {**CalibrationSettings().as_dict(), "fisher": False, "refit_rounds": 1,
                                           "batch_size": 8, "progress": False}
    assert main(argv + ["--refit-rounds=-1"]) == 1
    assert "refit_rounds must be a non-negative integer" in capsys.readouterr().err


def test_the_progress_bar_counts_layers_with_an_eta_and_is_silent_when_off(capsys) -> None:
    model, x = create_model("resnet20", width=0.25).eval(), torch.rand(8, 3, 32, 32)
    _, report = gdws.convert(model, macs_ratio=2.0, calibration=x)
    layers = int(report["converted"].sum())
    last = capsys.readouterr().err.split("\r")[-1]
    assert f"GDWS refit, layer: {layers}/{layers} [" in last and "ETA" in last
    gdws.convert(model, macs_ratio=2.0, calibration=x, progress=False)
    assert capsys.readouterr().err == ""
