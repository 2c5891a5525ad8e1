"""Curated fine-tune sets: a folder of items plus a SQLite manifest.

Layout of a set folder ``DIR``::

    DIR/manifest.sqlite          set metadata and one row per item (split, soft-delete flag, provenance)
    DIR/items/<id>/lr.png        the real low-resolution input
    DIR/items/<id>/mse.png       MSE-SR output            (scale x LR)
    DIR/items/<id>/gan.png       GAN-SR output            (scale x LR)
    DIR/items/<id>/mask.png      artifact mask M (0/255)  (scale x LR)
    DIR/items/<id>/pseudo_gt.png DeSRA Eq. 10 target      (scale x LR)
    DIR/items/<id>/label.png     optional human-labelled mask, used by evaluate-run

An item's files are written into ``DIR/.staging/`` and moved into ``items/`` with one rename before
its manifest row is committed, so a kill at any moment leaves either the whole item or nothing the
manifest points to. Items with the wrong scale are refused when added. Removal is a soft delete
(``restore`` undoes it).

A set may come from someone else (``desra set import``), so nothing read from a set folder or an
archive is trusted: item ids are checked to be names (:func:`check_item_id`) wherever a row becomes
an :class:`Item`, every manifest row is type-checked, SQLite errors become one-line
``DatasetError`` s, and an import is bounded in size and entry count, refuses links and devices,
decodes every image within the pixel limit and leaves nothing behind when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from desra.core.db import connect
from desra.core.errors import DatasetError, PairMismatchError
from desra.core.process import pid_alive

MANIFEST = "manifest.sqlite"
SPLITS = ("train", "val")
FORMAT_VERSION = 1
ITEM_FILES = ("lr", "mse", "gan", "mask", "pseudo_gt")
MASK_SOURCES = ("detected", "file", "edited")
ITEM_ID_PATTERN = re.compile(r"[\w-][\w.-]{0,127}")
"""What an item id may be: one folder name of 1-128 letters, digits, ``_``, ``-`` and ``.``, not starting with
``.`` (so never ``.``/``..``) and without separators or NUL, so ``items/<id>`` always stays inside the set.
Letters and digits are Unicode ones (``str.isalnum``) because ids are made from file stems that way."""
DEFAULT_IMPORT_MAX_BYTES = 8 * 2**30
"""Most bytes ``set import`` unpacks (uncompressed, all entries) unless ``$DESRA_IMPORT_MAX_BYTES`` says otherwise."""
DEFAULT_IMPORT_MAX_ENTRIES = 60_001
"""Most zip entries ``set import`` accepts (10 000 items of six files and the manifest) unless ``$DESRA_IMPORT_MAX_ENTRIES``."""
_CHUNK = 1 << 20  # bytes copied per read while unpacking: memory stays flat whatever an entry claims

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, split TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
    lr_height INTEGER NOT NULL, lr_width INTEGER NOT NULL, scale INTEGER NOT NULL,
    mask_fraction REAL NOT NULL, mask_source TEXT NOT NULL, provenance TEXT NOT NULL,
    labelled INTEGER NOT NULL DEFAULT 0, added REAL NOT NULL, updated REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Item:
    """One manifest row: an LR image with its SR outputs, artifact mask and pseudo-GT."""

    id: str
    """Unique id ``<name>-<hex>``; the item's folder name."""
    name: str
    """Stem of the LR file it came from."""
    split: str
    """``train`` or ``val``."""
    deleted: bool
    """Soft-deleted (hidden from training, restorable)."""
    lr_size: tuple[int, int]
    """(height, width) of the LR image."""
    scale: int
    """SR size / LR size (the set's scale)."""
    mask_fraction: float
    """Fraction of SR pixels inside the artifact mask, in [0, 1]."""
    mask_source: str
    """``detected`` (desra detector), ``file`` (given by the user) or ``edited`` (corrected later)."""
    provenance: dict[str, Any]
    """How the mask was made: detector parameters and models, or the file and who edited it."""
    labelled: bool
    """True when a human-labelled mask (``label.png``) is stored for evaluation."""
    folder: Path
    """Folder holding the item's PNGs."""

    def path(self, what: str) -> Path:
        """File of ``what`` in ``ITEM_FILES`` (or ``label``)."""
        return self.folder / f"{what}.png"

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the row."""
        return {
            "id": self.id, "name": self.name, "split": self.split, "deleted": self.deleted,
            "lr_size": list(self.lr_size), "scale": self.scale, "mask_fraction": self.mask_fraction,
            "mask_source": self.mask_source, "provenance": self.provenance, "labelled": self.labelled,
        }


@dataclass(frozen=True)
class ItemArrays:
    """An item's images in memory."""

    lr: np.ndarray
    """(h, w, 3) float32 in [0, 1]."""
    mse: np.ndarray
    """(s*h, s*w, 3) float32 in [0, 1]."""
    gan: np.ndarray
    """(s*h, s*w, 3) float32 in [0, 1]."""
    mask: np.ndarray
    """(s*h, s*w) bool artifact mask."""
    pseudo_gt: np.ndarray
    """(s*h, s*w, 3) float32 in [0, 1]."""
    label: np.ndarray | None
    """(s*h, s*w) bool labelled mask, or None."""


