"""`desra sr`: super-resolve an image or a folder of images with a registered model or a checkpoint file."""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    """Add ``desra sr`` to the parser."""
    p = subparsers.add_parser("sr", help="upscale an image or a folder with an SR model", description=__doc__)
    p.add_argument("--model", required=True, metavar="NAME|PATH", help="registered model id or checkpoint (.pth/.pt/.safetensors)")
    p.add_argument("--input", required=True, metavar="FILE|DIR", help="image file or folder of images")
    p.add_argument("--output", required=True, metavar="FILE|DIR", help="output image (for a file input) or folder")
    p.add_argument("--tile", type=int, default=None, metavar="N", help="tile side in input pixels (default: whole image)")
    p.add_argument("--overlap", type=int, default=32, metavar="N", help="tile overlap in input pixels (default 32)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    p.add_argument("--half", action="store_true", help="fp16/bf16 on CUDA (falls back to fp32 if the output is not finite)")
    p.add_argument("--alpha", choices=("resize", "model"), default="resize", help="how alpha is upscaled (default: resize)")
    p.set_defaults(func=run)


def _note(event) -> None:
    print(f"desra: note: {event}", file=sys.stderr)


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from desra.core.errors import ImageError
    from desra.core.imageio import write_imagedata
    from desra.models.checkpoint import load_model
    from desra.models.inference import read_for_upscale, upscale_folder, upscale_image

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    source, target = Path(args.input), Path(args.output)
    if not source.exists():
        raise ImageError(f"input {source} does not exist (expected an image file or a folder)")
    model = load_model(args.model, device="cpu")
    d = model.descriptor
    print(f"model {d.name}: {d.architecture} x{d.scale}, role {d.role}, on {device}", file=sys.stderr)
    options = dict(tile=args.tile, overlap=args.overlap, device=device, half=args.half, alpha_mode=args.alpha, on_event=_note)
    if source.is_dir():
        with tqdm(desc="images", unit="img") as bar:

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            result = upscale_folder(model, source, target, progress=progress, **options)
        print(f"wrote {len(result.written)} images to {target}")
        for path, reason in result.failed:
            print(f"desra: failed: {path.name}: {reason}", file=sys.stderr)
        if result.failed:
            print(f"desra: error: {len(result.failed)} of {len(result.failed) + len(result.written)} images failed", file=sys.stderr)
            return 2
        return 0
    if target.is_dir() or not target.suffix:  # an output folder (existing, or named without an extension)
        target = target / source.name
    image = read_for_upscale(source, d.scale)  # an output too large is refused from the header, before decoding
    with tqdm(desc="tiles", unit="tile", disable=args.tile is None) as bar:

        def tile_progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        result = upscale_image(model, image, progress=tile_progress, **options)
    write_imagedata(target, result)
    h, w = result.rgb.shape[:2]
    print(f"wrote {target} ({w} x {h}, {result.bit_depth}-bit {result.mode})")
    return 0
