"""Decoding a folder of 32x32 PNGs once into a uint8 array cached on disk.

The cache is one ``.npy`` file per split, ``[N, 3, 32, 32]`` uint8, named by a fingerprint of the
file list (relative paths, sizes, modification times), so any change to the images rebuilds it.
It is written to a temp file and renamed, so concurrent processes (DDP ranks, nodes sharing a
file system) never read a half-written cache.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.atomic import atomic_path

# Bumped whenever the decoded pixels would change (e.g. a different colour conversion).
CACHE_VERSION = 1
IMAGE_SIZE = 32
# torchvision's ImageFolder loader (the usual way to read CINIC-10) converts every image with
# convert("RGB"). Grayscale and palette images convert without loss, so they are accepted like
# there; modes whose conversion drops information (alpha, 16-bit, float) are refused.
_CONVERTIBLE_MODES = ("RGB", "L", "P")
# Below this many files the process pool costs more than it saves (about 60 us per PNG serially).
_MIN_FILES_FOR_POOL = 4096
_CHUNK = 1024


@dataclass(frozen=True)
class ImageFile:
    path: str
    size: int
    mtime_ns: int


def fingerprint(files: list[ImageFile], root: Path) -> str:
    """16 hex digits identifying the file list with its sizes and modification times."""
    h = hashlib.sha256(f"v{CACHE_VERSION}\n".encode())
    for f in files:
        h.update(f"{os.path.relpath(f.path, root)}\t{f.size}\t{f.mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def read_png(path: str) -> np.ndarray:
    """One image as uint8 ``[32, 32, 3]``.

    Raises:
        ConfigError: naming the file when it is corrupt, truncated, not 32x32 or not RGB-like.
    """
    try:
        with Image.open(path) as im:
            if im.size != (IMAGE_SIZE, IMAGE_SIZE) or im.mode not in _CONVERTIBLE_MODES:
                raise ConfigError(
                    f"{path} is a {im.size[0]}x{im.size[1]} {im.mode} image; expected "
                    f"{IMAGE_SIZE}x{IMAGE_SIZE} RGB (or grayscale/palette)"
                )
            im.load()
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, EOFError) as e:  # PIL's ways of saying corrupt or truncated
        raise ConfigError(f"{path} is not a readable PNG ({e}); replace or delete it") from None


def _read_chunk(paths: list[str]) -> np.ndarray:
    return np.stack([read_png(p) for p in paths]).transpose(0, 3, 1, 2)


def decode_cached(
    files: list[ImageFile], root: Path, cache_dir: Path, name: str, num_workers: int | None = None
) -> Path:
    """The cache file for ``files``, decoding them first unless a matching cache exists.

    Args:
        files: the images, in label order.
        root: what the fingerprint's relative paths are relative to.
        cache_dir: where ``<name>-<fingerprint>.npy`` lives; stale caches of ``name`` are removed.
        num_workers: decoding processes; ``None`` = all cores (at most 16), 0 = this process.
    """
    cache = cache_dir / f"{name}-{fingerprint(files, root)}.npy"
    if cache.exists() and _has_shape(cache, len(files)):
        return cache
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"data.dataset.cache_dir={cache_dir} is not writable ({e.strerror}); "
            "point it at a writable folder"
        ) from None
    with atomic_path(cache) as tmp:  # an interrupted decode never leaves a cache that looks whole
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, IMAGE_SIZE, IMAGE_SIZE)
        )
        _decode_into(out, [f.path for f in files], num_workers, desc=f"decode {name}")
        out.flush()
        del out
    for stale in cache_dir.glob(f"{name}-*.npy"):
        if stale != cache:
            stale.unlink(missing_ok=True)
    return cache


def _decode_into(out: np.ndarray, paths: list[str], num_workers: int | None, desc: str) -> None:
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    workers = min(os.cpu_count() or 1, 16) if num_workers is None else num_workers
    with tqdm(total=len(paths), unit="img", desc=desc) as bar:
        if workers <= 1 or (num_workers is None and len(paths) < _MIN_FILES_FOR_POOL):
            for i, chunk in enumerate(chunks):
                out[i * _CHUNK : i * _CHUNK + len(chunk)] = _read_chunk(chunk)
                bar.update(len(chunk))
            return
        # fork where the OS has it, as torch's DataLoader workers do: a spawned worker would first
        # re-import the caller's whole program (torch, Lightning: seconds per worker), which
        # costs more than decoding a split. The children only run PIL and numpy, never CUDA.
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            try:
                for i, arr in enumerate(pool.map(_read_chunk, chunks)):
                    out[i * _CHUNK : i * _CHUNK + len(arr)] = arr
                    bar.update(len(arr))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def _has_shape(cache: Path, n: int) -> bool:
    try:
        arr = np.load(cache, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.dtype == np.uint8 and arr.shape == (n, 3, IMAGE_SIZE, IMAGE_SIZE)
