"""Masks <-> the brush layer of ``gr.ImageEditor``.

The Correct tab gives the editor one fixed layer holding the mask as translucent red. Whatever the
user paints or erases there, the mask is read back from the layer's alpha channel and binarised,
so overlapping translucent strokes (whose alpha accumulates) and anti-aliased stroke edges still
give a clean 0/1 mask.
"""

from __future__ import annotations

import numpy as np

MASK_RGB = (230, 30, 30)
"""Colour the mask is drawn in on the layer."""
MASK_ALPHA = 140
"""Alpha (0-255) of mask pixels on the layer: translucent, so the GAN-SR image shows through."""
ALPHA_THRESHOLD = 64
"""A layer pixel belongs to the mask when its alpha is at least this (half of a light brush stroke)."""
BRUSH_COLOR = ("rgb(230, 30, 30)", 0.6)
"""The editor's only brush colour and opacity (alpha about 153, above :data:`ALPHA_THRESHOLD`)."""


def mask_to_layer(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool mask -> ``(H, W, 4)`` uint8 RGBA layer: translucent red on the mask, transparent elsewhere."""
    mask = np.asarray(mask, dtype=bool)
    layer = np.zeros((*mask.shape, 4), dtype=np.uint8)
    layer[mask] = (*MASK_RGB, MASK_ALPHA)
    return layer


def layer_to_mask(layer: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA layer -> ``(H, W)`` bool mask from its alpha (``>= ALPHA_THRESHOLD``).

    ``shape`` (height, width), when given, must match the layer: a mismatch means the editor
    resized the canvas and the mask would not line up with the SR image.
    """
    from desra.errors import PairMismatchError

    layer = np.asarray(layer)
    if layer.ndim != 3 or layer.shape[2] != 4:
        raise PairMismatchError(f"the brush layer is {layer.shape}, expected (H, W, 4) RGBA; reload the item in Correct")
    if shape is not None and tuple(layer.shape[:2]) != tuple(shape):
        raise PairMismatchError(
            f"the brush layer is {layer.shape[1]}x{layer.shape[0]} but the GAN-SR image is {shape[1]}x{shape[0]}; "
            "reload the item in Correct and brush without cropping or resizing the canvas"
        )
    return layer[..., 3] >= ALPHA_THRESHOLD
