"""`desra detect`: find GAN-SR artifacts (DeSRA-det) in precomputed SR outputs or from LR images.

Two ways in:
  --mse FILE|DIR --gan FILE|DIR            SR outputs you already have (folders matched by file stem)
  --lr FILE|DIR --pair NAME                LR images, run through a registered MSE/GAN pair
  --lr FILE|DIR --mse-model M --gan-model G  ... or through two checkpoints / registry ids

Per image (named after the input's stem; for one pair of files, the GAN file's stem) in --out:
<stem>_mask.png (0/255, SR size), <stem>_overlay.png, <stem>_semantic.png (when segmentation
ran), <stem>_D.npy (--save-d), <stem>.json; and report.json for the run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _add_detect_options(p: argparse.ArgumentParser) -> None:
    from desra.cli.shared import add_class_weights_option, add_segmenter_option
    from desra.detect.pipeline import METHODS

    add_segmenter_option(p)
    p.add_argument("--segment-on", choices=("mse", "gan"), default="mse",
                   help="which SR output is segmented (default mse: GAN texture can mislead the segmenter)")
    add_class_weights_option(p)
    p.add_argument("--threshold", type=float, default=0.7, help="artifact where adjusted D < this (default 0.7)")
    p.add_argument("--window", type=int, default=11, help="local window size in px (default 11)")
    p.add_argument("--window-kind", choices=("gaussian", "box"), default="gaussian",
                   help="gaussian (sigma 1.5, the authors' script; default) or box (the paper's text)")
    p.add_argument("--sigma", type=float, default=1.5, help="Gaussian window sigma (default 1.5)")
    p.add_argument("--min-area", type=int, default=4000, help="drop regions of <= this many px (default 4000)")
    p.add_argument("--scale-min-area", action="store_true",
                   help="scale --min-area with the image size (relative to a 2000x1500 SR output)")
    p.add_argument("--method", choices=METHODS, default="desra", help="detector (baselines for comparison)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (D map and models)")


def register(subparsers) -> None:
    """Add ``desra detect`` to the parser."""
    from desra.cli.shared import add_engine_options

    p = subparsers.add_parser(
        "detect", help="detect GAN-SR artifacts (DeSRA-det)", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mse", metavar="FILE|DIR", help="MSE-SR output(s)")
    p.add_argument("--gan", metavar="FILE|DIR", help="GAN-SR output(s)")
    p.add_argument("--lr", metavar="FILE|DIR", help="low-resolution input(s), run through the models")
    p.add_argument("--pair", metavar="NAME", help="registered MSE/GAN pair (see `desra models list`)")
    p.add_argument("--mse-model", metavar="M", help="MSE model: registry id or checkpoint file")
    p.add_argument("--gan-model", metavar="G", help="GAN model: registry id or checkpoint file")
    p.add_argument("--tile", type=int, default=None, help="tile size in LR px for the SR models")
    p.add_argument("--half", action="store_true", help="fp16 SR inference on CUDA")
    p.add_argument("--save-sr", action="store_true", help="with --lr: also write <stem>_mse.png and <stem>_gan.png")
    _add_detect_options(p)
    p.add_argument("--save-d", action="store_true", help="write <stem>_D.npy (float32, valid region, before semantics)")
    p.add_argument("--out", default="desra-detect", metavar="DIR", help="output folder (default ./desra-detect)")
    add_engine_options(p)
    p.set_defaults(func=run)


def config_from_args(args):
    """The DetectConfig the command-line options describe."""
    from desra.detect.pipeline import DetectConfig

    return DetectConfig(
        window=args.window, window_kind=args.window_kind, sigma=args.sigma, threshold=args.threshold,
        min_area=args.min_area, scale_min_area=args.scale_min_area, segment_on=args.segment_on,
        method=args.method, device=args.device,
    )


def run(args) -> int:
    from functools import partial

    from desra.cli.shared import progress_callback, ray_options
    from desra.core.errors import ConfigError, DesraError
    from desra.models.pairs import choose_pair
    from desra.service.detection import (
        detect_folder,
        lr_batch,
        resolve_semantics,
        sr_batch,
    )

    started = time.time()
    on_ray = ray_options(args)
    engine = detect_folder
    if on_ray is not None:
        from desra.service.ray_engine import detect_folder_ray

        engine = partial(detect_folder_ray, options=on_ray)
    config = config_from_args(args)
    out = Path(args.out)
    if args.lr and (args.mse or args.gan):
        raise ConfigError("give either --lr (with models) or --mse/--gan outputs, not both")
    if args.lr:
        models = choose_pair(args.pair, args.mse_model, args.gan_model, device=args.device)
        batch, pair_weights = lr_batch(Path(args.lr), models), models.class_weights
    elif args.mse and args.gan:
        models, pair_weights = None, ""
        batch = sr_batch(args.mse, args.gan)
    else:
        raise ConfigError("nothing to detect: give --mse and --gan, or --lr with --pair / --mse-model and --gan-model")
    semantics = resolve_semantics(
        args.segmenter, method=args.method, class_weights=args.class_weights or pair_weights, device=args.device
    )
    if semantics.note is not None:
        print(f"desra: warning: semantic adjustment not used: {semantics.note}", file=sys.stderr)
    with progress_callback("detect") as tick:
        report = engine(
            batch, out, config, semantics, models=models, tile=args.tile, half=args.half, save_sr=args.save_sr,
            save_d=args.save_d, started=started, progress=tick,
        )
    images, failures = report["images"], report["failures"]
    flagged = sum(1 for i in images if i["regions"])
    print(f"detected artifacts in {flagged} of {len(images)} image(s); results in {out}")
    if failures:
        for failure in failures:
            print(f"desra: failed: {failure['name']}: {failure['error']}", file=sys.stderr)
        if not images:
            raise DesraError(f"all {len(failures)} image(s) failed; see the messages above and {out / 'report.json'}")
        return 1
    return 0
