"""Brush strokes of ``gr.ImageEditor`` -> a corrected artifact mask.

The Correct tab shows the GAN-SR image with the current mask tinted into it as the editor's
background, and gives the editor one empty, fixed layer. Gradio 6 misplaces a layer passed in as
a value and drops it at the first stroke, so the mask itself never travels as a layer; the layer
only carries the user's strokes, in two fixed colours: red adds to the mask, blue removes from it
(the eraser takes strokes back). The strokes are read from the layer's alpha channel, binarised,
so overlapping translucent strokes (whose alpha accumulates) and anti-aliased edges still give a
clean 0/1 answer; the colour of a painted pixel says which of the two it is.
"""

from __future__ import annotations

import numpy as np

ADD_COLOR = ("rgb(230, 30, 30)", 0.6)
"""Brush colour and opacity that add to the mask (the default brush)."""
REMOVE_COLOR = ("rgb(30, 110, 230)", 0.6)
"""Brush colour and opacity that remove from the mask."""
ALPHA_THRESHOLD = 64
"""A layer pixel is painted when its alpha (0-255) is at least this; one 0.6 stroke gives about 153."""


def strokes(layer: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W, 4)`` uint8 RGBA stroke layer -> (added, removed), each ``(H, W)`` bool.

    ``shape`` (height, width) is the SR image's; a layer of another size means the canvas was
    cropped or resized and the strokes would not line up, which is refused.
    """
    from desra.core.errors import PairMismatchError

    layer = np.asarray(layer)
    if layer.ndim != 3 or layer.shape[2] != 4:
        raise PairMismatchError(f"the brush layer is {layer.shape}, expected (H, W, 4) RGBA; reload the item in Correct")
    if tuple(layer.shape[:2]) != tuple(shape):
        raise PairMismatchError(
            f"the brush layer is {layer.shape[1]}x{layer.shape[0]} but the GAN-SR image is {shape[1]}x{shape[0]}; "
            "reload the item in Correct and brush without cropping or resizing the canvas"
        )
    painted = layer[..., 3] >= ALPHA_THRESHOLD
    red = layer[..., 0].astype(np.int16)
    blue = layer[..., 2].astype(np.int16)
    return painted & (red > blue), painted & (blue >= red)


def corrected_mask(mask: np.ndarray, layer: np.ndarray | None) -> np.ndarray:
    """The ``(H, W)`` bool ``mask`` with the layer's red strokes added and blue strokes removed (no layer: unchanged)."""
    mask = np.asarray(mask, dtype=bool)
    if layer is None:
        return mask.copy()
    added, removed = strokes(layer, mask.shape)
    return (mask | added) & ~removed
