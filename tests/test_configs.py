"""conf/: every option composes, resolves and builds what it names; the defaults build the paper's run."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
import torchattacks
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from gdws.eval import build_attack
from gdws.metrics import count_params
from gdws.pipeline.context import resolve_device
from gdws.pipeline.validate import validate
from gdws.pipeline.weights import checkpoint_dir
from gdws.train import AttackView, PGDTraining

CONF = Path(__file__).resolve().parents[1] / "conf"
# Model options that load trained weights (downloaded on first use): composed here, built offline in their own tests.
DOWNLOADS_WEIGHTS = {"robustbench"}


def _options(group: str) -> list[str]:
    """The options a user can pick for ``group`` (``base`` is what the options inherit, not an option)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != "base")


def _model_on_meta(cfg: DictConfig) -> torch.nn.Module:
    """``cfg.model`` built on the meta device: shapes only, no weight initialisation cost (RobNet, ResNet-50)."""
    with torch.device("meta"):
        return instantiate(cfg.model).eval()


def _outputs(model: torch.nn.Module) -> int:
    """Number of outputs of a meta-device model on a CIFAR-sized batch."""
    return model(torch.rand(2, 3, 32, 32, device="meta")).shape[1]


def _tiny() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 10))


def test_defaults_build_the_paper_run(read_config):
    cfg = read_config()
    model = _model_on_meta(cfg)
    assert count_params(model) == 14_728_266  # VGG-16 for CIFAR-10 (56.18 MB, reproduction spec §1)
    assert instantiate(cfg.data).num_classes == 10 == _outputs(model)
    # Training: PGD-10 of 2/255 in the 8/255 ball, 200 epochs (reproduction spec §2).
    module = instantiate(cfg.train, model=_tiny())
    assert isinstance(module, PGDTraining) and instantiate(cfg.trainer, accelerator="cpu", logger=False).max_epochs == 200
    pgd = module.training_attack(AttackView(module.model))
    assert isinstance(pgd, torchattacks.PGD) and (pgd.steps, pgd.alpha, pgd.eps) == pytest.approx((10, 2 / 255, 8 / 255))
    # Evaluation: PGD-100 of 1/255 with one random start.
    attack = build_attack(cfg.attack).on(_tiny())
    assert isinstance(attack, torchattacks.PGD) and attack.random_start
    assert (attack.steps, attack.alpha, attack.eps) == pytest.approx((100, 1 / 255, 8 / 255))


@pytest.mark.parametrize(
    "group,option",
    [(g, o) for g in ("data", "train", "attack", "gdws", "prune", "trainer", "logger") for o in _options(g)],
)
def test_each_group_option_composes_and_instantiates(read_config, group, option):
    cfg = read_config(f"{group}={option}")
    if group == "data":
        dm = instantiate(cfg.data)  # construction only; reading the files is the data tests' job
        assert dm.num_classes == 10 and dm.root == cfg.paths.data_dir
    elif group == "train":
        module = instantiate(cfg.train, model=_tiny())
        assert module.hparams["method"] == option
    elif group == "attack":
        attack = build_attack(cfg.attack)
        assert option.startswith(attack.name) and (attack.on(_tiny()) is None) == (option == "none")  # pgd20: pgd
    elif group == "trainer":
        assert instantiate(cfg.trainer, accelerator="cpu", logger=False).max_epochs == cfg.train.epochs
    elif group == "logger" and option != "wandb":  # wandb would start a run; test_pipeline covers it
        logger = instantiate(cfg.logger) if cfg.logger._target_ else None
        assert (logger is None) == (option == "none")
    elif group == "gdws":
        assert validate(cfg) == ("beta=0.5" if option == "default" else None)  # the paper's default, or off
    elif group == "prune":
        validate(cfg)  # a pruning option's ratio passes the pruning methods' own check
        assert (cfg.prune.get("_target_") is None) == (option == "none")


@pytest.mark.parametrize("model", sorted(set(_options("model")) - DOWNLOADS_WEIGHTS))
def test_every_model_takes_its_classes_from_the_data(read_config, model):
    # every dataset option has 10 classes: another count shows that the model follows the data's
    assert _outputs(_model_on_meta(read_config(f"model={model}", "data.num_classes=7"))) == 7


@pytest.mark.parametrize("experiment,data", list(itertools.product(_options("experiment"), _options("data"))))
def test_every_experiment_is_a_valid_job_with_every_dataset(read_config, experiment, data):
    cfg = read_config(f"experiment={experiment}", f"data={data}")
    assert cfg.task_name == experiment and type(instantiate(cfg.data)).__name__.lower().startswith(data)
    validate(cfg)  # one GDWS constraint, known stage, importable targets, ...
    assert instantiate(cfg.train, model=_tiny()).hparams["method"] == cfg.train.method
    assert build_attack(cfg.attack).spec().endswith("eps8/255-rs")  # every experiment: the paper's threat model


@pytest.mark.parametrize("experiment,attack", list(itertools.product(_options("experiment"), _options("attack"))))
def test_an_attack_typed_after_an_experiment_is_the_attack_that_runs(read_config, experiment, attack):
    # an experiment that tunes its attack must not leak those keys into the attack a user types instead
    cfg = read_config(f"experiment={experiment}", f"attack={attack}")
    typed = read_config(f"attack={attack}").attack
    assert cfg.attack._target_ == typed._target_
    assert set(cfg.attack) - set(typed) == set()
    assert build_attack(cfg.attack).name == build_attack(typed).name


def test_smoke_is_small(read_config):
    cfg = read_config("experiment=smoke")
    paper = read_config(f"model={cfg.model.name}")
    assert count_params(_model_on_meta(cfg)) < count_params(_model_on_meta(paper)) / 50
    dm = instantiate(cfg.data)
    assert dm.train_subset <= 1024 and dm.eval_subset <= 64
    assert build_attack(cfg.attack).steps <= 20 and cfg.trainer.limit_train_batches <= 8
    synthetic = read_config("experiment=smoke", "data=synthetic")
    assert checkpoint_dir(synthetic) != checkpoint_dir(cfg)  # synthetic weights never stand in for real ones


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_a_clear_error(read_config):
    cfg = read_config("device=cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available.*device=cpu"):
        resolve_device(str(cfg.device))
    assert resolve_device(str(read_config().device)) == torch.device("cpu")  # device=auto falls back


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_device_cuda_with_a_gpu_is_used(read_config):
    assert resolve_device(str(read_config("device=cuda").device)).type == "cuda"
    assert resolve_device(str(read_config().device)).type == "cuda"  # device=auto prefers the GPU


def test_slurm_launcher_config(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="optional extra: pip install -e .[slurm]")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.gpus_per_node == 1