def check_scale(lr_shape: tuple[int, ...], sr_shape: tuple[int, ...], scale: int, what: str) -> None:
    """Raise ``PairMismatchError`` unless ``sr_shape`` is exactly ``scale`` x ``lr_shape`` in height and width."""
    expected = (lr_shape[0] * scale, lr_shape[1] * scale)
    if tuple(sr_shape[:2]) != expected:
        raise PairMismatchError(
            f"{what} is {sr_shape[1]}x{sr_shape[0]} but the LR image is {lr_shape[1]}x{lr_shape[0]} and the set is "
            f"x{scale}, so it must be exactly {expected[1]}x{expected[0]}; SR outputs and masks must come from this LR "
            f"image at the set's scale (make a separate set for a model of another scale)"
        )


class CuratedSet:
    """A curated set folder; open with :func:`open_set`, make with :func:`create_set`."""

    def __init__(self, root: Path):
        self.root = root
        self.manifest = root / MANIFEST

    def _db(self, write: bool = False) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        # Any SQLite failure (garbage file, missing table, ...) means the manifest cannot be used:
        # it becomes one DatasetError naming the file, never a traceback.
        return connect(self.manifest, write=write, untrusted=True, on_error=self._unusable)

    def _unusable(self, why: object) -> DatasetError:
        return DatasetError(
            f"the manifest {self.manifest} cannot be used ({_short(why)}); it is damaged or was not written by desra: "
            "restore the set from a backup or re-import it from its export zip"
        )

    def check(self) -> None:
        """Read the whole manifest (metadata and every row) and raise ``DatasetError`` at the first thing that is wrong."""
        _ = self.scale
        self.items(include_deleted=True)

    @property
    def meta(self) -> dict[str, Any]:
        """Set metadata: ``scale``, ``description``, ``created``, ``format``, ``models``."""
        with self._db() as db:
            rows = [(r["key"], r["value"]) for r in db.execute("SELECT key, value FROM meta")]
        meta = {}
        for key, value in rows:
            try:
                meta[key] = json.loads(value)
            except (TypeError, ValueError):
                raise self._unusable(f"metadata {_short(key)} is not JSON: {_short(value)}") from None
        return meta

    @property
    def scale(self) -> int | None:
        """The set's SR scale, fixed by its first item (or at creation); None while unknown."""
        scale = self.meta.get("scale")
        if scale is not None and not _positive_int(scale):
            raise self._unusable(f"its scale is {_short(scale)}, expected a whole number >= 1")
        return scale

    def _item(self, row: sqlite3.Row) -> Item:
        # Every row is checked before it becomes an Item: the folder path is built from the id, and
        # a row of an imported set is whatever its author wrote.
        try:
            values = {key: row[key] for key in _ITEM_COLUMNS}
        except IndexError:
            raise self._unusable(f"the items table lacks columns; it has {_short(list(row.keys()))}") from None
        item_id = values["id"]
        if not _valid_item_id(item_id):
            raise DatasetError(
                f"the manifest {self.manifest} names an item {_short(item_id)}, which is not an item id "
                f"({_ID_RULE}); the set was damaged or tampered with: refusing to use it"
            )
        wrong = [key for key, ok in _ITEM_CHECKS.items() if not ok(values[key])]
        if not wrong:
            try:
                provenance = json.loads(values["provenance"])
            except (TypeError, ValueError):
                provenance = None
            if not isinstance(provenance, dict):
                wrong.append("provenance")
        if wrong:
            shown = ", ".join(f"{key}={_short(values[key])}" for key in wrong)
            raise self._unusable(f"item {item_id} has invalid {shown}")
        return Item(
            id=item_id, name=values["name"], split=values["split"], deleted=bool(values["deleted"]),
            lr_size=(values["lr_height"], values["lr_width"]), scale=values["scale"],
            mask_fraction=float(values["mask_fraction"]), mask_source=values["mask_source"],
            provenance=provenance, labelled=bool(values["labelled"]),
            folder=self.root / "items" / item_id,
        )

    def items(self, split: str | None = None, *, include_deleted: bool = False) -> list[Item]:
        """Items in insertion order, optionally of one split; soft-deleted ones only when asked."""
        if split is not None and split not in SPLITS:
            raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
        query = "SELECT * FROM items WHERE 1=1"
        args: tuple = ()
        if split:
            query, args = query + " AND split = ?", (split,)
        if not include_deleted:
            query += " AND deleted = 0"
        with self._db() as db:
            return [self._item(r) for r in db.execute(query + " ORDER BY added, id", args)]

    def item(self, item_id: str) -> Item:
        """One item by id (deleted ones too); ``DatasetError`` when unknown or not an id."""
        check_item_id(item_id)
        with self._db() as db:
            row = db.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise DatasetError(f"no item {item_id!r} in the set {self.root}; see `desra set list {self.root}`")
        return self._item(row)

    def add(
        self,
        name: str,
        lr: np.ndarray,
        mse: np.ndarray,
        gan: np.ndarray,
        mask: np.ndarray,
        *,
        mask_source: str,
        provenance: dict[str, Any],
        label: np.ndarray | None = None,
        split: str = "train",
        scale: int | None = None,
    ) -> Item:
        """Check and store one item (arrays as in :class:`ItemArrays`); the pseudo-GT is computed here (Eq. 10)."""
        from desra.core.imageio import write_image, write_mask
        from desra.repair.pseudo_gt import pseudo_gt

        if split not in SPLITS:
            raise DatasetError(f"split must be one of {SPLITS}, got {split!r}")
        if mask_source not in MASK_SOURCES:
            raise DatasetError(f"mask_source must be detected, file or edited, got {mask_source!r}")
        set_scale = self.scale
        if scale is None:
            scale = set_scale or max(1, round(mse.shape[0] / max(1, lr.shape[0])))
        if set_scale is not None and scale != set_scale:
            raise PairMismatchError(
                f"item {name!r} is x{scale} but the set {self.root} is x{set_scale}; "
                "a set holds one model pair's scale, make another set for this model"
            )
        check_scale(lr.shape, mse.shape, scale, f"MSE-SR of {name!r}")
        check_scale(lr.shape, gan.shape, scale, f"GAN-SR of {name!r}")
        check_scale(lr.shape, mask.shape, scale, f"mask of {name!r}")
        if label is not None:
            check_scale(lr.shape, label.shape, scale, f"labelled mask of {name!r}")
        mask = np.asarray(mask, dtype=bool)
        target = pseudo_gt(mse, gan, mask)
        item_id = check_item_id(f"{_safe_name(name)}-{uuid.uuid4().hex[:6]}")
        staging = self.root / ".staging" / f"{os.getpid()}-{item_id}"
        staging.mkdir(parents=True)
        try:
            write_image(staging / "lr.png", lr)
            write_image(staging / "mse.png", mse)
            write_image(staging / "gan.png", gan)
            write_image(staging / "pseudo_gt.png", target)
            write_mask(staging / "mask.png", mask)
            if label is not None:
                write_mask(staging / "label.png", np.asarray(label, dtype=bool))
            _fsync_tree(staging)
            os.replace(staging, self.root / "items" / item_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        now = time.time()
        with self._db(write=True) as db:
            if set_scale is None:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('scale', ?)", (json.dumps(scale),))
            db.execute(
                "INSERT INTO items (id, name, split, lr_height, lr_width, scale, mask_fraction, mask_source, "
                "provenance, labelled, added, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item_id, name, split, lr.shape[0], lr.shape[1], scale, float(mask.mean()), mask_source,
                 json.dumps(provenance, default=str), int(label is not None), now, now),
            )
        return self.item(item_id)

    def load(self, item_id: str) -> ItemArrays:
        """Read an item's images from disk."""
        from desra.core.imageio import read_image, read_mask

        item = self.item(item_id)
        label_path = item.path("label")
        return ItemArrays(
            lr=read_image(item.path("lr")).rgb,
            mse=read_image(item.path("mse")).rgb,
            gan=read_image(item.path("gan")).rgb,
            mask=read_mask(item.path("mask")),
            pseudo_gt=read_image(item.path("pseudo_gt")).rgb,
            label=read_mask(label_path) if label_path.exists() else None,
        )

    def set_mask(self, item_id: str, mask: np.ndarray, *, editor: str, note: str = "") -> Item:
        """Replace an item's mask with a corrected one (``(sH, sW)`` bool) and recompute its pseudo-GT."""
        from desra.core.imageio import write_image, write_mask
        from desra.repair.pseudo_gt import pseudo_gt

        item = self.item(item_id)
        if item.folder.is_symlink():  # the writes below would land wherever the link points
            raise DatasetError(f"{item.folder} is a link; desra writes only into the set's own item folders")
        arrays = self.load(item_id)
        check_scale(arrays.lr.shape, np.shape(mask), item.scale, f"corrected mask of {item_id!r}")
        mask = np.asarray(mask, dtype=bool)
        # Pseudo-GT first: a kill between the two writes leaves the old mask with a target that
        # already follows the new one, and a rerun of the edit repairs it.
        _replace_file(item.path("pseudo_gt"), lambda p: write_image(p, pseudo_gt(arrays.mse, arrays.gan, mask)))
        _replace_file(item.path("mask"), lambda p: write_mask(p, mask))
        history = list(item.provenance.get("edits", []))
        history.append({"editor": editor, "note": note, "time": time.time()})
        provenance = {**item.provenance, "edits": history}
        with self._db(write=True) as db:
            db.execute(
                "UPDATE items SET mask_source='edited', mask_fraction=?, provenance=?, updated=? WHERE id=?",
                (float(mask.mean()), json.dumps(provenance, default=str), time.time(), item_id),
            )
        return self.item(item_id)

    def remove(self, item_id: str) -> Item:
        """Soft-delete an item: it disappears from training and listings until :meth:`restore`."""
        return self._set_deleted(item_id, True)

    def restore(self, item_id: str) -> Item:
        """Undo :meth:`remove`."""
        return self._set_deleted(item_id, False)

    def _set_deleted(self, item_id: str, deleted: bool) -> Item:
        self.item(item_id)
        with self._db(write=True) as db:
            db.execute("UPDATE items SET deleted=?, updated=? WHERE id=?", (int(deleted), time.time(), item_id))
        return self.item(item_id)

    def split(self, val_fraction: float, *, seed: int = 0) -> dict[str, int]:
        """Assign every live item to train or val at random (seeded); returns the counts per split."""
        if not 0.0 <= val_fraction <= 1.0:
            raise DatasetError(f"--val must be a fraction in [0, 1], got {val_fraction} (the paper: 150 of 200 = 0.75)")
        ids = sorted(item.id for item in self.items())
        order = np.random.default_rng(seed).permutation(len(ids))
        n_val = int(round(val_fraction * len(ids)))
        val = {ids[i] for i in order[:n_val]}
        with self._db(write=True) as db:
            for item_id in ids:
                db.execute("UPDATE items SET split=?, updated=? WHERE id=?",
                           ("val" if item_id in val else "train", time.time(), item_id))
        return {"train": len(ids) - n_val, "val": n_val}

    def export_zip(self, path: str | os.PathLike) -> Path:
        """Write the whole set (manifest and every item, deleted ones included) to a zip file atomically."""
        from desra.core.atomic import atomic_path

        path = Path(path)
        with atomic_path(path) as temp:
            with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED) as archive:
                snapshot = temp.with_name(temp.name + ".manifest")
                try:
                    # The backup API copies a consistent snapshot even while another process writes.
                    with self._db() as src, contextlib.closing(sqlite3.connect(snapshot)) as dst:
                        src.backup(dst)
                    archive.write(snapshot, MANIFEST)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        snapshot.unlink()
                for item in self.items(include_deleted=True):
                    if item.folder.is_symlink():
                        raise DatasetError(f"{item.folder} is a link; an export packs only the set's own files")
                    for file in sorted(item.folder.glob("*.png")):
                        if file.is_symlink() or not file.is_file():
                            raise DatasetError(f"{file} is a link or not a file; an export packs only the set's own files")
                        archive.write(file, f"items/{item.id}/{file.name}")
        return path


