"""A run labelled scale=paper shrinks nothing; the experiments and the committed rows say their true scale."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from gdws.pipeline.scale import check_scale
from gdws.pipeline.validate import validate
from conftest import compose_config

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def _checked(tmp_path: Path, overrides: list[str], check=check_scale):
    """Compose ``overrides`` as run.py would (Hydra's group choices set) and run ``check`` on the config."""
    cfg = compose_config([f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    check(cfg)
    return cfg


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_is_labelled_as_what_it_runs(tmp_path, experiment):
    _checked(tmp_path, [f"experiment={experiment}"])  # a shrinking experiment labelled paper raises


@pytest.mark.parametrize("shrink", ["model.width=0.5", "data.eval_subset=100", "data.train_subset=1000",
                                    "data.exact_only=true", "train.epochs=3", "trainer.limit_train_batches=4"])
def test_a_shrunk_run_cannot_be_labelled_paper(tmp_path, shrink):
    key = shrink.split("=")[0]
    with pytest.raises(ValueError, match=rf"scale=paper but is shrunk: {key}=.*scale=custom"):
        _checked(tmp_path, [shrink])
    assert _checked(tmp_path, ["scale=custom", shrink]).scale == "custom"


def test_paper_scale_is_judged_against_the_runs_own_recipe_and_model(tmp_path):
    # other groups than the defaults, at their own full sizes: nothing is shrunk
    _checked(tmp_path, ["model=resnet20", "train=trades", "data=svhn", "trainer=gpu"])
    _checked(tmp_path, ["model.width=1.0", "train.lr=0.05"])  # a paper value typed, or a non-size setting


def test_validate_refuses_the_mislabel_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="model.width=0.25"):
        _checked(tmp_path, ["model.width=0.25", "device=cpu"], check=validate)


def test_committed_rows_carry_the_scale_their_experiment_runs_at(tmp_path):
    rows = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False)
                      for p in sorted((REPO / "results").glob("**/*runs*.csv"))])
    pairs = rows[rows.experiment.isin(EXPERIMENTS)][["experiment", "scale"]].drop_duplicates()
    assert len(pairs), "no committed row names an experiment"
    for experiment, scale in pairs.itertuples(index=False):
        # composed at the row's own label, the experiment must keep that label and give the row's width
        cfg = _checked(tmp_path, [f"experiment={experiment}", f"scale={scale}"])
        assert cfg.scale == scale, (experiment, scale)
        widths = pd.to_numeric(rows[(rows.experiment == experiment) & (rows.scale == scale)].width)
        assert (widths == float(cfg.model.width)).all(), (experiment, scale)
    paper = rows[rows.scale == "paper"]
    assert (pd.to_numeric(paper.width) == 1.0).all(), "a reduced-width row is labelled paper"
