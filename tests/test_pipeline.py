"""run.py end to end as a subprocess: one checked CSV row per run, sweeps, W&B offline, clear errors."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(tmp: Path, *overrides: str, multirun: bool = False, timeout: int = 240) -> subprocess.CompletedProcess:
    """``python run.py [-m] experiment=smoke <overrides>`` with every output under ``tmp``.

    ``tmp`` becomes the project root through PROJECT_ROOT (as run.py sets it), not a ``paths.root_dir``
    override, so that the default path interpolations, hydra's run and sweep dirs included, are exercised.
    """
    cmd = [sys.executable, str(REPO / "run.py"), *(["-m"] if multirun else []), "experiment=smoke",
           "progress=false", "trainer.enable_progress_bar=false", *overrides]
    # One intra-op thread: tiny convs gain nothing from two, and spinning OpenMP threads slow down badly
    # when the CPU is shared (other tests, other jobs).
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp / "wandb"), "OMP_NUM_THREADS": "1",
           "PROJECT_ROOT": str(tmp)}
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=timeout, env=env)


def _rows(tmp: Path) -> list[dict]:
    """The rows of the default runs CSV (an ignored file under outputs/, never results/)."""
    with (tmp / "outputs" / "runs.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _check_row(tmp: Path, row: dict, n_eval: int = 64) -> None:
    """Fields every smoke row must satisfy."""
    a_nat, a_rob = float(row["A_nat"]), float(row["A_rob"])
    assert 0 <= a_rob <= a_nat <= 100
    assert int(row["n_eval"]) == n_eval and row["scale"] == "smoke"
    assert row["model"] == "vgg16" and float(row["width"]) == 0.125 and row["recipe"] == "pgd"
    assert row["attack"] == "pgd10-step2/255-eps8/255-rs"
    assert float(row["size_MB"]) > 0 and float(row["fps"]) > 0 and float(row["throughput"]) > 0
    assert int(row["threads"]) >= 1 and row["device"].startswith(("cpu", "cuda"))
    # Paths in the row are relative to the project root: a committed CSV carries no machine's paths.
    assert not Path(row["checkpoint"]).is_absolute() and (tmp / row["checkpoint"]).is_file()
    run_dir = tmp / row["run_dir"]
    assert not Path(row["run_dir"]).is_absolute() and (run_dir / ".hydra" / "config.yaml").is_file()
    saved = json.loads((run_dir / "row.json").read_text())
    assert {k: str(v) if v is not None else "" for k, v in saved.items()} == row


def test_smoke_on_real_cifar10_writes_one_checked_row(tmp_path, cifar10_root):
    out = _run(tmp_path, f"data.root={cifar10_root}")
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = _rows(tmp_path)
    _check_row(tmp_path, row)
    assert not (tmp_path / "results").exists()  # a user's run never writes into the committed results
    assert row["data"] == "cifar10" and row["method"] == "gdws" and row["gdws_constraint"] == "macs_ratio=1.5"
    assert int(row["macs"]) < int(row["macs_dense"])  # GDWS lowered the MACs
    assert int(row["macs_dense"]) == 5_087_872  # VGG-16 at width 1/8: convs + FC, counted by hand
    assert float(row["size_MB"]) < float(row["size_MB_dense"])
    assert int(row["gdws_layers"]) > 0 and (tmp_path / row["run_dir"] / "gdws_report.csv").is_file()
    assert float(row["fps_dense"]) > 0 and float(row["throughput_dense"]) > 0  # dense timed beside it
    assert row["gdws_form"] == "explicit"
    assert list((tmp_path / "cache" / "alphas").glob("*-pgd-n32-*.pt"))  # alphas cached under the project
    assert not list((tmp_path / row["checkpoint"]).parent.glob("*alphas*"))  # not beside the weights
    spectra = (tmp_path / row["checkpoint"]).parent / "spectra.csv"
    assert {line.split(",")[0] for line in spectra.read_text().splitlines()[1:]} == {"0", "2"}  # init, end
    # logger=csv (default): training curves and the final row in the run's Lightning CSV log
    with (tmp_path / row["run_dir"] / "csv" / "metrics.csv").open(newline="") as f:
        logged = list(csv.DictReader(f))
    assert any(r.get("train/loss") for r in logged)
    final = [r for r in logged if r.get("final/A_rob")]
    assert len(final) == 1 and float(final[0]["final/A_rob"]) == float(row["A_rob"])


def test_typed_beta_sweep_replaces_the_experiments_budget_and_trains_once(tmp_path):
    # experiment=smoke sets gdws.macs_ratio; the betas typed here replace it in every job of the sweep.
    out = _run(tmp_path, "data=synthetic", "gdws.alphas=none", "gdws.beta=2.0,20.0", "metrics.fps=false",
               "logger=wandb", multirun=True)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(tmp_path)
    assert [r["gdws_constraint"] for r in rows] == ["beta=2.0", "beta=20.0"]
    assert [float(r["gdws_beta"]) for r in rows] == [2.0, 20.0]
    assert len({r["run_dir"] for r in rows}) == 2 and rows[0]["checkpoint"] == rows[1]["checkpoint"]
    assert float(rows[1]["train_s"]) == 0  # the second job reused the first job's training
    for r in rows:
        assert 0 <= float(r["A_rob"]) <= float(r["A_nat"]) <= 100 and r["data"] == "synthetic"
    # A larger error budget never keeps more intermediate channels (LEGO), so never more MACs.
    assert int(rows[1]["macs"]) <= int(rows[0]["macs"]) <= int(rows[0]["macs_dense"])
    for r in rows:  # one W&B run per job, each finished in its own folder
        (offline,) = (tmp_path / r["run_dir"]).glob("wandb/offline-run-*")
        assert list(offline.glob("*.wandb"))


def test_sweep_over_a_training_setting_trains_each_network_and_times_the_fast_form(tmp_path):
    out = _run(tmp_path, "data=synthetic", "gdws.alphas=none", "gdws.max_channels=8", "attack=none",
               "metrics.fast_inference=true", "train.lr=0.05,0.1", multirun=True)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(tmp_path)
    assert len(rows) == 2 and rows[0]["checkpoint"] != rows[1]["checkpoint"]  # two networks, two folders
    assert all(float(r["train_s"]) > 0 for r in rows) and all(r["gdws_constraint"] == "max_channels=8" for r in rows)
    assert all(r["fast_inference"] == "True" and float(r["fps"]) > 0 for r in rows)
    assert all(float(r["fps_dense"]) > 0 for r in rows)  # the dense original, optimised and timed beside it
    assert all(r["method"] == "gdws" and int(r["macs"]) < int(r["macs_dense"]) for r in rows)


def test_implicit_form_gives_the_same_accuracy_at_dense_cost(tmp_path):
    # gdws.implicit keeps dense convs with weight What: the same function (same accuracy), dense MACs, and a
    # row that says which form ran.
    out = _run(tmp_path, "data=synthetic", "gdws.alphas=none", "gdws.max_channels=8", "attack=none",
               "metrics.fps=false", "gdws.implicit=false,true", multirun=True)
    assert out.returncode == 0, out.stderr[-3000:]
    explicit, implicit = _rows(tmp_path)
    assert (explicit["gdws_form"], implicit["gdws_form"]) == ("explicit", "implicit")
    assert explicit["A_nat"] == implicit["A_nat"] and explicit["gdws_layers"] == implicit["gdws_layers"] != "0"
    assert int(explicit["macs"]) < int(implicit["macs"]) == int(implicit["macs_dense"])


def test_interrupted_training_resumes_through_run_py(tmp_path):
    import signal
    import time

    overrides = ("data=synthetic", "stage=train", "train.epochs=4", "trainer.limit_train_batches=8")
    cmd = [sys.executable, str(REPO / "run.py"), "experiment=smoke", "progress=false",
           "trainer.enable_progress_bar=false", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROJECT_ROOT": str(tmp_path)}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob("checkpoints/*/last.ckpt")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # as a session end or a pre-empted job would
    proc.wait()
    (ckpt_dir,) = tmp_path.glob("checkpoints/*")
    assert not (ckpt_dir / "done.json").exists(), "training finished before it could be interrupted"
    out = _run(tmp_path, *overrides)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Restoring states from the checkpoint path" in out.stderr + out.stdout
    assert json.loads((ckpt_dir / "done.json").read_text())["best"] in ("best.ckpt", "last.ckpt")
    spectra = (ckpt_dir / "spectra.csv").read_text().splitlines()
    assert sum(line.startswith("0,") for line in spectra) == len({line.split(",")[1] for line in spectra[1:]})


def test_two_jobs_racing_for_one_training_train_it_once(tmp_path):
    cmd = [sys.executable, str(REPO / "run.py"), "experiment=smoke", "progress=false", "trainer.enable_progress_bar=false",
           "data=synthetic", "gdws=none", "attack=none", "metrics.fps=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PROJECT_ROOT": str(tmp_path)}
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    rows = _rows(tmp_path)
    assert len(rows) == 2 and rows[0]["checkpoint"] == rows[1]["checkpoint"]
    assert sorted(float(r["train_s"]) > 0 for r in rows) == [False, True]  # one trained, one waited and reused


def test_a_moved_project_reuses_its_trained_network(tmp_path):
    first = tmp_path / "a"
    first.mkdir()
    out = _run(first, "data=synthetic", "stage=train")
    assert out.returncode == 0, out.stderr[-3000:]
    moved = tmp_path / "b"
    first.rename(moved)
    out = _run(moved, "data=synthetic", "gdws=none", "attack=none", "metrics.fps=false")
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = _rows(moved)
    assert float(row["train_s"]) == 0 and (moved / row["checkpoint"]).is_file()


def test_autoattack_through_run_py(tmp_path):
    out = _run(tmp_path, "data=synthetic", "attack=autoattack", "gdws=none", "data.eval_subset=8", "metrics.fps=false")
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = _rows(tmp_path)
    assert row["attack"] == "autoattack-standard-Linf-eps8/255" and int(row["n_eval"]) == 8
    assert 0 <= float(row["A_rob"]) <= float(row["A_nat"]) <= 100


def _assert_clean_failure(out: subprocess.CompletedProcess, tmp: Path, csv_before: str, *needles: str) -> None:
    """Non-zero exit; the final error line (what the user reads) holds every needle; CSV untouched."""
    assert out.returncode != 0
    # The last exception line is what the user reads (library log lines may follow it on stderr).
    last = [line for line in out.stderr.splitlines() if re.match(r"^[\w.]+(Error|Exception): ", line)][-1]
    for needle in needles:
        assert needle in last, out.stderr[-3000:]
    assert (tmp / "outputs" / "runs.csv").read_text() == csv_before  # nothing appended, nothing half-written


def _earlier_csv(tmp: Path) -> str:
    path = tmp / "outputs" / "runs.csv"
    path.parent.mkdir()
    path.write_text("time,model\nearlier,vgg16\n")
    return path.read_text()


def test_missing_data_folder_is_a_clear_error(tmp_path):
    before = _earlier_csv(tmp_path)
    missing = tmp_path / "no_such_folder"
    out = _run(tmp_path, f"data.root={missing}")
    _assert_clean_failure(out, tmp_path, before, str(missing), "data.root")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    before = _earlier_csv(tmp_path)
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"\x80\x04 this is not a checkpoint")
    out = _run(tmp_path, "data=synthetic", f"weights.path={bad}")
    _assert_clean_failure(out, tmp_path, before, str(bad), "PyTorch checkpoint")


@pytest.mark.parametrize("overrides, needle", [
    (["gdws.alphas=foo"], "gdws.alphas must be one of"),
    (["gdws.beta=0.5", "gdws.macs_ratio=2"], "two GDWS constraints typed"),
    (["gdws.beta=-1"], "gdws.beta must be a number >= 0"),
    (["gdws.speedup=0.5"], "gdws.speedup must be a number >= 1"),
    (["weights.path=/no/such/file.pt"], "weights.path=/no/such/file.pt is not a file"),
    (["attack._target_=gdws.eval.no_such_attack"], "attack._target_"),
    (["stage=evaluate"], "stage must be one of"),
    (["prune=hydra", "prune.ratio=1.5"], "prune.ratio must be a number in [0, 1)"),
])
def test_bad_values_fail_before_anything_runs(tmp_path, overrides, needle):
    before = _earlier_csv(tmp_path)
    # A data folder that does not exist: the config error must come first, before any data loading.
    out = _run(tmp_path, f"data.root={tmp_path / 'absent'}", *overrides, timeout=60)
    _assert_clean_failure(out, tmp_path, before, needle)
    assert not (tmp_path / "checkpoints").exists()


# ---------------------------------------------------------------- in-process pieces of the pipeline

def _append_many(path: str, worker: int, n: int) -> None:
    from gdws.tracking import append_row

    for i in range(n):
        append_row(path, {"time": f"{worker}-{i}", "model": "m" * 2000, "A_nat": worker + i / 100})


def test_concurrent_appends_keep_every_row_whole(tmp_path):
    import multiprocessing as mp

    from gdws.tracking import COLUMNS

    path = tmp_path / "results" / "runs.csv"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 10)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(COLUMNS)  # header written once, in the documented order
    assert sorted(r["time"] for r in rows) == sorted(f"{w}-{i}" for w in range(4) for i in range(10))
    assert all(r["model"] == "m" * 2000 and r["A_rob"] == "" for r in rows)


def test_a_new_column_extends_the_header_and_keeps_every_old_row(tmp_path):
    from gdws.tracking import append_row

    path = tmp_path / "runs.csv"
    path.write_text('time,model\nt0,"vgg16, w0.5"\nt1,resnet20\n')
    append_row(path, {"time": "t2", "model": "wrn28_4", "fps_dense": 12.5})
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["time", "model", "fps_dense"]
    assert [(r["time"], r["model"], r["fps_dense"]) for r in rows] == [
        ("t0", "vgg16, w0.5", ""), ("t1", "resnet20", ""), ("t2", "wrn28_4", "12.5")]
    assert not (tmp_path / "runs.csv.tmp").exists()


def _compose(tmp_path: Path, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "out")
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    OmegaConf.resolve(cfg)
    return cfg


def zero_first_filters(model, datamodule, work_dir: str, ratio: float):
    """A pruning callable for the hook test: zero the first ``ratio`` of every conv's filters."""
    import torch

    assert Path(work_dir).is_dir() and datamodule == "dm"
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            with torch.no_grad():
                m.weight[: int(ratio * m.out_channels)] = 0
    return model