def _replace_file(path: Path, write: Any) -> None:
    # The writers pick the format from the suffix, so the temporary name keeps ".png".
    temp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return cleaned[:80] or "item"


_ID_RULE = "1-128 letters, digits, '_', '-' or '.', not starting with '.', like 'chelsea-1a2b3c'"


def _valid_item_id(item_id: object) -> bool:
    return isinstance(item_id, str) and ITEM_ID_PATTERN.fullmatch(item_id) is not None


def check_item_id(item_id: object) -> str:
    """``item_id`` itself when it is an item id (a folder name, never a path: see :data:`ITEM_ID_PATTERN`), else ``DatasetError``."""
    if not _valid_item_id(item_id):
        raise DatasetError(
            f"{_short(item_id)} is not an item id ({_ID_RULE}); ids are names, never paths: "
            "see `desra set list DIR` for the set's ids"
        )
    return item_id  # type: ignore[return-value]


def _short(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: one line whatever a manifest or archive holds."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _flag(value: object) -> bool:
    return isinstance(value, int) and value in (0, 1)


_ITEM_CHECKS = {
    "name": lambda v: isinstance(v, str),
    "split": lambda v: v in SPLITS,
    "deleted": _flag,
    "lr_height": _positive_int,
    "lr_width": _positive_int,
    "scale": _positive_int,
    "mask_fraction": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0,
    "mask_source": lambda v: v in MASK_SOURCES,
    "provenance": lambda v: isinstance(v, str),
    "labelled": _flag,
}
_ITEM_COLUMNS = ("id", *_ITEM_CHECKS)


def _fsync_tree(folder: Path) -> None:
    for file in folder.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())


