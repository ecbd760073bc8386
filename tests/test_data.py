"""Data: the real rebuilt CIFAR-10, splits and subsets, augmentation, both loader paths, SVHN, errors, configs."""
from __future__ import annotations

import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from gdws.data import CIFAR10DataModule, SVHNDataModule, SyntheticDataModule, random_crop_flip, read_cifar10
from gdws.data import cifar10 as cifar10_module
from gdws.data.loaders import ResidentLoader, ShardedShuffle

REPO = Path(__file__).resolve().parents[1]
PREFIX_NPZ = REPO.parent / "shared" / "data" / "cifar10" / "cifar10-exact-prefix.npz"


@pytest.fixture(scope="module")
def cifar(cifar10_root):
    """Both CIFAR-10 splits read once for this module."""
    return read_cifar10(str(cifar10_root), True), read_cifar10(str(cifar10_root), False)


@pytest.fixture
def read_once(cifar, monkeypatch):
    """CIFAR10DataModule reads the module's splits (read_cifar10 itself: test_cifar10_real_files_match_reference)
    instead of the files again (about a second a read): what these tests check is how it cuts them."""
    monkeypatch.setattr(cifar10_module, "read_cifar10", lambda root, train: cifar[0] if train else cifar[1])


def test_cifar10_real_files_match_reference(cifar):
    train, test = cifar
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert int(train.labels.min()) == 0 and int(train.labels.max()) == 9
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert int(train.exact_mask.sum()) == 5 * 1017 and int(test.exact_mask.sum()) == 1017
    if not PREFIX_NPZ.is_file():
        pytest.skip(f"reference {PREFIX_NPZ} not present")
    ref = np.load(PREFIX_NPZ)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    labels = np.concatenate([ref[f"{n}/labels"] for n in names])
    assert np.array_equal(train.labels.numpy(), labels)
    assert np.array_equal(test.labels.numpy(), ref["test_batch/labels"])
    # The exact prefix of every batch is pixel-identical and is what exact_mask flags.
    for b, n in enumerate(names):
        exact = ref[f"{n}/exact_data"].reshape(-1, 3, 32, 32)
        assert np.array_equal(train.images[b * 10000:b * 10000 + 1017].numpy(), exact)
        assert train.exact_mask[b * 10000:b * 10000 + 1017].all() and not train.exact_mask[b * 10000 + 1017:(b + 1) * 10000].any()
    assert np.array_equal(test.images[:1017].numpy(), ref["test_batch/exact_data"].reshape(-1, 3, 32, 32))


def test_cifar10_splits_and_subsets(cifar10_root, cifar, read_once):
    full, test = cifar
    dm = CIFAR10DataModule(root=str(cifar10_root), train_subset=100, val_size=50, eval_subset=30)
    dm.setup("fit")
    s = dm.splits
    assert torch.equal(s["train"].images, full.images[:100])
    assert torch.equal(s["val"].images, full.images[-50:]) and torch.equal(s["val"].labels, full.labels[-50:])
    assert torch.equal(s["test"].images, test.images[:30])
    # Validation images come from the end, never from the (subset of the) training images.
    dm2 = CIFAR10DataModule(root=str(cifar10_root), val_size=1000)
    dm2.setup("fit")
    assert dm2.splits["train"].labels.shape[0] == 49000
    train_bytes = {bytes(x) for x in dm2.splits["train"].images[-2000:].numpy().reshape(2000, -1)}
    assert not any(bytes(x) in train_bytes for x in dm2.splits["val"].images.numpy().reshape(1000, -1))


def test_cifar10_exact_only(cifar10_root, cifar, read_once):
    _, test = cifar
    dm = CIFAR10DataModule(root=str(cifar10_root), exact_only=True, eval_subset=10)
    dm.setup("test")
    assert torch.equal(dm.splits["test"].images, test.images[test.exact_mask][:10])
    dm = CIFAR10DataModule(root=str(cifar10_root), exact_only=True, eval_batch_size=500)
    dm.setup("test")
    assert sum(y.shape[0] for _, y in dm.test_dataloader()) == 1017