def test_prune_hook_calls_the_configured_callable(tmp_path):
    import torch

    from gdws.metrics import size_mb
    from gdws.pipeline.transform import apply_prune

    cfg = _compose(tmp_path, ["model.width=0.125", f"prune._target_={__name__}.zero_first_filters",
                              "prune.method=toy", "prune.ratio=0.5"])
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.Conv2d(4, 4, 3, bias=False))
    pruned, facts = apply_prune(cfg, model, "dm")
    assert size_mb(pruned, nonzero=True) == pytest.approx(size_mb(model) / 2)
    assert facts == {"prune_method": "toy", "prune_ratio": 0.5}
    assert len(list((tmp_path / "checkpoints" / "pruned").glob("*-toy-*"))) == 1  # under the project's folder
    assert apply_prune(_compose(tmp_path, []), model, "dm") == (model, {})  # prune=none


def test_checkpoint_folders_are_content_addressed(tmp_path):
    from gdws.pipeline.weights import checkpoint_dir

    base = checkpoint_dir(_compose(tmp_path, ["experiment=smoke"]))
    assert base.parent == tmp_path / "checkpoints" and base.name.startswith("cifar10-vgg16-w0.125-pgd-e2-")
    # Settings that do not change the weights share the folder; any that do get their own.
    assert checkpoint_dir(_compose(tmp_path, ["experiment=smoke", "attack=none", "gdws.beta=3", "logger=none"])) == base
    others = {checkpoint_dir(_compose(tmp_path, ["experiment=smoke", o]))
              for o in ("train.lr=0.05", "train.momentum=0.8", "data.train_subset=256", "seed=1", "model.width=0.25")}
    assert len(others) == 5 and base not in others


