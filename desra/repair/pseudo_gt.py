"""Pseudo ground truth for DeSRA fine-tuning (the "Delete" half, Sec. 3.3)."""

from __future__ import annotations

import numpy as np

from desra.core.errors import PairMismatchError


def pseudo_gt(mse: np.ndarray, gan: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Blend SR outputs: ``(H, W, 3)`` float32 in [0, 1] = MSE-SR where ``mask`` (``(H, W)`` bool or [0, 1]), GAN-SR elsewhere.

    ``mse`` and ``gan`` are ``(H, W, 3)`` float32 in [0, 1] at SR resolution; a soft mask in [0, 1]
    blends linearly.
    """
    mse = np.asarray(mse, dtype=np.float32)
    gan = np.asarray(gan, dtype=np.float32)
    if mse.ndim != 3 or mse.shape[2] != 3 or mse.shape != gan.shape:
        raise PairMismatchError(
            f"pseudo_gt needs MSE-SR and GAN-SR images of one shape (H, W, 3); got {mse.shape} and {gan.shape}. "
            "Run both models on the same LR image."
        )
    if np.shape(mask) != mse.shape[:2]:
        raise PairMismatchError(
            f"pseudo_gt mask shape {np.shape(mask)} does not match the SR images {mse.shape[:2]}; "
            "the mask must be at SR resolution (detect on these SR outputs)."
        )
    weight = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)[..., None]
    # DeSRA Eq. 10: y~ = M * y_MSE + (1 - M) * y_GAN
    return (weight * mse + (1.0 - weight) * gan).astype(np.float32)
