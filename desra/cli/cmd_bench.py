"""`desra bench [NAME ...] [--json]`: run named benchmarks (median of repeats)."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    """Add ``desra bench`` to the parser."""
    p = subparsers.add_parser("bench", help="run named benchmarks", description=__doc__)
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the registered benchmarks and exit")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement")
    p.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from desra.bench import BenchContext, list_benchmarks, run_benchmarks

    if args.list:
        for bench in list_benchmarks():
            print(f"{bench.name:32s} {bench.description}")
        return 0
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    report = run_benchmarks(args.names, BenchContext(device=device, repeats=args.repeats, quick=args.quick))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    env = report["environment"]
    print("environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    for name, rows in report["benchmarks"].items():
        print(f"\n[{name}]")
        for row in rows:
            params = " ".join(f"{k}={v}" for k, v in row["params"].items())
            note = f"  ({row['note']})" if row["note"] else ""
            print(f"  {row['metric']:28s} {row['value']:12.4g} {row['unit']:10s} {params}{note}")
    return 0
