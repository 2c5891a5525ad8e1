"""Detection fixtures: real photos with GAN-like texture painted into known regions."""

from __future__ import annotations

import numpy as np
import pytest

# Two boxes in the smooth sky of scikit-image's rocket photo (427 x 640): (y0, y1, x0, x1).
ROCKET_BOXES = ((30, 140, 240, 380), (40, 110, 450, 560))


def gan_texture(h: int, w: int, amplitude: float, seed: int) -> np.ndarray:
    """High-frequency, checkerboard-plus-noise texture like GAN inference artifacts: (h, w, 3) float32."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    pattern = np.sin(xx * 2.1) * np.sin(yy * 1.7)
    t = amplitude * (0.6 * pattern + 0.4 * rng.standard_normal((h, w)))
    return np.repeat(t[..., None], 3, axis=-1).astype(np.float32)


def make_pair(image: np.ndarray, boxes, amplitude: float = 0.08, seed: int = 0, blur: float = 0.8):
    """(mse, gan, gt): MSE-SR = the photo blurred by ``blur`` px (0: as is), GAN-SR = the sharp photo plus texture in ``boxes``."""
    import cv2

    mse = cv2.GaussianBlur(image, (0, 0), blur) if blur > 0 else image.copy()
    gan = image.copy()
    gt = np.zeros(image.shape[:2], dtype=bool)
    for i, (y0, y1, x0, x1) in enumerate(boxes):
        gan[y0:y1, x0:x1] += gan_texture(y1 - y0, x1 - x0, amplitude, seed + i)
        gt[y0:y1, x0:x1] = True
    return mse, np.clip(gan, 0.0, 1.0), gt


@pytest.fixture
def rocket_pair(photo):
    """The rocket photo with GAN-like texture in two sky boxes: (mse, gan, gt mask)."""
    return make_pair(photo("rocket"), ROCKET_BOXES)


@pytest.fixture
def pair_maker():
    """Factory fixture: ``pair_maker(image, boxes, amplitude=0.08, seed=0, blur=0.8)`` -> (mse, gan, gt)."""
    return make_pair
