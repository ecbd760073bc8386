"""The config is checked before anything runs, by the checks of the code that uses each value, and the GDWS
constraint typed on the command line is the one composed (so the one saved in .hydra/config.yaml)."""
from __future__ import annotations

import re

import pytest
from omegaconf import open_dict

from gdws.pipeline.constraint import CONSTRAINTS, typed_constraints, with_typed_constraint
from gdws.pipeline.validate import active_constraint, validate

# Every bad value fails validation with a message naming the setting; the core's own checks decide.
BAD = [
    (["gdws.alphas=foo"], "gdws.alphas must be one of"),
    (["gdws.beta=0.5", "gdws.macs_ratio=2"], "two GDWS constraints typed"),
    (["gdws.beta=-1"], "gdws.beta=-1: beta must be a finite number >= 0"),
    (["gdws.beta=inf"], "gdws.beta=inf: beta must be a finite number >= 0"),
    (["gdws.beta=true"], "gdws.beta=True: beta must be"),
    (["gdws.max_channels=64.0"], "gdws.max_channels=64.0: max_channels must be an int >= 0"),
    (["gdws.max_channels=-2"], "max_channels must be an int >= 0"),
    (["gdws.macs_ratio=0.5"], "gdws.macs_ratio=0.5: macs_ratio must be a finite number >= 1"),
    (["gdws.macs_ratio=inf"], "macs_ratio must be a finite number >= 1"),
    (["gdws.speedup=1"], "gdws.speedup=1: speedup must be a finite number > 1"),
    (["gdws.speedup=0.5"], "speedup must be a finite number > 1"),
    (["gdws.speedup=abc"], "speedup must be a finite number > 1"),
    (["gdws.beta=null"], "the config sets 0 GDWS constraints"),
    (["gdws.calibration=foo"], "gdws.calibration must be one of"),
    (["gdws.calibration=clean", "gdws.calibration_samples=0"], "gdws.calibration_samples must be an int >= 1"),
    (["gdws.calibration=pgd", "gdws.calibration_attack.steps=0"], "gdws.calibration_attack.steps must be an int"),
    (["gdws.whiten=maybe"], "gdws.whiten must be true or false"),
    (["weights.path=/no/such/file.pt"], "weights.path=/no/such/file.pt is not a file"),
    (["attack._target_=gdws.eval.no_such_attack"], "attack._target_"),
    (["stage=evaluate"], "stage must be one of"),
    (["prune=hydra", "prune.ratio=1.5"], "prune.ratio must be a number in [0, 1)"),
]


@pytest.mark.parametrize("overrides, needle", BAD)
def test_a_bad_value_fails_validation_with_one_clear_message(job_config, overrides, needle):
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(needle)):
        validate(job_config(*overrides))


@pytest.mark.parametrize("overrides, constraint", [
    (["gdws.max_channels=64"], "max_channels=64"),
    (["gdws.speedup=1.5"], "speedup=1.5"),
    (["gdws.beta=0"], "beta=0"),
    (["gdws.macs_ratio=1"], "macs_ratio=1"),
    (["gdws=none", "prune=admm", "prune.ratio=0.5"], None),
])
def test_good_values_pass(job_config, overrides, constraint):
    assert validate(job_config(*overrides)) == constraint


def test_a_bad_value_stops_the_run_before_anything_is_read_or_written(job_config, tmp_path):
    from gdws.pipeline import run

    runs_csv = tmp_path / "outputs" / "runs.csv"
    runs_csv.parent.mkdir()
    runs_csv.write_text("time,model\nearlier,vgg16\n")
    # a data folder that does not exist: the config error must come first, before any data loading
    cfg = job_config(f"data.root={tmp_path / 'absent'}", "gdws.speedup=1")
    with pytest.raises(ValueError, match="speedup must be a finite number > 1"):
        run(cfg)
    assert runs_csv.read_text() == "time,model\nearlier,vgg16\n"
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("typed, expected", [
    ([], "macs_ratio=1.5"),
    (["gdws.beta=0.5"], "beta=0.5"),
    (["gdws.max_channels=64"], "max_channels=64"),
    (["gdws.macs_ratio=2"], "macs_ratio=2"),
    (["gdws.speedup=2"], "speedup=2"),
    (["gdws.beta=null", "gdws.speedup=2"], "speedup=2"),
    (["++gdws.speedup=2"], "speedup=2"),
])
def test_the_typed_constraint_is_the_only_one_composed(job_config, typed, expected):
    cfg = job_config("experiment=smoke", *typed)  # smoke sets gdws.macs_ratio=1.5
    assert active_constraint(cfg) == expected
    name, _, value = expected.partition("=")
    assert {k: cfg.gdws[k] for k in CONSTRAINTS} == {k: float(value) if k == name else None for k in CONSTRAINTS}


def test_the_rule_rewrites_only_the_command_lines_it_applies_to():
    argv = ["-m", "experiment=smoke", "gdws.beta=0.1,0.5", "--info"]
    assert with_typed_constraint(argv) == ["-m", "experiment=smoke", "gdws.beta=0.1,0.5", "gdws.max_channels=null",
                                           "gdws.macs_ratio=null", "gdws.speedup=null", "--info"]
    assert with_typed_constraint(["++gdws.speedup=2", "gdws.beta=null"]) == [
        "++gdws.speedup=2", "++gdws.max_channels=null", "++gdws.macs_ratio=null", "gdws.beta=null"]
    for unchanged in (["model=vgg16"], ["gdws.beta=1", "gdws.speedup=2"], ["gdws.beta=null"]):
        assert with_typed_constraint(unchanged) == unchanged  # none typed, or two (validate refuses those)
    assert typed_constraints(["gdws.beta=1", "gdws.speedup=none", "gdws.alphas=pgd", "-m"]) == {"beta": "1"}


def test_gdws_off_has_no_constraint_and_two_set_by_configs_are_refused(job_config):
    assert active_constraint(job_config("gdws=none")) is None
    cfg = job_config("experiment=smoke")
    with open_dict(cfg):
        cfg.gdws.beta = 0.1  # as a config composed without the rule (not typed) would hold it
    with pytest.raises(ValueError, match=re.escape("sets 2 GDWS constraints (['beta', 'macs_ratio'])")):
        active_constraint(cfg)
