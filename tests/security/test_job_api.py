"""The job API only ever touches what its caller allows (issue 20, defect 1; the runner's part of defect 8).

Parameters are typed settings, not raw flags: an argparse prefix (``ou`` after ``out``), an
unchecked path parameter (``lr`` of a detect job) or a symlink out of the workspace must not
reach a command. The worker builds argv from the settings, so these tests also run the jobs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from desra.core.errors import JobError, UnknownNameError
from desra.jobs.job_settings import SETTINGS, Confinement, parse_settings, to_argv
from desra.jobs.runner import job_command, run_worker
from desra.jobs.store import JobStore
from tests.conftest import start_worker, wait_until


@pytest.fixture
def confined(tmp_path):
    """A workspace, a folder outside it, and the dashboard-like confinement of the workspace."""
    workspace = (tmp_path / "ws").resolve()
    outside = (tmp_path / "outside").resolve()
    workspace.mkdir()
    outside.mkdir()
    confine = Confinement(read=(workspace,), write=(workspace,))
    return workspace, outside, confine


def test_an_abbreviated_flag_name_is_refused_not_passed_on(confined):
    workspace, outside, confine = confined
    store = JobStore(workspace)
    # The review's exploit: `ou` placed after the checked `out` won argparse's prefix match.
    with pytest.raises(JobError, match="unknown parameter.*'ou'"):
        store.submit("sleep", {"steps": 1, "out": str(workspace / "o"), "ou": str(outside)}, base=workspace, confine=confine)
    for kind, params in {
        "finetune": {"set": "s", "pair": "desra-demo-x4", "o": str(outside)},
        "detect": {"lr": "x.png", "pair": "desra-demo-x4", "segment": "gan"},
        "calibrate": {"images": "i", "pair": "desra-demo-x4", "outp": "w.tsv"},
        "zoo-train": {"stage": "mse", "config": "c.yaml", "--out": str(outside)},
    }.items():
        with pytest.raises(JobError, match="unknown parameter"):
            store.submit(kind, params, base=workspace, confine=confine)
    assert store.list() == []


def test_the_command_line_takes_no_prefixes_either():
    from desra.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["detect", "--lr", "a.png", "--ou", "/tmp/x"])
    with pytest.raises(SystemExit):
        parser.parse_args(["jobs", "submit", "sleep", "--params", "{}"])
    assert parser.parse_args(["detect", "--out=x"]).out == "x"


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_every_path_parameter_of_every_kind_is_confined(kind, confined, tmp_path):
    """Each parameter that names a file, of each job kind, is refused when it points outside."""
    import dataclasses

    from desra.jobs.job_settings import PATH_ROLES

    workspace, outside, confine = confined
    store = JobStore(workspace)
    required = {"set": "s", "images": "i", "stage": "mse", "config": "c.yaml"}
    fields = [f for f in dataclasses.fields(SETTINGS[kind]) if f.metadata["role"] in PATH_ROLES]
    assert fields
    (workspace / "link").symlink_to(outside)
    for f in fields:
        for value in (str(outside / "x"), "../outside/x", "link/a/x", str(workspace / ".." / "outside")):
            params = {k: v for k, v in required.items() if k in {g.name for g in dataclasses.fields(SETTINGS[kind])}}
            params[f.name] = value
            with pytest.raises(JobError, match="outside the workspace"):
                store.submit(kind, params, base=workspace, confine=confine)
        inside = {k: v for k, v in required.items() if k in {g.name for g in dataclasses.fields(SETTINGS[kind])}}
        inside[f.name] = "inside/a/x"
        job = store.submit(kind, inside, base=workspace, confine=confine)
        assert job.params[f.name] == str(workspace / "inside" / "a" / "x")


def test_detect_cannot_read_an_image_outside(confined, photo):
    """The review's second exploit: ``lr`` was not among the checked names, and the overlay of an outside image became downloadable."""
    from desra.core.imageio import write_image

    workspace, outside, confine = confined
    write_image(outside / "secret.png", photo("chelsea")[:64, :64])
    store = JobStore(workspace)
    with pytest.raises(JobError, match="lr=.*outside the workspace"):
        store.submit("detect", {"lr": str(outside / "secret.png"), "pair": "desra-demo-x4", "segmenter": "none"},
                     base=workspace, confine=confine)
    with pytest.raises(JobError, match="segmenter=.*outside"):
        store.submit("detect", {"lr": "a.png", "pair": "desra-demo-x4", "segmenter": str(outside)}, base=workspace, confine=confine)
    # Names that are not paths pass: a registered model id, a segmenter alias or hub id.
    job = store.submit("detect", {"lr": "a.png", "mse_model": "desra-demo-x4-mse", "gan_model": "desra-demo-x4-gan",
                                  "segmenter": "nvidia/segformer-b0-finetuned-ade-512-512"}, base=workspace, confine=confine)
    assert job.params["mse_model"] == "desra-demo-x4-mse"
    with pytest.raises(UnknownNameError, match="registered pairs"):
        store.submit("detect", {"lr": "a.png", "pair": "../../etc"}, base=workspace, confine=confine)


