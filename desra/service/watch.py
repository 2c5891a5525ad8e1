"""Continual repair of a watched folder, as user actions: start, status, rollback, promote (CLI and dashboard).

The service itself is :class:`desra.service.watch_loop.WatchService`; its state is the workspace's
``watch/watch.db`` (:mod:`desra.repair.watch_state`), so every function here reads or changes that
state and nothing else, whether or not a service is running.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from desra.core.errors import ConfigError
from desra.repair.watch_state import WatchSettings, WatchStore


def start(
    folder: str | os.PathLike,
    *,
    pair: str,
    workspace: str | os.PathLike,
    until_idle: bool = False,
    poll_s: float = 1.0,
    note: Callable[[str], None] | None = None,
    **settings: Any,
) -> None:
    """Watch ``folder`` for ``pair`` in ``workspace`` until killed (``until_idle``: until nothing is left to do).

    ``settings`` are the other fields of :class:`desra.repair.watch_state.WatchSettings`
    (``repair_after``, ``iters``, ``segmenter``, ``min_removal``, ...). A restart with the same
    folder and pair continues where the last run stopped.
    """
    from desra.models import registry
    from desra.service.watch_loop import WatchService

    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"{folder} is not a folder; `desra watch start` watches a folder of images (and its subfolders)")
    registry.get_pair(pair)  # an unknown pair fails here, listing the registered ones
    service = WatchService(workspace, WatchSettings(folder=str(root), pair=pair, **settings), note=note)
    service.run(poll_s=poll_s, until_idle=until_idle)


def _store(workspace: str | os.PathLike) -> WatchStore:
    """The workspace's watch state; ``ConfigError`` when no watch was ever started there."""
    path = Path(workspace).expanduser().resolve()
    if not (path / "watch" / "watch.db").is_file():
        raise ConfigError(f"no watch has been started in the workspace {path}; start one with `desra watch start DIR --pair NAME --workspace {path}`")
    return WatchStore(path)


def status(workspace: str | os.PathLike) -> dict[str, Any]:
    """What the watch has seen and done, in the issue's shape.

    ``{"images", "artifact_images", "clean_images", "failed", "rounds": [{"version", "state",
    "removal", "addition", "promoted", "reason"}], "current_version"}``: ``images`` counts unique
    readable images (by content), ``failed`` the files that could not be read.
    """
    store = _store(workspace)
    images = store.images()
    count = {state: sum(image.state == state for image in images) for state in ("clean", "artifact", "failed")}
    return {
        "images": count["clean"] + count["artifact"],
        "artifact_images": count["artifact"],
        "clean_images": count["clean"],
        "failed": count["failed"],
        "rounds": [r.to_status() for r in store.rounds()],
        "current_version": store.current_version(),
    }


def timeline(workspace: str | os.PathLike) -> list[dict[str, Any]]:
    """Every arrival, oldest first: ``{"name", "path", "state", "flagged", "version", "round", "thumb", "error", "added"}``."""
    return [
        {"name": i.name, "path": i.path, "state": i.state, "flagged": i.flagged, "version": i.version, "round": i.round,
         "thumb": i.thumb, "error": i.error, "added": i.added}
        for i in _store(workspace).images()
    ]


def round_reports(workspace: str | os.PathLike) -> list[dict[str, Any]]:
    """Each decided round's kept report (``watch/versions/vKKK/report.json``), oldest first."""
    from desra.service.watch_rounds import version_dir

    store = _store(workspace)
    reports = []
    for record in store.rounds():
        path = version_dir(store.root.parent, record.version) / "report.json"
        if path.is_file():
            reports.append(json.loads(path.read_text()))
    return reports


def rollback(workspace: str | os.PathLike, version: int) -> dict[str, Any]:
    """Make a kept ``version`` that was current before (0, or a promoted round) current again; returns the status."""
    store = _store(workspace)
    store.version(version)  # a version that is not kept fails here, listing the kept ones
    was_current = {change["version"] for change in store.changes()}
    if version not in was_current:
        raise ConfigError(
            f"version {version} was never promoted, so there is nothing to roll back to; promote it by hand with "
            f"`desra watch promote {version}` after reading its report, or roll back to one of {sorted(was_current)}"
        )
    store.set_current(version, "rollback", f"rolled back to version {version} by hand")
    return status(workspace)


def promote(workspace: str | os.PathLike, version: int) -> dict[str, Any]:
    """Promote a decided round's version by hand (overriding its decision, which stays in its reason); returns the status."""
    store = _store(workspace)
    record = store.round(version)
    if record.state != "done":
        raise ConfigError(f"round {version} is {record.state}; only a round that finished its evaluation can be promoted")
    store.version(version)
    if record.promoted:
        store.set_current(version, "promoted", "promoted again by hand")
    else:
        store.override_decision(version, True, "promoted by hand")
    return status(workspace)
