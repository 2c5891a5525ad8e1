"""The state of a watched folder (``desra watch``): one SQLite file, ``<workspace>/watch/watch.db``.

Every step of the service is one committed transition here, so a ``kill -9`` at any moment loses
nothing and a restart continues: an image whose detection began but did not finish is still
``detecting`` (redone once, see :meth:`WatchStore.begin_detection`), a round keeps its job id (the
job runner's row is picked up, never resubmitted), and the current model version is one row.

Tables: ``meta`` (settings, current version), ``files`` (path -> size, mtime, content hash: a
file is hashed once), ``images`` (one row per content hash: detecting | clean | artifact |
failed), ``rounds`` (one per repair: queued | training | evaluating | done | failed),
``versions`` (model files, version 0 = the pair's GAN model) and ``changes`` (who made which
version current, when).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from desra.core.db import connect
from desra.core.errors import ConfigError

IMAGE_STATES = ("detecting", "clean", "artifact", "failed")
ROUND_STATES = ("queued", "training", "evaluating", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, flagged REAL, item_id TEXT, version INTEGER, error TEXT NOT NULL DEFAULT '',
    round INTEGER, thumb TEXT, added REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    version INTEGER PRIMARY KEY, state TEXT NOT NULL, parent INTEGER NOT NULL, job_id TEXT,
    removal REAL, addition REAL, promoted INTEGER, reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    version INTEGER PRIMARY KEY, path TEXT NOT NULL, sha256 TEXT NOT NULL, parent INTEGER, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, version INTEGER NOT NULL, action TEXT NOT NULL, note TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class WatchSettings:
    """What ``desra watch start`` was asked to do (stored at the first start, checked at each restart)."""

    folder: str
    """Absolute path of the watched folder (subfolders included)."""
    pair: str
    """Registered model pair whose GAN model is repaired."""
    repair_after: int = 20
    """Artifact images that start a repair round (at least 2: one to train on, one held out)."""
    iters: int = 1000
    """Fine-tune iterations per round (the paper: about 1000)."""
    segmenter: str = "b5"
    """Detection's segmenter, as ``desra detect --segmenter`` ('none' turns semantics off)."""
    min_removal: float = 0.75
    """Removal rate a repair must reach to be promoted (the paper's Real-ESRGAN repair: 75.4 %)."""
    holdout: float = 0.25
    """Share of a round's artifact images held out of training for its evaluation."""
    lr: float = 1e-4
    """Fine-tune learning rate (the paper's)."""
    patch: int = 64
    """Fine-tune HR crop size (CPU-sized; the paper: 256)."""
    batch: int = 4
    """Fine-tune crops per iteration."""
    settle_s: float = 2.0
    """Seconds a file's size and mtime must stay unchanged before it is read (half-written files wait)."""
    fingerprint_iters: int = 5000
    """Adam steps of the critical images the derivation check extracts (Quan et al.: 5000)."""

    def __post_init__(self) -> None:
        if self.repair_after < 2:
            raise ConfigError(f"--repair-after must be >= 2 (one image to train on, one held out), got {self.repair_after}")
        if not 0.0 < self.holdout < 1.0:
            raise ConfigError(f"--holdout must be a fraction strictly between 0 and 1, got {self.holdout}")
        if not 0.0 <= self.min_removal <= 1.0:
            raise ConfigError(f"--min-removal must be a fraction in [0, 1], got {self.min_removal}")
        for name in ("iters", "patch", "batch", "fingerprint_iters"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class ImageRecord:
    """One image, keyed by the sha256 of its bytes."""

    sha256: str
    """Content hash (hex): renames and copies of a file share it."""
    path: str
    """Where it was first seen."""
    name: str
    """File stem, for display and item names."""
    state: str
    """One of :data:`IMAGE_STATES`."""
    attempts: int
    """Detections begun (a restart redoes an interrupted one; the third interruption fails it)."""
    flagged: float | None
    """Fraction of SR pixels flagged, in [0, 1]; None until detected."""
    item_id: str | None
    """Its item in the watch's curated set (artifact images only)."""
    version: int | None
    """Model version that detected it."""
    error: str
    """Why it failed ('' otherwise)."""
    round: int | None
    """Round (version) whose repair it joined; None while it is still gathering."""
    thumb: str | None
    """Thumbnail PNG (GAN-SR with the detection outlined)."""
    added: float
    """When it was first seen, seconds since the epoch."""


@dataclass(frozen=True)
class RoundRecord:
    """One repair round; its number is the model version it produces."""

    version: int
    """Version number of the repaired model (1, 2, ...)."""
    state: str
    """One of :data:`ROUND_STATES`."""
    parent: int
    """Version it fine-tunes."""
    job_id: str | None
    """The fine-tune job of the runner (``desra jobs status``); None until submitted."""
    removal: float | None
    """Removal rate on the held-out images, None until evaluated."""
    addition: float | None
    """Addition rate on the held-out images, None until evaluated."""
    promoted: bool | None
    """True/False once decided, None before."""
    reason: str
    """Why it was (not) promoted or failed."""

    def to_status(self) -> dict[str, Any]:
        """The issue's shape: ``{"version", "state", "removal", "addition", "promoted", "reason"}``."""
        return {"version": self.version, "state": self.state, "removal": self.removal, "addition": self.addition,
                "promoted": self.promoted, "reason": self.reason}


@dataclass(frozen=True)
class VersionRecord:
    """A model version kept in the workspace."""

    version: int
    """0 for the pair's GAN model, else the round that made it."""
    path: str
    """Its model file."""
    sha256: str
    """sha256 of its weights (``desra.models.lineage.weights_sha256``)."""
    parent: int | None
    """Version it was fine-tuned from (None for version 0)."""


def _now() -> float:
    return time.time()


class WatchStore:
    """The watch state of one workspace; every method opens its own connection (safe across processes)."""

    def __init__(self, workspace: str | Path):
        self.root = Path(workspace).expanduser().resolve() / "watch"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "watch.db"
        with self._db() as db:
            db.executescript(_SCHEMA)

    def _db(self, write: bool = False) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.db_path, write=write, wal=True)

    # -- settings and the current version ----------------------------------------------------

    def settings(self) -> WatchSettings | None:
        """The stored settings, None before the first start."""
        raw = self._meta("settings")
        return WatchSettings(**raw) if raw else None

    def save_settings(self, settings: WatchSettings) -> None:
        """Store ``settings``; the folder and pair of a workspace never change (a second watch needs its own)."""
        old = self.settings()
        if old is not None and (old.folder, old.pair) != (settings.folder, settings.pair):
            raise ConfigError(
                f"the workspace {self.root.parent} already watches {old.folder} with the pair {old.pair}, not "
                f"{settings.folder} with {settings.pair}; give this watch its own --workspace"
            )
        with self._db(write=True) as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('settings', ?)", (json.dumps(asdict(settings)),))

    def _meta(self, key: str) -> Any:
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row["value"]) if row else None

    def current_version(self) -> int | None:
        """The version detection uses and the next round fine-tunes (None before version 0 is recorded)."""
        return self._meta("current_version")

    def set_current(self, version: int, action: str, note: str) -> None:
        """Make ``version`` current and record who did it (``promoted``, ``rollback``, ``start``)."""
        with self._db(write=True) as db:
            _set_current(db, version, action, note)

    def changes(self) -> list[dict[str, Any]]:
        """Every change of the current version, oldest first: ``{"time", "version", "action", "note"}``."""
        with self._db() as db:
            return [dict(row) for row in db.execute("SELECT time, version, action, note FROM changes ORDER BY id")]

    # -- files and images ---------------------------------------------------------------------

    def known_files(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every file hashed so far (one query per scan, not one per file)."""
        with self._db() as db:
            return {r["path"]: (r["size"], r["mtime_ns"]) for r in db.execute("SELECT path, size, mtime_ns FROM files")}

    def paths_of(self, sha256: str) -> list[str]:
        """Every path seen holding these bytes (the first one first)."""
        with self._db() as db:
            return [r["path"] for r in db.execute("SELECT path FROM files WHERE sha256=? ORDER BY rowid", (sha256,))]

    def begin_detection(self, sha256: str, path: str, name: str, *, seen: tuple[int, int] | None = None) -> ImageRecord | None:
        """Claim the bytes ``sha256`` for detection -> its row (state ``detecting``), or None when already decided.

        One transaction, which also records that ``path`` at ``seen`` = (size, mtime_ns) holds these
        bytes (so a kill never leaves a file hashed but its image unclaimed): a duplicate (same bytes
        under another name) finds its row decided and is not run again; a row left ``detecting`` by
        a killed service is claimed again with one more attempt.
        """
        now = _now()
        with self._db(write=True) as db:
            if seen is not None:
                db.execute("INSERT OR REPLACE INTO files (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)", (path, *seen, sha256))
            row = db.execute("SELECT state FROM images WHERE sha256=?", (sha256,)).fetchone()
            if row is not None and row["state"] != "detecting":
                return None
            if row is None:
                db.execute("INSERT INTO images (sha256, path, name, state, attempts, added, updated) "
                           "VALUES (?, ?, ?, 'detecting', 1, ?, ?)", (sha256, path, name, now, now))
            else:
                db.execute("UPDATE images SET attempts=attempts+1, updated=? WHERE sha256=?", (now, sha256))
        return self.image(sha256)

    def finish_image(self, sha256: str, state: str, *, flagged: float | None = None, item_id: str | None = None,
                     version: int | None = None, thumb: str | None = None, error: str = "") -> None:
        """Record the outcome of a detection (``clean``, ``artifact`` or ``failed``)."""
        if state not in IMAGE_STATES[1:]:
            raise ValueError(f"an image ends clean, artifact or failed, not {state!r}")
        with self._db(write=True) as db:
            db.execute("UPDATE images SET state=?, flagged=?, item_id=?, version=?, thumb=?, error=?, updated=? WHERE sha256=?",
                       (state, flagged, item_id, version, thumb, error, _now(), sha256))

    def image(self, sha256: str) -> ImageRecord | None:
        """The row of these bytes, or None."""
        with self._db() as db:
            row = db.execute("SELECT * FROM images WHERE sha256=?", (sha256,)).fetchone()
        return _image(row) if row else None

    def images(self, state: str | None = None) -> list[ImageRecord]:
        """Images in arrival order, optionally only those in ``state``."""
        query, args = "SELECT * FROM images", ()
        if state is not None:
            query, args = query + " WHERE state=?", (state,)
        with self._db() as db:
            return [_image(r) for r in db.execute(query + " ORDER BY added, sha256", args)]

    def gathering(self) -> list[ImageRecord]:
        """Artifact images not yet in a round."""
        return [image for image in self.images("artifact") if image.round is None]

    # -- rounds and versions ------------------------------------------------------------------

    def form_round(self, version: int, parent: int, shas: list[str]) -> RoundRecord:
        """Open round ``version`` (state ``queued``) fine-tuning ``parent`` on the images ``shas``, in one transaction."""
        now = _now()
        with self._db(write=True) as db:
            db.execute("INSERT INTO rounds (version, state, parent, created, updated) VALUES (?, 'queued', ?, ?, ?)",
                       (version, parent, now, now))
            db.executemany("UPDATE images SET round=? WHERE sha256=?", [(version, sha) for sha in shas])
        return self.round(version)

    def round(self, version: int) -> RoundRecord:
        """Round ``version``; ``ConfigError`` when there is none."""
        with self._db() as db:
            row = db.execute("SELECT * FROM rounds WHERE version=?", (version,)).fetchone()
        if row is None:
            raise ConfigError(f"there is no repair round {version} in {self.db_path}; see `desra watch status`")
        return _round(row)

    def rounds(self) -> list[RoundRecord]:
        """Every round, oldest first."""
        with self._db() as db:
            return [_round(r) for r in db.execute("SELECT * FROM rounds ORDER BY version")]

    def round_images(self, version: int) -> list[ImageRecord]:
        """The images of round ``version``."""
        return [image for image in self.images("artifact") if image.round == version]

    def update_round(self, version: int, **fields: Any) -> RoundRecord:
        """Change ``state``, ``job_id``, ``removal``, ``addition`` or ``reason`` of a round."""
        allowed = {"state", "job_id", "removal", "addition", "reason"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"update_round takes {sorted(allowed)}, got {sorted(fields)}")
        if "state" in fields and fields["state"] not in ROUND_STATES:
            raise ValueError(f"round state must be one of {ROUND_STATES}, got {fields['state']!r}")
        columns = ", ".join(f"{name}=?" for name in fields)
        with self._db(write=True) as db:
            db.execute(f"UPDATE rounds SET {columns}, updated=? WHERE version=?", (*fields.values(), _now(), version))
        return self.round(version)

    def decide_round(self, version: int, *, removal: float | None, addition: float | None, promoted: bool, reason: str) -> None:
        """Close round ``version`` as ``done`` with its decision; a promotion makes it current in the same transaction."""
        with self._db(write=True) as db:
            db.execute("UPDATE rounds SET state='done', removal=?, addition=?, promoted=?, reason=?, updated=? WHERE version=?",
                       (removal, addition, int(promoted), reason, _now(), version))
            if promoted:
                _set_current(db, version, "promoted", reason)

    def override_decision(self, version: int, promoted: bool, note: str) -> None:
        """A user's promotion by hand: the round reads promoted, its reason says who decided, and it becomes current."""
        with self._db(write=True) as db:
            row = db.execute("SELECT reason FROM rounds WHERE version=?", (version,)).fetchone()
            db.execute("UPDATE rounds SET promoted=?, reason=?, updated=? WHERE version=?",
                       (int(promoted), f"{row['reason']}; {note}" if row and row["reason"] else note, _now(), version))
            _set_current(db, version, "promoted by hand", note)

    def add_version(self, version: int, path: str, sha256: str, parent: int | None) -> None:
        """Keep model version ``version`` (idempotent: a restart records the same file again)."""
        with self._db(write=True) as db:
            db.execute("INSERT OR REPLACE INTO versions (version, path, sha256, parent, created) VALUES (?, ?, ?, ?, ?)",
                       (version, path, sha256, parent, _now()))

    def version(self, version: int) -> VersionRecord:
        """Kept version ``version``; ``ConfigError`` listing the kept ones when there is none."""
        with self._db() as db:
            row = db.execute("SELECT * FROM versions WHERE version=?", (version,)).fetchone()
        if row is None:
            kept = ", ".join(str(v.version) for v in self.versions()) or "none yet"
            raise ConfigError(f"no model version {version} is kept in {self.root}; kept versions: {kept}")
        return VersionRecord(row["version"], row["path"], row["sha256"], row["parent"])

    def versions(self) -> list[VersionRecord]:
        """Every kept version, oldest first."""
        with self._db() as db:
            return [VersionRecord(r["version"], r["path"], r["sha256"], r["parent"])
                    for r in db.execute("SELECT * FROM versions ORDER BY version")]


def _set_current(db: sqlite3.Connection, version: int, action: str, note: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('current_version', ?)", (json.dumps(version),))
    db.execute("INSERT INTO changes (time, version, action, note) VALUES (?, ?, ?, ?)", (_now(), version, action, note))


def _image(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        sha256=row["sha256"], path=row["path"], name=row["name"], state=row["state"], attempts=row["attempts"],
        flagged=row["flagged"], item_id=row["item_id"], version=row["version"], error=row["error"], round=row["round"],
        thumb=row["thumb"], added=row["added"],
    )


def _round(row: sqlite3.Row) -> RoundRecord:
    return RoundRecord(
        version=row["version"], state=row["state"], parent=row["parent"], job_id=row["job_id"], removal=row["removal"],
        addition=row["addition"], promoted=None if row["promoted"] is None else bool(row["promoted"]), reason=row["reason"],
    )

