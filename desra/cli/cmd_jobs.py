"""`desra jobs`: the durable job queue of a workspace (submit, list, status, cancel, resume, log, worker)."""

from __future__ import annotations

import json
from pathlib import Path

from desra.cli.shared import workspace_of


def _store(args):
    from desra.jobs.store import JobStore

    return JobStore(workspace_of(args))


def _print_job(job, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job.to_json(), indent=2))
        return
    reason = f"  ({job.reason})" if job.reason else ""
    print(f"{job.id}  {job.kind:<9}  {job.state:<9}  attempts {job.attempts}  out {job.out}{reason}")


def _parse_params(pairs: list[str], params_json: str | None) -> dict:
    from desra.core.errors import JobError

    try:
        params = json.loads(params_json) if params_json else {}
    except json.JSONDecodeError as error:
        raise JobError(f"--params-json is not valid JSON ({error.msg} at character {error.pos}); "
                       'give one object, e.g. --params-json \'{"iters": 1000}\'') from None
    if not isinstance(params, dict):
        raise JobError(f"--params-json must be one JSON object of flag values, got {type(params).__name__}")
    for pair in pairs:
        if "=" not in pair:
            raise JobError(f"--param expects KEY=VALUE, got {pair!r} (e.g. --param iters=1000)")
        key, value = pair.split("=", 1)
        try:
            params[key] = json.loads(value)  # numbers and booleans stay typed
        except json.JSONDecodeError:
            params[key] = value
    return params


def _submit(args) -> int:
    from desra.service.jobs import submit_job

    job = submit_job(workspace_of(args), args.kind, _parse_params(args.param, args.params_json), device=args.device,
                     start_workers=args.start_workers)
    _print_job(job, args.json)
    return 0


def _list(args) -> int:
    from desra.service.jobs import list_jobs

    jobs = list_jobs(workspace_of(args), state=args.state)
    if args.json:
        print(json.dumps([j.to_json() for j in jobs], indent=2))
    for job in [] if args.json else jobs:
        _print_job(job, False)
    return 0


def _status(args) -> int:
    from desra.service.jobs import job_events, job_status

    job = job_status(workspace_of(args), args.job)
    _print_job(job, args.json)
    events = job_events(workspace_of(args), job.id)
    if events and not args.json:
        last = events[-1]
        print(f"last event: {json.dumps(last)}")
    return 0


def _cancel(args) -> int:
    from desra.service.jobs import cancel_job

    _print_job(cancel_job(workspace_of(args), args.job), False)
    return 0


def _resume(args) -> int:
    from desra.service.jobs import resume_job

    _print_job(resume_job(workspace_of(args), args.job, start_workers=args.start_workers), False)
    return 0


def _log(args) -> int:
    import time

    store = _store(args)
    text = store.log(args.job, tail_bytes=args.tail)
    print(text, end="")
    if not args.follow:
        return 0
    size = store.status(args.job).log_path.stat().st_size if store.status(args.job).log_path.exists() else 0
    while store.status(args.job).state in ("queued", "running"):
        time.sleep(1.0)
        path = store.status(args.job).log_path
        if path.exists() and path.stat().st_size > size:
            with open(path, "rb") as handle:
                handle.seek(size)
                chunk = handle.read()
            size += len(chunk)
            print(chunk.decode("utf-8", errors="replace"), end="", flush=True)
    return 0


def _worker(args) -> int:
    from desra.jobs.runner import run_worker

    run_worker(workspace_of(args), args.device, drain=args.drain)
    return 0


def _workers(args) -> int:
    store = _store(args)
    if args.start:
        pids = store.ensure_workers()
        print(f"started workers: {pids}" if pids else "workers already running")
    for worker in store.workers():
        print(f"{worker.id}  pid {worker.pid}  {'alive' if worker.alive else 'stale'}  job {worker.job_id or '-'}")
    return 0


def _kinds(args) -> int:
    import dataclasses

    from desra.jobs.job_settings import SETTINGS
    from desra.jobs.store import JOB_KINDS

    for kind in JOB_KINDS.values():
        print(f"{kind.name:<10} {kind.description}")
        params = []
        for f in dataclasses.fields(SETTINGS[kind.name]):
            role = f.metadata["role"]
            required = "" if f.default is not dataclasses.MISSING else " (required)"
            params.append(f"{f.name}{'' if role == 'value' else ' [' + role + ']'}{required}")
        print(f"{'':<10}   params: {', '.join(params)}")
    return 0


def register(subparsers) -> None:
    """Add `desra jobs ...` to the `desra` parser."""
    parser = subparsers.add_parser("jobs", help="durable background jobs (fine-tune, detect, calibrate, zoo-train)")
    group = parser.add_subparsers(dest="jobs_command", metavar="ACTION")

    def sub(name: str, help_text: str, func):
        p = group.add_parser(name, help=help_text)
        p.add_argument("--workspace", type=Path, default=None, help="workspace folder (default $DESRA_WORKSPACE or ./desra-workspace)")
        p.set_defaults(func=func)
        return p

    p = sub("submit", "queue a job", _submit)
    p.add_argument("kind", help="job kind (see `desra jobs kinds`)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a flag of the job's command, repeatable; relative paths are taken from the current folder")
    p.add_argument("--params-json", default=None, help="all parameters as one JSON object")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--start-workers", action="store_true", help="start worker processes when none are running")
    p.add_argument("--json", action="store_true")
    p = sub("list", "list jobs, newest first", _list)
    p.add_argument("--state", default=None)
    p.add_argument("--json", action="store_true")
    p = sub("status", "show one job and its last progress event", _status)
    p.add_argument("job")
    p.add_argument("--json", action="store_true")
    p = sub("cancel", "cancel a queued or running job", _cancel)
    p.add_argument("job")
    p = sub("resume", "queue a failed or cancelled job again (continues from its checkpoints)", _resume)
    p.add_argument("job")
    p.add_argument("--start-workers", action="store_true")
    p = sub("log", "print a job's log", _log)
    p.add_argument("job")
    p.add_argument("--tail", type=int, default=65536, help="bytes from the end")
    p.add_argument("--follow", action="store_true", help="keep printing until the job ends")
    p = sub("worker", "run a worker in the foreground", _worker)
    p.add_argument("--device", default="cpu", help="cpu | cuda:N")
    p.add_argument("--drain", action="store_true", help="exit when no job is queued")
    p = sub("workers", "list worker processes", _workers)
    p.add_argument("--start", action="store_true", help="start detached workers (one per GPU, else one CPU worker)")
    p = sub("kinds", "list job kinds", _kinds)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
