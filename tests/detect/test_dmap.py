"""D map (DeSRA Eq. 3-7): hand-worked value, three implementations agree on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from desra.core.errors import ConfigError, PairMismatchError
from desra.detect.dmap import d_map, d_map_reference, d_map_torch, local_std


def test_checkerboard_in_box_window_matches_hand_value(device):
    # MSE flat (sigma_x = 0); GAN = 0.5 +- a checkerboard. Every 3x3 window holds 5 of one sign
    # and 4 of the other: mean 0.5 +- a/9, E[(x-0.5)^2] = a^2, so var = a^2 (1 - 1/81) = 80/81 a^2.
    # D = C / (var + C) with C = 0.03^2 and a = 0.03: 1 / (1 + 80/81) = 81/161.
    a = 0.03
    yy, xx = np.mgrid[0:16, 0:16]
    gan = np.repeat((0.5 + a * (-1.0) ** (xx + yy))[..., None], 3, axis=-1).astype(np.float32)
    mse = np.full_like(gan, 0.5)
    for fn in (d_map, d_map_reference, lambda *a, **k: d_map_torch(*a, device=device, **k)):
        d = fn(mse, gan, window=3, kind="box")
        assert d.shape == (14, 14) and d.dtype == np.float32
        np.testing.assert_allclose(d, 81 / 161, atol=1e-5)


def test_identical_images_give_one_and_valid_region_shape(photo):
    img = photo("astronaut")
    d = d_map(img, img)
    assert d.shape == (img.shape[0] - 10, img.shape[1] - 10)
    np.testing.assert_allclose(d, 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
@pytest.mark.parametrize("kind", ["gaussian", "box"])
def test_cpu_torch_and_float64_agree_on_real_photos(photo, pair_maker, name, kind, device):
    img = photo(name)
    h, w = img.shape[:2]
    mse, gan, _ = pair_maker(img, [(h // 4, h // 2, w // 4, w // 2)], amplitude=0.1)
    ref = d_map_reference(mse, gan, kind=kind)
    assert ref.min() < 0.5  # the texture really lowers D
    assert np.abs(d_map(mse, gan, kind=kind) - ref).max() <= 1e-4
    assert np.abs(d_map_torch(mse, gan, kind=kind, device=device) - ref).max() <= 1e-4


def test_inputs_are_clamped_before_statistics(photo):
    img = photo("chelsea")
    wild = img * 1.6 - 0.3  # out of [0, 1] like an unclamped SR output
    for fn in (d_map, d_map_reference, d_map_torch):
        np.testing.assert_allclose(fn(img, wild), fn(img, np.clip(wild, 0, 1)), atol=1e-6)


def test_local_std_of_flat_image_is_zero_and_of_texture_is_not(photo):
    img = photo("rocket")
    s = local_std(img)
    assert s.shape == (img.shape[0] - 10, img.shape[1] - 10, 3)
    assert s[:100, 250:380].mean() < 0.01  # sky
    assert local_std(np.full((40, 40, 3), 0.7, np.float32)).max() < 1e-6


def test_bad_inputs_raise_typed_errors(photo):
    img = photo("astronaut")
    with pytest.raises(PairMismatchError):
        d_map(img, img[:-4])
    with pytest.raises(PairMismatchError):
        d_map(img[..., 0], img[..., 0])
    with pytest.raises(ConfigError):
        d_map(img, img, window=10)
    with pytest.raises(ConfigError):
        d_map(img, img, kind="median")


@pytest.mark.parametrize("kind", ["gaussian", "box"])
def test_8bit_pixels_give_the_same_d_bits_as_the_float_image_read_from_the_file(photo, pair_maker, kind, device):
    # detect reads 8-bit files as uint8 (no 50 MB float copy); D must not change by a single bit.
    from desra.core.imageio import unit_float

    img = photo("astronaut")
    h, w = img.shape[:2]
    mse, gan, _ = pair_maker(img, [(h // 4, h // 2, w // 4, w // 2)], amplitude=0.1)
    mse8, gan8 = (np.round(np.clip(x, 0, 1) * 255).astype(np.uint8) for x in (mse, gan))
    mse_f, gan_f = unit_float(mse8), unit_float(gan8)
    np.testing.assert_array_equal(d_map(mse8, gan8, kind=kind), d_map(mse_f, gan_f, kind=kind))
    crop = (slice(0, 120), slice(0, 150))
    np.testing.assert_array_equal(d_map_reference(mse8[crop], gan8[crop], kind=kind), d_map_reference(mse_f[crop], gan_f[crop], kind=kind))
    np.testing.assert_array_equal(d_map_torch(mse8[crop], gan8[crop], kind=kind, device=device),
                                  d_map_torch(mse_f[crop], gan_f[crop], kind=kind, device=device))
    np.testing.assert_array_equal(local_std(gan8, kind=kind), local_std(gan_f, kind=kind))


def test_8bit_pixels_need_their_partner_in_8_bits_and_data_range_1(photo):
    img8 = (photo("coffee")[:64, :64] * 255).astype(np.uint8)
    with pytest.raises(PairMismatchError, match="MSE-SR pixels are uint8 but GAN-SR pixels are float32"):
        d_map(img8, img8.astype(np.float32) / 255)
    with pytest.raises(ConfigError, match="data_range must be 1"):
        d_map(img8, img8, data_range=255.0)
