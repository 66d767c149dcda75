"""CINIC-10 from a tiny ImageFolder of PNGs: labels, pixels, the decode cache, download, errors."""

from __future__ import annotations

import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from pyramid_lab.data import CINIC10, ImageDataModule, decode
from pyramid_lab.errors import ConfigError

CLASSES = list(CINIC10.classes)
SPLITS = {"train": "train", "val": "valid", "test": "test"}
PER_CLASS = 3


def write_png(path, pixels: np.ndarray, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode=mode).save(path)


def make_cinic(root, per_class=PER_CLASS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A CINIC-10 layout of random 32x32 PNGs; returns each split's NCHW pixels and labels."""
    rng = np.random.default_rng(0)
    expected = {}
    for split, folder in SPLITS.items():
        images, labels = [], []
        for label, name in enumerate(CLASSES):
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                write_png(root / folder / name / f"img_{i:03d}.png", pixels)
                images.append(pixels.transpose(2, 0, 1))
                labels.append(label)
        expected[split] = (np.stack(images), np.array(labels))
    return expected


@pytest.fixture
def cinic(tmp_path):
    root = tmp_path / "cinic10"
    return root, make_cinic(root)


def one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_loads_labels_and_pixels(cinic):
    root, expected = cinic
    splits = CINIC10(root, num_workers=0, allow_subset=True).load()
    assert splits.classes == CLASSES
    assert splits.mean == (0.47889522, 0.47227842, 0.43047404)
    assert splits.std == (0.24205776, 0.23828046, 0.25874835)
    for name in SPLITS:
        part = getattr(splits, name)
        images, labels = expected[name]
        assert part.images.dtype == torch.uint8 and part.images.shape == (30, 3, 32, 32)
        assert torch.equal(part.images, torch.from_numpy(images))
        assert torch.equal(part.labels, torch.from_numpy(labels))


def test_grayscale_and_palette_pngs_are_converted_like_image_folder(cinic):
    root, _ = cinic
    grey = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32).astype(np.uint8)
    write_png(root / "test" / "cat" / "img_000.png", grey, mode="L")
    Image.fromarray(grey, mode="L").convert("P").save(root / "test" / "dog" / "img_000.png")
    splits = CINIC10(root, num_workers=0, allow_subset=True).load()
    cat = splits.test.images[3 * CLASSES.index("cat")]
    assert all(torch.equal(cat[c], torch.from_numpy(grey)) for c in range(3))
    dog = splits.test.images[3 * CLASSES.index("dog")]
    assert torch.equal(
        dog,
        torch.from_numpy(
            np.asarray(Image.open(root / "test" / "dog" / "img_000.png").convert("RGB"))
            .transpose(2, 0, 1)
            .copy()
        ),
    )


def test_decode_cache_is_reused_and_rebuilt_when_a_file_changes(cinic, monkeypatch):
    root, expected = cinic
    CINIC10(root, num_workers=0, allow_subset=True).prepare()
    caches = sorted((root / ".pyramid_lab_cache").glob("*.npy"))
    assert [c.name.split("-")[0] for c in caches] == ["test", "train", "val"]

    def no_decoding(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(decode, "read_png", no_decoding)
    splits = CINIC10(root, num_workers=0, allow_subset=True).load()  # every split from the cache
    assert torch.equal(splits.train.images, torch.from_numpy(expected["train"][0]))
    monkeypatch.undo()

    changed = root / "train" / "bird" / "img_001.png"
    new_pixels = np.full((32, 32, 3), 7, dtype=np.uint8)
    write_png(changed, new_pixels)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    splits = CINIC10(root, num_workers=0, allow_subset=True).load()
    index = 3 * CLASSES.index("bird") + 1
    assert torch.all(splits.train.images[index] == 7)
    assert torch.equal(splits.train.images[:index], torch.from_numpy(expected["train"][0][:index]))
    after = sorted((root / ".pyramid_lab_cache").glob("*.npy"))
    assert len(after) == 3 and len(set(after) - set(caches)) == 1  # stale train cache removed
    assert not list((root / ".pyramid_lab_cache").glob(".*"))  # no temp files left


def test_adding_a_file_rebuilds_the_cache(cinic):
    root, _ = cinic
    assert len(CINIC10(root, num_workers=0, allow_subset=True).load().val) == 30
    write_png(root / "valid" / "frog" / "extra.png", np.zeros((32, 32, 3), np.uint8))
    splits = CINIC10(root, num_workers=0, allow_subset=True).load()
    assert len(splits.val) == 31 and int((splits.val.labels == CLASSES.index("frog")).sum()) == 4


def test_cache_dir_can_be_elsewhere(cinic, tmp_path):
    root, _ = cinic
    CINIC10(root, num_workers=0, cache_dir=tmp_path / "cache", allow_subset=True).prepare()
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3
    assert not (root / ".pyramid_lab_cache").exists()


@pytest.mark.parametrize("prefix", ["", "CINIC-10/"])
def test_download_from_a_file_url(tmp_path, prefix):
    source = tmp_path / "source"
    expected = make_cinic(source, per_class=1)
    archive = tmp_path / "CINIC-10.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for folder in SPLITS.values():
            tar.add(source / folder, arcname=prefix + folder)
    root = tmp_path / "data" / "cinic10"
    splits = CINIC10(root, download=True, num_workers=0, url=archive.as_uri(), allow_subset=True).load()
    assert torch.equal(splits.val.images, torch.from_numpy(expected["val"][0]))
    assert (root / "CINIC-10.tar.gz").is_file()
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".") and p.name != ".pyramid_lab_cache"]
    assert leftovers == []
    # Present now: a second call neither downloads nor unpacks.
    (root / "CINIC-10.tar.gz").unlink()
    CINIC10(root, download=True, num_workers=0, url="file:///nonexistent.tar.gz", allow_subset=True).load()


