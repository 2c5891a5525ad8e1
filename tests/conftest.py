"""Shared fixtures: real packaged photos (scikit-image's data folder) as float32 RGB in [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest


def load_photo(name: str) -> np.ndarray:
    """A real photo shipped by scikit-image, as (H, W, 3) float32 in [0, 1]."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return (image[..., :3].astype(np.float32) / 255.0).copy()


@pytest.fixture
def photo():
    """Factory fixture: ``photo("astronaut")`` returns that real photo as float32 RGB in [0, 1]."""
    return load_photo
