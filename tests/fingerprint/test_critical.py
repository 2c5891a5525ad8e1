"""Critical images tell independently initialised models apart and survive the three attacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from desra.core.errors import ConfigError, PairMismatchError
from desra.fingerprint.attacks import finetune, prune_smallest, quantize_int8
from desra.fingerprint.critical import CriticalConfig, critical_image, degrade
from desra.fingerprint.features import fingerprint_features
from desra.fingerprint.verify import compare

CONFIG = CriticalConfig(size=48, iterations=120)


def _features(module, scale=4):
    return fingerprint_features(critical_image(module, scale, CONFIG))


def test_critical_image_is_seeded_bounded_and_deterministic(tiny_sr):
    model = tiny_sr(1)
    first = critical_image(model, 4, CONFIG)
    again = critical_image(model, 4, CONFIG)
    other_seed = critical_image(model, 4, CriticalConfig(size=48, iterations=120, seed=1))
    assert first.shape == (48, 48, 3) and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_seed)
    # the optimisation moved away from the clamped noise start: the model reproduces X better
    import torch

    with torch.no_grad():
        x = torch.from_numpy(first).permute(2, 0, 1)[None]
        start = torch.randn((1, 3, 48, 48), generator=torch.Generator().manual_seed(0)).clamp(0, 1)
        err_final = ((model(degrade(x, 4)) - x) ** 2).mean()
        err_start = ((model(degrade(start, 4)) - start) ** 2).mean()
    assert err_final < err_start


def test_area_pooling_lets_binary_blocks_pass_a_nearest_neighbour_skip_unchanged():
    """Why D is bicubic: under average pooling, any 0/1 image constant on scale x scale blocks is an
    exact fixed point of a nearest-neighbour upsampler with maximal gradients, so for models that are
    such a skip plus a small residual the critical image is that block pattern, set by the initial
    noise and not by the model. Bicubic D blurs neighbouring blocks together: no such fixed point."""
    from torch import nn

    nearest = nn.Upsample(scale_factor=4, mode="nearest")
    blocks = (torch.rand((1, 3, 8, 8), generator=torch.Generator().manual_seed(0)) > 0.5).float()
    pattern = nearest(blocks)
    area_error = ((nearest(degrade(pattern, 4, "area")) - pattern) ** 2).mean()
    bicubic_error = ((nearest(degrade(pattern, 4, "bicubic")) - pattern) ** 2).mean()
    assert area_error == 0.0
    assert bicubic_error > 0.02


def test_fingerprints_saved_before_d_was_a_setting_keep_average_pooling():
    from torch import nn

    legacy = {"size": 128, "iterations": 5000, "lr": 0.1, "lam": 0.001, "beta": 1.0, "seed": 0}
    assert CriticalConfig.from_dict(legacy).downsample == "area"
    assert CriticalConfig.from_dict(CriticalConfig().to_dict()) == CriticalConfig()
    with pytest.raises(ConfigError, match="unknown critical-image downsampling 'lanczos'"):
        critical_image(nn.Identity(), 1, CriticalConfig(size=8, iterations=1, downsample="lanczos"))


def test_critical_image_leaves_the_weights_alone(tiny_sr):
    model = tiny_sr(1)
    before = [p.detach().clone() for p in model.parameters()]
    critical_image(model, 4, CriticalConfig(size=16, iterations=5))
    assert all(p.grad is None for p in model.parameters())
    assert all(np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(before, model.parameters()))


def test_size_must_fit_the_scale(tiny_sr):
    with pytest.raises(ConfigError, match="divisible by the model scale 4"):
        critical_image(tiny_sr(1), 4, CriticalConfig(size=30, iterations=1))
    # An x4 model declared x2: its output is twice the critical image's side, an LR/SR size mismatch.
    with pytest.raises(PairMismatchError, match=r"model output \(1, 3, 64, 64\) does not match the critical image \(1, 3, 32, 32\)"):
        critical_image(tiny_sr(1), 2, CriticalConfig(size=32, iterations=1))


def test_independent_models_are_distinguished(tiny_sr):
    verdict = compare(_features(tiny_sr(1)), _features(tiny_sr(2)))
    assert not verdict.match
    assert verdict.distance > 3 * verdict.eta


@pytest.mark.parametrize("scale", [2, 4])
def test_pruned_and_quantised_copies_verify(tiny_sr, scale):
    source = tiny_sr(1, scale)
    reference = _features(source, scale)
    pruned, quantised = prune_smallest(source, 0.05), quantize_int8(source)
    assert any((p == 0).any() for p in pruned.parameters())  # pruning happened
    assert not all((p == q).all() for p, q in zip(source.parameters(), quantised.parameters()))
    assert compare(reference, _features(pruned, scale)).match
    assert compare(reference, _features(quantised, scale)).match
    assert not compare(reference, _features(tiny_sr(3, scale), scale)).match


def test_prune_zeroes_five_percent_globally(tiny_sr):
    source = tiny_sr(1)
    pruned = prune_smallest(source, 0.05)
    weights = [p for p in pruned.parameters() if p.ndim > 1]
    total = sum(p.numel() for p in weights)
    zeros = sum(int((p == 0).sum()) for p in weights)
    assert zeros == pytest.approx(0.05 * total, abs=2)
    assert not any((p == 0).any() for p in source.parameters() if p.ndim > 1)


def test_quantised_weights_take_at_most_255_levels(tiny_sr):
    quantised = quantize_int8(tiny_sr(1))
    for p in quantised.parameters():
        assert len(np.unique(p.detach().numpy())) <= 255


def test_finetuned_copy_verifies(tiny_sr, photo):
    source = tiny_sr(1)
    photos = [photo("astronaut"), photo("coffee")]
    tuned = finetune(source, 4, photos, iterations=40, patch=32, seed=0)
    assert not all((p == q).all() for p, q in zip(source.parameters(), tuned.parameters()))
    assert compare(_features(source), _features(tuned)).match


def test_finetune_trains_on_the_lr_it_is_given(tiny_sr, photo):
    source, photos, seen = tiny_sr(1), [photo("astronaut")], []

    def noisy_lr(hr, iteration):
        seen.append((iteration, tuple(hr.shape)))
        return degrade(hr, 4, "area") + 0.05 * torch.randn(hr.shape[0], 3, hr.shape[2] // 4, hr.shape[3] // 4)

    torch.manual_seed(0)
    tuned = finetune(source, 4, photos, iterations=5, patch=32, lr=1e-3, make_lr=noisy_lr)
    assert seen == [(i, (4, 3, 32, 32)) for i in range(5)]
    on_area = finetune(source, 4, photos, iterations=5, patch=32, lr=1e-3)
    assert not all(torch.equal(p, q) for p, q in zip(tuned.parameters(), on_area.parameters()))


def test_attack_photos_are_real_rgb_photos():
    from desra.fingerprint.pipeline import ATTACK_PHOTOS, attack_photos

    photos = attack_photos()
    assert len(photos) == len(ATTACK_PHOTOS)
    assert all(p.ndim == 3 and p.shape[2] == 3 and p.dtype == np.float32 and p.max() <= 1.0 for p in photos)
