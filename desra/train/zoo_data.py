"""The zoo's training data: real photos from installed packages, procedural dead-leaves images, seeded crops.

Photos are read where their package is installed (never copied); LR inputs are made on the fly with
the Real-ESRGAN-style degradation of :mod:`desra.train.degradations`. Every batch is a pure function
of (seed, iteration), so a resumed run sees the data a straight run would.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from desra.core.errors import ConfigError, DatasetError
from desra.train.zoo_config import DataConfig, ZooConfig


def package_file(spec: str) -> Path:
    """Resolve 'package:relative/path' to the file inside the installed package (package is not imported)."""
    import importlib.util

    package, _, relative = spec.partition(":")
    if not relative:
        raise ConfigError(f"photo {spec!r} is not of the form 'package:relative/path' (e.g. 'skimage:data/retina.jpg')")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise DatasetError(f"photo {spec!r}: package {package!r} is not installed; install it or drop the photo")
    root = Path(next(iter(found.submodule_search_locations))).resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ConfigError(f"photo {spec!r} points outside the installed package {package!r}; name a file inside it")
    if not path.is_file():
        raise DatasetError(f"photo {spec!r}: {path} does not exist in the installed {package}")
    return path


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) float32 RGB in [0, 1] (grey is repeated, alpha dropped), through desra's image reader."""
    from desra.core.imageio import read_image

    return read_image(path).rgb


def dead_leaves(size: int, seed: int) -> np.ndarray:
    """A dead-leaves image (Lee et al. 2001): occluding discs, power-law radii; (size, size, 3) float32 [0, 1].

    Scale-invariant edges and flat regions like natural images, with some discs striped so fine
    regular texture (where GAN-SR invents patterns) is present too.
    """
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.uniform(0, 1, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    r_min, r_max = 2.0, size / 4
    for _ in range(int(size * size / 20)):
        # Radius density ~ r^-3 (inverse CDF sampling), the scale-invariant choice.
        u = rng.uniform()
        radius = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
        cy, cx = rng.uniform(-radius, size + radius, 2)
        y0, y1 = max(0, int(cy - radius)), min(size, int(cy + radius) + 1)
        x0, x1 = max(0, int(cx - radius)), min(size, int(cx + radius) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        inside = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= radius**2
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        if rng.uniform() < 0.2:
            period, angle = rng.uniform(3, 12), rng.uniform(0, math.pi)
            phase = (np.cos(angle) * xx[y0:y1, x0:x1] + np.sin(angle) * yy[y0:y1, x0:x1]) * 2 * math.pi / period
            other = rng.uniform(0, 1, 3).astype(np.float32)
            mix = (0.5 + 0.5 * np.sin(phase))[..., None].astype(np.float32)
            patch = colour * mix + other * (1 - mix)
            image[y0:y1, x0:x1][inside] = patch[inside]
        else:
            image[y0:y1, x0:x1][inside] = colour
    return image


def dead_leaves_indices(data: DataConfig) -> range:
    """Indices of the dead-leaves images a config trains on (image i of seed s is drawn from seed s * 1000 + i)."""
    return range(data.dead_leaves_offset, data.dead_leaves_offset + data.dead_leaves)


def training_sources(data: DataConfig) -> tuple[str, ...]:
    """Every HR source a config trains on: its photos, then 'dead_leaves[i]@SIZE' per procedural image (the seed draws their content)."""
    return (*data.photos, *(f"dead_leaves[{i}]@{data.dead_leaves_size}" for i in dead_leaves_indices(data)))


def training_facts(config: ZooConfig) -> dict[str, Any]:
    """{"hr": training_sources, "degradation": every DegradationConfig field}: what desra.fingerprint.relations compares."""
    return {"hr": list(training_sources(config.data)), "degradation": dict(sorted(config.degradation.__dict__.items()))}


@functools.lru_cache(maxsize=8)
def training_images(data: DataConfig, seed: int) -> tuple[np.ndarray, ...]:
    """The HR images of ``data`` (photos, then dead-leaves images of ``seed``), each (H, W, 3) float32 [0, 1]; cached per (data, seed)."""
    images = [read_rgb(package_file(spec)) for spec in data.photos]
    images += [dead_leaves(data.dead_leaves_size, seed * 1000 + i) for i in dead_leaves_indices(data)]
    small = [spec for spec, im in zip(data.photos, images, strict=False) if min(im.shape[:2]) < data.patch]
    if small:
        raise DatasetError(f"training photos {small} are smaller than the {data.patch} px patch; drop them or lower data.patch")
    return tuple(images)


def zoo_batch_fn(config: ZooConfig, stage: str = "mse") -> Callable[[int], tuple[Any, Any]]:
    """``batch_fn(iteration) -> (lr, hr)`` for :func:`desra.train.loop.train`, a pure function of (seed, iteration).

    HR: the stage's ``batch`` random crops (random image, position, flip, 90-degree rotation) as
    ``(N, 3, patch, patch)``; LR: their second-order degradation ``(N, 3, patch/s, patch/s)``.
    """
    import torch

    from desra.train.degradations import degrade

    images = training_images(config.data, config.seed)
    patch, batch = config.stages[stage].patch, config.stages[stage].batch
    if patch % config.scale or any(min(im.shape[:2]) < patch for im in images):
        raise ConfigError(f"{config.source}: {stage} patch {patch} must be a multiple of scale {config.scale} and fit every training image")

    def batch_fn(iteration: int):
        sequence = np.random.SeedSequence([config.seed, iteration])
        rng = np.random.default_rng(sequence)
        crops = []
        for _ in range(batch):
            image = images[rng.integers(len(images))]
            y = rng.integers(0, image.shape[0] - patch + 1)
            x = rng.integers(0, image.shape[1] - patch + 1)
            crop = image[y : y + patch, x : x + patch]
            if rng.uniform() < 0.5:
                crop = crop[:, ::-1]
            crop = np.rot90(crop, k=int(rng.integers(4)))
            crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        hr = torch.from_numpy(np.stack(crops))
        degradation_seed = int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)
        return degrade(hr, config.scale, degradation_seed, config.degradation), hr

    return batch_fn