def test_cifar10_missing_folder_names_ways_out(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        CIFAR10DataModule(root=str(tmp_path / "nowhere")).setup("fit")
    msg = str(err.value)
    for part in (str(tmp_path / "nowhere"), "data.download=true", "GDWS_DATA", "build.py"):
        assert part in msg


def test_cifar10_corrupt_files_give_one_clear_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / n).write_bytes(b"not a pickle at all")
    with pytest.raises(RuntimeError) as err:
        CIFAR10DataModule(root=str(tmp_path)).setup("fit")
    assert "corrupt" in str(err.value) and "build.py" in str(err.value)
    assert isinstance(err.value.__cause__, pickle.UnpicklingError)  # the cause is kept for debugging
    # A readable pickle of the wrong content is refused the same way.
    for n in folder.iterdir():
        n.write_bytes(pickle.dumps({"data": np.zeros((3, 5), np.uint8), "labels": [0, 1, 2]}))
    with pytest.raises(RuntimeError, match="not a CIFAR-10 batch"):
        CIFAR10DataModule(root=str(tmp_path)).setup("fit")


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Brute-force reference: crop at offset (dy, dx) of the zero-padded (pad 4) image."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 8, w + 8, dtype=img.dtype)
    padded[:, 4:4 + h, 4:4 + w] = img
    return padded[:, dy:dy + h, dx:dx + w]


def test_random_crop_flip_is_shifted_zero_padded_copy_or_its_flip():
    x = torch.randint(1, 256, (64, 3, 32, 32), dtype=torch.uint8)  # no zeros: padding is recognisable
    out = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    found = []
    for img, aug in zip(x, out):
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                if torch.equal(aug, _shift(img, dy, dx).flip(2) if f else _shift(img, dy, dx))]
        assert len(hits) == 1
        found.append(hits[0])
    assert {f for *_, f in found} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in found}) > 20  # offsets really vary
    same = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, same)
    assert torch.equal(random_crop_flip(x.float(), padding=0, flip=False), x.float())


def test_resident_and_dataloader_paths_agree():
    kw = dict(num_train=200, num_test=90, val_size=40, batch_size=32, eval_batch_size=25, seed=3)
    res, plain = SyntheticDataModule(resident=True, **kw), SyntheticDataModule(resident=False, **kw)
    res.setup("fit"), plain.setup("fit")
    assert isinstance(res.test_dataloader(), ResidentLoader)
    assert isinstance(plain.test_dataloader(), torch.utils.data.DataLoader)
    for name in ("val_dataloader", "test_dataloader"):
        a, b = list(getattr(res, name)()), list(getattr(plain, name)())
        assert len(a) == len(b) > 1
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.dtype == xb.dtype == torch.float32 and ya.dtype == yb.dtype == torch.int64
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    for dm in (res, plain):  # training batches: augmented, float in [0, 1], one epoch sees each image once
        batches = list(dm.train_dataloader())
        assert len(batches) == 160 // 32
        x = torch.cat([b[0] for b in batches])
        assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        labels = torch.cat([b[1] for b in batches])
        assert torch.equal(torch.bincount(labels, minlength=10), torch.bincount(dm.splits["train"].labels, minlength=10))


