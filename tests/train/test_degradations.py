"""Real-ESRGAN-style degradation: right shapes, deterministic per seed, actually degrades."""

from __future__ import annotations

import pytest
import torch

from desra.core.errors import ConfigError
from desra.train.degradations import DegradationConfig, bicubic_lr, degrade


@pytest.fixture
def hr(photo):
    image = torch.from_numpy(photo("astronaut")).permute(2, 0, 1)
    return torch.stack([image[:, 40 * i : 40 * i + 64, 100:164] for i in range(3)])


@pytest.mark.parametrize("scale", [2, 4])
def test_shape_range_and_8bit(hr, scale):
    lr = degrade(hr, scale, seed=3)
    assert lr.shape == (3, 3, 64 // scale, 64 // scale)
    assert lr.min() >= 0 and lr.max() <= 1
    torch.testing.assert_close(lr * 255, (lr * 255).round(), rtol=0, atol=1e-4)


def test_same_seed_same_lr_other_seed_other_lr(hr):
    first, again, other = degrade(hr, 4, seed=11), degrade(hr, 4, seed=11), degrade(hr, 4, seed=12)
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 0.05


def test_channels_last_crops_degrade_like_contiguous_ones(hr):
    # Crops cut from an (N, H, W, 3) stack and permuted, as the fine-tune attack makes them.
    permuted = hr.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    assert not permuted.is_contiguous()
    assert torch.equal(degrade(permuted, 4, seed=7), degrade(hr, 4, seed=7))


def test_global_generators_are_left_alone(hr):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    degrade(hr, 4, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_degradation_differs_from_plain_downscaling(hr):
    lr = degrade(hr, 4, seed=0)
    assert (lr - bicubic_lr(hr, 4)).abs().mean() > 0.01


def test_bad_inputs_are_refused(hr):
    with pytest.raises(ConfigError, match="multiple"):
        degrade(hr[..., :62, :62], 4, seed=0)
    with pytest.raises(ConfigError, match=r"\(N, 3, H, W\)"):
        degrade(hr[0], 4, seed=0)
    with pytest.raises(ConfigError, match="noise_rnage"):
        DegradationConfig.from_dict({"noise_rnage": [1, 2]})
