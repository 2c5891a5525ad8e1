"""`desra evaluate-run RUN`: before/after detection on the val split of a fine-tune run (Table 3)."""

from __future__ import annotations

import json
from pathlib import Path


def _run(args) -> int:
    from tqdm import tqdm

    from desra.repair.evaluate_run import evaluate_run, evaluation_dir, percent

    bar = tqdm(desc="evaluating", unit="image")

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    report = evaluate_run(args.run, model=args.model, set_dir=args.set, split=args.split, device=args.device,
                          tile=args.tile, report_dir=args.report_dir, progress=progress)
    bar.close()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0

    print(f"{report['items']} {report['split']} items ({report['items_with_artifacts']} with artifacts)")
    print(f"IoU before {percent(report['iou_before'])} -> after {percent(report['iou_after'])} (drop {percent(report['iou_drop'])})")
    print(f"removal rate {percent(report['removal_rate'])} ({report['removed']}/{report['artifacts']}), "
          f"addition rate {percent(report['addition_rate'])} ({report['images_with_additions']}/{report['items']})")
    print(f"report: {(args.report_dir or evaluation_dir(report['run'])) / 'report.md'}")
    return 0


def register(subparsers) -> None:
    """Add `desra evaluate-run` to the `desra` parser."""
    p = subparsers.add_parser("evaluate-run", help="compare detections before/after a fine-tune on the val split")
    p.add_argument("run", type=Path, help="run folder of `desra finetune --out`")
    p.add_argument("--model", type=Path, default=None, help="fine-tuned model (default RUN/model.safetensors)")
    p.add_argument("--set", type=Path, default=None, help="curated set (default: the run's)")
    p.add_argument("--split", default="val", choices=("train", "val"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--tile", type=int, default=None)
    p.add_argument("--report-dir", type=Path, default=None, help="where the report goes (default RUN/evaluation)")
    p.add_argument("--json", action="store_true", help="print the report JSON")
    p.set_defaults(func=_run)
