"""Class weights A_k for a new MSE/GAN pair (DeSRA Eq. 8): the 85th percentile of D per class.

The authors measured ``A_k = P85(D_k)`` on DIV2K degraded with the model's training degradations
and published it in 20 bins (``A_k = (20 - bin_k) / 20``). :func:`calibrate` repeats that for any
pair: degrade HR images, super-resolve with both models, segment, pool D per ADE20K class into
histograms, take P85 and its bin. Classes with too few pixels keep the default weight and are
flagged. :func:`write_class_weights` writes a TSV that ``desra detect --class-weights`` reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from desra.core.errors import ConfigError, SegmenterError
from desra.detect.semantic import ADE20K_CLASSES, ClassWeights

HIST_BINS = 1000  # D histogram resolution: P85 to within 0.001, far below the 0.05 bin width
N_WEIGHT_BINS = 20
PERCENTILE = 85.0
DEGRADATIONS = ("realesrgan", "bicubic")


def empty_histogram() -> np.ndarray:
    """Per-class histogram of D, ``(150, HIST_BINS)`` int64 zeros."""
    return np.zeros((len(ADE20K_CLASSES), HIST_BINS), dtype=np.int64)


def accumulate(hist: np.ndarray, d: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``hist`` plus the D values ``(h, w)`` float32 in (0, 1] of each class in ``labels`` ``(h, w)`` int."""
    if d.shape != labels.shape:
        raise ConfigError(f"D map {d.shape} and label map {labels.shape} must have the same shape")
    bins = np.minimum((np.clip(d, 0.0, 1.0) * HIST_BINS).astype(np.int64), HIST_BINS - 1)
    flat = labels.astype(np.int64).ravel() * HIST_BINS + bins.ravel()
    return hist + np.bincount(flat, minlength=hist.size).reshape(hist.shape)


def class_percentile(hist: np.ndarray, q: float = PERCENTILE) -> np.ndarray:
    """Per-class q-th percentile of D from histograms ``(K, B)`` -> ``(K,)`` float32, NaN for empty classes."""
    counts = hist.sum(axis=1)
    cdf = np.cumsum(hist, axis=1)
    target = counts * (q / 100.0)
    # First bin whose cumulative count reaches the target; report the bin's upper edge.
    idx = np.argmax(cdf >= np.maximum(target, 1)[:, None], axis=1)
    out = (idx + 1) / hist.shape[1]
    return np.where(counts > 0, out, np.nan).astype(np.float32)


def weight_bin(a: float) -> int:
    """The authors' bin of a weight: ``A = (20 - bin) / 20``, bin in 0..19."""
    return int(np.clip(round(N_WEIGHT_BINS * (1.0 - a)), 0, N_WEIGHT_BINS - 1))


@dataclass(frozen=True)
class Calibration:
    """Result of a calibration run."""

    weights: ClassWeights
    """Binned A_k for all 150 classes (defaults where flagged)."""
    p85: np.ndarray
    """(150,) float32: measured P85 of D per class, NaN where no pixels."""
    pixels: np.ndarray
    """(150,) int64: pixels of each class seen."""
    min_pixels: int
    """Classes with fewer pixels kept the default weight."""
    images: int
    """Images that went into the histograms."""


def weights_from_histogram(hist: np.ndarray, default: ClassWeights, *, min_pixels: int = 10_000, images: int = 0) -> Calibration:
    """Binned P85 weights from per-class D histograms; sparse classes keep ``default`` and are flagged."""
    p85 = class_percentile(hist)
    pixels = hist.sum(axis=1)
    weights = default.weights.copy()
    bins = list(default.bins)
    flagged = []
    for k in range(len(ADE20K_CLASSES)):
        if pixels[k] < min_pixels:
            flagged.append(True)
            continue
        b = weight_bin(float(p85[k]))
        bins[k] = b
        weights[k] = (N_WEIGHT_BINS - b) / N_WEIGHT_BINS
        flagged.append(False)
    return Calibration(
        weights=ClassWeights(weights=weights, bins=tuple(bins), source="calibration", flagged=tuple(flagged)),
        p85=p85,
        pixels=pixels,
        min_pixels=min_pixels,
        images=images,
    )


def write_class_weights(path: str | os.PathLike, calibration: Calibration) -> Path:
    """Write the TSV ``index class bin adjustment_weight_A p85 pixels flag`` (readable by load_class_weights)."""
    from desra.core.atomic import atomic_write_text

    lines = ["index\tclass\tbin\tadjustment_weight_A\tp85\tpixels\tflag"]
    w = calibration.weights
    for k, name in enumerate(ADE20K_CLASSES):
        p = "" if np.isnan(calibration.p85[k]) else f"{calibration.p85[k]:.4f}"
        flag = f"default (< {calibration.min_pixels} px)" if w.flagged[k] else "calibrated"
        b = "" if w.bins[k] is None else str(w.bins[k])
        lines.append(f"{k}\t{name}\t{b}\t{w.weights[k]:.2f}\t{p}\t{int(calibration.pixels[k])}\t{flag}")
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def degrade_image(hr: np.ndarray, scale: int, kind: str = "realesrgan", seed: int = 0) -> np.ndarray:
    """LR version of an HR ``(H, W, 3)`` float32 [0, 1] image (cropped to a multiple of ``scale``) -> ``(H/s, W/s, 3)``."""
    import torch

    from desra.train import degradations

    if kind not in DEGRADATIONS:
        raise ConfigError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")
    h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
    x = torch.from_numpy(np.ascontiguousarray(hr[:h, :w].transpose(2, 0, 1)))[None].float()
    lr = degradations.degrade(x, scale, seed) if kind == "realesrgan" else degradations.bicubic_lr(x, scale)
    return lr[0].permute(1, 2, 0).numpy().astype(np.float32)


def calibrate(
    mse_model,
    gan_model,
    hr_images: Iterable[np.ndarray],
    segmenter,
    *,
    degrade: str = "realesrgan",
    config=None,
    default: ClassWeights | None = None,
    min_pixels: int = 10_000,
    seed: int = 0,
    tile: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    total: int = 0,
) -> Calibration:
    """Measure A_k for a pair on HR images ``(H, W, 3)`` float32: degrade, SR with both, segment, P85 of D per class."""
    from desra.detect import semantic
    from desra.detect.dmap import d_map
    from desra.models.inference import upscale

    if segmenter is None:
        raise SegmenterError(
            "calibration measures D per semantic class, so it needs a SegFormer; pass --segmenter ID|PATH "
            "with weights available locally"
        )
    from desra.detect.pipeline import DetectConfig

    config = config or DetectConfig()
    default = default or semantic.default_class_weights()
    r = config.border
    hist = empty_histogram()
    n = 0
    for i, hr in enumerate(hr_images):
        lr = degrade_image(hr, mse_model.descriptor.scale, degrade, seed + i)
        mse = upscale(mse_model, lr, tile=tile, device=config.device)
        gan = upscale(gan_model, lr, tile=tile, device=config.device)
        d = d_map(mse, gan, window=config.window, sigma=config.sigma, kind=config.window_kind)
        labels = semantic.segment(segmenter, mse if config.segment_on == "mse" else gan)[r:-r, r:-r]
        hist = accumulate(hist, d, labels)
        n += 1
        if progress:
            progress(n, total or n)
    if n == 0:
        raise ConfigError("no HR images to calibrate on")
    return weights_from_histogram(hist, default, min_pixels=min_pixels, images=n)
