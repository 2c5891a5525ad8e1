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

A set may come from someone else (``desra set import``), so nothing read from a set folder is
trusted: item ids are checked to be names (:func:`check_item_id`) wherever a row becomes an
:class:`Item`, every manifest row is type-checked and SQLite errors become one-line
``DatasetError`` s. Zip export and the guarded import live in ``desra.repair.set_archive``;
running SR and detection to make an item lives in ``desra.service.sets``.

Over 400 lines because the manifest's whole life (create, open, add, load, edit, split, remove)
and the checks of its untrusted rows are one unit: split apart, every reader would need to know
which checks guard which row.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import time
import uuid
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
            f"the manifest {self.manifest} cannot be used ({short_repr(why)}); it is damaged or was not written by desra: "
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
                raise self._unusable(f"metadata {short_repr(key)} is not JSON: {short_repr(value)}") from None
        return meta

    @property
    def scale(self) -> int | None:
        """The set's SR scale, fixed by its first item (or at creation); None while unknown."""
        scale = self.meta.get("scale")
        if scale is not None and not _positive_int(scale):
            raise self._unusable(f"its scale is {short_repr(scale)}, expected a whole number >= 1")
        return scale

    def _item(self, row: sqlite3.Row) -> Item:
        # Every row is checked before it becomes an Item: the folder path is built from the id, and
        # a row of an imported set is whatever its author wrote.
        try:
            values = {key: row[key] for key in _ITEM_COLUMNS}
        except IndexError:
            raise self._unusable(f"the items table lacks columns; it has {short_repr(list(row.keys()))}") from None
        item_id = values["id"]
        if not is_item_id(item_id):
            raise DatasetError(
                f"the manifest {self.manifest} names an item {short_repr(item_id)}, which is not an item id "
                f"({ITEM_ID_RULE}); the set was damaged or tampered with: refusing to use it"
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
            shown = ", ".join(f"{key}={short_repr(values[key])}" for key in wrong)
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
        write_image(item.path("pseudo_gt"), pseudo_gt(arrays.mse, arrays.gan, mask))
        write_mask(item.path("mask"), mask)
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
        n_val = round(val_fraction * len(ids))
        val = {ids[i] for i in order[:n_val]}
        with self._db(write=True) as db:
            for item_id in ids:
                db.execute("UPDATE items SET split=?, updated=? WHERE id=?",
                           ("val" if item_id in val else "train", time.time(), item_id))
        return {"train": len(ids) - n_val, "val": n_val}

    def export_zip(self, path: str | os.PathLike) -> Path:
        """Write the whole set (manifest and every item, deleted ones included) to a zip file atomically."""
        from desra.repair.set_archive import export_zip

        return export_zip(self, path)

    def backup_manifest(self, target: Path) -> None:
        """Copy a consistent snapshot of the manifest to ``target`` (SQLite's backup API: safe while another process writes)."""
        with self._db() as src, contextlib.closing(sqlite3.connect(target)) as dst:
            src.backup(dst)

    def quick_check(self) -> str:
        """SQLite's ``PRAGMA quick_check`` verdict on the manifest: ``'ok'`` or what is wrong."""
        with self._db() as db:
            return db.execute("PRAGMA quick_check").fetchone()[0]


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return cleaned[:80] or "item"


ITEM_ID_RULE = "1-128 letters, digits, '_', '-' or '.', not starting with '.', like 'chelsea-1a2b3c'"


def is_item_id(item_id: object) -> bool:
    return isinstance(item_id, str) and ITEM_ID_PATTERN.fullmatch(item_id) is not None


def check_item_id(item_id: object) -> str:
    """``item_id`` itself when it is an item id (a folder name, never a path: see :data:`ITEM_ID_PATTERN`), else ``DatasetError``."""
    if not is_item_id(item_id):
        raise DatasetError(
            f"{short_repr(item_id)} is not an item id ({ITEM_ID_RULE}); ids are names, never paths: "
            "see `desra set list DIR` for the set's ids"
        )
    return item_id  # type: ignore[return-value]


def short_repr(value: object, limit: int = 80) -> str:
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
