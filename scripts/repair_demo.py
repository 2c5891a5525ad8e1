"""DeSRA repair demo on the embedded pair: detect on a train split of real photos, fine-tune, evaluate on held-out photos.

    .venv/bin/python scripts/repair_demo.py --out runs/repair-demo          # the README's table (1000 iterations, CPU)
    .venv/bin/python scripts/repair_demo.py --out /tmp/quick --iters 50      # a quick look

Train split: real photos shipped by installed packages, used as they are as LR inputs (as the
demo photos are), centre-cropped to 256 px. Only photos on which the original GAN model shows
artifacts join it, as in the paper's fine-tuning set. Val split: the held-out demo photos
(``datasets/demo``: astronaut, chelsea, coffee, rocket), never used for fine-tuning. Prints the repair table and writes it to
``OUT/repair_table.md``; the full report is ``OUT/run/evaluation/report.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# Real photos shipped by installed packages ("package:path"); the four held-out demo photos are not here.
TRAIN_PHOTOS = (
    "skimage:data/motorcycle_left.png", "skimage:data/motorcycle_right.png", "skimage:data/hubble_deep_field.jpg",
    "skimage:data/retina.jpg", "skimage:data/ihc.png", "skimage:data/brick.png", "skimage:data/grass.png",
    "skimage:data/gravel.png", "skimage:data/camera.png", "skimage:data/coins.png", "skimage:data/color.png",
    "gradio:media_assets/images/cheetah.jpg", "gradio:media_assets/images/lion.jpg",
    "gradio:media_assets/images/tower.jpg",
    "gradio:media_assets/images/cheetah1.jpg", "matplotlib:mpl-data/sample_data/grace_hopper.jpg",
    "sklearn:datasets/images/china.jpg", "sklearn:datasets/images/flower.jpg",
)
VAL_PHOTOS = ("skimage:data/astronaut.png", "skimage:data/chelsea.png", "skimage:data/coffee.png", "skimage:data/rocket.jpg")
MAX_LR_SIDE = 256  # train LR images are centre-cropped to at most this, so detection stays quick on CPU (--max-lr-side)


def packaged_photo(spec: str) -> np.ndarray:
    """A photo shipped by an installed package, ``"package:relative/path"`` -> (H, W, 3) float32 in [0, 1]."""
    from desra.core.imageio import read_image
    from desra.train.zoo_data import package_file

    return read_image(package_file(spec)).rgb


def as_lr(photo: np.ndarray, max_side: int = MAX_LR_SIDE) -> np.ndarray:
    """A real photo used as it is as an LR input (as ``datasets/demo`` is), centre-cropped to ``max_side``."""
    h, w = photo.shape[:2]
    side_h, side_w = min(h, max_side), min(w, max_side)
    y, x = (h - side_h) // 2, (w - side_w) // 2
    return np.ascontiguousarray(photo[y:y + side_h, x:x + side_w])


def val_images() -> list[tuple[str, np.ndarray]]:
    """The held-out LR images: ``datasets/demo`` when the zoo shipped it, else the same four photos read from scikit-image."""
    from desra.core.imageio import list_images, read_image
    from desra.core.paths import datasets_dir

    demo = datasets_dir() / "demo"
    files = list_images(demo) if demo.is_dir() else []
    if files:
        return [(path.stem, read_image(path).rgb) for path in files]
    return [(Path(spec).stem, packaged_photo(spec)) for spec in VAL_PHOTOS]


def main(argv: list[str] | None = None) -> int:
    """Build the set, fine-tune, evaluate; print the repair table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--out", type=Path, required=True, help="new folder for the set, the run and the table")
    parser.add_argument("--pair", default="desra-demo-x4")
    parser.add_argument("--mse-model", default=None, help="instead of --pair: MSE-SR checkpoint")
    parser.add_argument("--gan-model", default=None, help="instead of --pair: GAN-SR checkpoint")
    parser.add_argument("--disc", default=None, help="discriminator checkpoint (default: the pair's)")
    parser.add_argument("--iters", type=int, default=1000)
    # CPU-sized defaults: the embedded GAN model itself was trained on 64 px HR crops, batch 4.
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--save-every", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gan-kind", default="vanilla")
    parser.add_argument("--l1-weight", type=float, default=1.0)
    parser.add_argument("--percep-weight", type=float, default=1.0)
    parser.add_argument("--gan-weight", type=float, default=0.1)
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--max-lr-side", type=int, default=MAX_LR_SIDE,
                        help="centre-crop train LR photos to this many px (smaller: quicker detection with large models)")
    parser.add_argument("--val-max-lr-side", type=int, default=None,
                        help="also centre-crop the held-out val photos (default: used whole)")
    parser.add_argument("--scale-min-area", action="store_true",
                        help="scale detection's 4000 px minimum region area to the image size (for small crops)")
    parser.add_argument("--resume", action="store_true", help="reuse the set and continue the run in --out")
    args = parser.parse_args(argv)

    from desra.detect.pipeline import DetectConfig
    from desra.models.pairs import choose_pair
    from desra.repair.curated import create_set, open_set
    from desra.repair.evaluate_run import evaluate_run
    from desra.repair.finetune import FinetuneConfig, finetune
    from desra.service.sets import prepare_image, store_image

    out = args.out.expanduser().resolve()
    set_dir = out / "set"
    started = time.time()
    if not (args.resume and (set_dir / "manifest.sqlite").exists()):
        curated = create_set(set_dir, description=f"DeSRA repair demo of {args.pair}")
        if args.gan_model:
            models = choose_pair(mse_model=args.mse_model, gan_model=args.gan_model)
        else:
            models = choose_pair(args.pair)
        val = [(name, as_lr(image, args.val_max_lr_side) if args.val_max_lr_side else image) for name, image in val_images()]
        detect_config = DetectConfig(scale_min_area=args.scale_min_area)
        for split, images in (("train", [(Path(s).stem, as_lr(packaged_photo(s), args.max_lr_side)) for s in TRAIN_PHOTOS]),
                              ("val", val)):
            for name, lr in images:
                prepared = prepare_image(lr, models, config=detect_config)
                if split == "train" and not prepared.mask.any():
                    print(f"  train {name}: no artifacts detected, not used", flush=True)
                    continue
                store_image(curated, name, lr, prepared, split=split, provenance={"pair": args.pair})
                print(f"  {split} {name}: {lr.shape[1]}x{lr.shape[0]} LR, {100 * prepared.mask.mean():.2f} % flagged",
                      flush=True)
    curated = open_set(set_dir)
    print(f"set: {len(curated.items('train'))} train, {len(curated.items('val'))} val items "
          f"({time.time() - started:.0f} s)", flush=True)

    config = FinetuneConfig(
        set_dir=str(set_dir), out=str(out / "run"), pair=None if args.gan_model else args.pair,
        model=args.gan_model, disc=args.disc, iters=args.iters, patch=args.patch,
        batch=args.batch, save_every=args.save_every, device=args.device, gan_kind=args.gan_kind,
        l1_weight=args.l1_weight, percep_weight=args.percep_weight, gan_weight=args.gan_weight, ema=args.ema,
    )
    last = [0.0]

    def on_event(event: dict) -> None:
        if "losses" in event and time.time() - last[0] > 30:
            last[0] = time.time()
            losses = " ".join(f"{k} {v:.4f}" for k, v in event["losses"].items())
            print(f"  iter {event['iter']}/{event['iters']}  {event['it_per_s']:.2f} it/s  ETA {event['eta_s']:.0f} s  {losses}", flush=True)

    result = finetune(config, resume=args.resume, on_event=on_event)
    print(f"fine-tuned {result.iterations} iterations on {result.device} in {result.wall_s:.0f} s", flush=True)
    report = evaluate_run(result.out)
    table = repair_table(report, args, result)
    (out / "repair_table.md").write_text(table)
    print(table)
    print(json.dumps({k: report[k] for k in ("iou_before", "iou_after", "iou_drop", "removal_rate", "addition_rate")}))
    return 0


def repair_table(report: dict, args, result) -> str:
    """The README's Markdown table for this run."""
    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f} %"

    return "\n".join([
        f"| DeSRA repair of `{args.pair}` ({result.iterations} iterations, {result.device}, {result.wall_s / 60:.0f} min, "
        f"batch {args.batch}, patch {args.patch}) | before | after |",
        "|---|---|---|",
        f"| IoU with the original detection (val, {report['items_with_artifacts']} images with artifacts) | "
        f"{pct(report['iou_before'])} | {pct(report['iou_after'])} |",
        f"| flagged area (val, {report['items']} images) | {pct(report['flagged_before'])} | {pct(report['flagged_after'])} |",
        f"| removal rate (artifact regions gone) | | {pct(report['removal_rate'])} ({report['removed']}/{report['artifacts']}) |",
        f"| addition rate (images with new artifacts) | | {pct(report['addition_rate'])} ({report['images_with_additions']}/{report['items']}) |",
        "",
    ])


if __name__ == "__main__":
    sys.exit(main())
