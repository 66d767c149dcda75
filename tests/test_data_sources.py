"""Digits, Synthetic and CIFAR-10 (from fake torchvision pickles) as Splits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyramid_lab.data import CIFAR10, Digits, Splits, Synthetic
from pyramid_lab.errors import ConfigError


def check_shapes(splits: Splits, num_classes: int) -> None:
    for part in (splits.train, splits.val, splits.test):
        assert part.images.dtype == torch.uint8 and part.images.shape[1:] == (3, 32, 32)
        assert part.labels.dtype == torch.int64 and part.labels.shape == (len(part.images),)
        assert 0 <= int(part.labels.min()) and int(part.labels.max()) < num_classes
    assert len(splits.classes) == num_classes and len(splits.mean) == len(splits.std) == 3


# --- Digits ----------------------------------------------------------------------------------


def test_digits_splits_are_disjoint_stratified_and_seeded():
    from sklearn.datasets import load_digits

    target = load_digits().target
    idx = Digits(seed=0).split_indices()
    sizes = {k: len(v) for k, v in idx.items()}
    assert sum(sizes.values()) == 1797 and sizes["val"] == sizes["test"] == 270
    assert set(np.concatenate(list(idx.values())).tolist()) == set(range(1797))  # disjoint, all
    for name, part in idx.items():
        counts = np.bincount(target[part], minlength=10)
        expected = np.bincount(target, minlength=10) * len(part) / 1797
        assert np.all(np.abs(counts - expected) <= 2), name
    again = Digits(seed=0).split_indices()
    assert all(np.array_equal(idx[k], again[k]) for k in idx)
    assert not np.array_equal(idx["test"], Digits(seed=1).split_indices()["test"])


def test_digits_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    source = Digits(seed=0)
    splits = source.load()
    check_shapes(splits, 10)
    assert splits.classes == [str(d) for d in range(10)]
    test_idx = source.split_indices()["test"]
    assert torch.equal(splits.test.labels, torch.from_numpy(digits.target[test_idx]))
    img = splits.test.images[0]
    assert torch.equal(img[0], img[1]) and torch.equal(img[0], img[2])  # grey, 3 channels
    # The 8x8 original scaled to 0..255, bilinear up-sampled, rounded.
    original = torch.tensor(digits.images[test_idx[0]], dtype=torch.float32) * 255 / 16
    want = F.interpolate(original[None, None], size=32, mode="bilinear", align_corners=False)
    assert (img[0].float() - want[0, 0]).abs().max() <= 0.5 + 1e-4
    assert int(splits.train.images.max()) == 255 and int(splits.train.images.min()) == 0
    x = splits.train.images.double() / 255
    assert splits.mean == pytest.approx(tuple(x.mean(dim=(0, 2, 3)).tolist()))
    assert splits.std == pytest.approx(tuple(x.std(dim=(0, 2, 3), unbiased=False).tolist()))


@pytest.mark.parametrize(
    "kwargs, setting",
    [
        ({"val_fraction": 0.0}, "data.dataset.val_fraction"),
        ({"test_fraction": 1.2}, "data.dataset.test_fraction"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "data.dataset.val_fraction"),
    ],
)
def test_digits_bad_fractions(kwargs, setting):
    with pytest.raises(ConfigError, match=setting):
        Digits(**kwargs)


# --- Synthetic -------------------------------------------------------------------------------


def test_synthetic():
    splits = Synthetic(num_train=20, num_val=5, num_test=7, num_classes=3, seed=1).load()
    check_shapes(splits, 3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 5, 7)
    again = Synthetic(num_train=20, num_val=5, num_test=7, num_classes=3, seed=1).load()
    assert torch.equal(splits.train.images, again.train.images)
    big = Synthetic(num_train=2000, num_val=1, num_test=1).load().train.images.double() / 255
    assert big.mean().item() == pytest.approx(splits.mean[0], abs=1e-3)
    assert big.std().item() == pytest.approx(splits.std[0], abs=1e-3)
    with pytest.raises(ConfigError, match="data.dataset.num_val=0"):
        Synthetic(num_val=0)


# --- CIFAR-10 --------------------------------------------------------------------------------

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_fake_cifar(root, per_batch=20, n_test=30):
    """The cifar-10-batches-py pickles torchvision reads, with random images; returns them."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        labels = (np.arange(n) % 10).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        written[name] = (data.reshape(n, 3, 32, 32), labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES}, f)
    return written


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    import torchvision.datasets.cifar

    written = write_fake_cifar(tmp_path)
    # The fake files cannot match the real md5s: skip torchvision's checksum test.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    return tmp_path, written


def test_cifar10_from_torchvision_pickles(fake_cifar):
    root, written = fake_cifar
    splits = CIFAR10(root, val_size=20, seed=0).load()
    check_shapes(splits, 10)
    assert splits.classes == CIFAR_CLASSES
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 30)
    assert splits.mean == (0.4914, 0.4822, 0.4465)
    test_images, test_labels = written["test_batch"]
    assert torch.equal(splits.test.images, torch.from_numpy(test_images))  # NCHW, pixel-exact
    assert splits.test.labels.tolist() == test_labels
    # Validation is stratified: 2 of each class; train and val together are the train batches.
    assert torch.bincount(splits.val.labels).tolist() == [2] * 10
    all_train = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    ours = torch.cat([splits.train.images, splits.val.images]).flatten(1).numpy()
    assert sorted(map(bytes, ours)) == sorted(map(bytes, all_train.reshape(100, -1)))
    again = CIFAR10(root, val_size=20, seed=0).load()
    assert torch.equal(again.val.images, splits.val.images)
    assert not torch.equal(CIFAR10(root, val_size=20, seed=1).load().val.images, splits.val.images)


def test_cifar10_errors(fake_cifar):
    root, _ = fake_cifar
    with pytest.raises(ConfigError, match="data.dataset.val_size=100 must be below"):
        CIFAR10(root, val_size=100).load()
    with pytest.raises(ConfigError, match="data.dataset.val_size=0"):
        CIFAR10(root, val_size=0)


def test_cifar10_missing_without_download(tmp_path):
    with pytest.raises(ConfigError, match=r"data.dataset.root=.*data.dataset.download=true") as e:
        CIFAR10(tmp_path / "nothing").load()
    assert "\n" not in str(e.value)
