"""The job API of a workspace: submit, watch, cancel and resume durable jobs (``desra jobs``, the dashboard's
``submit_job`` / ``job_status`` endpoints, the Repair tab).

The queue itself is :class:`desra.jobs.store.JobStore`; this adds what every caller did around it:
starting workers, the dashboard's sandbox (:func:`desra.jobs.job_settings.workspace_confinement`)
and the status answer (the job, its latest progress event, the tail of its log).
"""

from __future__ import annotations

import os
from typing import Any

from desra.core.events import latest_progress

LOG_TAIL_BYTES = 4000
"""How much of a job's log a status answer carries."""


def _store(workspace: str | os.PathLike):
    from desra.jobs.store import JobStore

    return JobStore(workspace)


def submit_job(
    workspace: str | os.PathLike,
    kind: str,
    params: dict[str, Any],
    *,
    device: str = "auto",
    base: str | os.PathLike | None = None,
    confined: bool = False,
    start_workers: bool = False,
):
    """Queue a ``kind`` job (``desra.jobs.store.Job``, state ``queued``); relative paths resolve against ``base`` (default the current folder).

    ``confined``: every path must stay inside the workspace (reads may also use the shipped weights,
    datasets and configs) and relative paths resolve in the workspace, as for the dashboard.
    ``start_workers``: start worker processes where none is alive.
    """
    from desra.jobs.job_settings import workspace_confinement

    store = _store(workspace)
    if confined:
        job = store.submit(kind, params, device=device, base=store.workspace, confine=workspace_confinement(store.workspace))
    else:
        job = store.submit(kind, params, device=device, base=base)
    if start_workers:
        store.ensure_workers()
    return job


def list_jobs(workspace: str | os.PathLike, *, kind: str | None = None, state: str | None = None, limit: int = 200) -> list:
    """Jobs of the workspace, newest first, optionally of one ``kind`` and/or ``state``."""
    return [job for job in _store(workspace).list(state=state, limit=limit) if kind is None or job.kind == kind]


def job_status(workspace: str | os.PathLike, job_id: str):
    """The job as stored, after requeueing any job whose worker died (``JobError`` when there is no such job)."""
    store = _store(workspace)
    store.recover()
    return store.status(job_id)


def job_events(workspace: str | os.PathLike, job_id: str) -> list[dict[str, Any]]:
    """The job's events (``desra.core.events``), [] for kinds whose output is a file."""
    return _store(workspace).events(job_id)


def job_progress(workspace: str | os.PathLike, job_id: str, *, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The job as JSON plus ``progress`` (its latest progress event, or None) and ``log_tail`` (the ``job_status`` answer).

    ``events`` are the job's events when the caller has just read them (a watcher needs both).
    """
    store = _store(workspace)
    answer = store.status(job_id).to_json()
    answer["progress"] = latest_progress(store.events(job_id) if events is None else events)
    answer["log_tail"] = store.log(job_id, tail_bytes=LOG_TAIL_BYTES)
    return answer


def cancel_job(workspace: str | os.PathLike, job_id: str):
    """Cancel a queued job, or ask the worker to stop a running one -> the job."""
    return _store(workspace).cancel(job_id)


def resume_job(workspace: str | os.PathLike, job_id: str, *, start_workers: bool = False):
    """Queue a failed or cancelled job again (kinds with checkpoints continue from them) -> the job."""
    store = _store(workspace)
    job = store.resume(job_id)
    if start_workers:
        store.ensure_workers()
    return job

