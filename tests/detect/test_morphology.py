"""Morphology: hand-made masks, and the fast path equals the scipy transcription of the script."""

from __future__ import annotations

import numpy as np
import pytest

from desra.core.errors import ConfigError
from desra.detect.morphology import (
    clean_mask,
    clean_mask_reference,
    effective_min_area,
    fill_holes,
    remove_small,
)


def test_small_specks_vanish_and_blobs_grow_by_the_dilation():
    m = np.zeros((120, 120), bool)
    m[10:13, 10:13] = True  # 3x3 speck: erased by the 5x5 erosion
    m[50:80, 50:80] = True  # 30x30 blob: erode 2 px per side, dilate 3 x 2 px -> 34x34
    out = clean_mask(m, min_area=0)
    assert not out[:30, :30].any()
    ys, xs = np.nonzero(out)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (46, 83, 46, 83)


def test_holes_are_filled_but_open_bays_are_not():
    ring = np.zeros((40, 40), bool)
    ring[5:30, 5:30] = True
    ring[10:25, 10:25] = False  # closed hole
    ring[2:8, 32:38] = True
    filled = fill_holes(ring)
    assert filled[15, 15] and filled[10:25, 10:25].all()
    bay = ring.copy()
    bay[15:18, 25:30] = False  # opens the hole to the outside
    assert not fill_holes(bay)[15, 15]


def test_min_area_drops_regions_of_exactly_that_size():
    m = np.zeros((50, 50), bool)
    m[0:10, 0:10] = True  # 100 px
    m[20:31, 20:30] = True  # 110 px
    out = remove_small(m, 100)
    assert not out[0:10, 0:10].any() and out[20:31, 20:30].all()
    d = np.zeros((50, 50), bool)
    d[0, 0] = d[1, 1] = True  # diagonal neighbours are one 8-connected region of 2 px
    assert remove_small(d, 1).sum() == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_path_equals_reference(seed):
    import cv2

    rng = np.random.default_rng(seed)
    m = cv2.GaussianBlur(rng.random((300, 260)).astype(np.float32), (0, 0), 3 + seed) > 0.5 + 0.01 * seed
    m[:12, :40] = True  # touches the border
    for kw in ({}, {"min_area": 150}, {"dilate_iters": 1, "erode": 3}):
        np.testing.assert_array_equal(clean_mask(m, **kw), clean_mask_reference(m, **kw))


def test_min_area_scaling_and_checks():
    assert effective_min_area(4000, (1500, 2000), True) == 4000
    assert effective_min_area(4000, (500, 600), True) == 400
    assert effective_min_area(4000, (500, 600), False) == 4000
    with pytest.raises(ConfigError):
        effective_min_area(-1, (10, 10), False)
    with pytest.raises(ConfigError):
        clean_mask(np.zeros((20, 20), bool), erode=0)


@pytest.mark.parametrize("where", ["middle", "corner", "edge"])
def test_regions_in_a_small_part_of_a_large_mask_equal_the_reference(where):
    # fill_holes / remove_small / rank_regions label only the box around the flagged pixels: a
    # ring (hole filled), a C whose bay opens on the box edge (not filled) and specks, placed in
    # the middle, in a corner and on an edge of a large mask, against scipy on the whole mask.
    from scipy import ndimage

    from desra.detect.regions import rank_regions

    m = np.zeros((600, 700), bool)
    y, x = {"middle": (250, 300), "corner": (0, 0), "edge": (250, 0)}[where]
    m[y : y + 60, x : x + 60] = True
    m[y + 20 : y + 40, x + 20 : x + 40] = False  # ring: its hole is filled
    m[y + 70 : y + 130, x : x + 60] = True
    m[y + 85 : y + 115, x + 15 : x + 60] = False  # C open to the right: its bay stays
    m[y + 140, x + 5] = m[y + 141, x + 6] = True  # a 2 px diagonal speck
    filled = fill_holes(m)
    np.testing.assert_array_equal(filled, ndimage.binary_fill_holes(m, structure=np.ones((3, 3))))
    assert filled[y + 30, x + 30] and not filled[y + 100, x + 30]
    labels, _ = ndimage.label(m, structure=np.ones((3, 3)))
    keep = np.bincount(labels.ravel()) > 2
    keep[0] = False
    np.testing.assert_array_equal(remove_small(m, 2), keep[labels])
    np.testing.assert_array_equal(remove_small(m, 1), m)
    regions = rank_regions(m, np.full(m.shape, 0.5, np.float32), offset=5)
    assert sorted(r.bbox for r in regions) == sorted(
        [(x + 5, y + 5, x + 65, y + 65), (x + 5, y + 75, x + 65, y + 135), (x + 10, y + 145, x + 12, y + 147)]
    )
    assert fill_holes(np.zeros((40, 40), bool)).sum() == 0 and rank_regions(np.zeros((40, 40), bool), np.ones((40, 40))) == []
