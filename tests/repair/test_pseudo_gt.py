"""DeSRA Eq. 10 on hand-made arrays."""

import numpy as np
import pytest

from desra.core.errors import PairMismatchError
from desra.repair.pseudo_gt import pseudo_gt


def test_hard_mask_takes_mse_inside_and_gan_outside():
    mse = np.full((4, 4, 3), 0.25, dtype=np.float32)
    gan = np.full((4, 4, 3), 0.75, dtype=np.float32)
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 0:2] = True
    out = pseudo_gt(mse, gan, mask)
    assert out.dtype == np.float32 and out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[1:3, 0:2], 0.25)
    np.testing.assert_array_equal(out[0], 0.75)
    np.testing.assert_array_equal(out[:, 2:], 0.75)


def test_soft_mask_blends_linearly():
    mse = np.zeros((2, 2, 3), dtype=np.float32)
    gan = np.ones((2, 2, 3), dtype=np.float32)
    mask = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    out = pseudo_gt(mse, gan, mask)
    # M * 0 + (1 - M) * 1 = 1 - M, per channel
    np.testing.assert_allclose(out[..., 1], [[1.0, 0.75], [0.5, 0.0]])


def test_mismatched_shapes_are_refused():
    with pytest.raises(PairMismatchError):
        pseudo_gt(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)), np.zeros((4, 4), bool))
    with pytest.raises(PairMismatchError):
        pseudo_gt(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((1, 1), bool))
