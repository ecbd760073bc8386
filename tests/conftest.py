"""Shared pytest fixtures: the real CIFAR-10 folder, the job config run.py would compose, one trained smoke
network per session (the pipeline tests copy it instead of each training their own), one intra-op thread, and
form selection timed by single calls."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from gdws.data.cifar10 import has_cifar10
from gdws.pipeline.constraint import with_typed_constraint
from ahead import Ahead, Outcomes, run

REPO = Path(__file__).resolve().parents[1]
SHARED_BUILD = REPO.parent / "shared" / "data" / "cifar10" / "build.py"
# The smoke run on synthetic data, quiet: what the in-process pipeline tests run.
SMOKE = ("experiment=smoke", "data=synthetic", "progress=false", "trainer.enable_progress_bar=false")
_jobs = itertools.count()


# Hydra's own logging configs take effect only under @hydra.main (run.py): composing them is a quarter of each
# composition's time here, and nothing of the job's config depends on them.
HYDRA_LOGGING_OFF = ("hydra/job_logging=none", "hydra/hydra_logging=none")


def compose_config(overrides: list[str] | tuple[str, ...] = (), return_hydra_config: bool = False) -> DictConfig:
    """``hydra.compose`` of ``conf/config.yaml`` with ``overrides`` (Hydra's logging configs left out)."""
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[*HYDRA_LOGGING_OFF, *overrides], return_hydra_config=return_hydra_config)


def compose_job(root: Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config of one run.py job for ``overrides``, with ``root`` as the project root.

    As run.py makes it: the typed-constraint rule applied to the overrides, Hydra's job config set (the pipeline
    reads its choices and output folder, a fresh one under ``root/outputs/jobs``), every interpolation resolved,
    the hydra node removed.
    """
    cfg = compose_config(with_typed_constraint([f"paths.root_dir={root}", *overrides]), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(root / "outputs" / "jobs" / str(next(_jobs)))
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    OmegaConf.resolve(cfg)
    return cfg


@pytest.fixture
def job_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """``job_config(*overrides, root=tmp_path)``: :func:`compose_job` in this test's folder."""
    def make(*overrides: str, root: Path = tmp_path) -> DictConfig:
        return compose_job(root, overrides)

    return make


@pytest.fixture(scope="session")
def read_config(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., DictConfig]:
    """``read_config(*overrides)``: :func:`compose_job` for tests that only read the config, composed once per
    session in a shared project folder: a composition takes a few tenths of a second, and the config tests ask
    for the same ones again and again. Read-only: a test that writes to it fails. Hydra's job config (the group
    choices and typed overrides that validation reads) is set again on every call."""
    root = tmp_path_factory.mktemp("read_config")
    cache: dict[tuple[str, ...], tuple[DictConfig, object]] = {}

    def get(*overrides: str) -> DictConfig:
        if overrides not in cache:
            cfg = compose_job(root, overrides)
            OmegaConf.set_readonly(cfg, True)
            cache[overrides] = cfg, HydraConfig.instance().cfg
        cfg, HydraConfig.instance().cfg = cache[overrides]
        return cfg

    return get


@pytest.fixture(scope="session")
def trained_smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder whose ``checkpoints/`` holds the smoke network (synthetic data), trained once per session."""
    from gdws.pipeline import run

    root = tmp_path_factory.mktemp("trained_smoke")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread
    try:
        run(compose_job(root, [*SMOKE, "stage=train"]))
    finally:
        torch.set_num_threads(threads)
    return root


def with_network(root: Path, trained: Path) -> Path:
    """``root`` (a project folder) given a copy of the checkpoints of ``trained`` (the ``trained_smoke`` folder)."""
    shutil.copytree(trained / "checkpoints", root / "checkpoints")
    return root


@pytest.fixture
def smoke_project(tmp_path: Path, trained_smoke: Path) -> Path:
    """This test's project folder (``tmp_path``) holding a copy of the session's trained smoke network."""
    return with_network(tmp_path, trained_smoke)


@pytest.fixture
def run_smoke(smoke_project: Path, one_thread: None) -> Callable[..., dict]:
    """``run_smoke(*overrides)``: the whole pipeline in-process on the trained smoke network; returns the row."""
    from gdws.pipeline import run

    def go(*overrides: str) -> dict:
        return run(compose_job(smoke_project, [*SMOKE, *overrides]))

    return go


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder containing ``cifar-10-batches-py``.

    Looked up in order: ``$GDWS_DATA``, the repository's ``./data``, else rebuilt from ``../shared`` into a
    temporary folder. Skips (with the reason) only when none of these exists, as on a machine that has
    neither the data nor the shared rebuild kit.
    """
    for candidate in (os.environ.get("GDWS_DATA"), REPO / "data"):
        if candidate and has_cifar10(candidate):
            return Path(candidate)
    if not SHARED_BUILD.is_file():
        pytest.skip("real CIFAR-10 unavailable: set GDWS_DATA to a folder with cifar-10-batches-py "
                    f"(no {SHARED_BUILD} to rebuild it from)")
    out = tmp_path_factory.mktemp("cifar10")
    subprocess.run([sys.executable, str(SHARED_BUILD), str(out)], check=True, capture_output=True)
    return out


