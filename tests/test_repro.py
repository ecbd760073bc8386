"""The deadline-bounded reproduction run (repro/, experiments/reproduce_gpu.sh): planning under a deadline, weight
parts, limits on the output folder, what the offline bundle carries, and (slow) the dry run of every phase shrunk
on CPU."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from importlib import metadata
from pathlib import Path

import pytest
import torch

from repro import forked, parts, schedule
from repro.__main__ import main as repro_main
from repro.plan import SCALES, Paths, Step, build_plan
from repro.bundle import IMAGE_PACKAGES, missing_pins, travel_size
from repro.runner import DeadlineRun
from ahead import Command

REPO = Path(__file__).resolve().parents[1]
MiB = 2 ** 20


def tmp_paths(tmp_path: Path) -> Paths:
    return Paths(repo=REPO, work=tmp_path / "work", data=tmp_path / "data", kit=tmp_path / "kit",
                 wheels=tmp_path / "wheels")


class FakeClock:
    """A clock that steps only when a fake step 'runs' (taking the time given per step)."""

    def __init__(self, took: dict[str, float], status: dict[str, str] | None = None) -> None:
        self.now, self.took, self.status, self.ran = 0.0, took, status or {}, []

    def __call__(self) -> float:
        return self.now

    def execute(self, step: Step, limit: float, log: Path) -> schedule.Outcome:
        self.ran.append((step.name, round(limit, 1)))
        self.now += self.took[step.name]
        return schedule.Outcome(self.status.get(step.name, "ok"), self.took[step.name])


def run_fake(tmp_path, steps, deadline, took, status=None):
    clock = FakeClock(took, status)
    job = DeadlineRun(steps, SCALES["smoke"], tmp_paths(tmp_path), tmp_path / "out", deadline, clock=clock,
                  execute=clock.execute)
    return job, clock, job.run()


def test_full_plan_fits_the_default_deadline_with_margin(tmp_path):
    steps = build_plan(SCALES["full"], tmp_paths(tmp_path))
    assert [s.phase for s in steps] == sorted(s.phase for s in steps)
    core = [s for s in steps if s.phase < 5]
    # phases 1-4 (wheels and data included, calibrated rows too) fit in 540 s with 10 % to spare; phase 5 runs
    # only if the GPU turns out faster than estimated
    assert sum(s.estimate_s for s in core) <= 540 * 0.9
    assert sum(s.estimate_s for s in steps if not s.not_needed) > 540
    train = next(s for s in steps if s.name == "train-vgg16")
    for row in ("dense-vgg16", "gdws-vgg16", "calibrated-vgg16"):
        argv = next(s for s in steps if s.name == row).argv
        assert argv[:2] == train.argv[:2] and set(train.argv[3:]) <= set(argv)  # same training config and folder
    assert "train.amp=true" in train.argv and "train.channels_last=true" in train.argv and "train=fgsm_rs" in train.argv


def test_a_step_that_cannot_finish_is_skipped_and_later_ones_still_run(tmp_path):
    steps = [Step("a", 1, ["a"], 10, gpu_bound=False), Step("b", 1, ["b"], 100, gpu_bound=False),
             Step("c", 1, ["c"], 5, gpu_bound=False)]
    job, clock, rc = run_fake(tmp_path, steps, 60, {"a": 10, "b": 100, "c": 5})
    assert rc == 0 and [n for n, _ in clock.ran] == ["a", "c"]
    assert clock.ran[1][1] == 60 - schedule.RESERVE_S - 10  # c may run up to the deadline
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [s["status"] for s in report["steps"]] == ["ok", "skipped", "ok"] and report["finished"]
    assert "cannot finish before the deadline" in report["steps"][1]["reason"]


def test_measured_gpu_speed_rescales_the_later_estimates(tmp_path):
    steps = [Step("a", 1, ["a"], 10), Step("b", 1, ["b"], 30), Step("c", 1, ["c"], 25, gpu_bound=False)]
    # a took twice its estimate: b (30 s estimated) is now expected to take 60 s > 55 s left, and is skipped;
    # c does not follow the GPU's speed and fits
    job, clock, rc = run_fake(tmp_path, steps, 80, {"a": 20, "b": 30, "c": 25})
    assert [n for n, _ in clock.ran] == ["a", "c"]
    assert job.outcomes["b"].status == "skipped" and "60 s" in job.outcomes["b"].reason
    assert schedule.speed_factor({"x": schedule.Outcome("ok", 100, 1, True)}) == schedule.FACTOR_RANGE[1]


def test_steps_that_need_a_failed_step_are_skipped(tmp_path):
    steps = [Step("train", 3, ["t"], 1), Step("row", 4, ["r"], 1, needs=("train",)), Step("other", 4, ["o"], 1)]
    job, clock, rc = run_fake(tmp_path, steps, 100, {"train": 1, "row": 1, "other": 1}, {"train": "failed"})
    assert rc == 1 and [n for n, _ in clock.ran] == ["train", "other"]
    assert job.outcomes["row"].reason == "needs train, which failed"


def test_a_step_past_its_time_limit_is_stopped_with_its_children(tmp_path):
    started, marker = tmp_path / "child_started", tmp_path / "child_alive"
    grandchild = tmp_path / "grandchild.py"
    grandchild.write_text(f"import time\nopen({str(started)!r}, 'w')\ntime.sleep(2)\nopen({str(marker)!r}, 'w')\n")
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, {str(grandchild)!r}])\n"
                       "time.sleep(60)\n")
    steps = [Step("sleeper", 1, [sys.executable, str(sleeper)], 1, gpu_bound=False),
             Step("after", 1, [sys.executable, "-c", "print('after ran')"], 1, gpu_bound=False)]
    # the deadline leaves the step 2 s (the rest is the runner's reserve for its final writes)
    job = DeadlineRun(steps, SCALES["smoke"], tmp_paths(tmp_path), tmp_path / "out", schedule.RESERVE_S + 2.0,
                      fork=False)
    start = time.monotonic()
    assert job.run() == 1
    assert time.monotonic() - start < 15
    assert job.outcomes["sleeper"].status == "timeout" and job.outcomes["after"].status == "skipped"
    assert started.exists()  # the grandchild was running when its step was stopped
    time.sleep(max(0.0, started.stat().st_mtime + 2.5 - time.time()))  # past the moment it would have written
    assert not marker.exists()  # the grandchild went down with the step
    with tarfile.open(tmp_path / "out" / "logs.tar.gz") as tar:
        assert "logs/00-sleeper.log" in tar.getnames()


def test_forked_child_runs_a_script_with_its_output_in_the_log(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import os, sys\nprint('args', sys.argv[1:], os.environ['LEASE_TEST'])\nsys.exit(3)\n")
    log = tmp_path / "job.log"
    pid = forked.start([sys.executable, str(script), "x"], log, tmp_path, {"LEASE_TEST": "yes"}, threads=None)
    assert forked.wait(pid, 30) == 3
    assert "args ['x'] yes" in log.read_text()
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import time\ntime.sleep(60)\n")
    pid = forked.start([sys.executable, str(sleeper)], log, tmp_path, {}, threads=None)
    assert forked.wait(pid, 0.5) is None
    forked.stop(pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, 0)  # stopped and reaped


def test_a_device_step_failing_when_forked_switches_to_fresh_processes(tmp_path):
    # stands in for a child that cannot use a GPU the parent touched: it fails when forked from this process
    # (pytest's modules are loaded there) and works as a fresh process
    paths = tmp_paths(tmp_path)
    paths.work.mkdir()
    script = tmp_path / "device.py"
    device_json = str(paths.work / "device.json")
    script.write_text(f"import json, sys\njson.dump({{'device': 'x'}}, open({device_json!r}, 'w'))\n"
                      "sys.exit(1 if '_pytest' in sys.modules else 0)\n")
    steps = [Step("device", 1, [sys.executable, str(script)], 1, gpu_bound=False, collect="device")]
    job = DeadlineRun(steps, SCALES["smoke"], paths, tmp_path / "out", 60.0)
    job.preloaded = True
    assert job.run() == 0
    assert job.outcomes["device"].status == "ok" and "fresh" in job.outcomes["device"].reason
    assert not job.fork and job.report["device"] == {"device": "x"} and not job.report["forked_steps"]


def test_split_and_join_with_hash_check(tmp_path):
    blob = os.urandom(10_000)
    src = tmp_path / "w.pt"
    src.write_bytes(blob)
    out = tmp_path / "out"
    out.mkdir()
    pieces = parts.split_file(src, out, 4096)
    assert [p.name for p in pieces] == ["w.pt.part0", "w.pt.part1", "w.pt.part2"]
    assert [p.stat().st_size for p in pieces] == [4096, 4096, 1808]
    digest = hashlib.sha256(blob).hexdigest()
    assert parts.sha256_file(src) == digest
    joined = parts.join_parts(pieces, tmp_path / "joined.pt", digest)
    assert joined.read_bytes() == blob
    with pytest.raises(FileExistsError):
        parts.join_parts(pieces, joined, digest)
    with pytest.raises(ValueError, match="sha256"):
        parts.join_parts(pieces[::-1], tmp_path / "wrong.pt", digest)
    assert not (tmp_path / "wrong.pt").exists() and not list(tmp_path.glob("*.joining"))
    with pytest.raises(FileNotFoundError, match="part3"):
        parts.join_parts([*pieces, out / "w.pt.part3"], tmp_path / "more.pt", digest)


def test_return_limits_of_the_output_folder(tmp_path):
    for i in range(3):
        (tmp_path / f"f{i}").write_bytes(b"x" * MiB)
    assert parts.out_budget(tmp_path, [15 * MiB] * 2, reserve_files=2) is None  # 3 + 2 + 2 = 7 files
    assert "9 files" in parts.out_budget(tmp_path, [MiB] * 4, reserve_files=2)
    assert "over 16 MiB" in parts.out_budget(tmp_path, [17 * MiB])
    assert "MiB would exceed" in parts.out_budget(tmp_path, [15 * MiB] * 4, reserve_bytes=2 * MiB)
    # the limits are the tool's options (--max-files ...): other values, other answers
    assert "5 files would exceed the 4" in parts.out_budget(tmp_path, [MiB], reserve_files=1,
                                                            limits=parts.Limits(max_files=4))
    assert parts.out_budget(tmp_path, [17 * MiB], limits=parts.Limits(max_file_bytes=32 * MiB)) is None


def test_travel_size_counts_tracked_untracked_and_carried_files(tmp_path):
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/bundle/\n")
    (tmp_path / "tracked.py").write_bytes(b"a" * 100)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "x"], cwd=tmp_path, check=True)
    (tmp_path / "new.txt").write_bytes(b"b" * 10)
    (tmp_path / "bundle" / "wheels").mkdir(parents=True)
    (tmp_path / "bundle" / "wheels" / "w.whl").write_bytes(b"c" * 1000)
    (tmp_path / "bundle" / "other.bin").write_bytes(b"d" * 5000)  # ignored and not carried: stays here
    sizes = travel_size(tmp_path, ["bundle/wheels"])
    assert sizes == {"tracked": 100 + len("/bundle/\n"), "untracked": 10, "bundle/wheels": 1000}


def test_missing_wheels_follow_requirements_the_image_lacks():
    pins = missing_pins({"hydra-core"})
    assert set(pins) == {"hydra-core", "omegaconf", "antlr4-python3-runtime"}  # packaging, PyYAML: in the image
    assert pins["omegaconf"] == metadata.version("omegaconf")
    assert missing_pins({"hydra-core"}, image=frozenset({"hydra-core"})) == {}
    assert "torch" in IMAGE_PACKAGES and "torchattacks" not in IMAGE_PACKAGES


def test_export_writes_the_networks_own_keys_in_half_precision(tmp_path):
    from repro.export import export

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    state = {"model.conv.weight": torch.randn(4, 3, 3, 3), "model.bn.num_batches_tracked": torch.tensor(7)}
    torch.save({"state_dict": state, "epoch": 1}, ckpt / "best.ckpt")
    (ckpt / "done.json").write_text(json.dumps({"best": "best.ckpt", "epochs": 1}))
    manifest = export(ckpt, "net", tmp_path / "w")
    saved = torch.load(tmp_path / "w" / "net_fp16.pt", weights_only=True)
    assert saved["conv.weight"].dtype == torch.float16 and saved["bn.num_batches_tracked"].dtype == torch.int64
    torch.testing.assert_close(saved["conv.weight"].float(), state["model.conv.weight"], atol=1e-2, rtol=1e-3)
    assert manifest["sha256"] == parts.sha256_file(tmp_path / "w" / "net_fp16.pt")
    torch.save({"state_dict": {"other.x": torch.zeros(1)}}, ckpt / "best.ckpt")
    with pytest.raises(ValueError, match="outside the trained network"):
        export(ckpt, "net", tmp_path / "w2")


def test_bad_inputs_fail_before_anything_runs(tmp_path, capsys):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        repro_main(["--out", str(busy), "--scale", "smoke"])
    assert "not empty" in capsys.readouterr().err and (busy / "keep.txt").read_text() == "mine"
    with pytest.raises(SystemExit):
        repro_main(["--out", str(tmp_path / "out"), "--scale", "smoke", "--data", str(tmp_path / "nodata"),
                    "--kit", str(tmp_path / "nokit"), "--work", str(tmp_path / "work")])
    assert "no CIFAR-10" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        repro_main(["--out", str(tmp_path / "out"), "--scale", "smoke", "--max-files", "0"])
    assert "must be positive" in capsys.readouterr().err


def planning_without_wheels(request: pytest.FixtureRequest, folder: Path) -> dict[str, Command]:
    """``python -m repro --plan-only`` (started with the session) where Hydra, OmegaConf, torchattacks and antlr4
    cannot be imported: on the GPU machine they arrive as wheels in the run's first step."""
    for name in ("hydra", "omegaconf", "torchattacks", "antlr4"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(f"raise ImportError('{name}: not in the device image')\n")
    env = dict(os.environ, PYTHONPATH=str(folder))
    return {"plan": Command([sys.executable, "-m", "repro", "--plan-only", "--work", str(folder / "work")], REPO, env)}


@pytest.mark.ahead(builder=planning_without_wheels)
def test_the_runner_starts_without_the_packages_it_must_install_first(ahead_outcomes):
    # the runner (repro and what planning imports) must not need the packages it installs
    proc = ahead_outcomes.processes["plan"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train-preact_resnet18" in proc.stdout and "assumption: published" in proc.stdout


@pytest.mark.slow
def test_dry_run_returns_every_file_in_under_three_minutes(tmp_path, cifar10_root):
    out = tmp_path / "out"
    env = dict(os.environ, GDWS_REPRO_SCALE="smoke")
    start = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "experiments" / "reproduce_gpu.sh"), "--out", str(out), "--work",
                           str(tmp_path / "work"), "--data", str(cifar10_root)], env=env, capture_output=True,
                          text=True, timeout=600)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    bad = [(s["name"], s["status"], s["reason"]) for s in report["steps"] if s["status"] not in ("ok", "not needed")]
    assert not bad and report["finished"]
    names = sorted(p.name for p in out.iterdir())
    weights = [f"{n}_fp16.pt.part{i}" for n, k in (("preact_resnet18", 2), ("vgg16", 2)) for i in range(k)]
    # the same files as at full scale: 4 report files + the parts of the two table networks (WRN-28-4's part
    # would be a 9th file: left out, and said so)
    assert names == sorted(["report.json", "logs.tar.gz", "runs.csv", "speed.csv", *weights])
    assert all(p.stat().st_size <= parts.Limits().max_file_bytes for p in out.iterdir())
    assert "exceed" in report["weights"]["wrn28_4"]["not_returned"]
    rows = (out / "runs.csv").read_text().splitlines()
    assert len(rows) == 1 + 9  # three networks x (dense, GDWS, calibrated GDWS)
    assert report["training"]["vgg16"]["train_img_per_s"] > 0
    speed = (out / "speed.csv").read_text()
    assert "preact_resnet18,gdws" in speed and "vgg16,dense" in speed
    joined = subprocess.run([sys.executable, str(REPO / "scripts" / "join_weights.py"), str(out), "--dest",
                             str(tmp_path / "joined")], capture_output=True, text=True)
    assert joined.returncode == 1 and "wrn28_4: not returned" in joined.stdout  # the two returned ones joined fine
    from gdws.models import create_model, load_checkpoint

    load_checkpoint(create_model("vgg16", width=0.125), tmp_path / "joined" / "vgg16_fp16.pt")
    assert took < 180, f"the dry run took {took:.0f} s"


def test_the_readmes_gpu_times_are_the_cost_models():
    # README "On a GPU" quotes repro.table_costs: a change of the model or of a table shows up here
    from repro.table_costs import TABLES, network_minutes

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## On a GPU"):readme.index("## Layout")]
    for table, works in TABLES.items():
        hours = sum(sum(network_minutes(w).values()) for w in works) / 60
        assert f"{table} {hours:.1f} h" in section, table
    trains = {w.network: round(network_minutes(w)["train"]) for works in TABLES.values() for w in works}
    for network, row in (("vgg16", "| VGG-16 | admm 1-5, lightweight 2 |"), ("wrn28_4", "| WRN-28-4 | robnet 4, 5 |")):
        assert f"{row} {trains[network]} |" in section, network
