"""LGP codes on hand-worked 3x3 neighbourhoods and the 30-D feature layout."""

from __future__ import annotations

import numpy as np
import pytest

from desra.core.errors import ImageError
from desra.fingerprint.features import FEATURE_DIMS, fingerprint_features, lgp_codes


@pytest.mark.parametrize(
    ("patch", "code"),
    [
        # gradients clockwise from top-left: 4,3,2,1,4,3,2,1 -> mean 2.5 -> bits 0,1,4,5 -> 1+2+16+32
        ([[1, 2, 3], [4, 5, 6], [7, 8, 9]], 51),
        # flat: every gradient 0, none exceeds the mean 0
        ([[7, 7, 7], [7, 7, 7], [7, 7, 7]], 0),
        # one bright right neighbour: gradients 0 except bit 3 (right) = 8 > mean 1
        ([[0, 0, 0], [0, 0, 8], [0, 0, 0]], 8),
        # bright centre on a flat ring: all 8 gradients equal the mean, none strictly exceeds it
        ([[0, 0, 0], [0, 9, 0], [0, 0, 0]], 0),
        # bottom row bright (bits 4, 5, 6) and left neighbour darker by 1 (bit 7 gradient 1 < mean)
        ([[2, 2, 2], [1, 2, 2], [9, 9, 9]], 16 + 32 + 64),
        # top-left and bottom-left corners differ by 6 and 2: mean 1 -> bits 0 and 6
        ([[8, 2, 2], [2, 2, 2], [4, 2, 2]], 1 + 64),
    ],
)
def test_lgp_code_of_hand_worked_3x3(patch, code):
    codes = lgp_codes(np.array(patch, dtype=np.float32))
    assert codes.shape == (1, 1)
    assert codes.dtype == np.uint8
    assert int(codes[0, 0]) == code


def test_lgp_codes_cover_interior_pixels_only():
    image = np.repeat(np.arange(4, dtype=np.float64)[:, None] * 10, 5, axis=1)
    codes = lgp_codes(image)
    assert codes.shape == (2, 3)
    # a vertical ramp: the 6 neighbours above and below differ by 10 > mean 7.5, left/right by 0
    assert set(np.unique(codes)) == {1 + 2 + 4 + 16 + 32 + 64}


def test_lgp_rejects_too_small_images():
    with pytest.raises(ImageError, match="at least 3x3"):
        lgp_codes(np.zeros((2, 5)))


def test_feature_is_30_dims_colour_then_lgp(photo):
    image = photo("astronaut")[:96, :96]
    features = fingerprint_features(image)
    assert features.shape == (FEATURE_DIMS,) == (30,)
    np.testing.assert_allclose(features[:21].sum(), 1.0)
    np.testing.assert_allclose(features[21:].sum(), 1.0)
    # each channel's 7 colour bins sum to one third
    np.testing.assert_allclose(features[:21].reshape(3, 7).sum(axis=1), 1 / 3)


def test_colour_histogram_of_flat_image_is_one_bin_per_channel():
    image = np.zeros((8, 8, 3), np.float32)
    image[..., 0] = 1.0  # red saturated -> last bin
    image[..., 1] = 0.5  # green -> middle bin (0.5 falls in bin 3 of 7)
    features = fingerprint_features(image)
    colour = features[:21].reshape(3, 7)
    assert colour[0, 6] == pytest.approx(1 / 3)
    assert colour[1, 3] == pytest.approx(1 / 3)
    assert colour[2, 0] == pytest.approx(1 / 3)
    # a flat image has LGP code 0 everywhere -> all mass in the popcount-0 bin
    assert features[21] == pytest.approx(1.0)
