"""The pipeline's steps in-process: the pruning hook, content-addressed checkpoint folders, alphas cached by the
weights they came from, loaded weights, and the row built from what the steps did."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def zero_first_filters(model, datamodule, work_dir: str, ratio: float):
    """A pruning callable for the hook test: zero the first ``ratio`` of every conv's filters."""
    import torch

    assert Path(work_dir).is_dir() and datamodule == "dm"
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            with torch.no_grad():
                m.weight[: int(ratio * m.out_channels)] = 0
    return model


def test_prune_hook_calls_the_configured_callable(job_config, tmp_path):
    import torch

    from gdws.metrics import size_mb
    from gdws.pipeline.transform import apply_prune

    cfg = job_config("model.width=0.125", f"prune._target_={__name__}.zero_first_filters",
                              "prune.method=toy", "prune.ratio=0.5")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.Conv2d(4, 4, 3, bias=False))
    pruned, facts = apply_prune(cfg, model, "dm")
    assert size_mb(pruned, nonzero=True) == pytest.approx(size_mb(model) / 2)
    assert facts == {"prune_method": "toy", "prune_ratio": 0.5}
    assert len(list((tmp_path / "checkpoints" / "pruned").glob("*-toy-*"))) == 1  # under the project's folder
    assert apply_prune(job_config(), model, "dm") == (model, {})  # prune=none


def test_checkpoint_folders_are_content_addressed(job_config, tmp_path):
    from gdws.pipeline.weights import checkpoint_dir

    base = checkpoint_dir(job_config("experiment=smoke"))
    assert base.parent == tmp_path / "checkpoints" and base.name.startswith("cifar10-vgg16-w0.125-pgd-e2-")
    # Settings that do not change the weights share the folder; any that do get their own.
    assert checkpoint_dir(job_config("experiment=smoke", "attack=none", "gdws.beta=3", "logger=none",
                                     "train.allow_long=true")) == base
    others = {checkpoint_dir(job_config("experiment=smoke", o))
              for o in ("train.lr=0.05", "train.momentum=0.8", "data.train_subset=256", "seed=1", "model.width=0.25")}
    assert len(others) == 5 and base not in others


def test_an_explicit_checkpoint_folder_trained_differently_is_refused(job_config, tmp_path):
    from gdws.pipeline.weights import _check_training_config

    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    _check_training_config(ckpt_dir, job_config("experiment=smoke"))
    _check_training_config(ckpt_dir, job_config("experiment=smoke", "attack=none", "gdws.beta=3"))
    with pytest.raises(RuntimeError, match=r"train\.lr.*paths\.ckpt_dir"):
        _check_training_config(ckpt_dir, job_config("experiment=smoke", "train.lr=0.05"))


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
def test_alphas_cover_exactly_the_layers_that_are_converted(job_config, tmp_path, overrides, one_thread):
    import torch

    from gdws.pipeline.transform import apply_gdws

    cfg = job_config("experiment=smoke", "gdws.alphas=clean", "gdws.alpha_samples=8", *overrides)
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


def test_alpha_cache_is_keyed_by_the_weights(job_config, tmp_path, one_thread):
    import torch

    from gdws.pipeline.transform import apply_gdws

    cfg = job_config("experiment=smoke", "gdws.alphas=clean", "gdws.alpha_samples=8")
    model = _tiny_cifar_model()
    apply_gdws(cfg, model, _Images(), torch.device("cpu"), tmp_path / "o1", "macs_ratio=1.5")
    apply_gdws(cfg, model, _Images(), torch.device("cpu"), tmp_path / "o2", "macs_ratio=1.5")
    assert len(list((tmp_path / "cache" / "alphas").glob("*.pt"))) == 1  # same weights: one cached file
    with torch.no_grad():
        model.features[3].weight.mul_(2)  # "retrained" weights must not reuse stale alphas
    apply_gdws(cfg, model, _Images(), torch.device("cpu"), tmp_path / "o3", "macs_ratio=1.5")
    assert len(list((tmp_path / "cache" / "alphas").glob("*.pt"))) == 2


def test_loaded_weights_get_no_files_beside_them(job_config, tmp_path, one_thread):
    import torch

    from gdws.pipeline.transform import apply_gdws
    from gdws.pipeline.weights import obtain_weights

    user = tmp_path / "user_weights"
    user.mkdir()
    torch.save(_tiny_cifar_model().state_dict(), user / "w.pt")
    user.chmod(0o555)  # a read-only (shared) folder
    try:
        cfg = job_config("experiment=smoke", f"weights.path={user / 'w.pt'}", "gdws.alphas=clean",
                                  "gdws.alpha_samples=8")
        model = _tiny_cifar_model()
        weights = obtain_weights(cfg, model, datamodule=None, logger=None)
        apply_gdws(cfg, model, _Images(), torch.device("cpu"), tmp_path / "out", "macs_ratio=1.5")
    finally:
        user.chmod(0o755)
    assert weights.recipe == "loaded" and sorted(p.name for p in user.iterdir()) == ["w.pt"]
    assert list((tmp_path / "cache" / "alphas").glob("*.pt"))


def test_row_says_what_ran(job_config, tmp_path):
    from gdws.pipeline.row import build_row, method_label

    assert [method_label(None, 0), method_label(None, 3), method_label("hydra", 0), method_label("admm", 2)] == \
        ["dense", "gdws", "hydra", "admm+gdws"]
    cfg = job_config("experiment=smoke", "gdws.beta=0.5")
    facts = {"recipe": "pgd", "checkpoint": tmp_path / "checkpoints" / "x" / "best.ckpt", "gdws_layers": 0,
             "gdws_constraint": "beta=0.5"}
    row = build_row(cfg, dict(facts))
    # GDWS was asked for but replaced no layer: the network that ran is the dense one, and the row says so.
    assert row["method"] == "dense" and row["gdws_layers"] == 0 and row["gdws_constraint"] == "beta=0.5"
    assert row["checkpoint"] == "checkpoints/x/best.ckpt" and row["scale"] == "smoke"
    assert row["git_commit"]  # the commit of the code, although the project root (tmp_path) is no repository


def test_loaded_weights_replace_training(job_config, tmp_path):
    import torch

    from gdws.models import create_model
    from gdws.pipeline.weights import obtain_weights

    trained = create_model("vgg16", width=0.125)
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "w.ckpt")
    cfg = job_config("experiment=smoke", f"weights.path={tmp_path / 'w.ckpt'}")
    fresh = create_model("vgg16", width=0.125)
    weights = obtain_weights(cfg, fresh, datamodule=None, logger=None)  # no data needed: nothing trains
    assert weights.recipe == "loaded" and weights.train_s == 0 and weights.path == tmp_path / "w.ckpt"
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert not (tmp_path / "checkpoints").exists()
