"""run.py end to end as a subprocess: one checked CSV row per run, sweeps, W&B offline, clear errors."""
from __future__ import annotations

import csv
import json
import os
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
    with (tmp / "results" / "runs.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _check_row(row: dict, n_eval: int = 64) -> None:
    """Fields every smoke row must satisfy."""
    a_nat, a_rob = float(row["A_nat"]), float(row["A_rob"])
    assert 0 <= a_rob <= a_nat <= 100
    assert int(row["n_eval"]) == n_eval
    assert row["model"] == "vgg16" and float(row["width"]) == 0.125 and row["recipe"] == "pgd"
    assert row["attack"] == "pgd10-step2/255-eps8/255-rs"
    assert float(row["size_MB"]) > 0 and float(row["fps"]) > 0 and float(row["throughput"]) > 0
    assert int(row["threads"]) >= 1 and row["device"].startswith(("cpu", "cuda"))
    assert Path(row["checkpoint"]).is_file()
    run_dir = Path(row["run_dir"])
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # the resolved config is saved with the run
    saved = json.loads((run_dir / "row.json").read_text())
    assert {k: str(v) if v is not None else "" for k, v in saved.items()} == row


def test_smoke_on_real_cifar10_writes_one_checked_row(tmp_path, cifar10_root):
    out = _run(tmp_path, f"data.root={cifar10_root}")
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = _rows(tmp_path)
    _check_row(row)
    assert row["data"] == "cifar10" and row["method"] == "gdws" and row["gdws_budget"] == "macs_ratio=1.5"
    assert int(row["macs"]) < int(row["macs_dense"])  # GDWS lowered the MACs
    assert int(row["macs_dense"]) == 5_087_872  # VGG-16 at width 1/8: convs + FC, counted by hand
    assert float(row["size_MB"]) < float(row["size_MB_dense"])
    assert int(row["gdws_layers"]) > 0 and (Path(row["run_dir"]) / "gdws_report.csv").is_file()
    assert list(Path(row["checkpoint"]).parent.glob("best.ckpt.alphas-pgd-n32-*.pt"))  # alphas cached
    # logger=csv (default): training curves and the final row in the run's Lightning CSV log
    with (Path(row["run_dir"]) / "csv" / "metrics.csv").open(newline="") as f:
        logged = list(csv.DictReader(f))
    assert any(r.get("train/loss") for r in logged)
    final = [r for r in logged if r.get("final/A_rob")]
    assert len(final) == 1 and float(final[0]["final/A_rob"]) == float(row["A_rob"])


@pytest.fixture(scope="module")
def synthetic_ckpt(tmp_path_factory) -> Path:
    """A checkpoint folder shared by the synthetic runs below: the first trains, later ones reuse it."""
    return tmp_path_factory.mktemp("ckpt")


def test_sweep_over_two_betas_writes_two_rows_and_trains_once(tmp_path, synthetic_ckpt):
    out = _run(tmp_path, "data=synthetic", f"paths.ckpt_dir={synthetic_ckpt}", "gdws.macs_ratio=null",
               "gdws.alphas=none", "gdws.beta=2.0,20.0", "metrics.fps=false",
               "logger=wandb", multirun=True)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _rows(tmp_path)
    assert [float(r["gdws_beta"]) for r in rows] == [2.0, 20.0]
    assert len({r["run_dir"] for r in rows}) == 2 and rows[0]["checkpoint"] == rows[1]["checkpoint"]
    assert float(rows[1]["train_s"]) == 0  # the second job reused the first job's training
    for r in rows:
        assert 0 <= float(r["A_rob"]) <= float(r["A_nat"]) <= 100 and r["data"] == "synthetic"
    # A larger error budget never keeps more intermediate channels (LEGO), so never more MACs.
    assert int(rows[1]["macs"]) <= int(rows[0]["macs"]) <= int(rows[0]["macs_dense"])
    for r in rows:  # one W&B run per job, each finished in its own folder
        assert len(list(Path(r["run_dir"]).glob("wandb/offline-run-*"))) == 1


def test_wandb_logger_writes_an_offline_run(tmp_path, synthetic_ckpt):
    out = _run(tmp_path, "data=synthetic", f"paths.ckpt_dir={synthetic_ckpt}", "logger=wandb")
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = _rows(tmp_path)
    _check_row(row)
    (offline,) = Path(row["run_dir"]).glob("wandb/offline-run-*")
    assert list(offline.glob("*.wandb"))  # the run's event log


def _assert_clean_failure(out: subprocess.CompletedProcess, tmp: Path, csv_before: str, *needles: str) -> None:
    """Non-zero exit; the final error line (what the user reads) holds every needle; CSV untouched."""
    assert out.returncode != 0
    last = [line for line in out.stderr.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line][-1]
    for needle in needles:
        assert needle in last, out.stderr[-3000:]
    assert (tmp / "results" / "runs.csv").read_text() == csv_before  # nothing appended, nothing half-written


def test_missing_data_folder_is_a_clear_error(tmp_path):
    csv_path = tmp_path / "results" / "runs.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("time,model\nearlier,vgg16\n")
    missing = tmp_path / "no_such_folder"
    out = _run(tmp_path, f"data.root={missing}")
    _assert_clean_failure(out, tmp_path, "time,model\nearlier,vgg16\n", str(missing), "data.root")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    csv_path = tmp_path / "results" / "runs.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("time,model\nearlier,vgg16\n")
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"\x80\x04 this is not a checkpoint")
    out = _run(tmp_path, "data=synthetic", f"model.checkpoint={bad}")
    _assert_clean_failure(out, tmp_path, "time,model\nearlier,vgg16\n", str(bad), "PyTorch checkpoint")


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


