"""DeSRA's texture-difference indicator D (Eq. 3-7): where GAN-SR texture departs from MSE-SR.

Three implementations of the same maths, tested against each other:

- :func:`d_map` — the CPU path: OpenCV separable filters on float32 (the default everywhere);
- :func:`d_map_torch` — the same on torch tensors, for CUDA (or torch on the CPU);
- :func:`d_map_reference` — a plain float64 transcription of the authors' script (full 2-D window,
  no tricks), kept as the yardstick for tests and benchmarks.

All take ``(H, W, 3)`` float images in ``[0, 1]`` (clamped first: unclamped SR outputs make
colour patches that would otherwise read as texture) and return the 'valid' map of shape
``(H - 2r, W - 2r)`` float32 where ``r = window // 2`` (5 px for the default 11x11 window).
"""

from __future__ import annotations

import numpy as np

from desra.errors import ConfigError, PairMismatchError

WINDOW_KINDS = ("gaussian", "box")

# The SSIM constant of the authors' script, (0.03 * 255)^2 for 8-bit data, scaled to data_range.
C_FACTOR = 0.03


def _check_params(window: int, sigma: float, kind: str) -> None:
    if kind not in WINDOW_KINDS:
        raise ConfigError(f"window kind {kind!r} is not known; expected one of {', '.join(WINDOW_KINDS)}")
    if window < 3 or window % 2 == 0:
        raise ConfigError(f"window must be an odd size >= 3 (got {window}); the paper uses 11")
    if kind == "gaussian" and not sigma > 0:
        raise ConfigError(f"sigma must be > 0 for a Gaussian window (got {sigma}); the authors use 1.5")


def check_pair(mse: np.ndarray, gan: np.ndarray, window: int) -> None:
    """Raise :class:`PairMismatchError` unless both are ``(H, W, 3)`` of one size larger than the window."""
    if mse.ndim != 3 or mse.shape[-1] != 3:
        raise PairMismatchError(f"MSE-SR image has shape {mse.shape}; expected (H, W, 3) RGB")
    if gan.shape != mse.shape:
        raise PairMismatchError(
            f"MSE-SR image is {mse.shape[1]}x{mse.shape[0]} but GAN-SR image is "
            f"{gan.shape[1]}x{gan.shape[0]}; both must come from the same LR image at the same scale"
        )
    if min(mse.shape[:2]) <= window:
        raise PairMismatchError(
            f"image of {mse.shape[1]}x{mse.shape[0]} px is too small for a {window}x{window} window"
        )


def window_1d(window: int = 11, sigma: float = 1.5, kind: str = "gaussian") -> np.ndarray:
    """The normalised 1-D window, ``(window,)`` float64 summing to 1 (the 2-D window is its outer product)."""
    _check_params(window, sigma, kind)
    if kind == "box":
        return np.full(window, 1.0 / window)
    x = np.arange(window, dtype=np.float64) - window // 2
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _clamped(image: np.ndarray, data_range: float, dtype) -> np.ndarray:
    return np.clip(np.asarray(image, dtype=dtype), 0.0, data_range)


def local_std(
    img: np.ndarray, window: int = 11, sigma: float = 1.5, kind: str = "gaussian", data_range: float = 1.0
) -> np.ndarray:
    """Per-channel local standard deviation (DeSRA Eq. 3): ``(H, W, C)`` -> valid ``(H-2r, W-2r, C)`` float32."""
    return np.sqrt(_local_var(_clamped(img, data_range, np.float32), window, sigma, kind, data_range))


def _local_var(img: np.ndarray, window: int, sigma: float, kind: str, data_range: float) -> np.ndarray:
    import cv2

    k = window_1d(window, sigma, kind).astype(np.float32)
    r = window // 2
    # Variance is shift-invariant; centring on mid-range halves the magnitude of E[x^2] and so the
    # float32 cancellation error of E[x^2] - E[x]^2 in flat regions.
    z = img - np.float32(data_range / 2)
    mean = cv2.sepFilter2D(z, cv2.CV_32F, k, k)[r:-r, r:-r]
    sq = cv2.sepFilter2D(cv2.multiply(z, z), cv2.CV_32F, k, k)[r:-r, r:-r]
    var = sq - mean * mean
    np.maximum(var, 0.0, out=var)
    return var.reshape(var.shape[0], var.shape[1], -1)


