"""PRNU-style attribution baseline (Marra et al. 2019, as used by Vonderfecht & Liu).

Residual = image - denoised(image); a model's fingerprint is the mean residual of its images; an
image is attributed to the nearest fingerprint in squared L2. The authors denoised with BM3D
(sigma 5 on the 0-255 scale), whose PyPI package is licensed for non-commercial use only; desra
uses the free wavelet denoiser of camera-PRNU work instead: db8, 4 levels, local Wiener shrinkage
of the detail coefficients with noise sigma 5/255 and the minimum variance over 3/5/7/9 windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from desra.core.errors import ConfigError, ImageError

WIENER_WINDOWS = (3, 5, 7, 9)
"""Square windows over which the local coefficient variance is estimated (the minimum is used)."""


def _wiener(coefficients: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    energy = coefficients.astype(np.float64) ** 2
    variance = np.min([uniform_filter(energy, size=w, mode="reflect") for w in WIENER_WINDOWS], axis=0)
    signal = np.maximum(variance - sigma**2, 0.0)
    return coefficients * signal / (signal + sigma**2)


def wavelet_denoise(image: np.ndarray, *, sigma: float = 5 / 255, wavelet: str = "db8", levels: int = 4) -> np.ndarray:
    """Denoised copy of an (H, W, 3) float image in [0, 1]: (H, W, 3) float32, Wiener-shrunk wavelet details."""
    import warnings

    import pywt

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if sigma <= 0 or levels < 1:
        raise ConfigError(f"need sigma > 0 and levels >= 1, got sigma={sigma}, levels={levels}")
    out = np.empty_like(image)
    for c in range(3):
        with warnings.catch_warnings():
            # Periodic extension keeps deep levels well defined on small crops; pywt warns anyway.
            warnings.filterwarnings("ignore", message="Level value of", category=UserWarning)
            coeffs = pywt.wavedec2(image[..., c], wavelet, level=levels, mode="periodization")
        shrunk = [coeffs[0]] + [tuple(_wiener(d, sigma) for d in detail) for detail in coeffs[1:]]
        restored = pywt.waverec2(shrunk, wavelet, mode="periodization")
        out[..., c] = restored[: image.shape[0], : image.shape[1]]
    return out


def noise_residual(image: np.ndarray, **denoise_options) -> np.ndarray:
    """Residual image - wavelet_denoise(image) of an (H, W, 3) float image: (H, W, 3) float32, zero-mean-ish."""
    image = np.asarray(image, dtype=np.float32)
    return image - wavelet_denoise(image, **denoise_options)


@dataclass(frozen=True)
class PrnuFingerprints:
    """Mean residual per model: the PRNU-style fingerprints."""

    labels: tuple[str, ...]
    """Model names, one per fingerprint."""
    fingerprints: np.ndarray
    """(K, S, S, 3) float32 mean residuals, in the order of ``labels``."""


def fit_fingerprints(residuals: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> PrnuFingerprints:
    """Mean of the (N, S, S, 3) ``residuals`` per class index in ``labels`` (N,) int; ``names[k]`` names class k."""
    residuals, labels = np.asarray(residuals, np.float32), np.asarray(labels)
    missing = [names[k] for k in range(len(names)) if not np.any(labels == k)]
    if missing:
        raise ConfigError(f"no residuals for models {missing}; every model needs at least one training image")
    prints = np.stack([residuals[labels == k].mean(axis=0) for k in range(len(names))])
    return PrnuFingerprints(labels=tuple(names), fingerprints=prints)


def fingerprint_distances(model: PrnuFingerprints, residuals: np.ndarray) -> np.ndarray:
    """Squared L2 distance of each (N, S, S, 3) residual to each fingerprint: (N, K) float64, lower = closer."""
    residuals = np.asarray(residuals, np.float64).reshape(len(residuals), -1)
    prints = model.fingerprints.astype(np.float64).reshape(len(model.labels), -1)
    if residuals.shape[1] != prints.shape[1]:
        raise ImageError(
            f"residual crops of {residuals.shape[1] // 3} pixels do not match fingerprints of {prints.shape[1] // 3}; "
            "crop test images to the fingerprint size"
        )
    return (residuals**2).sum(1)[:, None] - 2 * residuals @ prints.T + (prints**2).sum(1)[None, :]
