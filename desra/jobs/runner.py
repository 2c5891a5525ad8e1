"""The worker of the job queue: claims jobs of :class:`desra.jobs.store.JobStore` and runs each as a ``desra`` command.

A worker serves one device; each job runs as a child process (its output in the job's
``log.txt``) whose command line is built from the job's typed settings
(:func:`desra.jobs.job_settings.to_argv`), never from raw strings. A heartbeat thread keeps the
worker's row fresh; SIGTERM or Ctrl-C stops the job and queues it for the next worker; a kill -9
takes the job's process along (``die_with_parent``) and the store requeues the job once the
worker is seen dead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from desra.core.errors import DesraError
from desra.core.process import die_with_parent
from desra.jobs.job_settings import parse_settings, to_argv
from desra.jobs.store import CANCEL_GRACE_S, HEARTBEAT_S, JOB_KINDS, Job, JobStore


def job_command(job: Job, worker_device: str) -> list[str]:
    """The full command line a worker runs for ``job`` on ``worker_device``, built from its typed settings."""
    kind = JOB_KINDS[job.kind]
    # Parsed again here: a row edited in the database cannot smuggle in a flag either.
    settings = parse_settings(job.kind, {**job.params, "out": str(job.out)})
    argv = [sys.executable, *kind.command, *to_argv(settings)]
    if kind.device_flag:
        device = job.device if job.device != "auto" else worker_device
        argv.append("--device=" + ("cuda" if device.startswith("cuda") else "cpu"))
    if job.resume and kind.resume_flag:
        argv.append(kind.resume_flag)
    return argv


def _child_env(worker_device: str) -> dict[str, str]:
    env = dict(os.environ)
    # Each GPU worker's children see only their GPU; the CPU worker's see none.
    env["CUDA_VISIBLE_DEVICES"] = worker_device.split(":")[1] if worker_device.startswith("cuda:") else ""
    env.setdefault("TQDM_MININTERVAL", "5")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _failure_reason(log_path: Path, returncode: int) -> str:
    with contextlib.suppress(OSError):
        lines = [line.strip() for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines()]
        for line in reversed(lines):
            if line.startswith("desra:") or "error" in line.lower():
                return line[:500]
    if returncode < 0:
        return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def run_worker(
    workspace: str | os.PathLike,
    device: str = "cpu",
    *,
    drain: bool = False,
    poll_s: float = 0.5,
    on_job: Callable[[Job], None] | None = None,
) -> None:
    """Serve the workspace's queue on ``device`` until killed (``drain``: stop when no job is queued)."""
    store = JobStore(workspace)
    worker_id = store.register_worker(device)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(sqlite3.Error):
                store.beat(worker_id)

    beater = threading.Thread(target=heartbeat, daemon=True)
    beater.start()
    previous = _exit_on_sigterm()
    try:
        while True:
            store.recover()
            job = store.claim(worker_id, device)
            if job is None:
                if drain:
                    return
                time.sleep(poll_s)
                continue
            if on_job is not None:
                on_job(job)
            _run_one(store, job, worker_id, device, poll_s)
    finally:
        stop.set()
        store.unregister_worker(worker_id)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm():
    """Make SIGTERM unwind the worker like Ctrl-C (its job requeued, its row removed); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, terminate)


def _run_one(store: JobStore, job: Job, worker_id: str, device: str, poll_s: float) -> None:
    job.job_dir.mkdir(parents=True, exist_ok=True)
    try:
        argv = job_command(job, device)
    except DesraError as error:
        store.finish(job.id, worker_id, "failed", f"invalid job: {error}")
        return
    if JOB_KINDS[job.kind].out_is_dir:
        job.out.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "ab") as log:
        log.write(f"\n=== attempt {job.attempts} on {device} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  f"{' '.join(argv[1:])}\n".encode())
        log.flush()
        # The job's own folder as working directory: whatever relative name its command resolves
        # stays inside the workspace (submitted paths are already absolute).
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_child_env(device),
            cwd=job.job_dir, preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        cancelled_at = None
        try:
            while process.poll() is None:
                time.sleep(poll_s)
                if cancelled_at is None and store.cancel_requested(job.id):
                    cancelled_at = time.monotonic()
                    process.terminate()
                elif cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
                    process.kill()
        except BaseException:
            # The worker itself is stopping (SIGTERM, Ctrl-C): stop the job and queue it for the next worker.
            _stop(process)
            store.requeue(job.id, worker_id, f"worker {worker_id} was stopped; requeued")
            raise
    if cancelled_at is not None:
        store.finish(job.id, worker_id, "cancelled", "cancelled by request")
    elif process.returncode == 0:
        store.finish(job.id, worker_id, "done")
    else:
        store.finish(job.id, worker_id, "failed", _failure_reason(job.log_path, process.returncode))


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(CANCEL_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
