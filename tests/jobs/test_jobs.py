"""The durable job runner: states, cancel/resume, and a runner killed with SIGKILL."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from desra.core.errors import JobError, UnknownNameError
from desra.jobs.job_settings import SleepJob, to_argv
from desra.jobs.runner import run_worker
from desra.jobs.store import JobStore
from tests.conftest import start_worker, wait_until


def test_settings_become_flags_spelled_out_in_full():
    assert to_argv(SleepJob(steps=5, fail_at=2, out="--x")) == ["--steps=5", "--fail-at=2", "--out=--x"]


def test_job_runs_to_done_with_events_and_log(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 3, "interval": 0.01})
    assert job.state == "queued"
    run_worker(tmp_path, "cpu", drain=True)
    done = JobStore(tmp_path).status(job.id)  # a fresh store reads the same database
    assert done.state == "done" and done.attempts == 1
    assert [e["iter"] for e in store.events(job.id)] == [1, 2, 3]
    assert "sleep: done" in store.log(job.id)


def test_failure_keeps_the_reason(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 3, "interval": 0, "fail_at": 2})
    run_worker(tmp_path, "cpu", drain=True)
    failed = store.status(job.id)
    assert failed.state == "failed"
    assert "failing at step 2" in failed.reason
    assert [e["iter"] for e in store.events(job.id)] == [1]


def test_bad_submissions_are_refused(tmp_path):
    store = JobStore(tmp_path)
    with pytest.raises(UnknownNameError, match="unknown job kind 'train-everything'; known kinds: finetune, detect"):
        store.submit("train-everything", {})
    with pytest.raises(JobError, match="set by the runner"):
        store.submit("finetune", {"resume": True})
    with pytest.raises(JobError, match="must be a whole number"):
        store.submit("sleep", {"steps": "many"})
    with pytest.raises(JobError, match="no job 'nope' in .*jobs.db; list them with `desra jobs list`"):
        store.status("nope")


def test_cancel_queued_and_resume(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 2, "interval": 0.01})
    assert store.cancel(job.id).state == "cancelled"
    with pytest.raises(JobError, match="is cancelled; only queued or running jobs can be cancelled"):
        store.cancel(job.id)
    assert store.resume(job.id).state == "queued"
    run_worker(tmp_path, "cpu", drain=True)
    assert store.status(job.id).state == "done"
    with pytest.raises(JobError, match="is done; only failed or cancelled jobs can be resumed"):
        store.resume(job.id)


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid``, read from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False




def test_cancel_running_job(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 200, "interval": 0.1})
    worker = start_worker(tmp_path)
    try:
        assert wait_until(lambda: len(store.events(job.id)) >= 2)
        store.cancel(job.id)
        assert wait_until(lambda: store.status(job.id).state == "cancelled")
        assert len(store.events(job.id)) < 200
    finally:
        worker.terminate()
        worker.wait()


def test_state_survives_a_killed_runner(tmp_path, monkeypatch):
    import desra.jobs.store as jobs

    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 12, "interval": 0.25})
    worker = start_worker(tmp_path)
    assert wait_until(lambda: len(store.events(job.id)) >= 3)
    children = _children(worker.pid)
    assert children, "the runner started no job process"
    os.kill(worker.pid, signal.SIGKILL)  # the runner dies without cleaning anything up
    worker.wait()
    # Its job child dies with it (no second copy keeps writing events): waited for, bounded.
    assert wait_until(lambda: not any(_alive(pid) for pid in children), timeout=30), "the job outlived its runner"
    count = len(store.events(job.id))
    assert count < 12
    # A new runner, in a new store, sees the job as it was left; once the dead worker's heartbeat is
    # stale, the job is requeued with resume on and finishes from where it stopped.
    assert JobStore(tmp_path).status(job.id).state == "running"
    monkeypatch.setattr(jobs, "STALE_AFTER_S", 0.5)
    recovered = []
    assert wait_until(lambda: recovered.extend(JobStore(tmp_path).recover()) or recovered, timeout=30)
    assert recovered == [job.id] and len(store.events(job.id)) == count
    requeued = store.status(job.id)
    assert requeued.state == "queued" and requeued.resume and "requeued" in requeued.reason
    run_worker(tmp_path, "cpu", drain=True)
    final = store.status(job.id)
    assert final.state == "done" and final.attempts == 2
    assert [e["iter"] for e in store.events(job.id)] == list(range(1, 13))


def test_the_sleep_kind_runs_as_its_own_module(tmp_path):
    # The job kind's command: the sleep job is a module of its own, not a mode of the store's.
    from desra.jobs.store import JOB_KINDS

    assert JOB_KINDS["sleep"].command == ("-m", "desra.jobs.sleep_job")
    done = subprocess.run([sys.executable, "-m", "desra.jobs.sleep_job", "--steps", "2", "--interval", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "sleep: done" in done.stdout, done.stderr
    failed = subprocess.run([sys.executable, "-m", "desra.jobs.sleep_job", "--steps", "3", "--interval", "0", "--fail-at", "3",
                             "--out", str(tmp_path), "--resume"], capture_output=True, text=True, check=False)
    assert failed.returncode == 2 and "failing at step 3" in failed.stdout


def test_the_status_answer_carries_the_latest_progress_and_the_log_tail(tmp_path):
    from desra.service.jobs import job_progress, submit_job

    job = submit_job(tmp_path, "sleep", {"steps": 2, "interval": 0}, base=tmp_path)
    run_worker(tmp_path, "cpu", drain=True)
    answer = job_progress(tmp_path, job.id)
    assert answer["state"] == "done" and answer["progress"]["iter"] == 2 and answer["progress"]["iters"] == 2
    assert "sleep: done" in answer["log_tail"]
    assert set(job.to_json()) | {"progress", "log_tail"} == set(answer)
