"""PRNU-style attribution on a two-model toy zoo of real photos upscaled by two tiny SR networks."""

from __future__ import annotations

import numpy as np
import pytest

from desra.attribution.prnu import (
    fingerprint_distances,
    fit_fingerprints,
    noise_residual,
    wavelet_denoise,
)
from desra.core.errors import ImageError


def test_denoiser_removes_added_noise_and_keeps_the_photo(photo):
    clean = photo("astronaut")[:128, :128]
    noisy = clean + np.random.default_rng(0).normal(0, 5 / 255, clean.shape).astype(np.float32)
    denoised = wavelet_denoise(noisy)
    assert denoised.shape == clean.shape and denoised.dtype == np.float32
    err_noisy = np.mean((noisy - clean) ** 2)
    err_denoised = np.mean((denoised - clean) ** 2)
    assert err_denoised < 0.7 * err_noisy


def test_residual_of_a_flat_image_is_zero():
    flat = np.full((64, 64, 3), 0.4, np.float32)
    np.testing.assert_allclose(noise_residual(flat), 0, atol=1e-5)


def test_denoiser_rejects_grey_images():
    with pytest.raises(ImageError, match=r"\(H, W, 3\)"):
        wavelet_denoise(np.zeros((32, 32)))


def _sr_crops(module, photos, crop=48):
    import torch

    crops = []
    for image in photos:
        lr = image[: image.shape[0] // 4 * 4, : image.shape[1] // 4 * 4]
        with torch.no_grad():
            x = torch.nn.functional.avg_pool2d(torch.from_numpy(lr).permute(2, 0, 1)[None], 4)
            sr = module(x)[0].permute(1, 2, 0).clamp(0, 1).numpy()
        sr = np.round(sr * 255) / 255  # what an 8-bit PNG would hold
        for y in range(0, sr.shape[0] - crop + 1, crop):
            for x0 in range(0, sr.shape[1] - crop + 1, crop):
                crops.append(sr[y : y + crop, x0 : x0 + crop])
    return np.stack(crops)


def test_prnu_attributes_a_two_model_toy_zoo(tiny_sr, photo):
    models = [tiny_sr(1), tiny_sr(2)]
    train_photos = [photo("astronaut")[:192, :192], photo("coffee")[:192, :192]]
    test_photos = [photo("chelsea")[:192, :192], photo("rocket")[:192, :192]]
    train = [_sr_crops(m, train_photos) for m in models]
    test = [_sr_crops(m, test_photos) for m in models]
    residual = lambda crops: np.stack([noise_residual(c) for c in crops])  # noqa: E731
    prints = fit_fingerprints(
        np.concatenate([residual(t) for t in train]),
        np.concatenate([np.full(len(t), k) for k, t in enumerate(train)]),
        ("tiny-1", "tiny-2"),
    )
    assert prints.fingerprints.shape == (2, 48, 48, 3)
    distances = fingerprint_distances(prints, np.concatenate([residual(t) for t in test]))
    truth = np.concatenate([np.full(len(t), k) for k, t in enumerate(test)])
    accuracy = np.mean(distances.argmin(axis=1) == truth)
    assert accuracy >= 0.9
