"""The paper's comparison methods (absolute-d, LDL, 1 - SSIM): hand-worked score maps, and masks that
flag the textured box and nothing else (an all-True mask, which recall alone accepts, fails here)."""

from __future__ import annotations

import numpy as np
import pytest

from desra.detect import baselines
from desra.detect.pipeline import DetectConfig, detect_artifacts


def _checker(size: int, amplitude: float, half: bool = False) -> np.ndarray:
    """(size, size, 3) float32: 0.5 +- amplitude checkerboard, or 0.5 / 0.5 + amplitude (``half``)."""
    yy, xx = np.mgrid[0:size, 0:size]
    sign = (-1.0) ** (xx + yy)
    values = 0.5 + amplitude * ((1 + sign) / 2 if half else sign)
    return np.repeat(values[..., None], 3, axis=-1).astype(np.float32)


def test_absolute_d_by_hand():
    # 3x3 box window on a +-a checkerboard: 5 of one sign, 4 of the other, so the population
    # variance is a^2 (1 - 1/81) (as in the D-map test); the flat MSE image has sigma 0.
    a = 0.03
    gan = _checker(24, a)
    flat = np.full_like(gan, 0.5)
    score = baselines.absolute_d_map(flat, gan, window=3, kind="box")
    assert score.shape == (22, 22) and score.dtype == np.float32
    np.testing.assert_allclose(score, a * np.sqrt(80 / 81), rtol=1e-4)
    # Symmetric in its arguments and zero on identical inputs.
    np.testing.assert_allclose(baselines.absolute_d_map(gan, flat, window=3, kind="box"), score, rtol=1e-6)
    assert np.abs(baselines.absolute_d_map(gan, gan, window=3, kind="box")).max() < 1e-6


def test_ldl_by_hand():
    # Residual |MSE - GAN| alternates a and 0. A 7x7 window holds 25 of one and 24 of the other,
    # so p (1 - p) = 25 * 24 / 49^2 either way; unbiased: x 49/48 -> a^2 * 25/98.
    a = 0.05
    gan = _checker(24, a, half=True)
    flat = np.full_like(gan, 0.5)
    score = baselines.ldl_map(flat, gan)
    assert score.shape == (14, 14) and score.dtype == np.float32
    np.testing.assert_allclose(score, a * a * 25 / 98, rtol=1e-4)
    # A constant residual has no local variance: LDL looks at how the residual varies, not its size.
    assert baselines.ldl_map(flat, np.full_like(gan, 0.8)).max() < 1e-7


def test_ssim_dissimilarity_by_hand():
    c1 = 0.01**2
    flat = np.full((24, 24, 3), 0.5, np.float32)
    # Two flat images (0.5 and 0.7): no variance, only the luminance term 1 - (2xy + C1)/(x^2 + y^2 + C1).
    brighter = baselines.ssim_dissimilarity_map(flat, np.full_like(flat, 0.7), window=3, kind="box")
    assert brighter.shape == (22, 22)
    np.testing.assert_allclose(brighter, 1 - (2 * 0.5 * 0.7 + c1) / (0.25 + 0.49 + c1), rtol=1e-4)
    # Flat vs a +-0.03 checkerboard: contrast term C2 / (var + C2) = 1 / (1 + 80/81) = 81/161; the
    # window means differ by a/9, which moves the luminance term by ~2e-5 only.
    texture = baselines.ssim_dissimilarity_map(flat, _checker(24, 0.03), window=3, kind="box")
    np.testing.assert_allclose(texture, 80 / 161, atol=5e-5)
    assert np.abs(baselines.ssim_dissimilarity_map(flat, flat, window=3, kind="box")).max() < 1e-6


BOX = (28, 68, 28, 68)  # (y0, y1, x0, x1) of the textured square in a 96x96 flat image


def _box_pair():
    """Flat grey MSE image; GAN image = the same with a 0 / 0.15 half-checkerboard inside BOX."""
    y0, y1, x0, x1 = BOX
    mse = np.full((96, 96, 3), 0.5, np.float32)
    gan = mse.copy()
    gan[y0:y1, x0:x1] = _checker(96, 0.15, half=True)[y0:y1, x0:x1]
    return mse, gan


def _grown(margin: int) -> np.ndarray:
    """(96, 96) bool: BOX grown by ``margin`` px per side (negative: shrunk)."""
    y0, y1, x0, x1 = BOX
    out = np.zeros((96, 96), bool)
    out[max(0, y0 - margin):y1 + margin, max(0, x0 - margin):x1 + margin] = True
    return out


@pytest.mark.parametrize("method", ["absolute-d", "ldl", "ssim"])
def test_each_baseline_flags_the_textured_box_and_nothing_else(method):
    # Hand-worked scores inside the box (windows wholly inside it): absolute-d = |sigma| of the
    # half-checkerboard ~ 0.075 > 0.03; LDL = 0.15^2 * 25/98 = 0.0057 > 0.005; 1 - SSIM ~ 0.86 > 0.3.
    # Outside the windows' reach both images are the same flat grey: every score is 0.
    mse, gan = _box_pair()
    config = DetectConfig(method=method, min_area=0)
    det = detect_artifacts(mse, gan, config)
    r = config.border
    candidate = np.zeros((96, 96), bool)
    candidate[r:-r, r:-r] = det.candidate
    reach = 5 if method != "ldl" else 3  # the 11x11 window (LDL: 7x7) spreads the texture this far
    assert candidate[_grown(-reach)].all()
    assert not candidate[~_grown(reach)].any()
    # The cleaned mask is the box (morphology moves edges by a few px) and nothing far from it.
    assert det.mask[_grown(-6)].all() and not det.mask[~_grown(reach + 6)].any()
    assert len(det.regions) == 1
    # The threshold is the one the method reads: raised above the box's score, nothing is flagged.
    above = {"absolute-d": {"abs_threshold": 0.08}, "ldl": {"ldl_threshold": 0.006}, "ssim": {"ssim_threshold": 0.9}}
    assert not detect_artifacts(mse, gan, config.replace(**above[method])).candidate[reach:-reach, reach:-reach].any()