def test_an_explicit_checkpoint_folder_trained_differently_is_refused(tmp_path):
    from gdws.pipeline.weights import _check_training_config

    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    _check_training_config(ckpt_dir, _compose(tmp_path, ["experiment=smoke"]))
    _check_training_config(ckpt_dir, _compose(tmp_path, ["experiment=smoke", "attack=none", "gdws.beta=3"]))
    with pytest.raises(RuntimeError, match=r"train\.lr.*paths\.ckpt_dir"):
        _check_training_config(ckpt_dir, _compose(tmp_path, ["experiment=smoke", "train.lr=0.05"]))


def test_done_json_survives_a_moved_folder(tmp_path):
    from gdws.pipeline.weights import finished_checkpoint

    old = tmp_path / "old"
    old.mkdir()
    (old / "best.ckpt").write_bytes(b"w")
    (old / "done.json").write_text(json.dumps({"best": "best.ckpt"}))
    new = old.rename(tmp_path / "new")
    assert finished_checkpoint(new) == new / "best.ckpt"
    (new / "done.json").write_text(json.dumps({"best": str(old / "best.ckpt")}))  # older absolute form
    assert finished_checkpoint(new) == new / "best.ckpt"


@pytest.mark.parametrize("typed, expected", [
    ([], "macs_ratio=1.5"),
    (["gdws.beta=0.5"], "beta=0.5"),
    (["gdws.max_channels=64"], "max_channels=64"),
    (["gdws.macs_ratio=2"], "macs_ratio=2"),
    (["gdws.speedup=2"], "speedup=2"),
    (["gdws.beta=null", "gdws.speedup=2"], "speedup=2"),
])
def test_a_typed_gdws_constraint_replaces_the_experiments(tmp_path, typed, expected):
    from gdws.pipeline.validate import settle_constraint

    cfg = _compose(tmp_path, ["experiment=smoke", *typed])
    assert settle_constraint(cfg, typed) == expected
    name, _, value = expected.partition("=")
    assert {k: cfg.gdws[k] for k in ("beta", "max_channels", "macs_ratio", "speedup")} == {
        k: (float(value) if k == name else None) for k in ("beta", "max_channels", "macs_ratio", "speedup")}


