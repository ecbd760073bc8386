"""Every row of the paper's four tables is defined once, runs the paper's method on a network its table trains
first, with the recipe's and the evaluation attack's own settings; shrunk scales shrink every network."""
from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf

from gdws.pipeline.table_runs import REPO, TABLES, paper_rows, table_commands
from gdws.pipeline.validate import validate
from gdws.pipeline.weights import checkpoint_dir, training_config
from gdws.tables import load_paper

PAPER = load_paper()


def _paper_row(table: str, row: int) -> pd.Series:
    return PAPER[(PAPER["table"] == table) & (PAPER["row"] == row)].iloc[0]


def test_the_experiments_define_exactly_the_papers_rows():
    assert len(PAPER) == 29
    for table in TABLES:
        assert sorted(paper_rows(table)) == sorted(PAPER.loc[PAPER["table"] == table, "row"]), table


@pytest.mark.parametrize("table", TABLES)
def test_each_row_runs_the_papers_method_on_a_network_its_table_trains_first(read_config, table):
    trained = {checkpoint_dir(read_config(*cmd[2:])) for cmd in table_commands(table) if "stage=train" in cmd}
    recipe = None
    for row, overrides in paper_rows(table).items():
        paper, cfg = _paper_row(table, row), read_config(f"experiment=table_{table}", *overrides)
        constraint = validate(cfg)
        assert (cfg.scale, cfg.table, cfg.model.name, cfg.model.width) == ("paper", table, paper["model"], 1.0), row
        assert checkpoint_dir(cfg) in trained, row  # no row trains a network of its own
        method = paper["method"]
        pruner = method.split("+")[0] if method.split("+")[0] in ("hydra", "admm") else None
        assert cfg.prune.get("method") == pruner and (not pruner or cfg.prune.ratio == paper["prune_ratio"]), row
        if "gdws" in method:
            expected_beta = paper["beta"] if not pd.isna(paper["beta"]) else 0.005  # the paper omits beta there
            assert constraint == f"beta={expected_beta}", row
            assert cfg.gdws.alphas == ("none" if not pd.isna(paper["beta"]) else "pgd"), row
        else:
            assert constraint is None, row
        recipe = cfg
    # TRADES for HYDRA's network, PGD AT otherwise, with the recipe's own settings; the paper's evaluation attack
    method = "trades" if table == "hydra" else "pgd"
    reference = read_config(f"train={method}")
    assert training_config(recipe)["train"] == training_config(reference)["train"]
    assert training_config(recipe)["data"] == training_config(reference)["data"]  # all of the training split
    assert OmegaConf.to_container(recipe.attack) == OmegaConf.to_container(read_config().attack)


@pytest.mark.parametrize("table, row", [(t, r) for t, r, m in zip(PAPER["table"], PAPER["row"], PAPER["method"])
                                        if m == "dense" or t == "lightweight"])
def test_dense_networks_have_the_papers_size(read_config, table, row, one_thread):
    from hydra.utils import instantiate

    from gdws.metrics import size_mb

    paper = _paper_row(table, row)
    cfg = read_config(f"experiment=table_{table}", *paper_rows(table)[row])
    model = instantiate(OmegaConf.to_container(cfg.model, resolve=True))
    if paper["method"] == "dense":
        assert size_mb(model) == pytest.approx(paper["size_MB"], abs=0.2)
    else:  # a GDWS row: the dense network it comes from is larger than the paper's GDWS size
        assert size_mb(model) > paper["size_MB"]


@pytest.mark.parametrize("scale", ["cpu", "smoke"])
def test_shrunk_scales_shrink_every_network_and_keep_the_rows_definitions(read_config, scale):
    for table in TABLES:
        rows, paper = paper_rows(table, [f"scale={scale}"]), paper_rows(table)
        assert rows and all(rows[n] == paper[n] for n in rows), table  # the paper's rows (a scale may run fewer)
        for cmd in table_commands(table, [f"scale={scale}"]):
            if "stage=train" in cmd:
                cfg = read_config(*cmd[2:])
                assert cfg.scale == scale and cfg.model.width < 1 and cfg.train.epochs < 200, cmd


def test_each_network_is_trained_once_before_its_rows():
    cmds = table_commands("admm", ["scale=smoke"], python="py")
    train = [c for c in cmds if "stage=train" in c]
    assert [c[3:] for c in train] == [["scale=smoke", "model=vgg16", "stage=train"],
                                      ["scale=smoke", "model=preact_resnet18", "stage=train"]]
    assert cmds[:2] == train and len(cmds) == 2 + 10
    assert [c[-1] for c in cmds[2:]] == [f"paper_row={n}" for n in range(1, 11)]  # the row says which it is
    assert all(c[:3] == ["py", str(REPO / "run.py"), "experiment=table_admm"] for c in cmds)
