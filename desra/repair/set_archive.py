"""Curated sets as zip files: `desra set export` packs a set, `desra set import` unpacks one into a new folder.

An archive may come from anyone, so an import trusts nothing it reads: it is bounded in size and
entry count (from the headers and again while unpacking, since headers can lie), refuses links,
devices and anything but the manifest and its items' PNGs, checks the manifest as
:meth:`~desra.repair.curated.CuratedSet.check` does, decodes every image within the pixel limit at
the size its manifest row says, and leaves nothing behind when it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from desra.core.errors import DatasetError
from desra.repair.curated import (
    ITEM_FILES,
    MANIFEST,
    CuratedSet,
    is_item_id,
    short_repr,
)

DEFAULT_IMPORT_MAX_BYTES = 8 * 2**30
"""Most bytes ``set import`` unpacks (uncompressed, all entries) unless ``$DESRA_IMPORT_MAX_BYTES`` says otherwise."""
DEFAULT_IMPORT_MAX_ENTRIES = 60_001
"""Most zip entries ``set import`` accepts (10 000 items of six files and the manifest) unless ``$DESRA_IMPORT_MAX_ENTRIES``."""
_CHUNK = 1 << 20  # bytes copied per read while unpacking: memory stays flat whatever an entry claims


def export_zip(curated: CuratedSet, path: str | os.PathLike) -> Path:
    """Write the whole set (manifest and every item, deleted ones included) to a zip file atomically."""
    from desra.core.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as temp, zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED) as archive:
        snapshot = temp.with_name(temp.name + ".manifest")
        try:
            curated.backup_manifest(snapshot)
            archive.write(snapshot, MANIFEST)
        finally:
            with contextlib.suppress(FileNotFoundError):
                snapshot.unlink()
        for item in curated.items(include_deleted=True):
            if item.folder.is_symlink():
                raise DatasetError(f"{item.folder} is a link; an export packs only the set's own files")
            for file in sorted(item.folder.glob("*.png")):
                if file.is_symlink() or not file.is_file():
                    raise DatasetError(f"{file} is a link or not a file; an export packs only the set's own files")
                archive.write(file, f"items/{item.id}/{file.name}")
    return path


@dataclass(frozen=True)
class ImportLimits:
    """Bounds of one ``set import``, checked from the zip's headers and again while unpacking."""

    max_bytes: int
    """Most uncompressed bytes of all entries together."""
    max_entries: int
    """Most entries in the archive."""
    max_pixels: int | None
    """Pixel limit of each image (None: ``desra.core.imageio``'s own, ``$DESRA_MAX_PIXELS``)."""


def import_limits(
    max_bytes: int | None = None, max_entries: int | None = None, max_pixels: int | None = None
) -> ImportLimits:
    """The limits in force: each argument, else ``$DESRA_IMPORT_MAX_BYTES`` / ``$DESRA_IMPORT_MAX_ENTRIES``, else the defaults."""
    from desra.core.errors import ConfigError

    def pick(value: int | None, variable: str, default: int) -> int:
        if value is None:
            raw = os.environ.get(variable, "").strip()
            try:
                value = int(float(raw)) if raw else default
            except ValueError:
                raise ConfigError(f"{variable} must be a whole number, got {raw!r}") from None
        if value < 1:
            raise ConfigError(f"{variable} (or its argument) must be >= 1, got {value}")
        return value

    return ImportLimits(
        max_bytes=pick(max_bytes, "DESRA_IMPORT_MAX_BYTES", DEFAULT_IMPORT_MAX_BYTES),
        max_entries=pick(max_entries, "DESRA_IMPORT_MAX_ENTRIES", DEFAULT_IMPORT_MAX_ENTRIES),
        max_pixels=max_pixels,
    )


_ENTRY_FILES = {f"{what}.png" for what in (*ITEM_FILES, "label")}


