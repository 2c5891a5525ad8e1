"""The 30-D feature of a critical image: colour histogram + local gradient pattern histogram.

Quan et al. concatenate a normalised colour histogram with an LGP histogram, 30 values in all,
without saying how the 30 split. desra's split (documented in docs/attribution.md):

- 21 colour values: 7 equal-width bins on [0, 1] per RGB channel, the 21 counts divided by
  3 * pixels (each channel's block sums to 1/3, the whole colour part to 1);
- 9 LGP values: the LGP code (Jun & Kim 2012, 8 neighbours, 256 codes) of every interior pixel of
  the luma image, histogrammed by the number of set bits (0..8), summing to 1. The popcount keeps
  how many neighbours are "strong-gradient" neighbours, independent of their direction, so the
  histogram does not depend on the arbitrary bit order of the 8 neighbours.
"""

from __future__ import annotations

import numpy as np

from desra.core.errors import ImageError

COLOUR_BINS = 7
"""Histogram bins per RGB channel."""
LGP_BINS = 9
"""LGP histogram bins: number of set bits of the 8-bit code, 0..8."""
FEATURE_DIMS = 3 * COLOUR_BINS + LGP_BINS
"""Length L of the feature vector (30)."""

# Neighbour n of the centre, clockwise from the top-left; bit n of the code has weight 2**n.
NEIGHBOUR_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
"""(dy, dx) of the 8 neighbours in bit order 0..7."""


def lgp_codes(gray: np.ndarray) -> np.ndarray:
    """LGP codes of a (H, W) float image: (H-2, W-2) uint8, bit n set where |i_n - i_c| > mean of the 8."""
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2 or min(gray.shape) < 3:
        raise ImageError(f"LGP needs a 2-D image of at least 3x3 pixels, got shape {gray.shape}")
    h, w = gray.shape
    centre = gray[1 : h - 1, 1 : w - 1]
    gradients = np.stack(
        [np.abs(gray[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx] - centre) for dy, dx in NEIGHBOUR_OFFSETS]
    )
    mean = gradients.mean(axis=0)
    bits = gradients > mean
    weights = (1 << np.arange(8, dtype=np.uint16)).reshape(8, 1, 1)
    return (bits * weights).sum(axis=0).astype(np.uint8)


def colour_histogram(rgb: np.ndarray) -> np.ndarray:
    """(3 * COLOUR_BINS,) float64 histogram of a (H, W, 3) image in [0, 1]; sums to 1."""
    pixels = rgb.shape[0] * rgb.shape[1]
    parts = [
        np.histogram(np.clip(rgb[..., c], 0.0, 1.0), bins=COLOUR_BINS, range=(0.0, 1.0))[0] for c in range(3)
    ]
    return np.concatenate(parts).astype(np.float64) / (3 * pixels)


def lgp_histogram(rgb: np.ndarray) -> np.ndarray:
    """(LGP_BINS,) float64 histogram of the set-bit count of the luma image's LGP codes; sums to 1."""
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    codes = lgp_codes(luma)
    popcount = np.unpackbits(codes[..., None], axis=-1).sum(axis=-1)
    return np.bincount(popcount.ravel(), minlength=LGP_BINS).astype(np.float64) / popcount.size


def fingerprint_features(rgb: np.ndarray) -> np.ndarray:
    """The 30-D feature of a (H, W, 3) float image in [0, 1]: (FEATURE_DIMS,) float64, colour then LGP."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 3:
        raise ImageError(f"expected an (H, W, 3) RGB image of at least 3x3 pixels, got shape {rgb.shape}")
    return np.concatenate([colour_histogram(rgb), lgp_histogram(rgb)])
