"""`desra eval`: score detected masks against labelled ones (DeSRA Sec. 4.1, Table 3).

  desra eval --pred DIR --gt DIR [--p 0.5] [--json]
      IoU (mean over images), region precision and recall (8-connected regions, a region counts
      when >= p of it overlaps). --json prints {"iou", "precision", "recall", "images"} on stdout.
  desra eval --before DIR --after DIR --gt DIR [--json]
      removal rate (labelled artifacts no longer detected at all) and addition rate (images whose
      new detection reaches outside the labels), plus IoU before and after.

Masks are matched by stem: <stem>_mask.png (as `desra detect` writes) or <stem>.png; labels may be
PNG masks or labelme .json files. The 5 px border outside the D map's valid region is ignored.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    """Add ``desra eval`` to the parser."""
    p = subparsers.add_parser(
        "eval", help="score detections against labelled masks", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pred", metavar="DIR", help="detected masks (e.g. a `desra detect --out` folder)")
    p.add_argument("--gt", metavar="DIR", required=True, help="labelled masks: PNG or labelme JSON")
    p.add_argument("--p", type=float, default=0.5, help="region overlap needed to count (default 0.5)")
    p.add_argument("--before", metavar="DIR", help="masks detected before fine-tuning")
    p.add_argument("--after", metavar="DIR", help="masks detected after fine-tuning")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _report_failures(failures) -> int:
    for name, error in failures:
        print(f"desra: failed: {name}: {error}", file=sys.stderr)
    return 1 if failures else 0


def run(args) -> int:
    from desra.cli.shared import progress_callback
    from desra.core.errors import ConfigError, DesraError
    from desra.detect.metrics import evaluate_folders, evaluate_removal_folders

    if not 0.0 < args.p <= 1.0:
        raise ConfigError(f"--p must be in (0, 1] (got {args.p}); the paper uses 0.5")
    if args.after:
        if args.pred:
            raise ConfigError("give --pred for detection scores or --before/--after for removal rates, not both")
        if not args.before:
            raise ConfigError("--after needs --before (masks detected before fine-tuning) and --gt")
        with progress_callback("eval") as tick:
            result = evaluate_removal_folders(args.before, args.after, args.gt, progress=tick)
        if not result.images:
            raise DesraError(f"no image could be compared ({len(result.failures)} failed)")
        if args.json:
            print(json.dumps(result.to_json(), indent=2))
        else:
            print(f"images              {len(result.images)}")
            print(f"labelled artifacts  {result.labelled}")
            print(f"removal rate        {_fmt(result.removal_rate)}  ({result.removed} removed)")
            print(f"addition rate       {_fmt(result.addition_rate)}  ({result.images_with_additions} images)")
            print(f"IoU before -> after {_fmt(result.iou_before)} -> {_fmt(result.iou_after)}")
        return _report_failures(result.failures)
    if args.before:
        raise ConfigError("--before needs --after (masks detected after fine-tuning) and --gt")
    if not args.pred:
        raise ConfigError("give --pred DIR (detections) or --before DIR --after DIR, with --gt DIR")
    with progress_callback("eval") as tick:
        summary = evaluate_folders(args.pred, args.gt, args.p, progress=tick)
    if not summary.images:
        raise DesraError(f"no image could be scored ({len(summary.failures)} failed): "
                         + "; ".join(f"{n}: {e}" for n, e in summary.failures[:3]))
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print(f"{'image':32s} {'IoU':>7s} {'P':>7s} {'R':>7s}  regions det/lab")
        for s in summary.images:
            print(f"{s.name[:32]:32s} {s.iou:7.4f} {_fmt(s.precision):>7s} {_fmt(s.recall):>7s}  {s.n_detected}/{s.n_labelled}")
        print(f"{'mean (IoU) / pooled (P, R)':32s} {summary.iou:7.4f} {_fmt(summary.precision):>7s} {_fmt(summary.recall):>7s}")
    return _report_failures(summary.failures)
