"""The one way desra opens an SQLite file (job runner, curated-set manifests, fingerprint registry).

Connections are autocommit (``isolation_level=None``) so a transaction is exactly the
``write=True`` block: ``BEGIN IMMEDIATE`` takes the write lock before the first read, so two
processes never interleave read-modify-write; any exception rolls it back. ``synchronous=FULL``
because a killed job or service must lose nothing that was committed. Connections are always
closed (``sqlite3.Connection``'s own context manager commits but never closes).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for another process's write lock before failing."""


@contextlib.contextmanager
def connect(
    path: Path,
    *,
    write: bool = False,
    wal: bool = False,
    untrusted: bool = False,
    on_error: Callable[[sqlite3.DatabaseError], Exception] | None = None,
) -> Iterator[sqlite3.Connection]:
    """Open ``path`` (rows as ``sqlite3.Row``) for one block.

    ``write``: the block is one immediate transaction, committed on success, rolled back on error.
    ``wal``: write-ahead logging, for files many processes poll while one writes (the job runner).
    ``untrusted``: the file may come from elsewhere (an imported set): its schema runs no functions.
    ``on_error``: turns any ``sqlite3.DatabaseError`` (garbage file, missing table, ...) into the
    caller's own error, raised without the SQLite traceback.
    """

    def translated(error: sqlite3.DatabaseError) -> BaseException:
        return on_error(error) if on_error is not None else error

    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.DatabaseError as error:
        raise translated(error) from None
    db.row_factory = sqlite3.Row
    try:
        try:
            if untrusted:
                db.execute("PRAGMA trusted_schema=OFF")
            if wal:
                db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            if write:
                db.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as error:
            raise translated(error) from None
        try:
            yield db
            if write:
                db.execute("COMMIT")
        except BaseException as error:
            if write and db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            if isinstance(error, sqlite3.DatabaseError) and on_error is not None:
                raise on_error(error) from None
            raise
    finally:
        db.close()