def test_gdws_off_has_no_constraint_and_two_from_configs_are_refused(tmp_path):
    from gdws.pipeline.validate import settle_constraint

    assert settle_constraint(_compose(tmp_path, ["gdws=none"]), []) is None
    with pytest.raises(ValueError, match="sets 2 GDWS constraints"):
        settle_constraint(_compose(tmp_path, ["experiment=smoke", "gdws.beta=0.1"]), [])  # not typed: configs


def _tiny_cifar_model():
    from gdws.models import create_model

    return create_model("vgg16", width=0.125).eval()


class _Images:
    """A stand-in datamodule with the one method the alphas need."""

    def setup(self, stage: str) -> None:
        pass

    def train_images(self, n: int, seed: int = 0, augment: bool = True):
        import torch

        g = torch.Generator().manual_seed(seed)
        return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("overrides", [["gdws.skip_first=false"], ["gdws.include=[features.0]"],
                                       ["gdws.exclude=[features.3]"]])
def test_alphas_cover_exactly_the_layers_that_are_converted(tmp_path, overrides, one_thread):
    import torch

    from gdws.pipeline.transform import apply_gdws

    cfg = _compose(tmp_path, ["experiment=smoke", "gdws.alphas=clean", "gdws.alpha_samples=8", *overrides])
    model, out = _tiny_cifar_model(), tmp_path / "out"
    apply_gdws(cfg, model, _Images(), torch.device("cpu"), out, "macs_ratio=1.5")
    (cache,) = (tmp_path / "cache" / "alphas").glob("*.pt")
    alphas = torch.load(cache, weights_only=True)
    report = __import__("pandas").read_csv(out / "gdws_report.csv")
    skipped = report["reason"].isin(["excluded", "grouped/depthwise", "not used in forward", "first conv", "1x1"])
    considered = set(report.loc[~skipped, "name"])  # converted, or weighed by the budget and kept dense
    assert set(alphas) == considered  # no converted layer silently gets alpha = 1
    assert ("features.0" in alphas) == (overrides[0] != "gdws.exclude=[features.3]")
    assert ("features.3" in alphas) == (overrides[0] != "gdws.exclude=[features.3]")


