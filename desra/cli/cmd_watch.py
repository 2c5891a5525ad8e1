"""``desra watch``: continual repair of a watched folder (detect on arrival, repair when artifacts gather).

    desra watch start DIR --pair NAME --workspace WS [--repair-after N] [--iters I] [--segmenter ...]
    desra watch status --workspace WS [--json]
    desra watch rollback VERSION --workspace WS
    desra watch promote VERSION --workspace WS

``start`` runs until killed and continues where it stopped when started again; see docs/watch.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from desra.cli.shared import add_segmenter_option, workspace_of


def register(subparsers) -> None:
    """Add ``desra watch`` to the parser."""
    from dataclasses import MISSING, fields

    from desra.core.paths import default_workspace
    from desra.repair.watch_state import WatchSettings

    d = {f.name: f.default for f in fields(WatchSettings) if f.default is not MISSING}  # one place for the defaults

    p = subparsers.add_parser("watch", help="continual repair: detect on arrival, repair when artifacts gather",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="watch_command", metavar="ACTION", required=True)
    workspace = {"default": None, "metavar": "WS", "help": f"workspace folder (default {default_workspace()})"}

    s = sub.add_parser("start", help="watch a folder (and its subfolders) until killed; restartable")
    s.add_argument("dir", metavar="DIR", help="folder to watch")
    s.add_argument("--pair", required=True, metavar="NAME", help="registered model pair whose GAN model is repaired")
    s.add_argument("--workspace", **workspace)
    s.add_argument("--repair-after", type=int, default=d["repair_after"], metavar="N", help=f"artifact images that start a repair round (default {d['repair_after']})")
    s.add_argument("--iters", type=int, default=d["iters"], metavar="I", help=f"fine-tune iterations per round (default {d['iters']}, the paper's)")
    add_segmenter_option(s)
    s.add_argument("--min-removal", type=float, default=d["min_removal"], metavar="R",
                   help=f"removal rate a repair needs to be promoted (default {d['min_removal']}, the paper's Real-ESRGAN repair)")
    s.add_argument("--holdout", type=float, default=d["holdout"], metavar="F", help=f"share of a round's images held out for its evaluation (default {d['holdout']})")
    s.add_argument("--lr", type=float, default=d["lr"], help=f"fine-tune learning rate (default {d['lr']:g})")
    s.add_argument("--patch", type=int, default=d["patch"], help=f"fine-tune HR crop size (default {d['patch']}, CPU-sized; the paper: 256)")
    s.add_argument("--batch", type=int, default=d["batch"], help=f"fine-tune crops per iteration (default {d['batch']})")
    s.add_argument("--settle", type=float, default=d["settle_s"], metavar="S", help=f"seconds a file must stay unchanged before it is read (default {d['settle_s']:g})")
    s.add_argument("--fingerprint-iters", type=int, default=d["fingerprint_iters"], metavar="K",
                   help=f"critical-image steps of the derivation check (default {d['fingerprint_iters']}, Quan et al.)")
    s.add_argument("--poll", type=float, default=1.0, metavar="S", help="seconds between scans when idle (default 1)")
    s.add_argument("--until-idle", action="store_true", help="exit once every file is decided and no round is in flight (scripts)")
    s.set_defaults(func=run_start)

    st = sub.add_parser("status", help="what the watch has seen and done")
    st.add_argument("--workspace", **workspace)
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.set_defaults(func=run_status)

    for action, text in (("rollback", "make an earlier version current again"), ("promote", "promote a repaired version by hand")):
        a = sub.add_parser(action, help=text)
        a.add_argument("version", type=int, metavar="VERSION")
        a.add_argument("--workspace", **workspace)
        a.set_defaults(func=run_change, action=action)


def run_start(args) -> int:
    """Handler of ``desra watch start``."""
    from desra.service import watch

    watch.start(
        args.dir, pair=args.pair, workspace=workspace_of(args), until_idle=args.until_idle, poll_s=args.poll,
        note=lambda line: print(f"desra watch: {line}", flush=True),
        repair_after=args.repair_after, iters=args.iters, segmenter=args.segmenter, min_removal=args.min_removal,
        holdout=args.holdout, lr=args.lr, patch=args.patch, batch=args.batch, settle_s=args.settle,
        fingerprint_iters=args.fingerprint_iters,
    )
    return 0


def _print_status(report: dict) -> None:
    print(f"images: {report['images']} ({report['artifact_images']} with artifacts, {report['clean_images']} clean), "
          f"{report['failed']} files could not be read; current model version {report['current_version']}")
    for r in report["rounds"]:
        metrics = "" if r["removal"] is None else f" removal {100 * r['removal']:.1f} %, addition {100 * r['addition']:.1f} %;"
        print(f"round {r['version']}: {r['state']};{metrics} {r['reason'] or ''}".rstrip())


def run_status(args) -> int:
    """Handler of ``desra watch status``."""
    from desra.service import watch

    report = watch.status(workspace_of(args))
    if args.json:
        json.dump(report, sys.stdout)
        print()
    else:
        _print_status(report)
    return 0


def run_change(args) -> int:
    """Handler of ``desra watch rollback`` and ``desra watch promote``."""
    from desra.service import watch

    report = (watch.rollback if args.action == "rollback" else watch.promote)(workspace_of(args), args.version)
    _print_status(report)
    return 0
