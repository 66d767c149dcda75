"""CINIC-10 (Darlow et al. 2018, arXiv:1810.03505): 270,000 32x32 PNGs, 90,000 per split."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import numpy as np
import torch

from pyramid_lab.data.decode import ImageFile, decode_cached
from pyramid_lab.data.download import download_url, extract_tar
from pyramid_lab.data.splits import ArraySplit, Splits
from pyramid_lab.errors import ConfigError

CINIC10_URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz"
# Our split name -> CINIC-10's folder name.
SPLIT_DIRS = {"train": "train", "val": "valid", "test": "test"}
LAYOUT = "train/, valid/, test/, each with the 10 class folders of 32x32 PNGs"
# Every split of the official archive: 10 classes x 9,000 images (Darlow et al. 2018).
IMAGES_PER_CLASS = 9000


class CINIC10:
    """CINIC-10 from its ImageFolder layout ``root/{train,valid,test}/<class>/*.png``.

    Each split is decoded once, in parallel, into ``<cache_dir>/<split>-<fingerprint>.npy``
    (uint8 ``[N, 3, 32, 32]``, about 276 MB per split) and then memory-mapped copy-on-write, so
    the ranks of one machine share the page cache and no epoch decodes a PNG.

    Args:
        root: the data folder (``train/``, ``valid/``, ``test/`` inside).
        download: fetch ``url`` into ``root`` and unpack it when a split folder is missing. The
            archive is kept beside the data, as torchvision does.
        num_workers: decoding processes; ``None`` = all cores (at most 16), 0 = none.
        url: the archive's address (the official Edinburgh DataShare one by default).
        cache_dir: where the decoded arrays go; ``None`` = ``root/.pyramid_lab_cache``.
        allow_subset: accept splits with fewer (or more) than CINIC-10's 9,000 images per class.
            Off by default: a short split is almost always a truncated extraction, and would
            silently make every number of the study's tables incomparable.
    """

    classes: ClassVar[tuple[str, ...]] = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )
    # Per-channel statistics of the train split, from the CINIC-10 repository's README.
    mean = (0.47889522, 0.47227842, 0.43047404)
    std = (0.24205776, 0.23828046, 0.25874835)

    def __init__(
        self,
        root: str | os.PathLike,
        download: bool = False,
        num_workers: int | None = None,
        url: str = CINIC10_URL,
        cache_dir: str | os.PathLike | None = None,
        allow_subset: bool = False,
    ) -> None:
        if num_workers is not None and num_workers < 0:
            raise ConfigError(f"data.dataset.num_workers={num_workers} must be >= 0 (or null for all cores)")
        self.root = Path(root).expanduser()
        self.download = download
        self.num_workers = num_workers
        self.url = url
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else self.root / ".pyramid_lab_cache"
        self.allow_subset = allow_subset

    def prepare(self) -> None:
        """Download if asked and needed, check the layout, and decode every split into the cache."""
        self._cached()

    def load(self) -> Splits:
        arrays = {}
        for split, (cache, labels) in self._cached().items():
            # Copy-on-write map: a writable tensor without a private copy of the file.
            images = torch.from_numpy(np.load(cache, mmap_mode="c"))
            arrays[split] = ArraySplit(images, labels)
        return Splits(arrays["train"], arrays["val"], arrays["test"], list(self.classes), self.mean, self.std)

    def _cached(self) -> dict[str, tuple[Path, torch.Tensor]]:
        """``{split: (cache file, labels)}``, decoding what is not cached yet."""
        self._ensure_layout()
        # Every split's folders are checked before any is decoded: a test/ whose class folders
        # differ from train/'s must not wait for 180,000 train and valid PNGs to decode first.
        scans = {split: self._scan(self.root / d) for split, d in SPLIT_DIRS.items()}
        if not self.allow_subset:
            for split, (_, labels) in scans.items():
                self._check_size(self.root / SPLIT_DIRS[split], labels)
        return {
            split: (
                decode_cached(files, self.root, self.cache_dir, split, self.num_workers),
                torch.tensor(labels, dtype=torch.int64),
            )
            for split, (files, labels) in scans.items()
        }

    def _ensure_layout(self) -> None:
        missing = [d for d in SPLIT_DIRS.values() if not (self.root / d).is_dir()]
        if missing and self.download:
            self._download()
            missing = [d for d in SPLIT_DIRS.values() if not (self.root / d).is_dir()]
        if not self.root.is_dir():
            raise ConfigError(
                f"data.dataset.root={self.root} does not exist; set data.dataset.download=true to "
                f"fetch CINIC-10 from {self.url}, or unpack it there as {LAYOUT}"
            )
        if missing:
            raise ConfigError(
                f"data.dataset.root={self.root} has no {missing[0]}/ split folder; CINIC-10 needs "
                f"{LAYOUT} (data.dataset.download=true fetches it)"
            )

    def _scan(self, split_dir: Path) -> tuple[list[ImageFile], list[int]]:
        found = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
        missing = [c for c in self.classes if c not in found]
        extra = [c for c in found if c not in self.classes]
        if missing or extra:
            what = "; ".join(
                part
                for part in (
                    f"missing {', '.join(missing)}" if missing else "",
                    f"unexpected {', '.join(extra)}" if extra else "",
                )
                if part
            )
            raise ConfigError(
                f"{split_dir} has the wrong class folders ({what}); each split "
                f"folder must hold exactly: {', '.join(self.classes)}"
            )
        files: list[ImageFile] = []
        labels: list[int] = []
        for label, name in enumerate(self.classes):
            entries = sorted(
                (
                    e
                    for e in os.scandir(split_dir / name)
                    if e.name.lower().endswith(".png") and not e.name.startswith(".")
                ),
                key=lambda e: e.name,
            )
            if not entries:
                raise ConfigError(
                    f"{split_dir / name} holds no .png files; CINIC-10 class folders hold 32x32 PNGs"
                )
            for e in entries:
                st = e.stat()
                files.append(ImageFile(e.path, st.st_size, st.st_mtime_ns))
            labels += [label] * len(entries)
        return files, labels

    def _check_size(self, split_dir: Path, labels: list[int]) -> None:
        counts = np.bincount(labels, minlength=len(self.classes))
        if (counts == IMAGES_PER_CLASS).all():
            return
        expected = IMAGES_PER_CLASS * len(self.classes)
        total = int(counts.sum())
        off = ", ".join(
            f"{name} {int(n):,}"
            for name, n in zip(self.classes, counts, strict=True)
            if n != IMAGES_PER_CLASS
        )
        gap = f"{expected - total:,} short of" if total < expected else f"{total - expected:,} over"
        raise ConfigError(
            f"{split_dir} holds {total:,} images, {gap} CINIC-10's {expected:,} "
            f"({IMAGES_PER_CLASS:,} per class; off: {off}); re-extract the archive (delete "
            f"{split_dir.name}/ and rerun with data.dataset.download=true, or `tar xzf "
            "CINIC-10.tar.gz` there again), or set data.dataset.allow_subset=true to use what is there"
        )

    def _download(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        archive = self.root / (Path(urlparse(self.url).path).name or "CINIC-10.tar.gz")
        if not archive.exists():
            download_url(self.url, archive)
        # Unpack beside the data, then move whole split folders into place: an interrupted
        # extraction leaves only a hidden temp folder, never a half-filled split.
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=self.root))
        try:
            extract_tar(archive, tmp)
            source = _find_layout(tmp)
            if source is None:
                raise ConfigError(f"{archive} does not contain {LAYOUT}; check data.dataset.url")
            for d in SPLIT_DIRS.values():
                if not (self.root / d).exists():
                    os.replace(source / d, self.root / d)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _find_layout(folder: Path) -> Path | None:
    """``folder`` or its only sub-folder, whichever holds the three split folders."""
    candidates = [folder] + [p for p in folder.iterdir() if p.is_dir()]
    for c in candidates:
        if all((c / d).is_dir() for d in SPLIT_DIRS.values()):
            return c
    return None
