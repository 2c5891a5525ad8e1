"""Continual repair from one command (``desra watch``, issue 19): real photos dropped into a watched folder in
two batches, two repair rounds of the embedded pair ``desra-demo-x4`` on the CPU, and the flagged area per round.

    .venv/bin/python scripts/watch_demo.py --out runs/watch-demo

Batch 1 is the held-out demo photos (``datasets/demo``: astronaut, chelsea, coffee, rocket), batch 2
three more scikit-image photos (camera, immunohistochemistry, page) and a renamed copy of a batch-1 file
(recorded, not detected again). Each photo is cut into ``--side`` px tiles, each tile one LR image:
the embedded GAN model shows artifacts on about half of them. The service runs in this process
until it is idle after each batch; its fine-tune rounds run as jobs of the workspace's job runner.
Prints the per-round table (also ``OUT/watch_table.md``) and the status JSON (``desra watch status``);
``OUT/workspace`` holds everything else (``desra serve --workspace OUT/workspace``, tab Watch).
Rerunning the same command continues the same workspace (nothing is detected or repaired twice).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

SCIKIT_IMAGE_PHOTOS = ("camera", "immunohistochemistry", "page")
"""Batch 2: scikit-image photos the embedded pair was not trained on (batch 1 is datasets/demo)."""


def demo_photos() -> list[tuple[str, np.ndarray]]:
    """Batch 1: the held-out demo photos as (name, (H, W, 3) float32 RGB in [0, 1])."""
    from desra.core.imageio import list_images, read_image
    from desra.core.paths import datasets_dir

    return [(path.stem, read_image(path).rgb) for path in list_images(datasets_dir() / "demo")]


def scikit_image_photos() -> list[tuple[str, np.ndarray]]:
    """Batch 2: :data:`SCIKIT_IMAGE_PHOTOS` as (name, (H, W, 3) float32 RGB in [0, 1]); grey photos as three equal channels."""
    import skimage.data

    photos = []
    for name in SCIKIT_IMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]
        photos.append((name, image.astype(np.float32) / 255.0))
    return photos


def drop_tiles(photos: list[tuple[str, np.ndarray]], folder: Path, side: int) -> list[Path]:
    """Write every whole ``side`` px tile of each photo into ``folder`` as ``<name>_<y>_<x>.png`` (as a user copying files in)."""
    from desra.core.imageio import write_image

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in photos:
        for y in range(0, image.shape[0] - side + 1, side):
            for x in range(0, image.shape[1] - side + 1, side):
                written.append(write_image(folder / f"{name}_{y}_{x}.png", np.ascontiguousarray(image[y:y + side, x:x + side])))
    return written


def stop_workers(workspace: Path) -> None:
    """Stop the job workers the service started in ``workspace`` (SIGTERM: each stops cleanly)."""
    from desra.jobs.store import JobStore

    for worker in JobStore(workspace).workers():
        try:
            os.kill(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def round_table(reports: list[dict]) -> str:
    """The Markdown table of the rounds' kept reports: flagged area on the held-out images before and after each repair."""
    from desra.repair.evaluate_run import percent

    lines = [
        "| round | fine-tunes | images (train + held out) | flagged before | flagged after | removal | addition | promoted | derivation decided by |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        held = r["evaluation"]["items"]
        derivation = r["derivation"]["decided_by"] if r["derivation"] else "not checked"
        lines.append(
            f"| {r['version']} | version {r['parent']} | {len(r['images']) - held} + {held} | "
            f"{percent(r['evaluation']['flagged_before'])} | {percent(r['evaluation']['flagged_after'])} | "
            f"{percent(r['evaluation']['removal_rate'])} ({r['evaluation']['removed']}/{r['evaluation']['artifacts']}) | "
            f"{percent(r['evaluation']['addition_rate'])} | {'yes' if r['promoted'] else 'no'} | {derivation} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="demo folder (the watched inbox and the workspace)")
    parser.add_argument("--side", type=int, default=128, help="tile side in LR px (default 128)")
    parser.add_argument("--repair-after", type=int, default=20, help="artifact images per round (default 20)")
    parser.add_argument("--iters", type=int, default=15, help="fine-tune iterations per round (default 15, see docs/watch.md)")
    parser.add_argument("--lr", type=float, default=1e-5,
                        help="fine-tune learning rate (default 1e-5: at the paper's 1e-4 the first round already clears every later image)")
    parser.add_argument("--fingerprint-iters", type=int, default=1000,
                        help="critical-image steps of the derivation check (default 1000; the paper's 5000 take ~1 min each here)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from desra.repair.watch_state import WatchSettings
    from desra.service import watch
    from desra.service.watch_loop import WatchService

    inbox, workspace = args.out.resolve() / "inbox", args.out.resolve() / "workspace"
    inbox.mkdir(parents=True, exist_ok=True)
    settings = WatchSettings(folder=str(inbox), pair="desra-demo-x4", repair_after=args.repair_after, iters=args.iters, lr=args.lr,
                             segmenter="none", settle_s=0.5, fingerprint_iters=args.fingerprint_iters)
    service = WatchService(workspace, settings, note=lambda line: print(f"watch: {line}", flush=True))
    started = time.monotonic()
    try:
        batch_1 = drop_tiles(demo_photos(), inbox / "batch-1", args.side)
        print(f"batch 1: {len(batch_1)} tiles of datasets/demo", flush=True)
        service.run(poll_s=0.5, until_idle=True)
        batch_2 = drop_tiles(scikit_image_photos(), inbox / "batch-2", args.side)
        shutil.copy(batch_1[0], inbox / "batch-2" / f"renamed-{batch_1[0].name}")
        print(f"batch 2: {len(batch_2)} tiles of scikit-image photos and a renamed copy of {batch_1[0].name}", flush=True)
        service.run(poll_s=0.5, until_idle=True)
    finally:
        stop_workers(workspace)
    wall_s = time.monotonic() - started
    reports = watch.round_reports(workspace)
    table = round_table(reports)
    footer = (f"\n{len(reports)} rounds in {wall_s:.0f} s wall "
              f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {args.iters} iterations at lr {args.lr:g} per round, "
              f"fingerprint {args.fingerprint_iters} steps). Flagged area: mean share of SR pixels DeSRA-det flags "
              "on the round's held-out images, with the version it fine-tuned (before) and the repaired one (after).\n")
    (args.out / "watch_table.md").write_text(table + footer)
    print("\n" + table + footer)
    print(json.dumps(watch.status(workspace), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
