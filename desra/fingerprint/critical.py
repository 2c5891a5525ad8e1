"""Critical image of an SR model (Quan et al., ICCV 2023, Eq. 1).

``S = argmin_{X in [0,1]} ||X - M(D(X))||^2 - lambda * ||grad X||_1``: the image the model maps
(after downsampling by its own scale) most nearly onto itself while keeping strong gradients. It is
a white-box fingerprint: it needs gradients through the model.

D is antialiased bicubic downsampling by the model's scale, the degradation SR models are trained
to invert. Average pooling (the unofficial code's D, kept as ``downsample="area"``) makes every
image that is constant on scale x scale blocks an exact fixed point of any model that adds a
nearest-neighbour upsampled input to a small learned residual (SRVGGNetCompact does): the critical
image then becomes a random binary block pattern set by the initial noise, the same for every such
model, and desra's independently trained SRVGG seed siblings were confused (docs/attribution.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from desra.core.errors import ConfigError, PairMismatchError


@dataclass(frozen=True)
class CriticalConfig:
    """Optimisation settings of Quan Eq. 1; the defaults are the paper's, D (which the paper leaves open) is desra's."""

    size: int = 128
    """Side of the square critical image in pixels (HR side; must be divisible by the scale)."""
    iterations: int = 5000
    """Adam steps."""
    lr: float = 0.1
    """Adam learning rate."""
    lam: float = 1e-3
    """Weight lambda of the (rewarded) total-variation term ||grad X||_1."""
    beta: float = 1.0
    """Standard deviation of the Gaussian initialisation X0 ~ N(0, beta^2)."""
    seed: int = 0
    """Seed of the initialisation; the same seed gives the same image on the same machine."""
    downsample: str = "bicubic"
    """D of Eq. 1: 'bicubic' (antialiased) or 'area' (average pooling)."""

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready) of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CriticalConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown critical-image settings {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}")
        # Fingerprints registered before D was a setting were extracted with average pooling.
        return cls(**{"downsample": "area", **data})


DOWNSAMPLE_MODES = ("bicubic", "area")
"""Choices of the degradation D in Eq. 1."""


def degrade(x, scale: int, mode: str = "bicubic"):
    """D of Eq. 1 on an (N, C, H, W) tensor: downsampling by ``scale`` (antialiased bicubic, or average pooling for 'area')."""
    import torch.nn.functional as F

    if scale == 1:
        return x
    if mode == "area":
        return F.avg_pool2d(x, scale)
    return F.interpolate(x, scale_factor=1.0 / scale, mode="bicubic", antialias=True, align_corners=False)


def _check(config: CriticalConfig, scale: int) -> None:
    if scale < 1:
        raise ConfigError(f"model scale must be >= 1, got {scale}")
    if config.size < 8 or config.size % scale:
        raise ConfigError(
            f"critical-image size {config.size} must be >= 8 and divisible by the model scale {scale}; "
            f"use e.g. size={max(8, config.size // scale * scale)}"
        )
    if config.downsample not in DOWNSAMPLE_MODES:
        raise ConfigError(f"unknown critical-image downsampling {config.downsample!r}; known: {', '.join(DOWNSAMPLE_MODES)}")
    if config.iterations < 1 or config.lr <= 0:
        raise ConfigError(f"need iterations >= 1 and lr > 0, got iterations={config.iterations}, lr={config.lr}")


def critical_image(
    module,
    scale: int,
    config: CriticalConfig = CriticalConfig(),
    *,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Critical image of ``module`` (an SR ``nn.Module`` with integer ``scale``): (size, size, 3) float32 in [0, 1]."""
    import torch

    _check(config, scale)
    module = module.to(device).eval()
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    x0 = torch.randn((1, 3, config.size, config.size), generator=generator) * config.beta
    x = x0.to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=config.lr)
    step = max(1, config.iterations // 100)
    for iteration in range(config.iterations):
        restored = module(degrade(x, scale, config.downsample))
        if restored.shape != x.shape:
            raise PairMismatchError(
                f"model output {tuple(restored.shape)} does not match the critical image {tuple(x.shape)}; "
                f"is the model's scale really x{scale}?"
            )
        tv = (x[..., 1:, :] - x[..., :-1, :]).abs().sum() + (x[..., :, 1:] - x[..., :, :-1]).abs().sum()
        loss = ((x - restored) ** 2).sum() - config.lam * tv  # Quan Eq. 1
        # Gradient for X only: the model's weights get no .grad and are left untouched.
        (x.grad,) = torch.autograd.grad(loss, [x])
        optimizer.step()
        with torch.no_grad():
            # X is constrained to [0, 1]: projected gradient descent.
            x.clamp_(0.0, 1.0)
        if progress is not None and ((iteration + 1) % step == 0 or iteration + 1 == config.iterations):
            progress(iteration + 1, config.iterations)
    return x.detach()[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