def test_alpha_cache_is_keyed_by_the_weights(tmp_path, one_thread):
    import torch

    from gdws.pipeline.transform import apply_gdws

    cfg = _compose(tmp_path, ["experiment=smoke", "gdws.alphas=clean", "gdws.alpha_samples=8"])
    model = _tiny_cifar_model()
    apply_gdws(cfg, model, _Images(), torch.device("cpu"), tmp_path / "o1", "macs_ratio=1.5")
    apply_gdws(cfg, model, _Images(), torch.device("cpu"), tmp_path / "o2", "macs_ratio=1.5")
    assert len(list((tmp_path / "cache" / "alphas").glob("*.pt"))) == 1  # same weights: one cached file
    with torch.no_grad():
        model.features[3].weight.mul_(2)  # "retrained" weights must not reuse stale alphas
    apply_gdws(cfg, model, _Images(), torch.device("cpu"), tmp_path / "o3", "macs_ratio=1.5")
    assert len(list((tmp_path / "cache" / "alphas").glob("*.pt"))) == 2


def test_loaded_weights_get_no_files_beside_them(tmp_path, one_thread):
    import torch

    from gdws.pipeline.transform import apply_gdws
    from gdws.pipeline.weights import obtain_weights

    user = tmp_path / "user_weights"
    user.mkdir()
    torch.save(_tiny_cifar_model().state_dict(), user / "w.pt")
    user.chmod(0o555)  # a read-only (shared) folder
    try:
        cfg = _compose(tmp_path, ["experiment=smoke", f"weights.path={user / 'w.pt'}", "gdws.alphas=clean",
                                  "gdws.alpha_samples=8"])
        model = _tiny_cifar_model()
        weights = obtain_weights(cfg, model, datamodule=None, logger=None)
        apply_gdws(cfg, model, _Images(), torch.device("cpu"), tmp_path / "out", "macs_ratio=1.5")
    finally:
        user.chmod(0o755)
    assert weights.recipe == "loaded" and sorted(p.name for p in user.iterdir()) == ["w.pt"]
    assert list((tmp_path / "cache" / "alphas").glob("*.pt"))