def test_download_errors(tmp_path):
    root = tmp_path / "cinic10"
    with pytest.raises(ConfigError, match="data.dataset.url=file:///nonexistent") as info:
        CINIC10(root, download=True, url="file:///nonexistent/CINIC-10.tar.gz", allow_subset=True).prepare()
    one_line(info)
    assert not list(root.glob(".*part"))

    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../escaped.txt")
    with pytest.raises(ConfigError, match="evil.tar.gz"):
        CINIC10(tmp_path / "other", download=True, url=evil.as_uri(), allow_subset=True).prepare()
    assert not (tmp_path / "escaped.txt").exists()

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        tar.add(payload, arcname="readme.txt")
    with pytest.raises(ConfigError, match=r"empty.tar.gz does not contain train/"):
        CINIC10(tmp_path / "third", download=True, url=empty.as_uri(), allow_subset=True).prepare()


def test_missing_root(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"data.dataset.root=.* does not exist; set "
        r"data.dataset.download=true .*datashare.ed.ac.uk",
    ) as e:
        CINIC10(tmp_path / "nowhere", allow_subset=True).load()
    assert "train/, valid/, test/" in one_line(e)


def test_missing_split(cinic):
    root, _ = cinic
    (root / "valid").rename(root / "validation")
    with pytest.raises(ConfigError, match=r"has no valid/ split folder") as e:
        CINIC10(root, num_workers=0, allow_subset=True).load()
    one_line(e)


def test_class_folders_differing_between_splits(cinic):
    root, _ = cinic
    (root / "test" / "cat").rename(root / "test" / "kitten")
    with pytest.raises(
        ConfigError,
        match=r"test has the wrong class folders \(missing cat; "
        r"unexpected kitten\)",
    ) as e:
        CINIC10(root, num_workers=0, allow_subset=True).load()
    one_line(e)


def test_extra_class_folder(cinic):
    root, _ = cinic
    write_png(root / "train" / "zebra" / "a.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"unexpected zebra"):
        CINIC10(root, num_workers=0, allow_subset=True).load()


def test_empty_class_folder(cinic):
    root, _ = cinic
    for f in (root / "train" / "ship").iterdir():
        f.unlink()
    with pytest.raises(ConfigError, match=r"train/ship holds no .png files"):
        CINIC10(root, num_workers=0, allow_subset=True).load()


@pytest.mark.parametrize("num_workers", [0, 2])  # 2: the error crosses the process pool
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_png_is_named(cinic, damage, num_workers):
    root, _ = cinic
    bad = root / "valid" / "horse" / "img_002.png"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a png" * 20)
    with pytest.raises(ConfigError, match=r"valid/horse/img_002.png is not a readable PNG") as e:
        CINIC10(root, num_workers=num_workers, allow_subset=True).load()
    one_line(e)
    assert not list((root / ".pyramid_lab_cache").glob(".*tmp"))


@pytest.mark.parametrize(
    "shape, mode, described",
    [
        ((31, 32, 3), "RGB", "32x31 RGB"),
        ((32, 32, 4), "RGBA", "32x32 RGBA"),
    ],
)
def test_wrong_image_size_or_mode_is_named(cinic, shape, mode, described):
    root, _ = cinic
    write_png(root / "train" / "deer" / "img_001.png", np.zeros(shape, np.uint8), mode=mode)
    with pytest.raises(
        ConfigError,
        match=rf"train/deer/img_001.png is a {described} image; "
        r"expected 32x32 RGB",
    ) as e:
        CINIC10(root, num_workers=0, allow_subset=True).load()
    one_line(e)


def test_bad_num_workers(tmp_path):
    with pytest.raises(ConfigError, match="data.dataset.num_workers=-1"):
        CINIC10(tmp_path, num_workers=-1, allow_subset=True)


def test_through_the_data_module(cinic):
    root, expected = cinic
    dm = ImageDataModule(
        CINIC10(root, num_workers=0, allow_subset=True), num_classes=10, batch_size=4, pin_memory=False
    )
    dm.prepare_data()
    dm.setup("fit")
    labels = torch.cat([y for _, y in dm.test_dataloader()])
    assert torch.equal(labels, torch.from_numpy(expected["test"][1]))
    assert sum(len(y) for _, y in dm.train_dataloader()) == 28


def test_parallel_decode_matches_serial(cinic, tmp_path):
    root, expected = cinic
    splits = CINIC10(root, num_workers=2, cache_dir=tmp_path / "parallel", allow_subset=True).load()
    for name in SPLITS:
        assert torch.equal(getattr(splits, name).images, torch.from_numpy(expected[name][0]))


def test_a_short_split_is_refused_with_its_shortfall_and_the_way_out(tmp_path, monkeypatch):
    # CINIC-10 has 9,000 images per class and split; a 3-per-class copy stands in for it, with
    # one valid/ class folder short by one image (a truncated extraction).
    from pyramid_lab.data import cinic10

    monkeypatch.setattr(cinic10, "IMAGES_PER_CLASS", PER_CLASS)
    root = tmp_path / "cinic10"
    make_cinic(root)
    CINIC10(root, num_workers=0).prepare()  # the full layout passes the check
    (root / "valid" / "cat" / "img_000.png").unlink()
    with pytest.raises(ConfigError) as info:
        CINIC10(root, num_workers=0).prepare()
    line = one_line(info)
    assert f"{root / 'valid'} holds 29 images, 1 short of CINIC-10's 30" in line
    assert "cat 2" in line and "dog" not in line
    assert "data.dataset.download=true" in line and "data.dataset.allow_subset=true" in line
    assert len(CINIC10(root, num_workers=0, allow_subset=True).load().val) == 29
