"""How good a zoo model is: PSNR on the held-out photos, and whether it collapsed to copying its input.

Both measures run the network on the bicubic LR of the held-out photos
(:data:`desra.train.zoo_config.HELDOUT_PHOTOS`, never in a training set); one pass over the photos
(:func:`heldout_outputs`) can serve both (:func:`psnr_table`, :func:`copy_psnr`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from desra.train.zoo_config import HELDOUT_PHOTOS
from desra.train.zoo_data import package_file, read_rgb

COLLAPSED_DB = 45.0
"""Mean PSNR to nearest-neighbour upsampling above which a model does little but copy its input."""


def heldout_outputs(module, scale: int, photos: tuple[str, ...], device: str, size_multiple: int) -> Iterator[tuple]:
    """Yield (photo name, bicubic LR, SR output, HR) as (1, 3, h, w) CPU tensors for each held-out photo.

    Photos are cropped so the LR side is a multiple of ``size_multiple`` (RRDBNet x2 pixel-unshuffles its input).
    """
    import torch

    from desra.train.degradations import bicubic_lr

    module = module.to(device).eval()
    for spec in photos:
        hr = read_rgb(package_file(spec))
        step = scale * size_multiple
        height, width = (hr.shape[0] // step) * step, (hr.shape[1] // step) * step
        hr_t = torch.from_numpy(np.ascontiguousarray(hr[:height, :width].transpose(2, 0, 1)))[None]
        lr_t = bicubic_lr(hr_t, scale)
        with torch.no_grad():
            sr = module(lr_t.to(device)).clamp(0, 1).cpu()
        yield Path(spec.partition(":")[2]).stem, lr_t, sr, hr_t


def psnr_8bit(a, b) -> float:
    """PSNR (dB) of two [0, 1] tensors rounded to 8 bits, 4 px border cropped."""
    mse = ((((a * 255).round() - (b * 255).round())[..., 4:-4, 4:-4]) ** 2).mean().item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def psnr_table(outputs: Iterable[tuple]) -> dict[str, float]:
    """Photo name -> PSNR of SR against HR, plus their mean, from :func:`heldout_outputs` tuples."""
    results = {name: psnr_8bit(sr, hr) for name, _, sr, hr in outputs}
    results["mean"] = float(np.mean(list(results.values())))
    return results


def copy_psnr(outputs: Iterable[tuple], scale: int) -> float:
    """Mean PSNR of SR against nearest-neighbour upsampled LR, from :func:`heldout_outputs` tuples."""
    import torch.nn.functional as F

    return float(np.mean([psnr_8bit(sr, F.interpolate(lr, scale_factor=scale, mode="nearest")) for _, lr, sr, _ in outputs]))


def heldout_psnr(module, scale: int, photos: tuple[str, ...] = HELDOUT_PHOTOS, device: str = "cpu", size_multiple: int = 1) -> dict[str, float]:
    """PSNR (dB, RGB, 8-bit, 4 px border cropped) of ``module`` on the held-out photos downscaled by bicubic."""
    return psnr_table(heldout_outputs(module, scale, photos, device, size_multiple))


def nearest_upsampling_psnr(module, scale: int, photos: tuple[str, ...] = HELDOUT_PHOTOS, device: str = "cpu", size_multiple: int = 1) -> float:
    """Mean PSNR (dB) between ``module``'s output and nearest-neighbour upsampling of the same held-out bicubic LR.

    A collapsed network (SRVGG's residual branch stuck at ~0, which deep SRVGGs showed at lr 5e-4)
    scores above :data:`COLLAPSED_DB` here, while its held-out PSNR against HR looks normal: nearest
    upsampling scores about as high as a blurry L1 model does.
    """
    return copy_psnr(heldout_outputs(module, scale, photos, device, size_multiple), scale)
