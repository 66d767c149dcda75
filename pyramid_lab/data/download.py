"""Fetching and unpacking archives: atomically (a temp file renamed when complete) and safely."""

from __future__ import annotations

import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from pyramid_lab.errors import ConfigError
from pyramid_lab.runs.atomic import atomic_path


def download_url(url: str, dest: Path, setting: str = "data.dataset.url") -> None:
    """Download ``url`` (http(s):// or file://) to ``dest`` with a progress bar.

    The bytes go to a hidden temp file beside ``dest`` that is renamed only once complete, so an
    interrupted download never looks finished.

    Raises:
        ConfigError: naming ``setting`` when the address cannot be read or the transfer is short.
    """
    with atomic_path(dest) as tmp:
        try:
            received, total = _fetch(url, tmp, desc=f"download {dest.name}")
        except (urllib.error.URLError, ValueError) as e:  # ValueError: not a URL at all
            raise ConfigError(
                f"{setting}={url} cannot be downloaded ({getattr(e, 'reason', e)}); "
                f"fix the address or download the archive by hand into "
                f"{dest.parent}"
            ) from e
        if total is not None and received != total:
            raise ConfigError(
                f"{setting}={url}: the download stopped at {received} of {total} bytes; run again"
            )


def _fetch(url: str, dest: Path, desc: str) -> tuple[int, int | None]:
    """Stream ``url`` into ``dest``; returns (bytes received, bytes announced or None)."""
    received = 0
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc) as bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    return received, total


def extract_tar(archive: Path, dest: Path) -> None:
    """Unpack a (compressed) tar archive into ``dest``, refusing members that would land (or
    link) outside it, device files and the like (PEP 706's ``data`` filter).

    Raises:
        ConfigError: naming the archive when it is corrupt or holds an unsafe member.
    """
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4 (PEP 706)
                tar.extractall(dest, filter="data")
            else:
                tar.extractall(dest, members=_checked_members(tar, archive))
    except tarfile.TarError as e:  # ReadError, FilterError, ...
        reason = " ".join(str(e).split())  # tarfile lists each method it tried on its own line
        raise ConfigError(
            f"{archive} cannot be unpacked safely ({reason}); delete it and download again"
        ) from e


def _checked_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for m in members:
        parts = Path(m.name).parts
        if not (m.isfile() or m.isdir()) or Path(m.name).is_absolute() or ".." in parts:
            raise ConfigError(f"{archive} holds an unsafe member {m.name!r}; refusing to unpack")
    return members
