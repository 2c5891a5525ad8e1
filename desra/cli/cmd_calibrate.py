"""`desra calibrate`: measure per-class weights A_k (DeSRA Eq. 8) for your own MSE/GAN pair.

  desra calibrate --mse-model M --gan-model G --images DIR [--degrade realesrgan|bicubic] --out weights.tsv

HR images are degraded (Real-ESRGAN's second-order degradations by default), run through both
models and segmented; A_k = P85 of D over each ADE20K class, written in the authors' 20 bins.
Classes with fewer than --min-pixels pixels keep the default weight and are flagged in the TSV.
Use the result with `desra detect --class-weights weights.tsv`.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    """Add ``desra calibrate`` to the parser."""
    p = subparsers.add_parser(
        "calibrate", help="measure class weights A_k for a model pair", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--mse-model", metavar="M", help="MSE model: registry id or checkpoint file")
    p.add_argument("--gan-model", metavar="G", help="GAN model: registry id or checkpoint file")
    p.add_argument("--pair", metavar="NAME", help="registered pair instead of --mse-model/--gan-model")
    p.add_argument("--images", metavar="DIR", required=True, help="folder of HR images")
    p.add_argument("--degrade", choices=("realesrgan", "bicubic"), default="realesrgan",
                   help="how HR images become LR (default: Real-ESRGAN's training degradations)")
    p.add_argument("--segmenter", default="b5", metavar="ID|PATH", help="SegFormer hub id, folder, 'b5' or 'b0'")
    p.add_argument("--segment-on", choices=("mse", "gan"), default="mse", help="which SR output is segmented")
    p.add_argument("--min-pixels", type=int, default=10_000, help="fewer pixels of a class: keep the default")
    p.add_argument("--seed", type=int, default=0, help="degradation seed (image i uses seed + i)")
    p.add_argument("--tile", type=int, default=None, help="tile size in LR px for the SR models")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", required=True, metavar="TSV", help="class-weight table to write")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from desra.cli.shared import progress_callback
    from desra.core.errors import DesraError
    from desra.core.imageio import list_images, list_unsupported_images, read_image
    from desra.detect import semantic
    from desra.detect.calibrate import calibrate, write_class_weights
    from desra.detect.pipeline import DetectConfig
    from desra.models.pairs import choose_pair

    # The segmenter first: without it there is nothing to calibrate, so fail before loading models.
    segmenter = semantic.load_segmenter(args.segmenter, device=args.device)
    if segmenter is None:
        raise DesraError("calibration measures D per semantic class and needs a segmenter; --segmenter none cannot work")
    models = choose_pair(args.pair, args.mse_model, args.gan_model, device=args.device)
    paths = list_images(args.images)
    # Images in formats desra does not read (an animated GIF, ...) are named, not skipped quietly.
    unread = list_unsupported_images(args.images)
    for path, reason in unread:
        print(f"desra: skipped: {path.name}: {reason}", file=sys.stderr)
    if not paths:
        raise DesraError(f"no images found in {args.images}" + (f" ({len(unread)} in formats desra does not read)" if unread else ""))
    config = DetectConfig(segment_on=args.segment_on, device=args.device)
    with progress_callback("calibrate") as tick:
        result = calibrate(
            models.mse, models.gan, (read_image(p).rgb for p in paths), segmenter,
            degrade=args.degrade, config=config, min_pixels=args.min_pixels, seed=args.seed, tile=args.tile,
            progress=tick, total=len(paths),
        )
    path = write_class_weights(args.out, result)
    calibrated = int(np.count_nonzero(~np.array(result.weights.flagged)))
    print(f"calibrated {calibrated} of 150 classes on {result.images} image(s) "
          f"({150 - calibrated} kept the default: fewer than {args.min_pixels} px); wrote {path}")
    return 0