def test_row_says_what_ran(tmp_path):
    from gdws.pipeline.row import build_row, method_label

    assert [method_label(None, 0), method_label(None, 3), method_label("hydra", 0), method_label("admm", 2)] == \
        ["dense", "gdws", "hydra", "admm+gdws"]
    cfg = _compose(tmp_path, ["experiment=smoke", "gdws.beta=0.5"])
    facts = {"recipe": "pgd", "checkpoint": tmp_path / "checkpoints" / "x" / "best.ckpt", "gdws_layers": 0,
             "gdws_constraint": "beta=0.5"}
    row = build_row(cfg, dict(facts))
    # GDWS was asked for but replaced no layer: the network that ran is the dense one, and the row says so.
    assert row["method"] == "dense" and row["gdws_layers"] == 0 and row["gdws_constraint"] == "beta=0.5"
    assert row["checkpoint"] == "checkpoints/x/best.ckpt" and row["scale"] == "smoke"
    assert row["git_commit"]  # the commit of the code, although the project root (tmp_path) is no repository


def test_loaded_weights_replace_training(tmp_path):
    import torch

    from gdws.models import create_model
    from gdws.pipeline.weights import obtain_weights

    trained = create_model("vgg16", width=0.125)
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "w.ckpt")
    cfg = _compose(tmp_path, ["experiment=smoke", f"weights.path={tmp_path / 'w.ckpt'}"])
    fresh = create_model("vgg16", width=0.125)
    weights = obtain_weights(cfg, fresh, datamodule=None, logger=None)  # no data needed: nothing trains
    assert weights.recipe == "loaded" and weights.train_s == 0 and weights.path == tmp_path / "w.ckpt"
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "checkpoints").exists()
