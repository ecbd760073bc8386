"""Whole runs: run.py as a subprocess where the process boundary is what is tested (Hydra's folders and saved
configs, sweeps, a killed training, two processes racing; those of the default suite start with the session,
tests/ahead.py), the pipeline in-process on the session's trained smoke network otherwise (conftest.run_smoke)."""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

from gdws.errors import CannotRun, MissingInput
from ahead import Command
from conftest import with_network

REPO = Path(__file__).resolve().parents[1]
# Lightning's start-up noise that must not reach a user's console (gdws.train.quiet).
NOISE = ("litlogger", "exists and is not empty", "TPU available", "LeafSpec")


def _command(*overrides: str, multirun: bool = False) -> list[str]:
    return [sys.executable, str(REPO / "run.py"), *(["-m"] if multirun else []), "experiment=smoke", "progress=false",
            "trainer.enable_progress_bar=false", *overrides]


def _env(root: Path) -> dict:
    """``root`` becomes the project root through PROJECT_ROOT (as run.py sets it), not a ``paths.root_dir``
    override, so that the default path interpolations, Hydra's run and sweep folders included, are exercised.
    One intra-op thread: tiny convs gain nothing from two, and spinning OpenMP threads stall on a shared CPU."""
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(root / "wandb"), "OMP_NUM_THREADS": "1",
            "PROJECT_ROOT": str(root)}


def _run(root: Path, *overrides: str, multirun: bool = False, timeout: int = 240) -> subprocess.CompletedProcess:
    """``python run.py [-m] experiment=smoke <overrides>`` with every output under ``root``."""
    return subprocess.run(_command(*overrides, multirun=multirun), cwd=root, capture_output=True, text=True,
                          timeout=timeout, env=_env(root))


