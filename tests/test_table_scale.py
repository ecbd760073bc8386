"""Tables admm and hydra at scale=cpu: the CPU study's robust VGG-16, fast-AT pruning phases, chosen rows."""
from __future__ import annotations

import csv
import functools
import itertools
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from gdws.eval import attack_spec, build_attack
from gdws.pipeline.table_runs import REPO, parse_rows, paper_rows, row_done, run_table, table_choices, table_commands
from gdws.pipeline.weights import checkpoint_dir, training_config
from gdws.prune.modules import ADMMTraining, CosinePGD
from gdws.tables import load_paper
from gdws.train import AttackView
from conftest import compose_config

CONF = REPO / "conf"
PAPER = load_paper()
CPU = ["scale=cpu"]


def _compose(overrides: list[str]) -> DictConfig:
    """The config for ``overrides``, composed once per session (several tests read the same rows): read-only."""
    return _composed(tuple(overrides))


@functools.cache
def _composed(overrides: tuple[str, ...]) -> DictConfig:
    cfg = compose_config(overrides)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _row(table: str, row: int, *extra: str) -> DictConfig:
    """The config of a row as table_commands types it at scale=cpu."""
    choices = table_choices(table, CPU)
    return _compose([f"experiment=table_{table}", *choices, *CPU, *paper_rows(table, CPU)[row], *extra])


def _cpu_rows() -> list[tuple[str, int]]:
    return [(t, r) for t in ("admm", "hydra") for r in paper_rows(t, CPU)]


def test_cpu_scale_runs_the_vgg16_rows_only():
    assert sorted(paper_rows("admm", CPU)) == [1, 2, 3, 4, 5]  # PreAct ResNet-18 rows: no network here
    assert sorted(paper_rows("hydra", CPU)) == list(range(1, 9))
    assert sorted(paper_rows("admm", ["scale=smoke"])) == list(range(1, 11))  # other scales keep every row


@pytest.mark.parametrize("table, row", _cpu_rows())
def test_each_cpu_row_trains_exactly_the_cpu_study_network(table, row):
    study = _compose(["experiment=cpu_vgg16"])
    cfg = _row(table, row)
    # Same training config, so the same checkpoint folder: weights.path of that training is this network.
    assert training_config(cfg) == training_config(study)
    assert checkpoint_dir(cfg) == checkpoint_dir(study)
    assert (cfg.model.name, cfg.model.width, cfg.train.method, cfg.train.epochs) == ("vgg16", 0.5, "fgsm_rs", 12)
    assert cfg.scale == "cpu" and cfg.table == table
    # Evaluation: the study's PGD-20 on every exact test image.
    assert attack_spec(cfg.attack) == attack_spec(study.attack) == "pgd20-step2/255-eps8/255-rs"
    assert cfg.data.exact_only and cfg.data.eval_subset is None


@pytest.mark.parametrize("table, row", _cpu_rows())
def test_gdws_rows_keep_the_papers_beta_with_pgd_alphas(table, row):
    paper = PAPER[(PAPER["table"] == table) & (PAPER["row"] == row)].iloc[0]
    cfg = _row(table, row)
    if "gdws" in paper["method"]:
        assert cfg.gdws.enabled and math.isclose(cfg.gdws.beta, paper["beta"]) and cfg.gdws.alphas == "pgd"
    else:
        assert not cfg.gdws.enabled


@pytest.mark.parametrize("table, ratio", [("admm", 0.5), ("hydra", 0.95)])
def test_pruning_phases_train_with_fast_at_on_a_few_batches(table, ratio):
    row = {"admm": 4, "hydra": 5}[table]
    cfg = _row(table, row)
    p = cfg.prune
    assert p.method == table and math.isclose(p.ratio, ratio)
    assert p.limit_train_batches == 200 and p.limit_val_batches == 1
    if table == "admm":
        assert (p.admm_epochs, p.admm_epoch, p.retrain_epochs) == (2, 1, 1)
    else:
        assert (p.prune_epochs, p.finetune_epochs, p.loss) == (1, 1, "pgd")  # HYDRA's phases with the pgd loss
    # The attack a phase really crafts: one step of 10/255 from a uniform start in the 8/255 ball (FGSM-RS).
    recipe = OmegaConf.to_container(p.recipe, resolve=True)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    phase = ADMMTraining if table == "admm" else CosinePGD
    attack = phase(net, epochs=1, **recipe).training_attack(AttackView(net))
    assert (attack.steps, attack.random_start) == (1, True)
    assert (attack.alpha, attack.eps) == pytest.approx((10 / 255, 8 / 255))
    assert instantiate(cfg.train, model=net).hparams["method"] == "fgsm_rs"


