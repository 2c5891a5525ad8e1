"""The diagnostic ``sleep`` job kind: counts steps with a pause, one progress event per step, resumable.

``python -m desra.jobs.sleep_job --steps N --interval S [--fail-at K] --out DIR [--resume]``; it
checks the job runner (states, cancel, kill, resume) without training anything.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from desra.core.events import append_event


def main(argv: list[str]) -> int:
    """The ``sleep`` job kind: ``--steps N --interval S [--fail-at K] --out DIR [--resume]``, one event per step."""
    import argparse

    from desra.core.atomic import atomic_write_text

    parser = argparse.ArgumentParser(prog="desra.jobs.sleep_job", allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--fail-at", type=int, default=None, help="exit with an error at this step")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    state = args.out / "state.json"
    start = json.loads(state.read_text())["done"] if args.resume and state.exists() else 0
    print(f"sleep: steps {start + 1}..{args.steps}", flush=True)
    for step in range(start + 1, args.steps + 1):
        if step == args.fail_at:
            print(f"desra: error: sleep: failing at step {step} as asked (--fail-at)", flush=True)
            return 2
        time.sleep(args.interval)
        atomic_write_text(state, json.dumps({"done": step}))
        append_event(args.out, {"iter": step, "iters": args.steps, "time": time.time()})
    print("sleep: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
