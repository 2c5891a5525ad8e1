"""Real-ESRGAN-style second-order degradation: HR crops in, realistic LR crops out, seeded.

Blur (mixed Gaussian / generalised / plateau kernels or a sinc), random resize, Gaussian or Poisson
noise and JPEG, applied twice, then a final sinc + resize to ``HR / scale`` in random order with a
last JPEG, as in Real-ESRGAN (Wang et al., ICCVW 2021, Sec. 3). basicsr's kernel, noise and DiffJPEG
functions do the work; they draw from the global ``random``/``numpy``/``torch`` generators, so every
call runs inside :func:`seeded`, which seeds those generators from ``seed`` and restores them after:
the same ``(hr, seed)`` always gives the same LR, and nothing outside is disturbed.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from desra.core.errors import ConfigError

_MIN_SIDE = 12  # smallest side (px) an intermediate image may have: blur kernels are 21 taps
_KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


@dataclass(frozen=True)
class DegradationConfig:
    """Parameters of the two-stage degradation (defaults: Real-ESRGAN x4plus training options)."""

    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    """Probabilities of iso, aniso, generalized_iso, generalized_aniso, plateau_iso, plateau_aniso kernels."""
    sinc_prob: float = 0.1
    """Chance the first-stage blur is a sinc (ringing) filter instead."""
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    """First-stage blur sigma range in HR pixels."""
    betag_range: tuple[float, float] = (0.5, 4.0)
    """Shape range of generalised-Gaussian kernels (first stage)."""
    betap_range: tuple[float, float] = (1.0, 2.0)
    """Shape range of plateau kernels (first stage)."""
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    """Chances of up / down / keep for the first random resize."""
    resize_range: tuple[float, float] = (0.15, 1.5)
    """First random resize factor range."""
    gaussian_noise_prob: float = 0.5
    """Chance of Gaussian (else Poisson) noise in the first stage."""
    noise_range: tuple[float, float] = (1.0, 30.0)
    """Gaussian noise sigma range on the 0-255 scale (first stage)."""
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    """Poisson noise scale range (first stage)."""
    gray_noise_prob: float = 0.4
    """Chance the noise is the same in all channels (first stage)."""
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    """JPEG quality range (first stage)."""
    second_blur_prob: float = 0.8
    """Chance the second stage blurs at all."""
    sinc_prob2: float = 0.1
    """Chance the second-stage blur is a sinc filter."""
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    """Second-stage blur sigma range."""
    betag_range2: tuple[float, float] = (0.5, 4.0)
    """Shape range of generalised-Gaussian kernels (second stage)."""
    betap_range2: tuple[float, float] = (1.0, 2.0)
    """Shape range of plateau kernels (second stage)."""
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    """Chances of up / down / keep for the second random resize."""
    resize_range2: tuple[float, float] = (0.3, 1.2)
    """Second random resize factor range."""
    gaussian_noise_prob2: float = 0.5
    """Chance of Gaussian (else Poisson) noise in the second stage."""
    noise_range2: tuple[float, float] = (1.0, 25.0)
    """Gaussian noise sigma range on the 0-255 scale (second stage)."""
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    """Poisson noise scale range (second stage)."""
    gray_noise_prob2: float = 0.4
    """Chance the noise is the same in all channels (second stage)."""
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    """JPEG quality range (second stage and final)."""
    final_sinc_prob: float = 0.8
    """Chance of a final sinc filter (else identity) around the last resize."""

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DegradationConfig:
        """Build from a YAML mapping; unknown keys raise ConfigError naming the known ones."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown degradation option(s) {unknown}; known options are {sorted(known)}; "
                "fix the spelling in the config's `degradation:` section"
            )
        converted = {k: tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v) for k, v in values.items()}
        config = cls(**converted)
        if len(config.kernel_prob) != len(_KERNEL_TYPES):
            raise ConfigError(
                f"degradation.kernel_prob has {len(config.kernel_prob)} entries; expected {len(_KERNEL_TYPES)} "
                f"(for {', '.join(_KERNEL_TYPES)})"
            )
        return config

    def non_defaults(self) -> dict[str, Any]:
        """The options that differ from the defaults, in field order: what a card or a recipe records."""
        default = DegradationConfig()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)}


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed python ``random``, numpy's and torch's global generators from ``seed``; restore them on exit."""
    import torch

    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _kernel_size() -> int:
    return random.choice(range(7, 22, 2))


def _sinc_kernel(size: int, pad_to: int = 21) -> np.ndarray:
    from desra.models import basicsr_adapter as ba

    # Real-ESRGAN: smaller kernels get a higher minimum cutoff so the ringing stays plausible.
    low = math.pi / 3 if size < 13 else math.pi / 5
    return ba.circular_lowpass_kernel(random.uniform(low, math.pi), size, pad_to=pad_to)


def _blur_kernel(sinc_prob: float, sigma: tuple[float, float], betag: tuple[float, float], betap: tuple[float, float], kernel_prob) -> np.ndarray:
    from desra.models import basicsr_adapter as ba

    size = _kernel_size()
    if random.random() < sinc_prob:
        return _sinc_kernel(size)
    kernel = ba.random_mixed_kernels(
        list(_KERNEL_TYPES),
        list(kernel_prob),
        size,
        sigma,
        sigma,
        [-math.pi, math.pi],
        betag,
        betap,
        noise_range=None,
    )
    pad = (21 - size) // 2
    return np.pad(kernel, ((pad, pad), (pad, pad)))


def _per_image_kernels(n: int, make) -> Any:
    import torch

    return torch.from_numpy(np.stack([make() for _ in range(n)])).float()


def _random_resize(x, probs, scale_range):
    import torch.nn.functional as F

    kind = random.choices(["up", "down", "keep"], probs)[0]
    if kind == "up":
        factor = random.uniform(1.0, scale_range[1])
    elif kind == "down":
        factor = random.uniform(scale_range[0], 1.0)
    else:
        factor = 1.0
    # The next 21-tap blur pads by 10 px with reflection, which needs more than 10 px: small crops
    # (Real-ESRGAN crops 256 px, desra's CPU recipes 64-128 px) keep at least _MIN_SIDE.
    factor = max(factor, _MIN_SIDE / min(x.shape[-2:]))
    mode = random.choice(["area", "bilinear", "bicubic"])
    return F.interpolate(x, scale_factor=factor, mode=mode)


def _noise(x, gaussian_prob, sigma_range, poisson_range, gray_prob):
    from desra.models import basicsr_adapter as ba

    if random.random() < gaussian_prob:
        return ba.random_add_gaussian_noise_pt(x, sigma_range=sigma_range, clip=True, rounds=False, gray_prob=gray_prob)
    return ba.random_add_poisson_noise_pt(x, scale_range=poisson_range, gray_prob=gray_prob, clip=True, rounds=False)


@functools.lru_cache(maxsize=4)
def _jpeger(device: str):
    from desra.models import basicsr_adapter as ba

    # Building DiffJPEG's DCT tables costs as much as a degradation; it holds no state, so share one.
    return ba.DiffJPEG(differentiable=False).to(device)


def _jpeg(x, quality_range, jpeger):
    import torch

    quality = x.new_empty(x.size(0)).uniform_(*quality_range)
    return jpeger(torch.clamp(x, 0, 1), quality=quality).contiguous()


def degrade(hr, scale: int, seed: int, config: DegradationConfig = DegradationConfig()):
    """Second-order degradation of HR crops ``(N, 3, H, W)`` float in [0, 1] to LR ``(N, 3, H/scale, W/scale)``.

    Deterministic in ``(hr, scale, seed, config)``; H and W must be multiples of ``scale``.
    """
    import torch
    import torch.nn.functional as F

    from desra.models import basicsr_adapter as ba

    if hr.ndim != 4 or hr.shape[1] != 3:
        raise ConfigError(f"degrade expects HR crops shaped (N, 3, H, W); got {tuple(hr.shape)}")
    height, width = hr.shape[-2:]
    if scale < 1 or height % scale or width % scale:
        raise ConfigError(
            f"HR crop size {height}x{width} is not a multiple of scale {scale}; use a patch size divisible by the scale"
        )
    if min(height, width) // scale < _MIN_SIDE:
        raise ConfigError(
            f"HR crop {height}x{width} gives LR crops under {_MIN_SIDE} px at scale {scale}; the 21-tap degradation "
            f"kernels need at least {_MIN_SIDE * scale} px HR crops"
        )
    # basicsr's filter2D reshapes with .view, which fails on permuted (channels-last) crops.
    hr = hr.contiguous()
    n = hr.shape[0]
    jpeger = _jpeger(str(hr.device))
    with seeded(seed), torch.no_grad():
        c = config
        # First order.
        k1 = _per_image_kernels(n, lambda: _blur_kernel(c.sinc_prob, c.blur_sigma, c.betag_range, c.betap_range, c.kernel_prob))
        x = ba.filter2D(hr, k1.to(hr.device))
        x = _random_resize(x, c.resize_prob, c.resize_range)
        x = _noise(x, c.gaussian_noise_prob, c.noise_range, c.poisson_scale_range, c.gray_noise_prob)
        x = _jpeg(x, c.jpeg_range, jpeger)
        # Second order.
        if random.random() < c.second_blur_prob:
            k2 = _per_image_kernels(n, lambda: _blur_kernel(c.sinc_prob2, c.blur_sigma2, c.betag_range2, c.betap_range2, c.kernel_prob))
            x = ba.filter2D(x, k2.to(hr.device))
        kind = random.choices(["up", "down", "keep"], c.resize_prob2)[0]
        factor = {"up": random.uniform(1.0, c.resize_range2[1]), "down": random.uniform(c.resize_range2[0], 1.0), "keep": 1.0}[kind]
        size = (max(1, int(height / scale * factor)), max(1, int(width / scale * factor)))
        x = F.interpolate(x, size=size, mode=random.choice(["area", "bilinear", "bicubic"]))
        x = _noise(x, c.gaussian_noise_prob2, c.noise_range2, c.poisson_scale_range2, c.gray_noise_prob2)
        # Final sinc + resize to the LR size and JPEG, in random order (Real-ESRGAN).
        if random.random() < c.final_sinc_prob:
            final = torch.from_numpy(np.stack([_sinc_kernel(_kernel_size()) for _ in range(n)])).float().to(hr.device)
        else:
            final = torch.zeros(n, 21, 21, device=hr.device)
            final[:, 10, 10] = 1.0
        target = (height // scale, width // scale)
        if random.random() < 0.5:
            x = F.interpolate(x, size=target, mode=random.choice(["area", "bilinear", "bicubic"]))
            x = ba.filter2D(x, final)
            x = _jpeg(x, c.jpeg_range2, jpeger)
        else:
            x = _jpeg(x, c.jpeg_range2, jpeger)
            x = F.interpolate(x, size=target, mode=random.choice(["area", "bilinear", "bicubic"]))
            x = ba.filter2D(x, final)
        # Quantise to 8 bit like a saved LR image.
        return torch.clamp((x * 255.0).round(), 0, 255) / 255.0


def bicubic_lr(hr, scale: int):
    """Plain bicubic (antialiased) downscale of ``(N, 3, H, W)`` HR to LR, quantised to 8 bit; for evaluation."""
    import torch
    import torch.nn.functional as F

    height, width = hr.shape[-2:]
    lr = F.interpolate(hr, size=(height // scale, width // scale), mode="bicubic", antialias=True, align_corners=False)
    return torch.clamp((lr * 255.0).round(), 0, 255) / 255.0