def import_zip(
    archive_path: str | os.PathLike,
    root: str | os.PathLike,
    *,
    max_bytes: int | None = None,
    max_entries: int | None = None,
    max_pixels: int | None = None,
) -> CuratedSet:
    """Unpack a set exported with :meth:`CuratedSet.export_zip` into a new folder ``root``, checking everything.

    The archive is refused (``DatasetError``, nothing left behind) when it holds more than
    ``max_entries`` entries or ``max_bytes`` uncompressed bytes (see :func:`import_limits`; counted
    from the headers and again while unpacking, since headers can lie), any entry other than the
    manifest and ``items/<id>/<file>.png`` of the manifest's items, links, devices, folders,
    encrypted or unusually compressed entries, a manifest that fails :meth:`CuratedSet.check`, or an
    image that does not decode within the pixel limit at the size its manifest row says.
    """
    limits = import_limits(max_bytes, max_entries, max_pixels)
    archive_path = Path(archive_path)
    root = Path(root).expanduser().resolve()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise DatasetError(f"{root} is not empty; import a set into a new folder")
    try:
        archive = zipfile.ZipFile(archive_path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{archive_path} is not a readable zip of a curated set: {short_repr(str(error))}") from None
    with archive:
        entries = _checked_entries(archive, archive_path, limits)
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.import-", dir=root.parent))
        try:
            os.chmod(staging, 0o755)  # mkdtemp's 0o700 would make the imported set private
            try:
                _unpack(archive, entries, staging, archive_path, limits)
                _check_imported(CuratedSet(staging), entries, archive_path, limits)
            except DatasetError as error:  # name the archive, not the temporary folder
                raise DatasetError(str(error).replace(str(staging / MANIFEST), f"{MANIFEST} of {archive_path}")) from None
            if root.exists():
                root.rmdir()
            os.replace(staging, root)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return CuratedSet(root)


def _checked_entries(archive: zipfile.ZipFile, archive_path: Path, limits: ImportLimits) -> list[zipfile.ZipInfo]:
    """The archive's entries after every check its headers allow (count, size, names, types, compression)."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise DatasetError(
            f"{archive_path} holds {len(infos)} entries, above the limit of {limits.max_entries}; "
            "raise DESRA_IMPORT_MAX_ENTRIES if you trust the archive"
        )
    declared = sum(info.file_size for info in infos)
    if declared > limits.max_bytes:
        raise DatasetError(
            f"{archive_path} unpacks to {declared} bytes, above the limit of {limits.max_bytes}; "
            "raise DESRA_IMPORT_MAX_BYTES if you trust the archive"
        )
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        parts = name.split("/")
        ok_name = name == MANIFEST or (
            len(parts) == 3 and parts[0] == "items" and is_item_id(parts[1]) and parts[2] in _ENTRY_FILES
        )
        if not ok_name or info.is_dir():
            raise DatasetError(f"{archive_path} holds an unexpected entry {short_repr(name)}; refusing to unpack it")
        if name in seen:
            raise DatasetError(f"{archive_path} holds the entry {short_repr(name)} twice; refusing to unpack it")
        seen.add(name)
        kind = stat.S_IFMT(info.external_attr >> 16)  # Unix mode bits live in the high word
        if kind not in (0, stat.S_IFREG):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise DatasetError(f"{archive_path}: entry {short_repr(name)} is {what}; a set holds only plain files")
        if info.flag_bits & 0x1:
            raise DatasetError(f"{archive_path}: entry {short_repr(name)} is encrypted; `desra set export` writes none")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # Other decompressors (bzip2, lzma) expand a whole read at once: memory would be unbounded.
            raise DatasetError(
                f"{archive_path}: entry {short_repr(name)} uses compression method {info.compress_type}; "
                "only stored and deflated entries are read"
            )
    if MANIFEST not in seen:
        raise DatasetError(f"{archive_path} has no {MANIFEST}; it was not made by `desra set export`")
    return infos


def _unpack(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], staging: Path, archive_path: Path, limits: ImportLimits) -> None:
    """Copy each entry into ``staging`` in bounded chunks, counting bytes against the header and the limit."""
    import zlib

    total = 0
    for info in entries:
        target = staging.joinpath(*info.filename.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "wb") as out, archive.open(info) as source:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if written > info.file_size or total > limits.max_bytes:
                        raise DatasetError(
                            f"{archive_path}: entry {short_repr(info.filename)} unpacks to more than its header's "
                            f"{info.file_size} bytes or the archive to more than the limit of {limits.max_bytes}; "
                            "the archive is forged or damaged"
                        )
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError) as error:
            raise DatasetError(f"{archive_path}: entry {short_repr(info.filename)} is damaged ({short_repr(str(error))})") from None
        if written != info.file_size:
            raise DatasetError(
                f"{archive_path}: entry {short_repr(info.filename)} holds {written} bytes but its header says {info.file_size}; "
                "the archive is forged or damaged"
            )


def _check_imported(imported: CuratedSet, entries: list[zipfile.ZipInfo], archive_path: Path, limits: ImportLimits) -> None:
    """The unpacked set is complete and consistent: a sound manifest, its items' files and nothing else, images that decode."""
    from desra.core.errors import ImageError
    from desra.core.imageio import read_image

    verdict = imported.quick_check()
    if verdict != "ok":
        raise DatasetError(f"{archive_path}: its {MANIFEST} fails SQLite's check ({short_repr(verdict)})")
    imported.check()
    (imported.root / "items").mkdir(exist_ok=True)
    items = {item.id: item for item in imported.items(include_deleted=True)}
    strays = sorted({info.filename.split("/")[1] for info in entries if info.filename != MANIFEST} - set(items))
    if strays:
        raise DatasetError(f"{archive_path} holds files of items its manifest does not list: {short_repr(strays)}")
    for item in items.values():
        wanted = [*ITEM_FILES, *(["label"] if item.labelled else [])]
        missing = [f for f in wanted if not item.path(f).is_file()]
        if missing:
            raise DatasetError(f"{archive_path}: item {item.id} lacks {missing}; the archive is incomplete")
        height, width = item.lr_size
        for what in [*ITEM_FILES, *(["label"] if item.path("label").is_file() else [])]:
            entry = f"items/{item.id}/{what}.png"
            try:
                shape = read_image(item.path(what), max_pixels=limits.max_pixels).rgb.shape
            except ImageError as error:
                message = str(error).replace(str(item.path(what)), entry)
                raise DatasetError(f"{archive_path}: {message}") from None
            expected = (height, width) if what == "lr" else (height * item.scale, width * item.scale)
            if tuple(shape[:2]) != expected:
                raise DatasetError(
                    f"{archive_path}: {entry} is {shape[1]}x{shape[0]} but its manifest row says "
                    f"{expected[1]}x{expected[0]}; the archive is inconsistent"
                )
