"""The README showcase (``desra zoo showcase``): run DeSRA detection with a pair on the demo photos and write crops.

Each crop is MSE | GAN | GAN with the mask in red (:func:`desra.detect.visualize.showcase_strip`),
cut around a photo's most prominent region; photos with no region give no crop.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from desra.core.errors import DatasetError


def showcase(out_dir: str | Path, *, pair: str = "desra-demo-x4", lr_dir: str | Path | None = None, count: int = 4,
             progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Run DeSRA detection with ``pair`` on the demo photos and write up to ``count`` README crops
    ``showcase_<stem>.png`` (MSE | GAN | mask overlay, around each photo's most prominent region)."""
    from desra.core.imageio import list_images, read_image, write_image
    from desra.core.paths import datasets_dir
    from desra.detect.pipeline import DetectConfig, detect_lr
    from desra.detect.visualize import showcase_strip
    from desra.models.pairs import load_pair

    lr_dir = Path(lr_dir) if lr_dir is not None else datasets_dir() / "demo"
    photos = list_images(lr_dir)
    if not photos:
        raise DatasetError(f"no images in {lr_dir}; pass --lr with a folder of LR photos")
    mse_model, gan_model = load_pair(pair)
    found = []
    for done, path in enumerate(photos, 1):
        detection, mse, gan = detect_lr(read_image(path).rgb, mse_model, gan_model, DetectConfig(),
                                        segmenter_note="showcase: semantics off (no segmenter weights offline)")
        if detection.regions:
            found.append((detection.regions[0].prominence, path.stem, showcase_strip(mse, gan, detection.mask, detection.regions[0].bbox)))
        if progress:
            progress(done, len(photos))
    written = []
    for _, stem, strip in sorted(found, key=lambda item: -item[0])[:count]:
        target = Path(out_dir) / f"showcase_{stem}.png"
        write_image(target, strip)
        written.append(target)
    if not written:
        raise DatasetError(f"pair {pair!r} flagged no artifact region on the {len(photos)} photos in {lr_dir}; nothing to show")
    return written
