"""Comparison methods from the paper's tables, so users can rerun the comparison on their data.

Each returns a score map on the same valid region as the D map, ``(H-2r, W-2r)`` float32, and the
caller thresholds it (``score > threshold`` = artifact candidate) before the same morphology:

- ``absolute-d`` (DeSRA Eq. 4): ``|sigma_GAN - sigma_MSE|`` averaged over channels, no normalisation
  (the ablation's "absolute d only", 16.1 IoU on Real-ESRGAN);
- ``ldl``: LDL-style local variance (7x7, unbiased) of the residual ``|MSE - GAN|`` averaged over
  channels, thresholded at 0.01 / 0.005 / 0.001 in the paper's comparison (29.9 / 36.2 / 35.3 IoU);
- ``ssim``: ``1 - SSIM`` between MSE-SR and GAN-SR (11x11 Gaussian, sigma 1.5, channel mean).
"""

from __future__ import annotations

import numpy as np

from desra.detect.dmap import check_pair, local_std, window_1d

LDL_WINDOW = 7


def _valid(full: np.ndarray, r: int) -> np.ndarray:
    return full[r:-r, r:-r] if r else full


def absolute_d_map(
    mse: np.ndarray, gan: np.ndarray, *, window: int = 11, sigma: float = 1.5, kind: str = "gaussian"
) -> np.ndarray:
    """Absolute texture difference ``|sigma_GAN - sigma_MSE|``: ``(H, W, 3)`` pair -> valid ``(H-2r, W-2r)`` float32 >= 0."""
    check_pair(mse, gan, window)
    # DeSRA Eq. 4: the difference the paper shows is not comparable across texture levels.
    diff = np.abs(local_std(gan, window, sigma, kind) - local_std(mse, window, sigma, kind))
    return diff.mean(axis=-1, dtype=np.float32)


def ldl_map(mse: np.ndarray, gan: np.ndarray, *, border: int = 5) -> np.ndarray:
    """Local variance (7x7, unbiased) of ``mean_c |MSE - GAN|``: ``(H, W, 3)`` pair -> ``(H-2b, W-2b)`` float32 >= 0."""
    import cv2

    check_pair(mse, gan, LDL_WINDOW)
    residual = np.abs(np.clip(mse, 0, 1) - np.clip(gan, 0, 1)).mean(axis=-1, dtype=np.float32)
    n = LDL_WINDOW * LDL_WINDOW
    mean = cv2.blur(residual, (LDL_WINDOW, LDL_WINDOW), borderType=cv2.BORDER_REFLECT)
    sq = cv2.blur(residual * residual, (LDL_WINDOW, LDL_WINDOW), borderType=cv2.BORDER_REFLECT)
    var = np.maximum(sq - mean * mean, 0.0) * (n / (n - 1))
    return _valid(var, border).astype(np.float32)


def ssim_dissimilarity_map(
    mse: np.ndarray, gan: np.ndarray, *, window: int = 11, sigma: float = 1.5, kind: str = "gaussian"
) -> np.ndarray:
    """``1 - SSIM(MSE, GAN)`` per pixel, channel mean: ``(H, W, 3)`` pair -> valid ``(H-2r, W-2r)`` float32 in [0, 2]."""
    import cv2

    check_pair(mse, gan, window)
    k = window_1d(window, sigma, kind).astype(np.float32)
    r = window // 2
    x = np.clip(mse, 0, 1).astype(np.float32) - 0.5
    y = np.clip(gan, 0, 1).astype(np.float32) - 0.5

    def blur(img: np.ndarray) -> np.ndarray:
        return _valid(cv2.sepFilter2D(img, cv2.CV_32F, k, k), r)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    # The +0.5 centring shifts the means; undo it in the luminance term.
    mx += 0.5
    my += 0.5
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return (1.0 - ssim).mean(axis=-1, dtype=np.float32)
