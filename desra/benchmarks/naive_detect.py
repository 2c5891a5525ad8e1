"""The yardstick of ``desra bench detect-e2e``: DeSRA-det as a plain float64 numpy/OpenCV script.

What a user would write from the paper and the authors' script without desra: read both PNGs,
float64 throughout, the full 11x11 Gaussian window per channel (``cv2.filter2D``), D (Eq. 7)
averaged over channels, threshold 0.7, the authors' morphology with scipy.ndimage, and the mask
written as a PNG. It imports nothing from desra, so the benchmark can run it as a script
(``python naive_detect.py MSE GAN MASK``) and time its start-up like the CLI's.
"""

from __future__ import annotations

import sys


def naive_detect(mse_path: str, gan_path: str, mask_path: str, threshold: float = 0.7, min_area: int = 4000) -> int:
    """Read an MSE-SR/GAN-SR PNG pair, write the 0/255 artifact mask PNG (SR size); return the flagged pixel count."""
    import cv2
    import numpy as np
    from scipy import ndimage

    mse = cv2.imread(mse_path, cv2.IMREAD_COLOR).astype(np.float64) / 255.0
    gan = cv2.imread(gan_path, cv2.IMREAD_COLOR).astype(np.float64) / 255.0
    r, sigma, c = 5, 1.5, 0.03**2
    g = cv2.getGaussianKernel(2 * r + 1, sigma)
    window = g @ g.T
    maps = []
    for ch in range(3):
        a, b = mse[..., ch], gan[..., ch]
        mu_a = cv2.filter2D(a, -1, window)[r:-r, r:-r]
        mu_b = cv2.filter2D(b, -1, window)[r:-r, r:-r]
        sa = np.sqrt(np.maximum(cv2.filter2D(a * a, -1, window)[r:-r, r:-r] - mu_a**2, 0.0))
        sb = np.sqrt(np.maximum(cv2.filter2D(b * b, -1, window)[r:-r, r:-r] - mu_b**2, 0.0))
        maps.append((2.0 * sa * sb + c) / (sa**2 + sb**2 + c))
    d = np.mean(maps, axis=0)
    m = d < threshold
    m = ndimage.binary_erosion(m, np.ones((5, 5)), iterations=1, border_value=1)
    m = ndimage.binary_dilation(m, np.ones((5, 5)), iterations=3)
    m = ndimage.binary_fill_holes(m, structure=np.ones((3, 3)))
    labels, n = ndimage.label(m, structure=np.ones((3, 3)))
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    keep = areas > min_area
    keep[0] = False
    m = keep[labels]
    mask = np.zeros(mse.shape[:2], dtype=np.uint8)
    mask[r:-r, r:-r] = np.where(m, 255, 0)
    if not cv2.imwrite(mask_path, mask):
        raise OSError(f"could not write {mask_path}")
    return int(m.sum())


if __name__ == "__main__":
    naive_detect(*sys.argv[1:4])
