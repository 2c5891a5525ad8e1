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
import contextlib
import json
import sys
import time
from pathlib import Path


def _add_detect_options(p: argparse.ArgumentParser) -> None:
    from desra.detect.pipeline import METHODS

    p.add_argument("--segmenter", default="b5", metavar="ID|PATH|none",
                   help="SegFormer hub id, local folder, 'b5' (default, the authors'), 'b0' (fast) or 'none'")
    p.add_argument("--segment-on", choices=("mse", "gan"), default="mse",
                   help="which SR output is segmented (default mse: GAN texture can mislead the segmenter)")
    p.add_argument("--class-weights", metavar="TSV", default=None,
                   help="per-class A_k table (default: the pair's, else the authors' ADE20K table)")
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
    p.set_defaults(func=run)


def config_from_args(args):
    """The DetectConfig the command-line options describe."""
    from desra.detect.pipeline import DetectConfig

    return DetectConfig(
        window=args.window, window_kind=args.window_kind, sigma=args.sigma, threshold=args.threshold,
        min_area=args.min_area, scale_min_area=args.scale_min_area, segment_on=args.segment_on,
        method=args.method, device=args.device,
    )


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"desra: warning: {message}", file=sys.stderr)


def semantics_from_args(args, pair_weights: str = ""):
    """(segmenter | None, note | None, class weights | None), warning on stderr when semantics are off."""
    from desra.detect import semantic

    if args.method != "desra":
        return None, None, None
    segmenter, note = semantic.resolve_segmenter(args.segmenter, device=args.device)
    if segmenter is None:
        warn(f"semantic adjustment not used: {note}")
    source = args.class_weights or pair_weights
    weights = semantic.load_class_weights(source) if source else None
    return segmenter, note, weights


class _NoBar:
    """What progress_bar gives for one item: a bar that draws nothing (and tqdm is not imported)."""

    def __init__(self) -> None:
        self.n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, count: int = 1) -> None:
        """Count ``count`` more items done."""
        self.n += count

    def close(self) -> None:
        """Nothing to clear."""


def progress_bar(total: int, desc: str):
    """A tqdm bar on stderr (shown only for more than one item)."""
    if total <= 1:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr)