def d_map(
    mse: np.ndarray,
    gan: np.ndarray,
    *,
    window: int = 11,
    sigma: float = 1.5,
    kind: str = "gaussian",
    data_range: float = 1.0,
) -> np.ndarray:
    """D map of an MSE-SR/GAN-SR pair, ``(H, W, 3)`` each -> ``(H-2r, W-2r)`` float32 in (0, 1]; low = artifact."""
    mse = np.asarray(mse)
    gan = np.asarray(gan)
    check_pair(mse, gan, window)
    vx = _local_var(_clamped(mse, data_range, np.float32), window, sigma, kind, data_range)
    vy = _local_var(_clamped(gan, data_range, np.float32), window, sigma, kind, data_range)
    c = np.float32((C_FACTOR * data_range) ** 2)
    # DeSRA Eq. 7 with C in numerator and denominator as in the authors' script; 2*sx*sy is
    # computed as 2*sqrt(vx*vy) to take one square root instead of two.
    num = np.sqrt(vx * vy)
    num *= 2.0
    num += c
    vx += vy
    vx += c
    num /= vx
    return num.mean(axis=-1, dtype=np.float32)


def d_map_torch(
    mse,
    gan,
    *,
    window: int = 11,
    sigma: float = 1.5,
    kind: str = "gaussian",
    data_range: float = 1.0,
    device: str | None = None,
) -> np.ndarray:
    """D map on torch (CUDA when ``device='cuda'``): numpy ``(H, W, 3)`` or tensors ``(3, H, W)`` -> numpy float32 valid map."""
    import torch

    def to_tensor(x) -> "torch.Tensor":
        if isinstance(x, torch.Tensor):
            t = x.detach()
            if t.ndim == 4:
                t = t[0]
        else:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float32))).permute(2, 0, 1)
        return t.to(device=device or t.device, dtype=torch.float32)

    x = to_tensor(mse)
    y = to_tensor(gan)
    check_pair(x.permute(1, 2, 0), y.permute(1, 2, 0), window)
    k = torch.as_tensor(window_1d(window, sigma, kind), dtype=torch.float32, device=x.device)
    channels = x.shape[0]
    kh = k.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    kv = k.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)

    def blur(t: "torch.Tensor") -> "torch.Tensor":
        # Separable valid convolution: no padding, so the output is already the valid region.
        t = torch.nn.functional.conv2d(t[None], kh, groups=channels)
        return torch.nn.functional.conv2d(t, kv, groups=channels)[0]

    def var(t: "torch.Tensor") -> "torch.Tensor":
        z = t.clamp(0.0, data_range) - data_range / 2
        m = blur(z)
        return (blur(z * z) - m * m).clamp_min(0.0)

    with torch.no_grad():
        vx = var(x)
        vy = var(y)
        c = (C_FACTOR * data_range) ** 2
        d = (2.0 * torch.sqrt(vx * vy) + c) / (vx + vy + c)
        return d.mean(dim=0).cpu().numpy().astype(np.float32)


def d_map_reference(
    mse: np.ndarray,
    gan: np.ndarray,
    *,
    window: int = 11,
    sigma: float = 1.5,
    kind: str = "gaussian",
    data_range: float = 1.0,
) -> np.ndarray:
    """Plain float64 D map as the authors' script computes it (full 2-D window per channel) -> float32 valid map."""
    import cv2

    mse = np.asarray(mse)
    gan = np.asarray(gan)
    check_pair(mse, gan, window)
    k = window_1d(window, sigma, kind)
    w2 = np.outer(k, k)
    r = window // 2
    c = (C_FACTOR * data_range) ** 2
    x = _clamped(mse, data_range, np.float64)
    y = _clamped(gan, data_range, np.float64)
    maps = []
    for ch in range(x.shape[-1]):
        a = x[..., ch]
        b = y[..., ch]
        mu_a = cv2.filter2D(a, -1, w2)[r:-r, r:-r]
        mu_b = cv2.filter2D(b, -1, w2)[r:-r, r:-r]
        sa = np.sqrt(np.maximum(cv2.filter2D(a * a, -1, w2)[r:-r, r:-r] - mu_a**2, 0.0))
        sb = np.sqrt(np.maximum(cv2.filter2D(b * b, -1, w2)[r:-r, r:-r] - mu_b**2, 0.0))
        maps.append((2.0 * sa * sb + c) / (sa**2 + sb**2 + c))
    return np.mean(maps, axis=0).astype(np.float32)
