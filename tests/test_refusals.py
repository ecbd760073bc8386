"""A refused run ends with its message alone; a bug keeps its traceback (gdws.errors, run.py).

Each refusal runs as ``python run.py ...`` in its own process, as a user would meet it: the process boundary is
the point (what reaches stderr, the exit code). The processes of a group start with the session, in the background
(tests/ahead.py), so the suite waits for them little or not at all. The default group is the validation refusals,
which come before Lightning is imported (a few seconds each), and the training-time guard, which fires inside
Lightning's fit loop; the missing-data refusal and a bug import Lightning too and are slow tests (in-process:
test_pipeline's missing data folder, and refusal_in below).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gdws.errors import BadValue, CannotRun, MissingInput, Refusal, as_refusal, refusal_in
from ahead import Command

REPO = Path(__file__).resolve().parents[1]
SMOKE = ("experiment=smoke", "progress=false", "trainer.enable_progress_bar=false", "logger=none")

#: name -> (overrides, extra environment, what stderr must hold)
REFUSALS = {
    "bad value": (("gdws.beta=-1",), {}, "gdws.beta=-1: beta must be a finite number >= 0"),
    "shrunk run labelled paper": (("model.width=0.5",), {},
                                  "this run is labelled scale=paper but is shrunk: model.width=0.5"),
    "missing weights": (("weights.path={tmp}/no_such.pt",), {}, "weights.path={tmp}/no_such.pt is not a file"),
    # a 1/8-width network and a hundred million epochs: the estimate after three steps is years
    "training too long": ((*SMOKE, "data=synthetic", "train.epochs=100000000"), {},
                          "training this network on the CPU would take about"),
}
FULL_ERROR = (("gdws.beta=-1",), {"HYDRA_FULL_ERROR": "1"}, "gdws.errors.BadValue: gdws.beta=-1")
SLOW = {
    "missing data": ((*SMOKE, "data=cifar10", "data.root={tmp}/empty"), {}, "CIFAR-10 is missing"),
    # an argument the model does not take: a TypeError inside Hydra's instantiate, not a check of ours
    "a bug": ((*SMOKE, "data=synthetic", "+model.no_such_argument=1"), {}, "no_such_argument"),
}


def commands(cases: dict[str, tuple], tmp: Path) -> dict[str, Command]:
    """Each case's ``python run.py device=cpu OVERRIDES``, each in its own project folder under ``tmp`` ({tmp} in an
    override is ``tmp``)."""
    (tmp / "empty").mkdir(exist_ok=True)
    out = {}
    for name, (overrides, extra, _) in cases.items():
        root = tmp / name.replace(" ", "_")
        root.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        env.update(PROJECT_ROOT=str(root), OMP_NUM_THREADS="1", **extra)
        argv = [sys.executable, str(REPO / "run.py"), "device=cpu", *(o.format(tmp=tmp) for o in overrides)]
        out[name] = Command(argv, root, env)
    return out


def default_refusals(request: pytest.FixtureRequest, tmp: Path) -> dict[str, Command]:
    return commands({**REFUSALS, "a refusal in full": FULL_ERROR}, tmp)


def slow_refusals(request: pytest.FixtureRequest, tmp: Path) -> dict[str, Command]:
    return commands(SLOW, tmp)


def _refused_alone(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Error executing job" not in proc.stderr  # nor Hydra's line about the job


@pytest.mark.ahead(builder=default_refusals)
@pytest.mark.parametrize("name", REFUSALS)
def test_a_refusal_prints_its_message_alone_and_fails(name, ahead_outcomes):
    _refused_alone(ahead_outcomes.processes[name], REFUSALS[name][2].format(tmp=ahead_outcomes.folder))


@pytest.mark.ahead(builder=default_refusals)
def test_the_training_time_refusal_names_the_ways_forward(ahead_outcomes):
    proc = ahead_outcomes.processes["training too long"]
    for way in ("weights.path=FILE", "model=robustbench", "scale=cpu", "device=cuda", "train.allow_long=true",
                "train.amp=true"):
        assert way in proc.stderr
    assert "training time estimate:" in proc.stdout  # it trained its first steps: raised inside the fit loop


@pytest.mark.ahead(builder=default_refusals)
def test_hydra_full_error_shows_a_refusals_traceback(ahead_outcomes):
    proc = ahead_outcomes.processes["a refusal in full"]
    assert proc.returncode == 1 and "Traceback" in proc.stderr and FULL_ERROR[2] in proc.stderr
    assert "validate.py" in proc.stderr  # down to the check that raised it


@pytest.mark.slow
@pytest.mark.ahead(builder=slow_refusals)
def test_missing_data_is_refused_alone(ahead_outcomes):
    _refused_alone(ahead_outcomes.processes["missing data"], SLOW["missing data"][2])


@pytest.mark.slow
@pytest.mark.ahead(builder=slow_refusals)
def test_a_bug_keeps_its_traceback(ahead_outcomes):
    proc = ahead_outcomes.processes["a bug"]
    assert proc.returncode == 1 and SLOW["a bug"][2] in proc.stderr
    assert "Traceback" in proc.stderr or "Set the environment variable HYDRA_FULL_ERROR=1" in proc.stderr


# ---------------------------------------------------------------- the mechanism, in-process

def test_each_refusal_is_also_the_builtin_error_a_library_caller_catches():
    for err, builtin in ((ValueError("v"), ValueError), (FileNotFoundError("f"), FileNotFoundError),
                         (RuntimeError("r"), RuntimeError)):
        refused = as_refusal(err)
        assert isinstance(refused, Refusal) and isinstance(refused, builtin) and str(refused) == str(err)
    assert type(as_refusal(FileNotFoundError("f"))) is MissingInput and type(as_refusal(ValueError())) is BadValue
    already = CannotRun("c")
    assert as_refusal(already) is already
    with pytest.raises(TypeError):
        as_refusal(KeyError("k"))


def test_a_refusal_is_found_through_explicit_wrapping_only():
    refused = BadValue("data.batch_size must be positive")
    try:
        try:
            raise refused
        except BadValue as inner:
            raise RuntimeError("Error in call to target") from inner  # as Hydra's instantiate wraps
    except RuntimeError as wrapped:
        assert refusal_in(wrapped) is refused
    try:
        try:
            raise refused
        except BadValue:
            raise KeyError("a bug while handling it")  # implicit context only: a bug, not the refusal
    except KeyError as bug:
        assert refusal_in(bug) is None
    assert refusal_in(ValueError("plain")) is None and refusal_in(None) is None