@contextlib.contextmanager
def progress_callback(desc: str):
    """Yield a library-style ``progress(done, total)`` callback drawing a tqdm bar on stderr."""
    bar = None

    def tick(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = progress_bar(total, desc)
        bar.update(done - bar.n)

    try:
        yield tick
    finally:
        if bar is not None:
            bar.close()


def _pairs_of(mse: Path, gan: Path):
    """(stem, mse file, gan file) triples plus failures for unmatched files."""
    from desra.core.errors import DesraError
    from desra.core.imageio import list_images

    if mse.is_file() and gan.is_file():
        return [(gan.stem, mse, gan)], []
    if mse.is_dir() and gan.is_dir():
        m = {p.stem: p for p in list_images(mse)}
        g = {p.stem: p for p in list_images(gan)}
        failures = [(s, f"no MSE-SR file for {g[s].name} in {mse}") for s in sorted(set(g) - set(m))]
        failures += [(s, f"no GAN-SR file for {m[s].name} in {gan}") for s in sorted(set(m) - set(g))]
        common = sorted(set(m) & set(g))
        if not common:
            raise DesraError(f"no file names in common between {mse} and {gan}; outputs are matched by file stem")
        return [(s, m[s], g[s]) for s in common], failures
    raise DesraError(f"--mse {mse} and --gan {gan} must both be files or both be folders that exist")


def _models_from_args(args):
    from desra.core.errors import ConfigError
    from desra.models.checkpoint import load_model, load_pair

    if args.pair and (args.mse_model or args.gan_model):
        raise ConfigError("give either --pair NAME or --mse-model/--gan-model, not both")
    if args.pair:
        from desra.models.registry import get_pair

        mse_model, gan_model = load_pair(args.pair, device=args.device)
        return mse_model, gan_model, get_pair(args.pair).class_weights
    if not (args.mse_model and args.gan_model):
        raise ConfigError("--lr needs --pair NAME or both --mse-model and --gan-model")
    return (
        load_model(args.mse_model, role="mse", device=args.device),
        load_model(args.gan_model, role="gan", device=args.device),
        "",
    )


def write_outputs(out: Path, stem: str, detection, image, *, save_d: bool, pool=None) -> dict:
    """Write one image's mask, overlay, semantic map, D map and JSON; return its report.json entry.

    With ``pool`` (a thread pool) the overlay is drawn and encoded on another thread while the
    rest is written here: both encoders release the GIL.
    """
    import numpy as np

    from desra.core.atomic import atomic_path, atomic_write_text
    from desra.core.imageio import write_mask, write_png_uint8
    from desra.detect import visualize
    from desra.detect.semantic import ADE20K_CLASSES

    files = {"mask": f"{stem}_mask.png", "overlay": f"{stem}_overlay.png", "json": f"{stem}.json"}

    def write_overlay() -> None:
        # desra's own pictures go through the fast lossless PNG writer (same pixels as Pillow's).
        write_png_uint8(out / files["overlay"], visualize.overlay(image, detection.mask))

    overlay_done = pool.submit(write_overlay) if pool is not None else None
    if overlay_done is None:
        write_overlay()
    write_mask(out / files["mask"], detection.mask)
    if detection.labels is not None:
        files["semantic"] = f"{stem}_semantic.png"
        # Edge-padded back to the SR size so the map lines up with the image it describes.
        labels = np.pad(detection.labels, detection.config.border, mode="edge")
        write_png_uint8(out / files["semantic"], visualize.semantic_legend(labels, ADE20K_CLASSES))
    if save_d:
        files["d"] = f"{stem}_D.npy"
        with atomic_path(out / files["d"]) as tmp, open(tmp, "wb") as handle:
            np.save(handle, detection.d.astype(np.float32))
    report = detection.to_json()
    report["name"] = stem
    report["files"] = files
    atomic_write_text(out / files["json"], json.dumps(report, indent=2))
    if overlay_done is not None:
        overlay_done.result()
    return {
        "name": stem,
        "files": files,
        "regions": len(detection.regions),
        "flagged_fraction": report["flagged_fraction"],
        "semantics_used": detection.semantics_used,
    }


# Pairs are decoded ahead only while both files hold at most this many pixels each (read from their
# headers), so read-ahead never doubles the memory of a large pair.
PREFETCH_MAX_PIXELS = 16_000_000


def _start_reads(pool, job, *, first: bool = False):
    """Futures reading an (stem, MSE file, GAN file) job's two images, or None (LR job, or too large to read ahead)."""
    from desra.core.errors import DesraError
    from desra.core.imageio import image_size, read_image

    _, mse, gan = job
    if gan is None:
        return None
    if not first:
        try:
            if any(w * h > PREFETCH_MAX_PIXELS for w, h in (image_size(mse), image_size(gan))):
                return None
        except (DesraError, OSError):
            return None  # read in turn, where the error is reported for this image
    return pool.submit(read_image, mse), pool.submit(read_image, gan)


def run(args) -> int:
    from desra.core.atomic import atomic_write_text
    from desra.core.errors import ConfigError, DesraError
    from desra.core.imageio import (
        list_images,
        list_unsupported_images,
        read_image,
        write_image,
    )
    from desra.detect.pipeline import detect_artifacts, detect_lr

    started = time.time()
    config = config_from_args(args)
    out = Path(args.out)
    if args.lr and (args.mse or args.gan):
        raise ConfigError("give either --lr (with models) or --mse/--gan outputs, not both")
    if args.lr:
        mse_model, gan_model, pair_weights = _models_from_args(args)
        lr = Path(args.lr)
        if not lr.exists():
            raise DesraError(f"--lr {lr} does not exist")
        jobs = [(p.stem, p, None) for p in (list_images(lr) if lr.is_dir() else [lr])]
        # Images in formats desra does not read (an animated GIF, ...) are listed as failures, not skipped quietly.
        failures: list[tuple[str, str]] = [(p.stem, reason) for p, reason in list_unsupported_images(lr)] if lr.is_dir() else []
        inputs = {"lr": str(lr), "mse_model": mse_model.descriptor.name, "gan_model": gan_model.descriptor.name,
                  "pair": args.pair}
    elif args.mse and args.gan:
        pair_weights = ""
        jobs, failures = _pairs_of(Path(args.mse), Path(args.gan))
        inputs = {"mse": args.mse, "gan": args.gan}
    else:
        raise ConfigError("nothing to detect: give --mse and --gan, or --lr with --pair / --mse-model and --gan-model")
    if not jobs:
        unread = f" ({len(failures)} file(s) in formats desra does not read: {failures[0][1]})" if failures else ""
        raise DesraError(f"no images found in {args.lr or args.gan}{unread}")
    segmenter, note, weights = semantics_from_args(args, pair_weights)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    from concurrent.futures import ThreadPoolExecutor

    # Threads: the MSE and GAN files are decoded side by side (the decoders release the GIL), the
    # next pair while this one is detected, and an image's overlay is encoded while its mask and
    # JSON are written.
    with progress_bar(len(jobs), "detect") as bar, ThreadPoolExecutor(max_workers=3) as pool:
        pending = _start_reads(pool, jobs[0], first=True)
        for index, (stem, first, second) in enumerate(jobs):
            reading, pending = pending, (_start_reads(pool, jobs[index + 1]) if index + 1 < len(jobs) else None)
            try:
                kw = {"segmenter": segmenter, "class_weights": weights, "segmenter_note": note}
                if second is None:
                    lr_image = read_image(first).rgb
                    extra = {"inputs": {"lr": str(first)}}
                    detection, mse, gan = detect_lr(lr_image, mse_model, gan_model, config, tile=args.tile,
                                                    half=args.half, extra=extra, **kw)
                    if args.save_sr:
                        write_image(out / f"{stem}_mse.png", mse)
                        write_image(out / f"{stem}_gan.png", gan)
                else:
                    mse, gan = (future.result().rgb for future in reading or _start_reads(pool, (stem, first, second), first=True))
                    extra = {"inputs": {"mse": str(first), "gan": str(second)}}
                    detection = detect_artifacts(mse, gan, config, extra=extra, **kw)
                images.append(write_outputs(out, stem, detection, gan, save_d=args.save_d, pool=pool))
            except DesraError as error:
                failures.append((stem, str(error)))
            bar.update(1)
    semantics = {
        "used": segmenter is not None and config.method == "desra",
        "reason": note if config.method == "desra" else f"method {config.method!r} does not use semantic adjustment",
        "segmenter": segmenter.name if segmenter is not None else None,
    }
    if semantics["used"]:
        semantics["reason"] = None
    from dataclasses import asdict

    report = {
        "command": "detect",
        "inputs": inputs,
        "parameters": asdict(config),
        "semantics": semantics,
        "images": images,
        "failures": [{"name": n, "error": e} for n, e in failures],
        "elapsed_s": round(time.time() - started, 3),
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    flagged = sum(1 for i in images if i["regions"])
    print(f"detected artifacts in {flagged} of {len(images)} image(s); results in {out}")
    if failures:
        for name, error in failures:
            print(f"desra: failed: {name}: {error}", file=sys.stderr)
        if not images:
            raise DesraError(f"all {len(failures)} image(s) failed; see the messages above and {out / 'report.json'}")
        return 1
    return 0
