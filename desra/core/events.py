"""The events protocol: a run's progress as JSON lines in ``RUN/events.jsonl``.

The one owner of that file: the training loop, the fine-tune, the job runner's test job and
whoever watches them (job status, the dashboard, model cards, benchmarks) write and read it
here. One JSON object per line, appended; writers never rewrite earlier lines.

Event shapes (all optional but ``time``):
- progress: ``{"iter", "iters", "losses": {name: float}, "it_per_s", "eta_s", "time"}``
- ``{"event": "start", "iter": resumed_from, ...}`` when a call (re)starts a run
- ``{"event": "checkpoint" | "preview" | "warning" | ..., ...}``
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"


def events_path(run_dir: Path) -> Path:
    """The events file of a run folder."""
    return Path(run_dir) / EVENTS_FILE


def append_event(run_dir: Path, event: dict[str, Any]) -> None:
    """Append one event (a JSON-able dict) to the run's events file, creating it if needed."""
    with open(events_path(run_dir), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")


def read_events(run_dir: Path, since: int = 0) -> list[dict[str, Any]]:
    """The run's events from index ``since`` on ([] when there is no file yet).

    A last line without its newline is still being written and is left for the next read; a line
    that is not JSON (a writer killed mid-line, then resumed) is skipped, not fatal.
    """
    path = events_path(run_dir)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")[:-1]
    events = []
    for line in lines[since:]:
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


def is_progress(event: dict[str, Any]) -> bool:
    """True for an iteration event (it carries ``iters``), not a checkpoint/preview/warning note."""
    return "iters" in event and "iter" in event


def latest_progress(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest iteration event, or None before the first one."""
    return next((event for event in reversed(events) if is_progress(event)), None)


def last_losses(events: list[dict[str, Any]]) -> dict[str, float]:
    """Losses of the last event that reports any ({} when none does)."""
    losses: dict[str, float] = {}
    for event in events:
        losses = event.get("losses", losses)
    return losses


def total_wall_seconds(events: list[dict[str, Any]]) -> float:
    """Seconds spent training across every call of a run, killed ones included.

    Each progress event covers the iterations since the previous one at its ``it_per_s``; a
    "start" event resets that count to the iteration the call resumed from, so iterations redone
    after a kill count as the time they really took.
    """
    total, previous = 0.0, 0
    for event in events:
        if event.get("event") == "start":
            previous = event["iter"]
        elif "losses" in event and event.get("it_per_s"):
            total += (event["iter"] - previous) / event["it_per_s"]
            previous = event["iter"]
    return round(total, 1)