@pytest.mark.parametrize("experiment, scale", itertools.product(
    [None, *sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))],
    sorted(p.stem for p in (CONF / "scale").glob("*.yaml"))))
def test_every_experiment_composes_at_every_scale(experiment, scale):
    cfg = _compose([f"experiment={experiment}"] * bool(experiment) + [f"scale={scale}"])  # None: the default (null)
    build_attack(cfg.attack)
    # Only the two tables get a trained network of this machine, and only at scale=cpu (half width) or
    # cpu_fullwidth (full width); the full-width rows are labelled custom.
    special = scale in ("cpu", "cpu_fullwidth") and experiment in ("table_admm", "table_hydra")
    assert ("table_choices" in cfg) == special
    if special:
        assert cfg.model.width == (1.0 if scale == "cpu_fullwidth" else 0.5)
        assert cfg.scale == ("custom" if scale == "cpu_fullwidth" else "cpu")


def test_rows_pick_paper_rows_in_the_order_given():
    assert parse_rows("1-5") == [1, 2, 3, 4, 5]
    assert parse_rows("1,3,5,7") == [1, 3, 5, 7]
    assert parse_rows("6,4, 8,4") == [6, 4, 8]
    assert parse_rows("2-3,7") == [2, 3, 7]
    for bad in ("1-x", "0", "5-3", "", "a"):
        with pytest.raises(ValueError, match="--rows"):
            parse_rows(bad)


def test_commands_for_chosen_rows_train_their_network_once_first():
    cmds = table_commands("admm", [*CPU, "weights.path=W"], python="py", rows=[4, 1, 2])
    assert [c[-1] for c in cmds] == ["stage=train", "paper_row=4", "paper_row=1", "paper_row=2"]
    assert all(c[2:7] == ["experiment=table_admm", "model=vgg16", "train=fgsm_rs", "attack=pgd20", "scale=cpu"]
               for c in cmds)
    hydra = table_commands("hydra", CPU, python="py", rows=[5])
    assert "model=vgg16" in hydra[1] and "prune.ratio=0.95" in hydra[1]  # the VGG-16 base, as the row says
    # a group the user types is not typed again before it: theirs is the one that runs
    assert "attack=pgd20" not in table_commands("admm", [*CPU, "attack=autoattack"], python="py", rows=[1])[1]
    with pytest.raises(ValueError, match=r"no row \[6\]"):
        table_commands("admm", CPU, rows=[6])


def _write_row(path: Path, **values) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["table", "paper_row", "scale", "attack", "A_rob"])
        writer.writeheader()
        writer.writerow(values)


def test_skip_done_runs_only_the_rows_missing_from_the_runs_csv(tmp_path, capsys):
    runs = tmp_path / "runs.csv"
    over = [*CPU, f"paths.runs_csv={runs}"]
    _write_row(runs, table="admm", paper_row="4", scale="cpu", attack="pgd20-step2/255-eps8/255-rs", A_rob="30")
    four, one = table_commands("admm", over, rows=[4, 1])[1:]
    assert row_done(four) and not row_done(one)
    aa = table_commands("admm", [*over, "attack=autoattack"], rows=[4])[-1]
    assert not row_done(aa)  # another attack is another row
    assert run_table("admm", over, dry_run=True, rows=[4, 1], skip_done=True) == 0
    printed = capsys.readouterr().out
    assert "paper_row=1" in printed and "paper_row=4" not in printed and "row 4: in the runs CSV already" in printed
    run_table("admm", over, dry_run=True, rows=[4], skip_done=True)
    assert "stage=train" not in capsys.readouterr().out  # nothing left to run: no training either
