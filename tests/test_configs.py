"""conf/: every config group option composes, resolves and instantiates; the tables sweep the paper's rows."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from gdws.eval import build_attack
from gdws.pipeline.row import method_label

CONF = Path(__file__).resolve().parents[1] / "conf"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(tmp_path: Path, overrides: list[str]) -> DictConfig:
    """The job config run.py would get for ``overrides`` (hydra resolvers usable, hydra node removed)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root_dir={tmp_path}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "out")
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    OmegaConf.resolve(cfg)  # every interpolation must resolve (now, while this job's HydraConfig is set)
    return cfg


def test_defaults_are_the_paper_run(tmp_path):
    cfg = _compose(tmp_path, [])
    assert cfg.model.name == "vgg16" and cfg.model.checkpoint is None
    assert cfg.data._target_.endswith("CIFAR10DataModule") and cfg.train.method == "pgd"
    assert cfg.gdws.enabled and cfg.gdws.beta == 0.5 and cfg.gdws.alphas == "none"
    assert cfg.prune._target_ is None and method_label(cfg) == "gdws"
    a = cfg.attack  # reproduction spec §2
    assert (a.name, a.eps, a.step_size, a.steps, a.random_start) == ("pgd", 8 / 255, 1 / 255, 100, True)
    assert cfg.logger._target_.endswith("CSVLogger") and cfg.seed == 0 and cfg.device == "auto"
    assert cfg.paths.runs_csv == f"{tmp_path}/results/runs.csv"
    assert cfg.paths.ckpt_dir == f"{tmp_path}/checkpoints/cifar10-vgg16-w1.0-pgd-e200-nNone-s0"
    assert cfg.paths.output_dir == str(tmp_path / "out")
    assert method_label(_compose(tmp_path, ["gdws=none"])) == "dense"


@pytest.mark.parametrize(
    "group,option",
    [(g, o) for g in ("model", "data", "train", "attack", "gdws", "prune", "trainer", "logger") for o in _options(g)],
)
def test_each_group_option_composes_and_instantiates(tmp_path, group, option):
    cfg = _compose(tmp_path, [f"{group}={option}"])
    if group == "model":
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        model_cfg.pop("checkpoint")
        with torch.device("meta"):  # shapes only: no weight initialisation cost (RobNet, ResNet-50)
            model = instantiate(model_cfg).eval()
            assert model(torch.rand(2, 3, 32, 32)).shape == (2, cfg.data.num_classes)
    elif group == "data":
        dm = instantiate(cfg.data)  # construction only; reading the files is the data tests' job
        assert dm.num_classes == cfg.data.num_classes
    elif group == "train":
        module = instantiate(cfg.train, model=torch.nn.Linear(3, 2))
        assert module.hparams["method"] == option and module.hparams["epochs"] == cfg.train.epochs
    elif group == "attack":
        attack = build_attack(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10)), cfg.attack)
        assert (attack is None) == (option == "none")
    elif group == "trainer" and option != "gpu":
        assert instantiate(cfg.trainer, accelerator="cpu", logger=False).max_epochs == cfg.train.epochs
    elif group == "logger" and option != "wandb":  # wandb would start a run; test_pipeline covers it
        logger = instantiate(cfg.logger) if cfg.logger._target_ else None
        assert (logger is None) == (option == "none")


@pytest.mark.parametrize("model,data", list(itertools.product(_options("model"), _options("data"))))
def test_every_model_data_pair_resolves(tmp_path, model, data):
    cfg = _compose(tmp_path, [f"model={model}", f"data={data}"])
    assert cfg.model.num_classes == cfg.data.num_classes and cfg.model.normalize == cfg.data.normalize
    assert f"{data}-{model}-" in cfg.paths.ckpt_dir


@pytest.mark.parametrize("train,attack", list(itertools.product(_options("train"), _options("attack"))))
def test_every_train_attack_pair_resolves(tmp_path, train, attack):
    cfg = _compose(tmp_path, [f"train={train}", f"attack={attack}"])
    assert cfg.train.method == train and cfg.attack.name == attack
    assert f"-{train}-e{cfg.train.epochs}-" in cfg.paths.ckpt_dir


@pytest.mark.parametrize("experiment,data", list(itertools.product(_options("experiment"), _options("data"))))
def test_every_experiment_composes_with_every_dataset(tmp_path, experiment, data):
    cfg = _compose(tmp_path, [f"experiment={experiment}", f"data={data}"])
    assert cfg.task_name == experiment


def test_smoke_is_small(tmp_path):
    cfg = _compose(tmp_path, ["experiment=smoke"])
    assert cfg.model.width <= 0.25 and cfg.data.train_subset <= 1024 and cfg.data.eval_subset == 64
    assert cfg.trainer.limit_train_batches <= 8 and cfg.attack.steps <= 20 and cfg.gdws.alpha_samples <= 64
    synthetic = _compose(tmp_path, ["experiment=smoke", "data=synthetic"])
    assert synthetic.paths.ckpt_dir != cfg.paths.ckpt_dir  # synthetic weights never stand in for real ones


# (model, method, beta) of the paper's rows that need no pruning baseline (../shared/paper/cifar10_tables.csv).
PAPER_ROWS = {
    "table_hydra": {("vgg16_hydra", "dense", None), ("vgg16_hydra", "gdws", 0.5)},
    "table_admm": {("vgg16", "dense", None), ("vgg16", "gdws", 0.5),
                   ("preact_resnet18", "dense", None), ("preact_resnet18", "gdws", 0.75)},
    "table_lightweight": {("preact_resnet18", "gdws", 0.005), ("vgg16", "gdws", 0.005),
                          ("mobilenet_v1", "dense", None), ("mobilenet_v2", "dense", None),
                          ("resnet18_dws", "dense", None), ("resnet20", "dense", None)},
    "table_robnet": {("robnet_free", "dense", None), ("preact_resnet50", "dense", None),
                     ("preact_resnet50", "gdws", 0.005), ("wrn28_4", "dense", None), ("wrn28_4", "gdws", 0.005)},
}


@pytest.mark.parametrize("experiment", sorted(PAPER_ROWS))
def test_table_sweeps_cover_the_paper_rows(tmp_path, experiment):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        params = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True).hydra.sweeper.params
    keys = list(params)
    rows = set()
    for values in itertools.product(*(str(params[k]).split(",") for k in keys)):
        cfg = _compose(tmp_path, [f"experiment={experiment}", *(f"{k}={v}" for k, v in zip(keys, values))])
        rows.add((cfg.model.name, method_label(cfg), cfg.gdws.beta if cfg.gdws.enabled else None))
    assert PAPER_ROWS[experiment] <= rows
    extra = rows - PAPER_ROWS[experiment]
    assert extra <= {("robnet_free", "gdws", 0.005)}  # the one grid point the paper lacks


def test_slurm_launcher_config(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="optional extra: pip install -e .[slurm]")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.gpus_per_node == 1