def create_set(root: str | os.PathLike, *, description: str = "", scale: int | None = None) -> CuratedSet:
    """Make an empty set in ``root`` (missing or empty folder)."""
    root = Path(root).expanduser().resolve()
    if (root / MANIFEST).exists():
        raise DatasetError(f"{root} already holds a curated set; add to it with `desra set add {root} ...`")
    if root.exists() and any(root.iterdir()):
        raise DatasetError(f"{root} is not empty; give `desra set create` a new or empty folder")
    (root / "items").mkdir(parents=True, exist_ok=True)
    temp = root / f".{MANIFEST}.tmp-{os.getpid()}"
    with contextlib.closing(sqlite3.connect(temp)) as db:
        db.executescript(_SCHEMA)
        rows = {"format": FORMAT_VERSION, "description": description, "created": time.time()}
        if scale is not None:
            rows["scale"] = int(scale)
        db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in rows.items()])
        db.commit()
    os.replace(temp, root / MANIFEST)  # the set exists only once its manifest is complete
    return CuratedSet(root)


def open_set(root: str | os.PathLike) -> CuratedSet:
    """Open the set in ``root`` and check its manifest; ``DatasetError`` when it is not a usable set."""
    root = Path(root).expanduser().resolve()
    if not (root / MANIFEST).is_file():
        raise DatasetError(f"{root} is not a curated set (no {MANIFEST}); make one with `desra set create {root}`")
    for leftover in (root / ".staging").glob("*-*"):  # of adds whose process was killed
        pid = leftover.name.split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
    curated = CuratedSet(root)
    curated.check()
    return curated


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
        raise DatasetError(f"{archive_path} is not a readable zip of a curated set: {_short(str(error))}") from None
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
            len(parts) == 3 and parts[0] == "items" and _valid_item_id(parts[1]) and parts[2] in _ENTRY_FILES
        )
        if not ok_name or info.is_dir():
            raise DatasetError(f"{archive_path} holds an unexpected entry {_short(name)}; refusing to unpack it")
        if name in seen:
            raise DatasetError(f"{archive_path} holds the entry {_short(name)} twice; refusing to unpack it")
        seen.add(name)
        kind = stat.S_IFMT(info.external_attr >> 16)  # Unix mode bits live in the high word
        if kind not in (0, stat.S_IFREG):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise DatasetError(f"{archive_path}: entry {_short(name)} is {what}; a set holds only plain files")
        if info.flag_bits & 0x1:
            raise DatasetError(f"{archive_path}: entry {_short(name)} is encrypted; `desra set export` writes none")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # Other decompressors (bzip2, lzma) expand a whole read at once: memory would be unbounded.
            raise DatasetError(
                f"{archive_path}: entry {_short(name)} uses compression method {info.compress_type}; "
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
                            f"{archive_path}: entry {_short(info.filename)} unpacks to more than its header's "
                            f"{info.file_size} bytes or the archive to more than the limit of {limits.max_bytes}; "
                            "the archive is forged or damaged"
                        )
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError) as error:
            raise DatasetError(f"{archive_path}: entry {_short(info.filename)} is damaged ({_short(str(error))})") from None
        if written != info.file_size:
            raise DatasetError(
                f"{archive_path}: entry {_short(info.filename)} holds {written} bytes but its header says {info.file_size}; "
                "the archive is forged or damaged"
            )


