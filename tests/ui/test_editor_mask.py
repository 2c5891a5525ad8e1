"""Brush strokes read back from the ImageEditor layer: alpha binarised, colour says add or remove."""

from __future__ import annotations

import numpy as np
import pytest

from desra.core.errors import PairMismatchError
from ui.editor_mask import ALPHA_THRESHOLD, corrected_mask, strokes


def _layer(shape, add=None, remove=None, alpha=153):
    layer = np.zeros((*shape, 4), np.uint8)
    if add is not None:
        layer[add] = (230, 30, 30, alpha)
    if remove is not None:
        layer[remove] = (30, 110, 230, alpha)
    return layer


def test_round_trip_adds_red_and_removes_blue():
    mask = np.zeros((40, 60), bool)
    mask[5:20, 5:30] = True
    add = np.zeros_like(mask)
    add[25:35, 40:55] = True
    remove = np.zeros_like(mask)
    remove[5:20, 5:10] = True
    out = corrected_mask(mask, _layer(mask.shape, add, remove))
    expected = (mask | add) & ~remove
    assert out.dtype == bool and np.array_equal(out, expected)


def test_alpha_is_binarised_so_accumulated_and_faint_strokes_behave():
    mask = np.zeros((10, 10), bool)
    layer = _layer(mask.shape)
    layer[2, 2] = (230, 30, 30, 255)  # two overlapping 0.6 strokes accumulate to nearly opaque
    layer[3, 3] = (230, 30, 30, ALPHA_THRESHOLD)  # the threshold itself counts
    layer[4, 4] = (230, 30, 30, ALPHA_THRESHOLD - 1)  # an anti-aliased edge does not
    added, removed = strokes(layer, mask.shape)
    assert added[2, 2] and added[3, 3] and not added[4, 4]
    assert not removed.any()


def test_no_layer_leaves_the_mask_alone():
    mask = np.eye(8, dtype=bool)
    assert np.array_equal(corrected_mask(mask, None), mask)


def test_a_resized_canvas_is_refused():
    with pytest.raises(PairMismatchError, match="40x30"):
        corrected_mask(np.zeros((30, 40), bool), np.zeros((60, 80, 4), np.uint8))
