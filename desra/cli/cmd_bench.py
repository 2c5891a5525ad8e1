"""`desra bench [NAME ...] [--json [OUT]]`, `desra bench --suite gpu --json OUT`: run named benchmarks (median of repeats).

A suite runs a fixed list of benchmarks; on a machine without what it needs (``gpu``: CUDA) each is
skipped with one line saying why, and the command still succeeds.
"""

from __future__ import annotations

import json
import sys


def register(subparsers) -> None:
    """Add ``desra bench`` to the parser."""
    p = subparsers.add_parser("bench", help="run named benchmarks", description=__doc__)
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the registered benchmarks and suites and exit")
    p.add_argument("--suite", metavar="NAME", help="run a named suite instead of NAMEs (gpu: every GPU figure)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement")
    p.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                   help="the report as JSON: on stdout, or written to file OUT (give OUT right after --json)")
    p.set_defaults(func=run)


def _write_json(report: dict, target: str) -> None:
    from desra.core.atomic import atomic_write_text

    text = json.dumps(report, indent=2)
    if target == "-":
        print(text)
    else:
        atomic_write_text(target, text + "\n")


def run(args) -> int:
    from desra.benchmarks.registry import (
        SUITES,
        BenchContext,
        list_benchmarks,
        run_benchmarks,
        run_suite,
    )
    from desra.core.errors import ConfigError

    if args.list:
        for bench in list_benchmarks():
            print(f"{bench.name:32s} {bench.description}")
        for name, (needs, names) in sorted(SUITES.items()):
            print(f"suite {name:26s} needs {needs}: {', '.join(names)}")
        return 0
    if args.suite and args.names:
        raise ConfigError(f"give benchmark names or --suite {args.suite}, not both")
    if args.json not in (None, "-") and args.json in {b.name for b in list_benchmarks()}:
        raise ConfigError(f"--json took benchmark name {args.json!r} as its output file; "
                          f"put benchmark names before --json, or give --json a file path")
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = BenchContext(device=device, repeats=args.repeats, quick=args.quick)
    to_file = args.json not in (None, "-")
    if args.suite:
        # Saved after every benchmark: a run cut short on a lent machine keeps what it measured.
        report = run_suite(args.suite, ctx, on_progress=(lambda r: _write_json(r, args.json)) if to_file else None)
    else:
        report = run_benchmarks(args.names, ctx)
    if args.json is not None:
        _write_json(report, args.json)
        if not to_file:
            return 1 if report.get("failed") else 0
    env = report["environment"]
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    for name, rows in report["benchmarks"].items():
        print(f"\n[{name}]" + (f"  ({report['seconds'][name]:.1f} s)" if name in report.get("seconds", {}) else ""))
        for row in rows:
            params = " ".join(f"{k}={v}" for k, v in row["params"].items())
            note = f"  ({row['note']})" if row["note"] else ""
            print(f"  {row['metric']:28s} {row['value']:12.4g} {row['unit']:10s} {params}{note}")
    for name, reason in report.get("skipped", {}).items():
        print(f"[{name}] skipped: {reason}")
    for name, error in report.get("failed", {}).items():
        print(f"[{name}] failed: {error}", file=sys.stderr)
    if to_file:
        print(f"report written to {args.json}")
    return 1 if report.get("failed") else 0