def test_resident_order_is_seeded_per_epoch():
    dm = SyntheticDataModule(num_train=128, num_test=32, val_size=0, batch_size=16)
    loader = dm.train_dataloader()
    first = [y for _, y in loader]
    again = [y for _, y in loader]
    loader.sampler.set_epoch(1)
    other = [y for _, y in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    assert dm.val_dataloader() == []


@pytest.mark.parametrize("n", [10, 11])
def test_sharded_shuffle_splits_ranks(n):
    shards = [ShardedShuffle(n, shuffle=True, seed=1, rank=r, world_size=2).indices() for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == (n + 1) // 2  # equal step counts on every rank
    union = torch.cat(shards)
    assert set(union.tolist()) == set(range(n))
    if n % 2 == 0:
        assert len(set(shards[0].tolist()) & set(shards[1].tolist())) == 0


def test_train_images():
    dm = SyntheticDataModule(num_train=100, num_test=10, val_size=20)
    x, y = dm.train_images(16, seed=5, augment=False)
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    pool = {bytes(im) for im in (dm.splits["train"].images.float() / 255).numpy().reshape(80, -1)}
    assert all(bytes(im) in pool for im in x.numpy().reshape(16, -1))
    xa, ya = dm.train_images(16, seed=5)
    assert torch.equal(ya, y) and not torch.equal(xa, x)
    assert torch.equal(dm.train_images(16, seed=5)[0], xa)
    with pytest.raises(ValueError):
        dm.train_images(81)


def _write_svhn(root: Path, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
    y[0, 0] = 10
    name = "train_32x32.mat" if seed == 0 else "test_32x32.mat"
    savemat(root / name, {"X": x, "y": y})
    return x, y


def test_svhn_reader(tmp_path):
    x, y = _write_svhn(tmp_path, 12, 0)
    _write_svhn(tmp_path, 6, 1)
    dm = SVHNDataModule(root=str(tmp_path), val_size=2, batch_size=4)
    dm.setup("fit")
    tr = dm.splits["train"]
    assert tr.images.shape == (10, 3, 32, 32) and tr.images.dtype == torch.uint8
    assert torch.equal(tr.images[3], torch.from_numpy(x[:, :, :, 3]).permute(2, 0, 1))
    labels = torch.cat([tr.labels, dm.splits["val"].labels])
    expected = torch.from_numpy(y[:, 0].astype(np.int64)) % 10
    assert torch.equal(labels, expected) and labels[0] == 0
    with pytest.raises(RuntimeError, match="exact_mask"):
        SVHNDataModule(root=str(tmp_path), val_size=2, exact_only=True).setup("test")
    (tmp_path / "test_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="corrupt"):
        SVHNDataModule(root=str(tmp_path), val_size=2).setup("test")
    with pytest.raises(FileNotFoundError, match="data.download=true"):
        SVHNDataModule(root=str(tmp_path / "none")).setup("fit")


@pytest.mark.parametrize("name,cls", [("cifar10", CIFAR10DataModule), ("svhn", SVHNDataModule),
                                      ("synthetic", SyntheticDataModule)])
def test_data_configs_instantiate(name, cls, tmp_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"data={name}", "seed=7", f"paths.data_dir={tmp_path}"])
    dm = instantiate(cfg.data)  # the run's data folder and seed reach the DataModule
    assert type(dm) is cls and dm.root == str(tmp_path) and dm.seed == 7 and dm.num_classes == 10
    assert dm.resident and not dm.download and dm.exact_only is False
    if cls is SyntheticDataModule:
        x, y = next(iter(dm.train_dataloader()))
        assert x.shape == (cfg.data.batch_size, 3, 32, 32)


def _cifar_archive(path: Path, n: int = 4) -> dict[str, np.ndarray]:
    """A CIFAR-10-format archive (``cifar-10-batches-py``, ``n`` random images per batch file) at ``path``."""
    rng = np.random.default_rng(0)
    batches = {name: rng.integers(0, 256, (n, 3072), dtype=np.uint8) for name in
               [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in batches.items():
            blob = pickle.dumps({b"data": data, b"labels": [i % 10 for i in range(n)]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return batches


@pytest.fixture
def archive_server(tmp_path):
    """An HTTP server on localhost serving ``tmp_path/served``; yields (base URL, list of requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def do_GET(self):  # noqa: N802 (http.server's name)
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served, requests
    server.shutdown()
    thread.join()


def test_cifar10_download_verifies_extracts_and_is_not_repeated(tmp_path, archive_server, monkeypatch):
    import gdws.data.cifar10 as cifar10_module
    from torchvision.datasets.utils import calculate_md5

    base, served, requests = archive_server
    batches = _cifar_archive(served / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar10_module, "URL", f"{base}/cifar-10-python.tar.gz")
    # This archive is not the official one: its checksum does not match and nothing is extracted.
    with pytest.raises(RuntimeError):
        CIFAR10DataModule(root=str(tmp_path / "refused"), download=True).prepare_data()
    assert not (tmp_path / "refused" / "cifar-10-batches-py").exists()
    # With the checksum of the served archive, the download gives a folder the DataModule reads.
    monkeypatch.setattr(cifar10_module, "MD5", calculate_md5(str(served / "cifar-10-python.tar.gz")))
    root = tmp_path / "data"
    dm = CIFAR10DataModule(root=str(root), download=True, val_size=2)
    dm.prepare_data()
    dm.setup("fit")
    assert torch.equal(dm.splits["test"].images.reshape(4, -1), torch.from_numpy(batches["test_batch"]))
    assert len(dm.splits["train"].labels) == 5 * 4 - 2
    fetched = len(requests)
    CIFAR10DataModule(root=str(root), download=True).prepare_data()
    assert len(requests) == fetched  # present files are not fetched again
