"""Pictures for people: overlay, D heat map with colour bar, semantic map with legend (uint8 RGB)."""

from __future__ import annotations

import numpy as np
import pytest

from desra.core.errors import ConfigError, PairMismatchError
from desra.detect import visualize
from desra.detect.semantic import ADE20K_CLASSES


def test_overlay_tints_only_the_mask_and_its_outline(photo):
    img = photo("astronaut")
    mask = np.zeros(img.shape[:2], bool)
    mask[100:200, 150:300] = True
    out = visualize.overlay(np.asfortranarray(img), mask)  # non-C-ordered input (as upscale returns) is fine
    base = (img * 255 + 0.5).astype(np.uint8)
    assert out.dtype == np.uint8 and out.shape == img.shape
    inside = (slice(105, 195), slice(155, 295))
    expected = (0.6 * base[inside] + 0.4 * np.array([255, 0, 0])).astype(np.uint8)
    assert np.abs(out[inside].astype(int) - expected).max() <= 1  # red tint inside
    np.testing.assert_array_equal(out[:90], base[:90])  # untouched away from the mask
    with pytest.raises(PairMismatchError, match=r"mask \(511, 512\) and image \(512, 512\)"):
        visualize.overlay(img, mask[:-1])


def test_heatmap_has_colour_bar_and_orders_colours():
    d = np.tile(np.linspace(0, 1, 200, dtype=np.float32), (120, 1))
    out = visualize.heatmap(d)
    assert out.dtype == np.uint8 and out.shape[0] == 120 and out.shape[1] > 200
    assert out[:, :200].reshape(-1, 3)[:, :].std() > 0
    assert out[60, 0].sum() < out[60, 199].sum()  # inferno: dark at 0, bright at 1
    bar = out[:, 206]
    assert bar[0].sum() > bar[-1].sum()  # bar runs from vmax at the top to vmin at the bottom
    with pytest.raises(ConfigError, match="vmax > vmin"):
        visualize.heatmap(d, vmin=1, vmax=0)


def test_semantic_legend_colours_classes_and_lists_them():
    labels = np.zeros((100, 60), np.int64)
    labels[:, 30:] = 2  # wall | sky
    out = visualize.semantic_legend(labels, ADE20K_CLASSES)
    assert out.shape == (100, 60 + 160, 3) and out.dtype == np.uint8
    palette = visualize.class_colors(150)
    np.testing.assert_array_equal(out[50, 10], palette[0])
    np.testing.assert_array_equal(out[50, 40], palette[2])
    assert len({tuple(c) for c in palette}) == 150
    assert (out[:, 60:] < 255).any()  # legend drawn
    with pytest.raises(ConfigError, match="exceeds the 150 class names"):
        visualize.semantic_legend(np.full((4, 4), 200), ADE20K_CLASSES)


@pytest.mark.parametrize("alpha", [0.4, 0.25, 1.0])
def test_overlay_tint_is_the_float32_blend_of_the_flagged_pixels_truncated(photo, alpha):
    img = photo("chelsea")
    pixels = (img * 255).astype(np.uint8)
    mask = np.zeros(img.shape[:2], bool)
    mask[40:200, 60:300] = True
    mask[250, 10] = True
    colour = (30, 200, 90)
    out = visualize.overlay(pixels, mask, color=colour, alpha=alpha)
    expected = ((1 - alpha) * pixels[mask].astype(np.float32) + alpha * np.array(colour, np.float32)).astype(np.uint8)
    inside = mask.copy()
    inside[:42], inside[198:], inside[:, :62], inside[:, 298:] = False, False, False, False  # clear of the outline
    np.testing.assert_array_equal(out[inside], expected[inside[mask]])
    far = np.ones_like(mask)
    far[30:210, 50:310] = far[240:261, 0:21] = False
    np.testing.assert_array_equal(out[far], pixels[far])  # untouched away from the mask and its outline
    assert np.array_equal(pixels, (img * 255).astype(np.uint8))  # the input is not drawn on
