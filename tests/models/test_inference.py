"""Inference: tiling without seams, padding, clamping, precision fallbacks, OOM retry, images and folders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from desra.core.errors import ConfigError, DeviceError, ImageError
from desra.core.imageio import ImageData, read_image, write_image
from desra.models.archs import get_arch
from desra.models.checkpoint import SRModel, describe
from desra.models.inference import (
    InferenceEvent,
    upscale,
    upscale_folder,
    upscale_image,
)

# Six 3x3 convolutions: a receptive field of 6 input pixels on each side.
SHARP_PARAMS = dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=2, act_type="prelu")


@pytest.fixture(scope="module")
def sharp_model():
    """A small SRVGGNetCompact whose weights keep activations alive (He init), so every pixel of the
    receptive field really changes the output: tiling mistakes become visible."""
    torch.manual_seed(0)
    net = get_arch("srvgg").build(SHARP_PARAMS).eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.in_channels * 9
                module.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
                module.bias.zero_()
        net.body[-1].weight.mul_(0.2)
    return SRModel(describe("srvgg", SHARP_PARAMS, name="sharp"), net)


@pytest.fixture
def crop(photo):
    """A 64 x 96 crop of a real photo with texture (astronaut's suit and flag)."""
    return photo("astronaut")[180:244, 200:296]


def test_tiled_equals_untiled(sharp_model, crop):
    full = upscale(sharp_model, crop)
    assert full.shape == (128, 192, 3) and full.dtype == np.float32
    ticks = []
    # Inside the exactness condition of inference.py: the receptive field (6 px) fits in a quarter
    # of the overlap (24 px), which a 56 px tile can hold (overlap <= tile / 2); the README promises 3e-5.
    tiled = upscale(sharp_model, crop, tile=56, overlap=24, progress=lambda d, t: ticks.append((d, t)))
    assert ticks[-1][0] == ticks[-1][1] > 1  # it really tiled
    assert np.abs(tiled - full).max() <= 3e-5
    # An overlap the tiles cannot hold (24 > 40 / 2) is capped to 20 and said so, not silently:
    # outside the exactness condition the output is measurably off (5e-4 here).
    events: list[InferenceEvent] = []
    capped = upscale(sharp_model, crop, tile=40, overlap=24, on_event=events.append)
    assert [e.kind for e in events] == ["overlap_capped"] and "using 20 px" in events[0].message
    assert np.abs(capped - full).max() > 3e-5
    quiet: list[InferenceEvent] = []
    upscale(sharp_model, crop, tile=56, overlap=24, on_event=quiet.append)
    assert quiet == []
    # Without overlap the seams are visible: the comparison above would catch a broken blend.
    naive = upscale(sharp_model, crop, tile=40, overlap=0)
    assert np.abs(naive - full).max() > 1 / 255


def test_output_is_clamped(sharp_model, crop):
    x = torch.from_numpy(crop.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        raw = sharp_model.module(x)
    assert raw.min() < 0 or raw.max() > 1  # the network itself leaves [0, 1]
    out = upscale(sharp_model, crop)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_swinir_is_padded_to_its_window(crop):
    params = dict(img_size=16, in_chans=3, embed_dim=12, depths=[2], num_heads=[2], window_size=8,
                  mlp_ratio=2.0, upscale=2, img_range=1.0, upsampler="pixelshuffledirect", resi_connection="1conv")
    torch.manual_seed(0)
    model = SRModel(describe("swinir", params), get_arch("swinir").build(params).eval())
    odd = crop[:13, :21]
    with pytest.raises(RuntimeError):  # basicsr's SwinIR cannot take sizes off its window grid
        with torch.no_grad():
            model.module(torch.from_numpy(odd.transpose(2, 0, 1).copy())[None])
    out = upscale(model, odd)
    assert out.shape == (26, 42, 3)
    padded = np.pad(odd, ((0, 3), (0, 3), (0, 0)), mode="reflect")
    with torch.no_grad():
        expected = model.module(torch.from_numpy(padded.transpose(2, 0, 1).copy())[None])[0, :, :26, :42]
    assert np.abs(out - expected.clamp(0, 1).permute(1, 2, 0).numpy()).max() < 1e-5


def test_half_on_cpu_is_reported_and_ignored(sharp_model, crop):
    events: list[InferenceEvent] = []
    out = upscale(sharp_model, crop[:32, :32], half=True, on_event=events.append)
    assert [e.kind for e in events] == ["half_ignored"]
    assert np.array_equal(out, upscale(sharp_model, crop[:32, :32]))


class _MemoryLimited(torch.nn.Module):
    """A real network that fails like a GPU with too little memory on inputs above ``limit`` pixels."""

    def __init__(self, inner: torch.nn.Module, limit: int):
        super().__init__()
        self.inner, self.limit, self.sizes = inner, limit, []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        if x.shape[-1] * x.shape[-2] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_retries_with_smaller_tiles(sharp_model, crop):
    limited = _MemoryLimited(sharp_model.module, limit=40 * 40)
    model = SRModel(sharp_model.descriptor, limited)
    events: list[InferenceEvent] = []
    out = upscale(model, crop, tile=None, overlap=16, on_event=events.append)
    # 96 -> 48 -> 24 px tiles; 24 px tiles cannot hold a 16 px overlap, which is said too.
    assert [e.kind for e in events] == ["oom_retry", "oom_retry", "overlap_capped"]
    assert "retrying with 24 px tiles" in events[1].message
    assert max(h * w for h, w in limited.sizes[2:]) <= 40 * 40
    assert np.abs(out - upscale(sharp_model, crop, tile=24, overlap=16)).max() == 0.0
    tiny = SRModel(sharp_model.descriptor, _MemoryLimited(sharp_model.module, limit=4))
    with pytest.raises(DeviceError, match="out of memory"):
        upscale(tiny, crop)


def _in_precision(model: SRModel, precision) -> SRModel:
    """The model with ``supports_half`` set so desra's ``half=True`` picks this case's dtype (fp16 or bf16)."""
    import dataclasses

    return SRModel(dataclasses.replace(model.descriptor, supports_half=precision.dtype != "bf16"), model.module)


def test_every_device_and_precision_matches_cpu_fp32(sharp_model, crop, precision):
    reference = upscale(sharp_model, crop)
    model = _in_precision(sharp_model, precision)
    events: list[InferenceEvent] = []
    out = upscale(model, crop, device=precision.device, half=precision.half, on_event=events.append)
    assert out.shape == reference.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not [e for e in events if e.kind == "fp32_fallback"]  # this network stays finite in half
    assert np.abs(out - reference).max() <= precision.tolerance
    if precision.dtype != "fp32":  # reduced precision really ran: not bit-identical to fp32
        assert np.abs(out - reference).max() > 0
    # Tiles inside the exactness condition (receptive field 6 px <= overlap 24 / 4) on this device too.
    tiled = upscale(model, crop, tile=56, overlap=24, device=precision.device, half=precision.half)
    assert np.abs(tiled - out).max() <= (3e-5 if precision.dtype == "fp32" else precision.tolerance)


def test_cuda_half_falls_back_to_fp32_when_not_finite(sharp_model, crop, cuda):
    net = get_arch("srvgg").build(SHARP_PARAMS).eval()
    net.load_state_dict(sharp_model.module.state_dict())
    with torch.no_grad():  # activations above fp16's 65504 in the middle, harmless in fp32
        net.body[0].weight.mul_(1e4)
        net.body[-1].weight.div_(1e4)
    model = SRModel(sharp_model.descriptor, net)
    events: list[InferenceEvent] = []
    out = upscale(model, crop, device=cuda, half=True, on_event=events.append)
    assert [e.kind for e in events] == ["fp32_fallback"]
    assert np.isfinite(out).all()
    assert np.abs(out - upscale(model, crop, device="cuda")).max() < 1e-4
    normal = upscale(sharp_model, crop, device="cuda", half=True)
    assert np.abs(normal - upscale(sharp_model, crop, device="cuda")).max() < 2e-2


def test_bad_arguments(sharp_model, crop):
    with pytest.raises(ImageError):
        upscale(sharp_model, crop[..., 0])
    with pytest.raises(ImageError, match="uint8"):
        upscale(sharp_model, (crop * 255).astype(np.uint8))
    with pytest.raises(ConfigError):
        upscale(sharp_model, crop, tile=4)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            upscale(sharp_model, crop, device="cuda")


def test_upscale_image_keeps_alpha_bit_depth_and_mode(sharp_model, crop):
    alpha = np.zeros(crop.shape[:2], np.float32)
    alpha[8:40, 16:64] = 1.0
    image = ImageData(rgb=crop, alpha=alpha, bit_depth=16, mode="RGBA")
    for alpha_mode in ("resize", "model"):
        out = upscale_image(sharp_model, image, alpha_mode=alpha_mode)
        assert (out.bit_depth, out.mode) == (16, "RGBA")
        assert out.rgb.shape == (128, 192, 3) and out.alpha.shape == (128, 192)
        assert np.array_equal(out.rgb, upscale(sharp_model, crop))  # SR ran on the RGB only
        assert out.alpha.min() >= 0 and out.alpha.max() <= 1
        assert out.alpha[40:70, 50:120].mean() > 0.9 and out.alpha[:10, :20].mean() < 0.1


def test_sr_cli_keeps_16_bit_precision_and_honours_the_alpha_mode(sharp_model, crop, tmp_path):
    # Through the files a user passes to `desra sr`: a 16-bit RGBA PNG in, a 16-bit RGBA PNG out
    # that holds the SR output to 16-bit precision (an 8-bit rounding inside the 16-bit file fails:
    # those values are all multiples of 257), with the alpha made the way --alpha asks.
    import cv2

    from desra.cli import main
    from desra.models.checkpoint import save_model

    checkpoint = save_model(tmp_path / "sharp.safetensors", sharp_model.module, sharp_model.descriptor)
    yy, xx = np.mgrid[0:64, 0:96]
    alpha = np.clip((xx - 20) / 50.0, 0, 1).astype(np.float32)  # a ramp, so resize and model differ
    alpha[yy < 10] = 0.0
    source = write_image(tmp_path / "in.png", crop, alpha=alpha, bit_depth=16)
    image = read_image(source)
    outputs = {}
    for mode in ("resize", "model"):
        outputs[mode] = tmp_path / f"out-{mode}.png"
        assert main(["sr", "--model", str(checkpoint), "--input", str(source), "--output", str(outputs[mode]),
                     "--alpha", mode]) == 0
    resized, modelled = read_image(outputs["resize"]), read_image(outputs["model"])
    assert (resized.bit_depth, resized.mode) == (16, "RGBA")
    expected = upscale(sharp_model, image.rgb)
    assert np.abs(resized.rgb - expected).max() <= 0.5 / 65535 + 1e-6
    levels = np.round(resized.rgb * 65535).astype(np.int64)
    assert (levels % 257 != 0).mean() > 0.8  # 0.86 measured; the rest are clamped to 0 or 65535
    # --alpha resize: bicubic; --alpha model: the network on the alpha as a grey image.
    bicubic = np.clip(cv2.resize(image.alpha, (192, 128), interpolation=cv2.INTER_CUBIC), 0, 1)
    assert np.abs(resized.alpha - bicubic).max() <= 0.5 / 65535 + 1e-6
    through_model = upscale(sharp_model, np.repeat(image.alpha[..., None], 3, axis=2)).mean(axis=2)
    assert np.abs(modelled.alpha - through_model).max() <= 0.5 / 65535 + 1e-6
    assert np.abs(modelled.alpha - resized.alpha).max() > 0.05  # the two modes really differ here
    np.testing.assert_array_equal(modelled.rgb, resized.rgb)


def test_folder_continues_after_a_broken_image(sharp_model, crop, tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    write_image(src / "a.png", crop[:32, :32])
    write_image(src / "b.png", crop[:24, :40], alpha=np.ones((24, 40), np.float32), bit_depth=16)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ticks = []
    result = upscale_folder(sharp_model, src, dst, progress=lambda d, t: ticks.append((d, t)))
    assert [p.name for p in result.written] == ["a.png", "b.png"]
    assert [p.name for p, _ in result.failed] == ["broken.jpg"] and "broken.jpg" in result.failed[0][1]
    assert ticks == [(1, 3), (2, 3), (3, 3)]
    b = read_image(dst / "b.png")
    assert (b.rgb.shape, b.bit_depth, b.mode) == ((48, 80, 3), 16, "RGBA")
    with pytest.raises(ImageError, match="no images"):
        upscale_folder(sharp_model, tmp_path / "out" / "..", tmp_path / "x")


def test_tile_layout_covers_every_pixel():
    from desra.models.inference import axis_weights, tile_starts

    for length in range(16, 300, 13):
        for tile in (16, 24, 37, 64, 128):
            for overlap in (0, 1, 5, 8, 32):
                t, ov = min(tile, length), min(overlap, tile // 2)
                starts = tile_starts(length, t, ov)
                assert starts[0] == 0 and starts[-1] + t == length
                assert all(0 < b - a <= t - ov for a, b in zip(starts, starts[1:]))
                for scale in (1, 4):
                    total = np.zeros(length * scale)
                    for start, weights in zip(starts, axis_weights(starts, t, scale)):
                        total[start * scale : (start + t) * scale] += weights
                    assert total.min() > 0.0, (length, tile, overlap, scale)