def one_timed_call(module: Callable, x: torch.Tensor, min_run_time: float) -> SimpleNamespace:
    """``gdws.fast.timing.time_call`` with a single timed call (after its warm-up call) instead of blocked_autorange's
    blocks: a real time, noisier, for a fraction of the cost (blocked_autorange sizes each block by timing growing
    blocks, tens of calls even under a tiny ``min_run_time``)."""
    with torch.inference_mode():
        module(x)
        start = time.perf_counter()
        module(x)
        return SimpleNamespace(median=time.perf_counter() - start)


@pytest.fixture
def one_call_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Form selection (gdws.fast: optimize_for_inference, the latency budget, exports) times each candidate by one
    call (:func:`one_timed_call`), for tests whose point is not the timing itself: every candidate is still built,
    checked and timed in rounds, and the choice made by the same rule, for thousands of calls fewer. The timing is
    exercised as it is by test_fast's per-layer choice, test_latency and the slow variants."""
    from gdws.fast import timing

    monkeypatch.setattr(timing, "time_call", one_timed_call)


def as_built(model: torch.nn.Module, x: torch.Tensor, report: bool = False, **kwargs):
    """A stand-in for ``optimize_for_inference`` that keeps the model as built (an empty report): for latency-budget
    tests whose fake runtime reads the allocation's GDWS layers instead of timing a compiled graph."""
    return (model, pd.DataFrame()) if report else model


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ahead(builder=...): the test's processes start when the session starts "
                                       "(tests/ahead.py); the test reads them from the ahead_outcomes fixture")


@pytest.fixture(scope="session", autouse=True)
def processes_ahead(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ahead]:
    """Builds the commands of every selected test marked ``ahead`` and runs them in the background (tests/ahead.py)."""
    runner = Ahead()
    marks = (mark for item in request.session.items for mark in item.iter_markers("ahead"))
    builders = list(dict.fromkeys(mark.kwargs["builder"] for mark in marks))
    try:
        for builder in builders:
            folder = tmp_path_factory.mktemp(builder.__name__)
            try:
                runner.submit(builder, folder, builder(request, folder))
            except pytest.skip.Exception:
                continue  # its tests skip through the same fixture
        yield runner
    finally:
        runner.close()


@pytest.fixture
def ahead_outcomes(request: pytest.FixtureRequest, processes_ahead: Ahead, tmp_path: Path) -> Outcomes:
    """What the commands of this test's ``ahead`` mark did: started with the session, or run here when they were
    not (a builder that skipped there skips here too)."""
    builder = request.node.get_closest_marker("ahead").kwargs["builder"]
    got = processes_ahead.outcomes(builder)
    if got is None:
        got = Outcomes(tmp_path, {name: run(command) for name, command in builder(request, tmp_path).items()})
    return got


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread, restored afterwards.

    The tests' tensors are small: their time goes into thousands of tiny ops, where a second OpenMP thread
    adds only synchronisation, and on a shared CPU spinning threads stall them many times over (measured on
    the 2-core CI machine under load: robnet_free's width-0.25 forward 0.13 s on one thread, up to 22 s on two).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