def test_keys_the_existing_header_lacks_are_reported():
    import warnings

    from gdws.tracking import append_row

    with warnings.catch_warnings(record=True) as caught, __import__("tempfile").TemporaryDirectory() as d:
        warnings.simplefilter("always")
        path = Path(d) / "runs.csv"
        path.write_text("time,model\n")
        append_row(path, {"time": "t", "model": "vgg16", "new_metric": 1})
        assert path.read_text() == "time,model\nt,vgg16\n"
    assert any("new_metric" in str(w.message) for w in caught)


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
    from gdws.pipeline.row import method_label
    from gdws.pipeline.transform import apply_prune

    cfg = _compose(tmp_path, ["model.width=0.125", f"prune._target_={__name__}.zero_first_filters",
                              "prune.method=toy", "prune.ratio=0.5"])
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.Conv2d(4, 4, 3, bias=False))
    pruned = apply_prune(cfg, model, "dm", tmp_path / "ckpt" / "best.ckpt")
    assert size_mb(pruned, nonzero=True) == pytest.approx(size_mb(model) / 2)
    assert list((tmp_path / "ckpt").glob("prune-toy-*")) and method_label(cfg) == "toy+gdws"
    assert apply_prune(_compose(tmp_path, []), model, "dm", tmp_path / "x.ckpt") is model  # prune=none


def test_reusing_a_checkpoint_folder_trained_differently_is_refused(tmp_path):
    from gdws.pipeline.weights import _check_training_config

    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    _check_training_config(ckpt_dir, _compose(tmp_path, ["experiment=smoke"]))
    _check_training_config(ckpt_dir, _compose(tmp_path, ["experiment=smoke", "attack=none", "gdws.beta=3"]))
    with pytest.raises(RuntimeError, match=r"train\.lr.*paths\.ckpt_dir"):
        _check_training_config(ckpt_dir, _compose(tmp_path, ["experiment=smoke", "train.lr=0.05"]))


def test_gdws_budget_must_be_unique(tmp_path):
    from gdws.pipeline.transform import apply_gdws

    cfg = _compose(tmp_path, ["gdws.macs_ratio=2"])
    with pytest.raises(ValueError, match="gdws.beta=null gdws.macs_ratio=2"):
        apply_gdws(cfg, None, None, tmp_path / "x.ckpt", None, tmp_path)


def test_model_checkpoint_is_loaded_instead_of_training(tmp_path):
    import torch

    from gdws.models import create_model
    from gdws.pipeline.weights import obtain_weights

    trained = create_model("vgg16", width=0.125)
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "w.ckpt")
    cfg = _compose(tmp_path, ["experiment=smoke", f"model.checkpoint={tmp_path / 'w.ckpt'}"])
    fresh = create_model("vgg16", width=0.125)
    weights = obtain_weights(cfg, fresh, datamodule=None, logger=None)  # no data needed: nothing trains
    assert weights.recipe == "loaded" and weights.train_s == 0 and weights.path == tmp_path / "w.ckpt"
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "checkpoints").exists()
