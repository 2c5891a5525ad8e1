"""DeSRA's texture-difference indicator D (Eq. 3-7): where GAN-SR texture departs from MSE-SR.

Three implementations of the same maths, tested against each other:

- :func:`d_map` — the CPU path: float32 in and out, OpenCV separable filters (moments in float64,
  see :func:`_local_var`), the default everywhere;
- :func:`d_map_torch` — the same on torch tensors, for CUDA (or torch on the CPU);
- :func:`d_map_reference` — a plain float64 transcription of the authors' script (full 2-D window,
  no tricks), kept as the yardstick for tests and benchmarks.

All take ``(H, W, 3)`` float images in ``[0, 1]`` (clamped first: unclamped SR outputs make
colour patches that would otherwise read as texture), or uint8 8-bit images (read as k / 255, the
values desra's image reader gives, so both make the same D), and return the 'valid' map of shape
``(H - 2r, W - 2r)`` float32 where ``r = window // 2`` (5 px for the default 11x11 window).
"""

from __future__ import annotations

import threading

import numpy as np

from desra.core.errors import ConfigError, PairMismatchError
from desra.core.imageio import unit_float

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


# An 8-bit image's value k is read as unit_float gives it (float32 k / 255), so an image passed as
# uint8 and the same image read as float make the same D.
_UNIT_LUT = unit_float(np.arange(256, dtype=np.uint8))
_UNIT_LUT64 = _UNIT_LUT.astype(np.float64)


def _check_8bit(image: np.ndarray, data_range: float) -> bool:
    """True for an 8-bit image (uint8 pixels, read as k / 255); those need data_range 1."""
    if image.dtype != np.uint8:
        return False
    if data_range != 1.0:
        raise ConfigError(f"uint8 images are read as k / 255 in [0, 1]; data_range must be 1 for them (got {data_range})")
    return True


def _clamped(image: np.ndarray, data_range: float, dtype) -> np.ndarray:
    image = np.asarray(image)
    if _check_8bit(image, data_range):
        return _UNIT_LUT[image].astype(dtype, copy=False)
    return np.clip(np.asarray(image, dtype=dtype), 0.0, data_range)


def local_std(
    img: np.ndarray, window: int = 11, sigma: float = 1.5, kind: str = "gaussian", data_range: float = 1.0
) -> np.ndarray:
    """Per-channel local standard deviation (DeSRA Eq. 3): ``(H, W, C)`` -> valid ``(H-2r, W-2r, C)`` float32."""
    return np.sqrt(_local_var(np.asarray(img), window, sigma, kind, data_range))


def _blur64(x: np.ndarray, window: int, sigma: float, kind: str) -> np.ndarray:
    """Window average of a float64 image, full size (OpenCV's separable kernels)."""
    import cv2

    if kind == "box":
        return cv2.boxFilter(x, cv2.CV_64F, (window, window), normalize=True)
    # cv2.getGaussianKernel(window, sigma) is the same normalised Gaussian as window_1d.
    return cv2.GaussianBlur(x, (window, window), sigma, sigmaY=sigma)


def _local_var(img: np.ndarray, window: int, sigma: float, kind: str, data_range: float) -> np.ndarray:
    import cv2

    _check_params(window, sigma, kind)
    r = window // 2
    # E[x^2] - E[x]^2 cancels badly in float32: in a flat bright region (sky) next to texture an
    # error of 6e-8 in the variance is 2.5e-4 in the standard deviation and up to 5e-3 in D. The
    # two moment blurs therefore run in float64 (separable, several times cheaper than the full
    # 2-D window of the reference); the D arithmetic after them is float32. cv2's element-wise
    # functions are used because they are multi-threaded and SIMD, numpy's are not.
    x = _clamped(img, data_range, np.float64)
    mean = _blur64(x, window, sigma, kind)
    sq = _blur64(cv2.multiply(x, x), window, sigma, kind)
    var = cv2.subtract(sq, cv2.multiply(mean, mean))[r:-r, r:-r].astype(np.float32)
    np.maximum(var, 0.0, out=var)
    return var.reshape(var.shape[0], var.shape[1], -1)


