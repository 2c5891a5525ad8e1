"""Durable background jobs: a SQLite queue in the workspace and worker processes that run it.

Jobs (fine-tune, batch detect, calibrate, zoo training) are rows in ``<workspace>/jobs/jobs.db``.
A worker process (one per GPU, or one CPU worker) claims queued jobs one at a time and runs each
as a child process of the ``desra`` CLI, its stdout/stderr kept in ``<workspace>/jobs/<id>/log.txt``.
Because the queue and the logs live on disk and workers run detached from whoever started them, a
restart of the web server or of the CLI loses nothing: a job whose worker died is requeued (resumed
where its kind supports it). States: ``queued``, ``running``, ``done``, ``failed`` (with the reason),
``cancelled``.

Small API for the dashboard and the CLI::

    store = JobStore(workspace)
    job = store.submit("finetune", {"set": "sets/a", "pair": "desra-demo-x4", "iters": 1000})
    store.ensure_workers()            # start the worker processes if none are alive
    store.status(job.id).state        # 'queued' | 'running' | 'done' | 'failed' | 'cancelled'
    store.events(job.id)              # progress events (dicts) from the job's events.jsonl
    store.log(job.id)                 # the tail of the job's log
    store.cancel(job.id); store.resume(job.id)

The worker loop is :mod:`desra.jobs.runner`, the diagnostic ``sleep`` job :mod:`desra.jobs.sleep_job`.
This module is a little over 400 lines because it is the one owner of ``jobs.db``: every SQL
statement on the queue, the API's and the worker's, is here next to the schema.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desra.core.db import connect
from desra.core.errors import JobError, UnknownNameError
from desra.core.events import events_path, read_events
from desra.core.process import pid_alive
from desra.jobs.job_settings import (
    Confinement,
    check_confined,
    params_of,
    parse_settings,
    resolve_paths,
)

STATES = ("queued", "running", "done", "failed", "cancelled")
HEARTBEAT_S = 2.0
STALE_AFTER_S = 20.0
MAX_ATTEMPTS = 3
CANCEL_GRACE_S = 10.0


@dataclass(frozen=True)
class JobKind:
    """A kind of job: which ``desra`` command it runs and how its parameters become flags."""

    name: str
    """Kind name used in ``submit`` (``finetune``, ``detect``, ...)."""
    description: str
    """One line shown by ``desra jobs kinds``."""
    command: tuple[str, ...]
    """Arguments after ``python`` that start the command, e.g. ``("-m", "desra", "finetune")``."""
    resume_flag: str | None
    """Flag added when a job is resumed (``--resume``); None when the kind reruns from scratch."""
    out_is_dir: bool
    """True when ``--out`` is a folder (holding ``events.jsonl``); False when it names a file."""
    device_flag: bool
    """True when the command takes ``--device`` and the worker should fill it in."""


# Written out by hand: every kind maps onto a desra command the CLI documents.
JOB_KINDS: dict[str, JobKind] = {
    kind.name: kind
    for kind in (
        JobKind("finetune", "DeSRA fine-tune of a GAN-SR model on a curated set (desra finetune)",
                ("-m", "desra", "finetune"), "--resume", True, True),
        JobKind("detect", "batch artifact detection on a folder (desra detect)",
                ("-m", "desra", "detect"), None, True, False),
        JobKind("calibrate", "per-class semantic weights for a model pair (desra calibrate)",
                ("-m", "desra", "calibrate"), None, False, False),
        JobKind("zoo-train", "train an SR model of the zoo (desra zoo train)",
                ("-m", "desra", "zoo", "train"), "--resume", True, False),
        JobKind("sleep", "diagnostic: counts steps with a pause, resumable (checks the runner)",
                ("-m", "desra.jobs.sleep_job"), "--resume", True, False),
    )
}


@dataclass(frozen=True)
class Job:
    """One job as stored: its parameters, state and where its files are."""

    id: str
    """Unique id, ``<kind>-<yyyymmdd-hhmmss>-<hex>``."""
    kind: str
    """A key of ``JOB_KINDS``."""
    params: dict[str, Any]
    """Flag values of the job's command (``{"iters": 1000}`` -> ``--iters 1000``)."""
    state: str
    """One of ``STATES``."""
    reason: str
    """Why it failed (or a note, e.g. that it was requeued); empty when there is nothing to say."""
    device: str
    """Requested device: ``auto`` (the worker's), ``cpu`` or ``cuda``."""
    created: float
    """Submission time, seconds since the epoch."""
    started: float | None
    """When its latest attempt started running."""
    finished: float | None
    """When it reached done/failed/cancelled."""
    attempts: int
    """How many times a worker started it."""
    resume: bool
    """True when its next run continues from its checkpoints."""
    worker: str | None
    """Worker id running it (or that ran it last)."""
    job_dir: Path
    """Folder of the job: ``log.txt`` and, by default, its output ``out/``."""
    out: Path
    """Output path of the command (``--out``)."""

    @property
    def log_path(self) -> Path:
        """The job's combined stdout/stderr."""
        return self.job_dir / "log.txt"

    @property
    def events_path(self) -> Path | None:
        """JSON-lines progress events written by the command, None when its output is a file."""
        return events_path(self.out) if JOB_KINDS[self.kind].out_is_dir else None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the job (paths as strings)."""
        return {
            "id": self.id, "kind": self.kind, "params": self.params, "state": self.state,
            "reason": self.reason, "device": self.device, "created": self.created,
            "started": self.started, "finished": self.finished, "attempts": self.attempts,
            "resume": self.resume, "worker": self.worker, "job_dir": str(self.job_dir),
            "out": str(self.out), "log": str(self.log_path),
            "events": str(self.events_path) if self.events_path else None,
        }


@dataclass(frozen=True)
class WorkerInfo:
    """A worker process registered in the store."""

    id: str
    """Worker id: ``<device>-<pid>-<hex>``."""
    pid: int
    """Process id."""
    device: str
    """Device its jobs run on."""
    heartbeat: float
    """Last sign of life, seconds since the epoch."""
    job_id: str | None
    """Job it is running, if any."""
    alive: bool
    """True when its heartbeat is recent."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL, state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', device TEXT NOT NULL DEFAULT 'auto', created REAL NOT NULL,
    started REAL, finished REAL, attempts INTEGER NOT NULL DEFAULT 0,
    resume INTEGER NOT NULL DEFAULT 0, cancel_requested INTEGER NOT NULL DEFAULT 0,
    worker TEXT, out TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY, pid INTEGER NOT NULL, device TEXT NOT NULL, started REAL NOT NULL,
    heartbeat REAL NOT NULL, job_id TEXT
);
"""


def _now() -> float:
    return time.time()


class JobStore:
    """The job queue of one workspace; every method opens its own connection (safe across processes)."""

    def __init__(self, workspace: str | os.PathLike):
        self.workspace = Path(workspace).expanduser().resolve()
        self.root = self.workspace / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "jobs.db"
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.db_path, wal=True)

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return connect(self.db_path, wal=True, write=True)

    def _job(self, row: sqlite3.Row) -> Job:
        return Job(
            id=row["id"], kind=row["kind"], params=json.loads(row["params"]), state=row["state"],
            reason=row["reason"], device=row["device"], created=row["created"], started=row["started"],
            finished=row["finished"], attempts=row["attempts"], resume=bool(row["resume"]),
            worker=row["worker"], job_dir=self.root / row["id"], out=Path(row["out"]),
        )

    # -- the API the dashboard and the CLI use ------------------------------------------------

    def submit(
        self,
        kind: str,
        params: dict[str, Any] | None = None,
        *,
        device: str = "auto",
        base: str | os.PathLike | None = None,
        confine: Confinement | None = None,
    ) -> Job:
        """Queue a job of ``kind``; returns it (state ``queued``).

        ``params`` are checked against the kind's typed settings (:mod:`desra.jobs.job_settings`): unknown
        names, wrong types and out-of-range values are refused. Relative paths are resolved against
        ``base`` (the submitter's folder; default the current one), and with ``confine`` every path
        must stay inside the roots it allows.
        """
        if kind not in JOB_KINDS:
            raise UnknownNameError(f"unknown job kind {kind!r}; known kinds: {', '.join(JOB_KINDS)}")
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise JobError(f"job device {device!r} is not one of auto, cpu, cuda, cuda:N")
        params = dict(params or {})
        for reserved in ("resume", "device") if JOB_KINDS[kind].device_flag else ("resume",):
            if reserved in params:
                raise JobError(
                    f"job parameter {reserved!r} is set by the runner; use resume(job_id) or submit(..., device=...)"
                )
        settings = resolve_paths(parse_settings(kind, params), base if base is not None else Path.cwd())
        if confine is not None:
            check_confined(settings, confine)
        stored = params_of(settings)
        job_id = f"{kind}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        job_dir = self.root / job_id
        job_dir.mkdir(parents=True)
        out = Path(stored["out"]).resolve() if stored.get("out") else job_dir / "out"
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, params, state, device, created, out) VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (job_id, kind, json.dumps(stored), device, _now(), str(out)),
            )
        return self.status(job_id)

    def status(self, job_id: str) -> Job:
        """The job's current row; ``JobError`` when there is no such job."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no job {job_id!r} in {self.db_path}; list them with `desra jobs list`")
        return self._job(row)

    def list(self, state: str | None = None, limit: int = 200) -> list[Job]:
        """Jobs, newest first, optionally only those in ``state``."""
        if state is not None and state not in STATES:
            raise JobError(f"unknown job state {state!r}; states: {', '.join(STATES)}")
        query = "SELECT * FROM jobs" + (" WHERE state = ?" if state else "") + " ORDER BY created DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, ((state,) if state else ()) + (limit,)).fetchall()
        return [self._job(row) for row in rows]

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or ask the worker to stop a running one (it turns ``cancelled``)."""
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobError(f"no job {job_id!r} to cancel")
            if row["state"] == "queued":
                db.execute("UPDATE jobs SET state='cancelled', finished=? WHERE id=?", (_now(), job_id))
            elif row["state"] == "running":
                db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
            else:
                raise JobError(f"job {job_id} is {row['state']}; only queued or running jobs can be cancelled")
        self.recover()
        return self.status(job_id)

    def resume(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again; kinds with checkpoints continue where they stopped."""
        with self._transaction() as db:
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobError(f"no job {job_id!r} to resume")
            if row["state"] not in ("failed", "cancelled"):
                raise JobError(f"job {job_id} is {row['state']}; only failed or cancelled jobs can be resumed")
            db.execute(
                "UPDATE jobs SET state='queued', reason='', resume=1, cancel_requested=0, attempts=0, "
                "finished=NULL WHERE id=?", (job_id,),
            )
        return self.status(job_id)

    def events(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        """Progress events of the job (JSON objects, one per line of its events.jsonl) from index ``since`` on."""
        job = self.status(job_id)
        return read_events(job.out, since) if job.events_path is not None else []

    def log(self, job_id: str, tail_bytes: int = 65536) -> str:
        """The last ``tail_bytes`` of the job's log (stdout and stderr of its command)."""
        path = self.status(job_id).log_path
        if not path.exists():
            return ""
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - tail_bytes))
            return handle.read().decode("utf-8", errors="replace")

    def workers(self) -> list[WorkerInfo]:
        """Registered worker processes with whether each is alive."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM workers ORDER BY id").fetchall()
        now = _now()
        return [WorkerInfo(r["id"], r["pid"], r["device"], r["heartbeat"], r["job_id"], _live(r, now)) for r in rows]

    def ensure_workers(self, devices: list[str] | None = None) -> list[int]:
        """Start a detached worker for each device without a live one (default: every GPU, else the CPU); returns new pids."""
        devices = devices or default_worker_devices()
        alive = {w.device for w in self.workers() if w.alive}
        pids = []
        for device in devices:
            if device in alive:
                continue
            log = open(self.root / f"worker-{device.replace(':', '_')}.log", "ab")  # noqa: SIM115 - handed to the child
            process = subprocess.Popen(
                [sys.executable, "-m", "desra", "jobs", "worker", "--workspace", str(self.workspace), "--device", device],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            log.close()
            pids.append(process.pid)
        return pids

    def recover(self) -> list[str]:
        """Requeue running jobs whose worker stopped beating (resume on); fail them after ``MAX_ATTEMPTS``. Returns their ids."""
        now = _now()
        moved = []
        with self._transaction() as db:
            workers = db.execute("SELECT id, pid, heartbeat FROM workers").fetchall()
            live = {r["id"] for r in workers if _live(r, now)}
            for row in db.execute("SELECT * FROM jobs WHERE state='running'").fetchall():
                if row["worker"] in live:
                    continue
                moved.append(row["id"])
                if row["cancel_requested"]:
                    db.execute("UPDATE jobs SET state='cancelled', finished=? WHERE id=?", (now, row["id"]))
                elif row["attempts"] >= MAX_ATTEMPTS:
                    db.execute(
                        "UPDATE jobs SET state='failed', finished=?, reason=? WHERE id=?",
                        (now, f"its worker died {row['attempts']} times; see the log, then resume it", row["id"]),
                    )
                else:
                    _queue_again(db, row, f"worker {row['worker']} stopped; requeued")
            db.executemany("DELETE FROM workers WHERE id=?", [(r["id"],) for r in workers if r["id"] not in live])
        return moved

    # -- used by the worker (desra.jobs.runner) ---------------------------------------------

    def register_worker(self, device: str) -> str:
        """Register this process as the worker of ``device`` -> its worker id; ``JobError`` when a live one exists."""
        worker_id = f"{device}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        now = _now()
        with self._transaction() as db:
            rows = db.execute("SELECT id, pid, heartbeat, job_id FROM workers WHERE device=?", (device,)).fetchall()
            running = [r for r in rows if _live(r, now)]
            if running:
                raise JobError(f"a worker for {device} is already running (pid {running[0]['pid']}); one per device")
            # A dead worker that held a job stays until recover() has requeued that job.
            db.executemany("DELETE FROM workers WHERE id=?", [(r["id"],) for r in rows if r["job_id"] is None])
            db.execute(
                "INSERT INTO workers (id, pid, device, started, heartbeat, job_id) VALUES (?, ?, ?, ?, ?, NULL)",
                (worker_id, os.getpid(), device, now, now),
            )
        return worker_id

    def unregister_worker(self, worker_id: str) -> None:
        """Remove a worker's row (it is stopping)."""
        with self._transaction() as db:
            db.execute("DELETE FROM workers WHERE id=?", (worker_id,))

    def beat(self, worker_id: str) -> None:
        """Record a sign of life of the worker."""
        with self._connect() as db:
            db.execute("UPDATE workers SET heartbeat=? WHERE id=?", (_now(), worker_id))

    def claim(self, worker_id: str, device: str) -> Job | None:
        """Take the oldest queued job this worker's device may run (marked running), or None."""
        gpu_worker = device.startswith("cuda")
        with self._transaction() as db:
            for row in db.execute("SELECT * FROM jobs WHERE state='queued' ORDER BY created").fetchall():
                wants_gpu = row["device"].startswith("cuda")
                if (row["device"] == "cpu" and gpu_worker) or (wants_gpu and not gpu_worker):
                    continue
                db.execute(
                    "UPDATE jobs SET state='running', started=?, worker=?, attempts=attempts+1 WHERE id=?",
                    (_now(), worker_id, row["id"]),
                )
                db.execute("UPDATE workers SET job_id=? WHERE id=?", (row["id"], worker_id))
                return self._job(db.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)).fetchone())
        return None

    def cancel_requested(self, job_id: str) -> bool:
        """True when someone asked to cancel the running job."""
        with self._connect() as db:
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id=?", (job_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    def requeue(self, job_id: str, worker_id: str, reason: str) -> None:
        """Put the worker's running job back in the queue (the worker is stopping)."""
        with self._transaction() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=? AND worker=? AND state='running'", (job_id, worker_id)).fetchone()
            if row is not None:
                _queue_again(db, row, reason)
            db.execute("UPDATE workers SET job_id=NULL WHERE id=?", (worker_id,))

    def finish(self, job_id: str, worker_id: str, state: str, reason: str = "") -> None:
        """Record the end of the worker's running job: ``done``, ``failed`` (with ``reason``) or ``cancelled``."""
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state=?, reason=?, finished=?, resume=CASE WHEN ?='done' THEN 0 ELSE resume END "
                "WHERE id=? AND worker=? AND state='running'",
                (state, reason, _now(), state, job_id, worker_id),
            )
            db.execute("UPDATE workers SET job_id=NULL WHERE id=?", (worker_id,))


def _queue_again(db: sqlite3.Connection, row: sqlite3.Row, reason: str) -> None:
    """Put a running job back in the queue, resuming from its checkpoints where its kind can."""
    resume = JOB_KINDS[row["kind"]].resume_flag is not None or bool(row["resume"])
    db.execute("UPDATE jobs SET state='queued', resume=?, reason=? WHERE id=?", (int(resume), reason, row["id"]))


def _live(row: sqlite3.Row, now: float) -> bool:
    # A dead pid is final at once; a recent heartbeat alone is not proof (the pid may have died since).
    return now - row["heartbeat"] < STALE_AFTER_S and pid_alive(row["pid"])


def default_worker_devices() -> list[str]:
    """One worker per visible GPU (``cuda:0`` ...), else one ``cpu`` worker."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] or ["cpu"]
