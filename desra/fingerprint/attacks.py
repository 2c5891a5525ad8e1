"""Model modifications a thief might apply, used to test that verification survives them.

Quan et al.'s SR robustness suite: prune the 5 % smallest weights (globally), int8 quantisation
(per tensor), fine-tune 500 iterations (Adam lr 1e-6, MSE). Each function returns a modified deep
copy and leaves its input untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np

from desra.core.errors import ConfigError

ATTACKS = ("prune", "int8", "finetune")
"""Names of the attacks, in the order the suite runs them."""
PRUNE_FRACTION = 0.05
"""Share of the smallest weights the prune attack zeroes (the paper's)."""


def prune_smallest(module, fraction: float = PRUNE_FRACTION):
    """Copy of ``module`` with the ``fraction`` smallest-magnitude weights (all tensors with ndim > 1, globally) set to 0."""
    import torch

    if not 0 <= fraction < 1:
        raise ConfigError(f"pruning fraction must be in [0, 1), got {fraction}")
    pruned = copy.deepcopy(module)
    weights = [p for p in pruned.parameters() if p.ndim > 1]
    if not weights or fraction == 0:
        return pruned
    magnitudes = torch.cat([p.detach().abs().flatten() for p in weights])
    count = int(fraction * magnitudes.numel())
    if count == 0:
        return pruned
    threshold = torch.kthvalue(magnitudes.cpu(), count).values.item()
    with torch.no_grad():
        for p in weights:
            p.masked_fill_(p.abs() <= threshold, 0.0)
    return pruned


def quantize_int8(module):
    """Copy of ``module`` whose floating tensors are rounded to 255 symmetric int8 levels per tensor (scale = max|w| / 127), stored dequantised."""
    import torch

    quantized = copy.deepcopy(module)
    with torch.no_grad():
        for p in quantized.parameters():
            peak = p.abs().max()
            if peak > 0:
                step = peak / 127.0
                p.copy_(torch.clamp(torch.round(p / step), -127, 127) * step)
    return quantized


def finetune(
    module,
    scale: int,
    images: Sequence[np.ndarray],
    *,
    iterations: int = 500,
    lr: float = 1e-6,
    batch: int = 4,
    patch: int = 64,
    seed: int = 0,
    device: str = "cpu",
    make_lr: Callable | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """Copy of ``module`` fine-tuned with MSE on random HR crops (patch px) of (H, W, 3) float32 photos.

    ``make_lr(hr, iteration)`` turns an (N, 3, patch, patch) HR batch into its LR input; the default
    is the unofficial code's average pooling. Pass a model's own training degradation to fine-tune
    it on its own task rather than on clean LR.
    """
    import torch
    import torch.nn.functional as F

    from desra.fingerprint.critical import degrade

    def area_lr(hr, iteration):
        return degrade(hr, scale, "area")

    make_lr = make_lr or area_lr
    patch = patch // scale * scale
    usable = [img for img in images if min(img.shape[:2]) >= patch]
    if not usable:
        raise ConfigError(f"fine-tuning needs photos of at least {patch}x{patch} pixels; got {len(images)} smaller ones")
    tuned = copy.deepcopy(module).to(device).train()
    for p in tuned.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(tuned.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for iteration in range(iterations):
        crops = []
        for _ in range(batch):
            img = usable[rng.integers(len(usable))]
            y = rng.integers(img.shape[0] - patch + 1)
            x = rng.integers(img.shape[1] - patch + 1)
            crops.append(img[y : y + patch, x : x + patch])
        hr = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().to(device)
        loss = F.mse_loss(tuned(make_lr(hr, iteration)), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(iteration + 1, iterations)
    return tuned.eval()


def attack_recipe(name: str, *, finetune_iterations: int = 500, photos: Sequence[str] = ()) -> dict:
    """The settings of attack ``name`` as a lineage recipe (desra.models.lineage): what an attacked checkpoint records.

    The fine-tune's settings are read from :func:`finetune`'s own defaults, which :func:`apply_attack` uses.
    """
    import inspect

    if name == "prune":
        return {"attack": name, "fraction": PRUNE_FRACTION, "scope": "global, tensors with ndim > 1"}
    if name == "int8":
        return {"attack": name, "levels": 255, "scale": "max|w| / 127 per tensor", "stored": "dequantised"}
    if name == "finetune":
        defaults = {k: p.default for k, p in inspect.signature(finetune).parameters.items() if k in ("lr", "batch", "patch", "seed")}
        return {"attack": name, "iterations": finetune_iterations, **defaults, "loss": "mse", "lr_input": "area",
                "photos": list(photos)}
    raise ConfigError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")


def apply_attack(
    name: str, module, scale: int, images: Sequence[np.ndarray], *, finetune_iterations: int = 500, device: str = "cpu", progress=None
):
    """Apply the attack called ``name`` (one of :data:`ATTACKS`) with the paper's settings; returns the modified copy."""
    if name == "prune":
        return prune_smallest(module)
    if name == "int8":
        return quantize_int8(module)
    if name == "finetune":
        return finetune(module, scale, images, iterations=finetune_iterations, device=device, progress=progress)
    raise ConfigError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
