"""load_checkpoint: round trips through every wrapper/prefix format and one clear error for bad files."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from gdws.models import create_model, list_models, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = 0.25


def make(name: str, seed: int, **kw) -> nn.Module:
    torch.manual_seed(seed)
    model = create_model(name, width=SMALL, **kw)
    # Non-default BN statistics so that a round trip of the buffers is visible too.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def assert_same(a: nn.Module, b: nn.Module, forward: bool = True) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    if forward:
        x = torch.rand(2, 3, 32, 32)
        torch.testing.assert_close(a(x), b(x))


WRAPS = {
    "plain": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 7},
    "module_prefix": lambda sd: {"module." + k: v for k, v in sd.items()},
}


@pytest.mark.parametrize("wrap", list(WRAPS))
@pytest.mark.parametrize("name", list_models())
def test_round_trip(tmp_path, name, wrap):
    src, dst = make(name, 0), make(name, 1)
    path = tmp_path / "ckpt.pt"
    torch.save(WRAPS[wrap](src.state_dict()), path)
    assert load_checkpoint(dst, path) is dst
    assert_same(src, dst, forward=wrap == "plain")  # equal state_dicts already imply equal outputs


@pytest.mark.parametrize("payload", [
    lambda sd: {"model": sd},
    lambda sd: {"net": {"basic_model." + k: v for k, v in sd.items()}},
    lambda sd: {"model_state_dict": {"module.basic_model." + k: v for k, v in sd.items()}},
    # Lightning-like: the model under 'model.' next to other module state and training metadata.
    lambda sd: {"state_dict": {**{"model." + k: v for k, v in sd.items()}, "criterion.weight": torch.ones(3)},
                "epoch": 3, "global_step": 10, "optimizer_states": [{"state": {}, "param_groups": []}]},
    # Checkpoints from old PyTorch versions have no BN num_batches_tracked counters.
    lambda sd: {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
])
def test_common_wrappers_and_prefixes(tmp_path, payload):
    src, dst = make("resnet20", 0), make("resnet20", 1)
    torch.save(payload(src.state_dict()), tmp_path / "c.pt")
    load_checkpoint(dst, tmp_path / "c.pt")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(src(x), dst(x))


class _Wrapper(pl.LightningModule):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch, _):
        return nn.functional.cross_entropy(self.model(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_real_lightning_checkpoint(tmp_path):
    src = make("mobilenet_v1", 0).train()
    data = torch.utils.data.TensorDataset(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3]))
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(_Wrapper(src), torch.utils.data.DataLoader(data, batch_size=4))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    dst = load_checkpoint(make("mobilenet_v1", 1), tmp_path / "last.ckpt")
    assert_same(src.eval(), dst)


def test_third_party_checkpoint_without_normalisation_loads(tmp_path):
    # A checkpoint of a model trained without in-model normalisation has no mean/std keys at all.
    plain = make("wrn28_4", 0, normalize=None)
    torch.save(plain.state_dict(), tmp_path / "w.pt")
    normed = load_checkpoint(make("wrn28_4", 1, normalize="cifar10"), tmp_path / "w.pt")
    assert torch.equal(normed.normalize.mean.flatten(), torch.tensor([0.4914, 0.4822, 0.4465]))
    assert all(torch.equal(v, normed.state_dict()[k]) for k, v in plain.state_dict().items())


class _RunsCode:
    """Unpickling an instance calls os.system-like code: here it only leaves a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickled_extras_need_trust(tmp_path):
    src = make("resnet20", 0)
    path = tmp_path / "old.pth"
    torch.save({"args": argparse.Namespace(arch="resnet20"), "state_dict": src.state_dict()}, path)
    with pytest.raises(RuntimeError, match="trusted=True"):
        load_checkpoint(make("resnet20", 1), path)  # the default is the restricted unpickler
    with pytest.warns(UserWarning, match="full unpickling"):
        dst = load_checkpoint(make("resnet20", 1), path, trusted=True)
    assert_same(src, dst)


def test_a_file_that_would_run_code_is_refused_by_default(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"payload": _RunsCode(str(marker)), "state_dict": make("resnet20", 0).state_dict()}, path)
    with pytest.raises(RuntimeError, match="execute code"):
        load_checkpoint(make("resnet20", 1), path)
    assert not marker.exists()


# Random bytes can look like a pickle header; torch then warns about the protocol before failing.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("content", [b"\x80\x04garbage" * 50, b"", b"epoch: 3\nlr: 0.1\n"])
def test_corrupt_file_gives_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(RuntimeError, match="not a (readable )?PyTorch checkpoint") as info:
        load_checkpoint(make("resnet20", 0), path)
    assert str(path) in str(info.value)
    # One clear message, and the loader's own error kept as the cause for debugging.
    assert isinstance(info.value.__cause__, Exception) and str(info.value).count("\n") == 0


def test_truncated_checkpoint_gives_clear_error(tmp_path):
    path = tmp_path / "cut.pt"
    torch.save(make("resnet20", 0).state_dict(), path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(RuntimeError, match="not a PyTorch checkpoint"):
        load_checkpoint(make("resnet20", 0), path)


def test_missing_file_and_non_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(make("resnet20", 0), tmp_path / "nope.pt")
    torch.save({"epoch": 3, "best_acc": 0.5}, tmp_path / "meta.pt")
    with pytest.raises(RuntimeError, match=r"without weights.*'epoch', 'best_acc'"):
        load_checkpoint(make("resnet20", 0), tmp_path / "meta.pt")


def test_wrong_model_lists_keys_in_one_error(tmp_path):
    torch.save(make("resnet20", 0).state_dict(), tmp_path / "r20.pt")
    with pytest.raises(RuntimeError) as info:
        load_checkpoint(make("vgg16", 0), tmp_path / "r20.pt")
    msg = str(info.value)
    n_missing = sum(not k.endswith("num_batches_tracked") for k in make("vgg16", 0).state_dict())
    assert f"{n_missing} missing keys: features.0.weight" in msg and "unexpected keys: conv1.weight" in msg
    assert "more)" in msg  # long lists are cut, with the count


def test_shape_mismatch_is_reported_even_when_not_strict(tmp_path):
    torch.save(make("resnet20", 0).state_dict(), tmp_path / "r20.pt")
    wider = create_model("resnet20", width=SMALL, base_width=40)
    for strict in (True, False):
        with pytest.raises(RuntimeError, match="shape mismatches.*conv1.weight"):
            load_checkpoint(wider, tmp_path / "r20.pt", strict=strict)


def test_non_strict_loads_the_matching_part(tmp_path):
    src = make("resnet20", 0)
    sd = src.state_dict()
    sd.pop("linear.weight")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "p.pt")
    with pytest.raises(RuntimeError, match="1 missing keys: linear.weight; 1 unexpected keys: extra.weight"):
        load_checkpoint(make("resnet20", 1), tmp_path / "p.pt")
    dst = load_checkpoint(make("resnet20", 1), tmp_path / "p.pt", strict=False)
    assert torch.equal(dst.conv1.weight, src.conv1.weight)


def test_gdws_checkpoint_into_dense_model_points_to_load_converted(tmp_path):
    from gdws.core import convert

    converted, _ = convert(make("resnet20", 0), beta=0.0, force=True)
    torch.save(converted.state_dict(), tmp_path / "gdws.pt")
    with pytest.raises(RuntimeError, match="missing keys: layer1.0.conv1.weight.*gdws.load_converted"):
        load_checkpoint(make("resnet20", 1), tmp_path / "gdws.pt")
