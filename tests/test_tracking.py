"""Result logging: whole rows under concurrent appends, a header that grows without losing rows, and the summary a
run (and a sweep) prints when it ends."""
from __future__ import annotations

import csv
import json

import yaml
from omegaconf import OmegaConf

from gdws.tracking.summary import SweepSummary, job_line, relative, run_summary, sweep_summary


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


ROW = {"model": "vgg16", "width": 0.125, "method": "gdws", "prune_method": None, "gdws_constraint": "speedup=2.0",
       "gdws_alphas": "pgd", "gdws_form": "explicit", "gdws_layers": 11, "gdws_speedup_measured": 1.8, "A_nat": 80.0,
       "A_rob": 45.5, "attack": "pgd100-step1/255-eps8/255-rs", "attack_ran": True, "n_eval": 1000, "size_MB": 1.0,
       "size_MB_dense": 4.0, "macs": 1_000_000, "macs_dense": 3_000_000, "fps": 300.0, "fps_dense": 100.0,
       "throughput": 900.0, "throughput_dense": 600.0, "fast_forms": "b1 grouped:11; b256 dense:11"}


def test_the_run_summary_gives_each_result_against_the_dense_network():
    text = run_summary(ROW, runs_csv="/p/outputs/runs.csv", run_dir="/p/outputs/run/1")
    lines = text.strip().splitlines()
    assert lines[0] == ("== run finished: vgg16 (width 0.125), GDWS speedup=2.0 (alphas pgd, explicit form): "
                        "11 layers converted")
    assert "A_nat 80.00 %   A_rob 45.50 %   (pgd100-step1/255-eps8/255-rs, 1000 images)" in lines[1]
    assert lines[2].split() == ["size", "1.000", "MB", "dense", "4.000", "MB", "4.00x", "smaller"]
    assert lines[3].split() == ["MACs", "1.00", "M", "dense", "3.00", "M", "3.00x", "fewer"]
    assert lines[4].split() == ["FPS", "300.0", "dense", "100.0", "3.00x", "faster"]
    assert lines[5].split()[-2:] == ["1.50x", "faster"]
    assert lines[6] == "speed-up   measured 1.80x for speedup=2.0   (target MISSED)"
    assert lines[7] == "forms      b1 grouped:11; b256 dense:11"
    assert lines[8:] == ["row        /p/outputs/runs.csv  (and row.json in the run folder)",
                         "run folder /p/outputs/run/1"]
    calibrated = {**ROW, "gdws_calibration": "pgd", "gdws_calibration_samples": 1024, "gdws_whiten": True,
                  "gdws_refit": False, "gdws_fisher": True}
    assert ("(alphas pgd, pgd calibration on 1024 images (whiten True, refit False, fisher True), explicit form)"
            in run_summary(calibrated, runs_csv="r.csv", run_dir="d"))
    removed = run_summary({**ROW, "gdws_removed": 4}, runs_csv="r", run_dir="d").strip().splitlines()[0]
    assert removed.endswith("11 layers converted (4 of them REMOVED: G = 0, a constant output)")
    assert job_line({**ROW, "gdws_removed": 4}).startswith("gdws speedup=2.0 (4 layers REMOVED) | A_nat 80.00")
    rounds = {**calibrated, "gdws_refit": True, "gdws_refit_rounds": 2}
    assert "(whiten True, refit True, fisher True, refit rounds 2)" in run_summary(rounds, runs_csv="r", run_dir="d")


def test_the_summary_says_what_did_not_run():
    dense = {**ROW, "method": "dense", "gdws_constraint": None, "gdws_speedup_measured": None, "fast_forms": None,
             "fps": None, "throughput": None, "fps_dense": None, "throughput_dense": None, "attack_ran": False,
             "A_rob": 80.0, "size_MB": 4.0, "macs": 3_000_000}
    text = run_summary(dense, runs_csv="r.csv", run_dir="d")
    assert "vgg16 (width 0.125), dense" in text and "FPS" not in text and "speed-up" not in text
    assert "NOTE: the attack could not run" in text and "1.00x smaller" in text
    assert "A_rob -   (attack=none)" in run_summary({**dense, "A_rob": None}, runs_csv="r.csv", run_dir="d")
    assert job_line(dense) == ("dense | A_nat 80.00 | A_rob 80.00 (attack could not run) | size 1.00x smaller | "
                               "MACs 1.00x fewer | FPS -")


def test_a_ratio_below_one_says_slower_larger_more():
    slower = {**ROW, "fps": 58.3, "fps_dense": 113.4, "throughput": 50.0, "throughput_dense": 98.0,
              "size_MB": 8.0, "size_MB_dense": 4.0, "macs": 4_000_000, "macs_dense": 3_000_000,
              "runtime": "openvino", "runtime_version": "2026.4.1", "threads": 1, "device": "cpu (x)"}
    lines = run_summary(slower, runs_csv="r", run_dir="d").strip().splitlines()
    assert lines[2].split()[-2:] == ["2.00x", "larger"] and lines[3].split()[-2:] == ["1.33x", "more"]
    assert lines[4].split() == ["FPS", "58.3", "dense", "113.4", "1.95x", "slower"]
    assert lines[5].split()[-2:] == ["1.96x", "slower"]
    assert lines[6] == "timed on   openvino 2026.4.1, 1 threads, cpu (x)"
    assert "faster" not in "\n".join(lines[2:6]) and "0.51x" not in "\n".join(lines)
    assert job_line(slower).endswith("size 2.00x larger | MACs 1.33x more | FPS 1.95x slower (openvino)")
    assert relative(1.0, "faster") == "1.00x faster" and relative(None, "fewer") == "-"


def _job(sweep, name: str, overrides: list[str], row: dict | None) -> None:
    (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / name / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if row is not None:
        (sweep / name / "row.json").write_text(json.dumps(row))


def test_a_sweep_ends_with_one_line_per_job(tmp_path, capsys):
    sweep = tmp_path / "multirun"
    for num in (0, 1, 10):  # job folders sort by number, not as text
        _job(sweep, str(num), ["experiment=smoke", f"gdws.speedup={num + 2}"],
             {**ROW, "gdws_constraint": f"speedup={num + 2}"} if num != 1 else None)
    SweepSummary().on_multirun_end(config=OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"== sweep finished: 3 jobs in {sweep}",
                     f"job 0 (gdws.speedup=2): {job_line({**ROW, 'gdws_constraint': 'speedup=2'})}",
                     "job 1 (gdws.speedup=3): no row (stage=train or failed)",
                     f"job 10 (gdws.speedup=12): {job_line({**ROW, 'gdws_constraint': 'speedup=12'})}"]
    assert lines[1].endswith("gdws speedup=2 | A_nat 80.00 | A_rob 45.50 | size 4.00x smaller | MACs 3.00x fewer | "
                             "FPS 3.00x faster")
    assert sweep_summary(sweep) == "\n".join(lines)