# Rows of output computed per pass: small enough that the float64 temporaries stay in cache, large
# enough that the 2r halo rows each strip blurs and discards stay a small share (48: 21 %; 32: 31 %).
# 32, 48, 64 and 96 were timed on 2048x2048: 48 was fastest, by 3-5 %.
STRIP_ROWS = 48


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
    import cv2

    mse = np.asarray(mse)
    gan = np.asarray(gan)
    check_pair(mse, gan, window)
    _check_params(window, sigma, kind)
    if _check_8bit(mse, data_range) != _check_8bit(gan, data_range):
        raise PairMismatchError(f"MSE-SR pixels are {mse.dtype} but GAN-SR pixels are {gan.dtype}; pass both as uint8 or both as float")
    eight_bit = mse.dtype == np.uint8
    r = window // 2
    h, w = mse.shape[0] - 2 * r, mse.shape[1] - 2 * r
    c = float((C_FACTOR * data_range) ** 2)
    channel_mean = np.full((1, mse.shape[-1]), 1.0 / mse.shape[-1], dtype=np.float32)
    out = np.empty((h, w), dtype=np.float32)
    gauss = kind == "gaussian"
    local = threading.local()

    def buffers(rows: int) -> dict[str, np.ndarray]:
        # Per-thread scratch arrays reused across strips: fresh multi-MB temporaries would be
        # mapped and page-faulted anew on every call, which cost as much as the filtering.
        # They are carved out of one block, which numpy backs with huge pages (it asks for them
        # from 4 MB up): separate small arrays took a 4 KB page fault (~5 us here) per 4 KB.
        cached = getattr(local, "bufs", None)
        if cached is None or cached["x"].shape[0] != rows:
            shape64 = (rows, mse.shape[1], mse.shape[2])
            shape32 = (rows - 2 * r, w, mse.shape[2])
            size64, size32 = 8 * int(np.prod(shape64)), 4 * int(np.prod(shape32))
            block = np.empty(3 * size64 + 3 * size32, np.uint8)
            cached = {}
            for i, name in enumerate(("x", "m", "sq")):
                cached[name] = block[i * size64 : (i + 1) * size64].view(np.float64).reshape(shape64)
            for i, name in enumerate(("vx", "vy", "num")):
                start = 3 * size64 + i * size32
                cached[name] = block[start : start + size32].view(np.float32).reshape(shape32)
            local.bufs = cached
        return cached

    def variance(src: np.ndarray, bufs: dict[str, np.ndarray], dst: np.ndarray) -> None:
        x, m, sq = bufs["x"], bufs["m"], bufs["sq"]
        # float64 moments: see _local_var for why float32 is not enough.
        if eight_bit:
            cv2.LUT(src, _UNIT_LUT64, dst=x)
        else:
            np.clip(src, 0.0, data_range, out=x)
        if gauss:
            cv2.GaussianBlur(x, (window, window), sigma, dst=m, sigmaY=sigma)
            cv2.multiply(x, x, dst=x)
            cv2.GaussianBlur(x, (window, window), sigma, dst=sq, sigmaY=sigma)
        else:
            cv2.boxFilter(x, cv2.CV_64F, (window, window), dst=m, normalize=True)
            cv2.multiply(x, x, dst=x)
            cv2.boxFilter(x, cv2.CV_64F, (window, window), dst=sq, normalize=True)
        # Only the valid part is kept, so the rest of the strip is not squared or subtracted.
        mean, square = m[r:-r, r:-r], sq[r:-r, r:-r]
        cv2.multiply(mean, mean, dst=mean)
        # Rounding can leave a flat window's variance a hair below zero; D clamps the product.
        cv2.subtract(square, mean, dst=dst, dtype=cv2.CV_32F)

    def strip(y0: int) -> None:
        y1 = min(y0 + STRIP_ROWS, h)
        bufs = buffers(y1 - y0 + 2 * r)
        vx, vy = bufs["vx"], bufs["vy"]
        variance(mse[y0 : y1 + 2 * r], bufs, vx)
        variance(gan[y0 : y1 + 2 * r], bufs, vy)
        # DeSRA Eq. 7 with C in numerator and denominator as in the authors' script; 2*sx*sy is
        # computed as sqrt(4*vx*vy) to take one square root instead of two. A variance rounded to
        # -1e-17 makes the product negative only where the other factor is not: zero is exact there.
        num = bufs["num"]
        cv2.multiply(vx, vy, dst=num, scale=4.0)
        np.maximum(num, 0.0, out=num)
        cv2.sqrt(num, dst=num)
        np.add(num, c, out=num)
        cv2.addWeighted(vx, 1.0, vy, 1.0, c, dst=vx)
        cv2.divide(num, vx, dst=num)
        out[y0:y1] = cv2.transform(num, channel_mean).reshape(y1 - y0, w)

    # OpenCV parallelises a filter over the rows of one call, not over calls; small strips run
    # single-threaded, so the strips themselves are spread over threads (OpenCV releases the GIL).
    workers = max(1, cv2.getNumThreads())
    if workers == 1 or h <= STRIP_ROWS:
        for y0 in range(0, h, STRIP_ROWS):
            strip(y0)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(strip, range(0, h, STRIP_ROWS)))
    return out


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
            t = torch.from_numpy(np.ascontiguousarray(_clamped(x, data_range, np.float32))).permute(2, 0, 1)
        return t.to(device=device or t.device, dtype=torch.float32)

    x = to_tensor(mse)
    y = to_tensor(gan)
    check_pair(x.permute(1, 2, 0), y.permute(1, 2, 0), window)
    k = torch.as_tensor(window_1d(window, sigma, kind), dtype=torch.float64, device=x.device)
    channels = x.shape[0]
    kh = k.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    kv = k.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)

    def blur(t: "torch.Tensor") -> "torch.Tensor":
        # Separable valid convolution: no padding, so the output is already the valid region.
        t = torch.nn.functional.conv2d(t[None], kh, groups=channels)
        return torch.nn.functional.conv2d(t, kv, groups=channels)[0]

    def var(t: "torch.Tensor") -> "torch.Tensor":
        # float64 moments for the same cancellation reason as the CPU path.
        z = t.clamp(0.0, data_range).double()
        m = blur(z)
        return (blur(z * z) - m * m).clamp_min(0.0).float()

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