def test_out_may_not_overwrite_the_shipped_weights(confined):
    from desra.core.paths import weights_dir

    workspace, _, _ = confined
    dashboard = Confinement(read=(workspace, weights_dir().resolve()), write=(workspace,))
    with pytest.raises(JobError, match="out=.*outside the workspace"):
        JobStore(workspace).submit("sleep", {"out": str(weights_dir())}, base=workspace, confine=dashboard)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"steps": "many"}, "whole number"),
        ({"steps": True}, "whole number"),
        ({"steps": -1}, "at least 0"),
        ({"interval": float("nan")}, "finite"),
        ({"out": 5}, "string"),
        ({"out": "a\x00b"}, "NUL"),
    ],
)
def test_wrong_types_and_values_are_refused_at_submission(tmp_path, params, message):
    with pytest.raises(JobError, match=message):
        JobStore(tmp_path).submit("sleep", params)


def test_a_batch_of_zero_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(JobError, match="batch=0.*at least 1"):
        JobStore(tmp_path).submit("finetune", {"set": "s", "pair": "desra-demo-x4", "batch": 0})


def test_a_value_that_looks_like_a_flag_stays_a_value(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 1, "interval": 0, "out": "--resume"}, base=tmp_path)
    argv = job_command(job, "cpu")
    assert f"--out={tmp_path.resolve() / '--resume'}" in argv and "--resume" not in argv
    run_worker(tmp_path, "cpu", drain=True)
    assert store.status(job.id).state == "done"
    assert (tmp_path / "--resume" / "events.jsonl").is_file()


def test_a_tampered_database_row_is_parsed_again_by_the_worker(tmp_path):
    import sqlite3

    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 1, "interval": 0})
    with sqlite3.connect(store.db_path) as db:
        db.execute("UPDATE jobs SET params=? WHERE id=?", ('{"steps": 1, "ou": "/tmp"}', job.id))
    run_worker(tmp_path, "cpu", drain=True)
    failed = store.status(job.id)
    assert failed.state == "failed" and "unknown parameter" in failed.reason


def test_relative_paths_resolve_in_the_submitters_folder(tmp_path):
    """Defect 8: a relative ``--param`` path used to resolve in the worker's folder."""
    submitter = tmp_path / "here"
    submitter.mkdir()
    workspace = tmp_path / "ws"
    subprocess.run(
        [sys.executable, "-m", "desra", "jobs", "submit", "sleep", "--workspace", str(workspace),
         "--param", "steps=1", "--param", "interval=0", "--param", "out=rel"],
        cwd=submitter, check=True, capture_output=True,
    )
    (job,) = JobStore(workspace).list()
    assert job.out == submitter.resolve() / "rel"
    run_worker(workspace, "cpu", drain=True)  # this process's folder is not `submitter`
    assert (submitter / "rel" / "events.jsonl").is_file()


def test_malformed_params_json_is_one_line(tmp_path):
    for text, message in (("{not json", "not valid JSON"), ("[1, 2]", "one JSON object")):
        result = subprocess.run(
            [sys.executable, "-m", "desra", "jobs", "submit", "sleep", "--workspace", str(tmp_path), "--params-json", text],
            capture_output=True, text=True,
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1






def test_a_dead_workers_heartbeat_is_not_trusted(tmp_path):
    """Defect 8: for 20 s after a worker died nothing started and a new worker was refused."""
    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 200, "interval": 0.05})
    worker = start_worker(tmp_path)
    assert wait_until(lambda: len(store.events(job.id)) >= 2)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    # At once, well inside the 20 s heartbeat window: the dead worker is seen as dead...
    assert [w.alive for w in store.workers()] == [False]
    assert store.recover() == [job.id]
    # ... and a new worker registers and finishes the job.
    run_worker(tmp_path, "cpu", drain=True)
    assert store.status(job.id).state == "done"
    assert store.workers() == []


def test_sigterm_requeues_the_job_and_removes_the_worker(tmp_path):
    store = JobStore(tmp_path)
    job = store.submit("sleep", {"steps": 200, "interval": 0.05})
    worker = start_worker(tmp_path)
    assert wait_until(lambda: len(store.events(job.id)) >= 2)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) != 0
    assert store.workers() == []
    requeued = store.status(job.id)
    assert requeued.state == "queued" and requeued.resume and "requeued" in requeued.reason
    count = len(store.events(job.id))
    time.sleep(0.5)
    assert len(store.events(job.id)) == count  # the job's child stopped with its worker


def test_settings_round_trip_through_argv():
    """Every kind's settings parse from their own stored parameters and give one flag per set value."""
    settings = parse_settings("finetune", {"set": "/s", "pair": "desra-demo-x4", "iters": 3, "no_amp": True})
    assert to_argv(settings) == ["--set=/s", "--pair=desra-demo-x4", "--iters=3", "--no-amp"]


def _subparser(parser, names):
    import argparse

    for name in names:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize("kind", ["finetune", "detect", "calibrate", "zoo-train"])
def test_every_setting_is_a_flag_of_the_command_it_runs(kind):
    """The settings types are written out by hand: they must not drift from the commands' flags."""
    import argparse
    import dataclasses

    from desra.cli import build_parser
    from desra.jobs.store import JOB_KINDS

    command = _subparser(build_parser(), JOB_KINDS[kind].command[2:])
    options = {a.dest: a for a in command._actions if a.option_strings}
    for f in dataclasses.fields(SETTINGS[kind]):
        assert f.name in options, f"{kind} setting {f.name} is no flag of `desra {' '.join(JOB_KINDS[kind].command[2:])}`"
        assert f"--{f.name.replace('_', '-')}" in options[f.name].option_strings
        is_flag = isinstance(options[f.name], argparse._StoreTrueAction)
        assert is_flag == (f.type in (bool, "bool")), f.name