def _rows(root: Path) -> list[dict]:
    """The rows of the default runs CSV (an ignored file under outputs/, never results/)."""
    with (root / "outputs" / "runs.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _saved_gdws(root: Path, row: dict) -> dict:
    """The gdws node of the config Hydra saved for the row's job."""
    return yaml.safe_load((root / row["run_dir"] / ".hydra" / "config.yaml").read_text())["gdws"]


def real_smoke(request: pytest.FixtureRequest, root: Path) -> dict[str, Command]:
    """The README's smoke run on real CIFAR-10 in the project folder ``root`` (started with the session)."""
    data = request.getfixturevalue("cifar10_root")
    return {"run": Command(_command(f"data.root={data}"), root, _env(root), timeout=240)}


def typed_sweep(request: pytest.FixtureRequest, root: Path) -> dict[str, Command]:
    """A sweep of typed betas on a copy of the session's trained smoke network (started with the session)."""
    with_network(root, request.getfixturevalue("trained_smoke"))
    overrides = ("data=synthetic", "gdws.alphas=none", "gdws.beta=2.0,20.0", "metrics.fps=false", "logger=wandb")
    return {"run": Command(_command(*overrides, multirun=True), root, _env(root), timeout=240)}


@pytest.mark.ahead(builder=real_smoke)
def test_smoke_on_real_cifar10_writes_one_checked_row_and_tells_the_user(cifar10_root, ahead_outcomes):
    root, out = ahead_outcomes.folder, ahead_outcomes.processes["run"]  # the run's project folder
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = _rows(root)
    assert 0 <= float(row["A_rob"]) <= float(row["A_nat"]) <= 100 and row["attack_ran"] == "True"
    assert int(row["n_eval"]) == 64 and row["scale"] == "smoke" and row["data"] == "cifar10"
    assert row["model"] == "vgg16" and float(row["width"]) == 0.125 and row["recipe"] == "pgd"
    assert row["attack"] == "pgd10-step2/255-eps8/255-rs" and row["method"] == "gdws"
    assert float(row["fps"]) > 0 and float(row["fps_dense"]) > 0 and float(row["throughput_dense"]) > 0
    assert int(row["threads"]) >= 1 and row["device"].startswith(("cpu", "cuda"))
    assert not (root / "results").exists()  # a user's run never writes into the committed results
    assert int(row["macs_dense"]) == 5_087_872  # VGG-16 at width 1/8: convs + FC, counted by hand
    assert int(row["macs"]) < int(row["macs_dense"]) and float(row["size_MB"]) < float(row["size_MB_dense"])
    assert row["gdws_constraint"] == "macs_ratio=1.5" and row["gdws_form"] == "explicit"
    # Paths in the row are relative to the project root: a committed CSV carries no machine's paths.
    assert not Path(row["checkpoint"]).is_absolute() and (root / row["checkpoint"]).is_file()
    run_dir = root / row["run_dir"]
    assert not Path(row["run_dir"]).is_absolute() and (run_dir / "gdws_report.csv").is_file()
    saved = json.loads((run_dir / "row.json").read_text())  # the same row; the CSV's other columns are empty
    assert {k: str(v) if v is not None else "" for k, v in saved.items()} == {k: row[k] for k in saved}
    assert {row[k] for k in row if k not in saved} == {""} and saved["attack_ran"] is True
    # The config Hydra saved is the one that ran: one constraint.
    assert {k: _saved_gdws(root, row)[k] for k in ("beta", "max_channels", "macs_ratio", "speedup")} == {
        "beta": None, "max_channels": None, "macs_ratio": 1.5, "speedup": None}
    assert list((root / "cache" / "alphas").glob("*-pgd-n32-*.pt"))  # alphas cached under the project
    spectra = (root / row["checkpoint"]).parent / "spectra.csv"
    assert {line.split(",")[0] for line in spectra.read_text().splitlines()[1:]} == {"0", "2"}  # init, end
    # logger=csv (default): training curves and the final row in the run's Lightning CSV log
    with (run_dir / "csv" / "metrics.csv").open(newline="") as f:
        logged = list(csv.DictReader(f))
    assert any(r.get("train/loss") for r in logged)
    assert [float(r["final/A_rob"]) for r in logged if r.get("final/A_rob")] == [float(row["A_rob"])]
    # The console: the training-time estimate, then the summary, without Lightning's start-up noise.
    console = out.stdout + out.stderr
    assert "training time estimate:" in console and "== run finished: vgg16 (width 0.125), GDWS macs_ratio=1.5" \
        in out.stdout
    assert f"run folder {run_dir}" in out.stdout and f"row        {root / 'outputs' / 'runs.csv'}" in out.stdout
    assert not [noise for noise in NOISE if noise in console]


@pytest.mark.ahead(builder=typed_sweep)
def test_a_typed_beta_sweep_replaces_the_experiments_budget_and_saves_what_ran(ahead_outcomes):
    # experiment=smoke sets gdws.macs_ratio; the betas typed in typed_sweep replace it in every job of the sweep.
    smoke_project, out = ahead_outcomes.folder, ahead_outcomes.processes["run"]
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(smoke_project)
    assert [r["gdws_constraint"] for r in rows] == ["beta=2.0", "beta=20.0"]
    assert [float(r["gdws_beta"]) for r in rows] == [2.0, 20.0]
    assert len({r["run_dir"] for r in rows}) == 2 and all(float(r["train_s"]) == 0 for r in rows)  # reused
    for r, beta in zip(rows, (2.0, 20.0)):
        assert {k: _saved_gdws(smoke_project, r)[k] for k in ("beta", "max_channels", "macs_ratio", "speedup")} == {
            "beta": beta, "max_channels": None, "macs_ratio": None, "speedup": None}
        (offline,) = (smoke_project / r["run_dir"]).glob("wandb/offline-run-*")  # one W&B run per job
        assert list(offline.glob("*.wandb"))
    # A larger error budget never keeps more intermediate channels (LEGO), so never more MACs.
    assert int(rows[1]["macs"]) <= int(rows[0]["macs"]) <= int(rows[0]["macs_dense"])
    # When the sweep ends: one line per job, with the override that differs between them.
    summary = out.stdout[out.stdout.index("== sweep finished: 2 jobs"):].splitlines()
    assert summary[1].startswith("job 0 (gdws.beta=2.0): gdws beta=2.0 | A_nat ")
    assert summary[2].startswith("job 1 (gdws.beta=20.0): ") and len(summary) == 3


@pytest.mark.slow  # a process killed mid-training; resuming from last.ckpt in-process: test_train.py
def test_interrupted_training_resumes_through_run_py_without_warnings(tmp_path):
    overrides = ("data=synthetic", "stage=train")  # 2 epochs of 4 steps: killed after the first
    proc = subprocess.Popen(_command(*overrides), cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob("checkpoints/*/last.ckpt")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # as a session end or a pre-empted job would
    proc.wait()
    (ckpt_dir,) = tmp_path.glob("checkpoints/*")
    assert not (ckpt_dir / "done.json").exists(), "training finished before it could be interrupted"
    out = _run(tmp_path, *overrides)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stderr + out.stdout
    assert "Restoring states from the checkpoint path" in console
    assert not [noise for noise in NOISE if noise in console]  # a deliberate resume is no warning
    assert "stage=train: the network is ready (trained in" in out.stdout
    assert json.loads((ckpt_dir / "done.json").read_text())["best"] in ("best.ckpt", "last.ckpt")
    spectra = (ckpt_dir / "spectra.csv").read_text().splitlines()
    assert sum(line.startswith("0,") for line in spectra) == len({line.split(",")[1] for line in spectra[1:]})


@pytest.mark.slow  # two processes; one job waiting on the lock in-process: test_a_job_waits_for_a_training_...
def test_two_jobs_racing_for_one_training_train_it_once(tmp_path):
    cmd = _command("data=synthetic", "gdws=none", "attack=none", "metrics.fps=false")
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    rows = _rows(tmp_path)
    assert len(rows) == 2 and rows[0]["checkpoint"] == rows[1]["checkpoint"]
    assert sorted(float(r["train_s"]) > 0 for r in rows) == [False, True]  # one trained, one waited and reused


# ---------------------------------------------------------------- in-process runs on the session's network

def test_a_copied_project_reuses_its_network_and_the_run_prints_its_summary(run_smoke, smoke_project, capsys,
                                                                            one_call_timing):
    # two converted layers (features.3 and .7): form selection times every candidate form of every GDWS layer
    row = run_smoke("gdws.alphas=none", "gdws.max_channels=8", "gdws.exclude=[features.??]", "attack=none",
                    "metrics.fast_inference=true", "metrics.fps_vs_dense=false", "logger=none")
    assert float(row["train_s"]) == 0 and (smoke_project / row["checkpoint"]).is_file()  # no new training
    assert row["method"] == "gdws" and row["gdws_constraint"] == "max_channels=8" and row["A_rob"] is None
    assert row["fast_inference"] is True and row["fps"] > 0
    # the forms fast_inference chose, at each batch size
    fps_forms, throughput_forms = row["fast_forms"].split("; ")
    assert fps_forms.startswith("b1 ") and throughput_forms.startswith("b32 ")
    assert row["gdws_layers"] == 2 and row["gdws_removed"] == 0
    assert sum(int(part.split(":")[1]) for part in fps_forms.split()[1:]) >= 2
    printed = capsys.readouterr().out
    assert f"max_channels=8 (alphas none, explicit form): {row['gdws_layers']} layers converted" in printed
    assert f"{row['macs_dense'] / row['macs']:.2f}x fewer" in printed and "A_rob -   (attack=none)" in printed
    assert f"forms      {row['fast_forms']}" in printed and "run folder " + str(smoke_project) in printed


def test_implicit_form_gives_the_same_accuracy_at_dense_cost(run_smoke):
    # gdws.implicit keeps dense convs with weight What: the same function (same accuracy), dense MACs, and a
    # row that says which form ran.
    common = ("gdws.alphas=none", "gdws.max_channels=8", "attack=none", "metrics.fps=false", "logger=none")
    explicit, implicit = run_smoke(*common), run_smoke(*common, "gdws.implicit=true")
    assert (explicit["gdws_form"], implicit["gdws_form"]) == ("explicit", "implicit")
    assert explicit["A_nat"] == implicit["A_nat"] and explicit["gdws_layers"] == implicit["gdws_layers"] > 0
    assert explicit["macs"] < implicit["macs"] == implicit["macs_dense"]


def test_an_attack_that_cannot_run_is_said_in_the_row_and_the_console(run_smoke, capsys):
    # beta this large drops every component: no layer passes anything on, so no gradient reaches the input
    with pytest.warns(UserWarning, match="no gradient path to its input"):
        row = run_smoke("gdws.alphas=none", "gdws.beta=1e6", "metrics.fps=false", "logger=none")
    assert row["attack_ran"] is False and row["A_rob"] == row["A_nat"]
    assert "NOTE: the attack could not run" in capsys.readouterr().out


@pytest.mark.slow  # AutoAttack's four attacks take half a minute even here; test_eval runs attack=autoattack fast
def test_autoattack_runs_in_the_pipeline(run_smoke):
    row = run_smoke("attack=autoattack", "gdws=none", "data.eval_subset=2", "metrics.fps=false", "logger=none")
    assert row["attack"] == "autoattack-standard-Linf-eps8/255" and row["n_eval"] == 2 and row["attack_ran"]
    assert 0 <= row["A_rob"] <= row["A_nat"] <= 100 and row["method"] == "dense"


def test_a_job_waits_for_a_training_in_progress_and_reuses_it(run_smoke, smoke_project):
    # in-process half of test_two_jobs_racing_for_one_training_train_it_once: the other job is a thread holding the
    # folder's training lock while its training "runs", and finishing it a second later
    (ckpt_dir,) = (smoke_project / "checkpoints").glob("*")
    done = ckpt_dir / "done.json"
    record = done.read_text()
    done.unlink()
    holding = threading.Event()

    def other_job() -> None:
        with FileLock(str(ckpt_dir / ".train.lock")):
            holding.set()
            time.sleep(1.0)
            done.write_text(record)

    other = threading.Thread(target=other_job)
    other.start()
    holding.wait(30)
    start = time.monotonic()
    row = run_smoke("gdws=none", "attack=none", "metrics.fps=false", "logger=none")
    other.join()
    assert time.monotonic() - start >= 0.5  # it waited for the lock
    assert row["train_s"] == 0 and (smoke_project / row["checkpoint"]).parent == ckpt_dir  # then reused, no training


def test_a_missing_data_folder_is_a_clear_error_and_no_row(run_smoke, smoke_project):
    missing = smoke_project / "no_such_folder"
    with pytest.raises(MissingInput, match=f"{re.escape(str(missing))}.*data.root"):  # a refusal: no traceback
        run_smoke("data=cifar10", f"data.root={missing}")
    assert not (smoke_project / "outputs" / "runs.csv").exists()


def test_a_corrupt_checkpoint_is_a_clear_error_and_no_row(run_smoke, smoke_project):
    bad = smoke_project / "broken.ckpt"
    bad.write_bytes(b"\x80\x04 this is not a checkpoint")
    with pytest.raises(CannotRun, match=f"{re.escape(str(bad))} is not a (readable )?PyTorch checkpoint"):
        run_smoke(f"weights.path={bad}")
    assert not (smoke_project / "outputs" / "runs.csv").exists()


@pytest.mark.slow
def test_a_speedup_run_records_the_speedup_it_measured(run_smoke, capsys):
    row = run_smoke("gdws.alphas=none", "gdws.speedup=1.2", "attack=none", "logger=none")
    assert row["gdws_constraint"] == "speedup=1.2" and row["gdws_speedup_measured"] > 0
    assert f"speed-up   measured {row['gdws_speedup_measured']:.2f}x for speedup=1.2" in capsys.readouterr().out