def _check_imported(imported: CuratedSet, entries: list[zipfile.ZipInfo], archive_path: Path, limits: ImportLimits) -> None:
    """The unpacked set is complete and consistent: a sound manifest, its items' files and nothing else, images that decode."""
    from desra.core.errors import ImageError
    from desra.core.imageio import read_image

    with imported._db() as db:
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
    if verdict != "ok":
        raise DatasetError(f"{archive_path}: its {MANIFEST} fails SQLite's check ({_short(verdict)})")
    imported.check()
    (imported.root / "items").mkdir(exist_ok=True)
    items = {item.id: item for item in imported.items(include_deleted=True)}
    strays = sorted({info.filename.split("/")[1] for info in entries if info.filename != MANIFEST} - set(items))
    if strays:
        raise DatasetError(f"{archive_path} holds files of items its manifest does not list: {_short(strays)}")
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


def prepare_item(
    lr: np.ndarray,
    mse_model: Any,
    gan_model: Any,
    *,
    mask: np.ndarray | None = None,
    detect_config: Any = None,
    device: str = "cpu",
    tile: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, dict[str, Any]]:
    """Run both SR models on ``lr`` and detect artifacts unless ``mask`` is given -> (mse, gan, mask, source, provenance)."""
    import dataclasses

    from desra.models.inference import upscale

    mse = upscale(mse_model, lr, tile=tile, device=device)
    gan = upscale(gan_model, lr, tile=tile, device=device)
    models = {"mse": mse_model.descriptor.to_dict(), "gan": gan_model.descriptor.to_dict()}
    if mask is not None:
        return mse, gan, np.asarray(mask, dtype=bool), "file", {"models": models, "by": "user"}
    from desra.detect.pipeline import DetectConfig, detect_artifacts

    config = detect_config or DetectConfig()
    detection = detect_artifacts(mse, gan, config)
    provenance = {
        "models": models,
        "by": "desra detector",
        "detect_config": dataclasses.asdict(config),
        "semantics_used": bool(getattr(detection, "semantics_used", False)),
        "semantics_note": str(getattr(detection, "semantics_note", "")),
    }
    return mse, gan, np.asarray(detection.mask, dtype=bool), "detected", provenance
