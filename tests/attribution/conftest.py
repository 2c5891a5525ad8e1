"""Fixtures of the attribution area: tiny, independently initialised SR networks."""

from __future__ import annotations

import pytest


def make_tiny_sr(seed: int, scale: int = 4, features: int = 16):
    """A 3-conv + PixelShuffle SR network with a nearest-neighbour skip, initialised from ``seed``."""
    import torch
    from torch import nn

    class TinySR(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = scale
            self.body = nn.Sequential(
                nn.Conv2d(3, features, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(features, features, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(features, 3 * scale * scale, 3, padding=1),
                nn.PixelShuffle(scale),
            )

        def forward(self, x):
            return self.body(x) + nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")

    torch.manual_seed(seed)
    return TinySR().eval()


@pytest.fixture
def tiny_sr():
    """Factory fixture: ``tiny_sr(seed, scale=4)`` -> a fresh tiny SR ``nn.Module``."""
    return make_tiny_sr
