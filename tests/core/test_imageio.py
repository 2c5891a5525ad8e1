"""Image I/O: every format, layout and bit depth desra promises, and the refusals."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from desra.core.errors import ImageError, ImageTooLargeError, PairMismatchError
from desra.core.imageio import (
    apply_orientation,
    list_images,
    read_image,
    read_mask,
    to_uint8,
    write_image,
    write_imagedata,
    write_mask,
)


@pytest.fixture
def small(photo):
    """A 64 x 96 crop of a real photo, float32 RGB in [0, 1]."""
    return photo("astronaut")[100:164, 150:246]


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_8bit_round_trip(small, tmp_path, suffix):
    path = write_image(tmp_path / f"a{suffix}", small)
    data = read_image(path)
    assert (data.bit_depth, data.mode, data.alpha) == (8, "RGB", None)
    assert data.rgb.dtype == np.float32 and data.rgb.shape == small.shape
    if suffix == ".webp":  # Pillow writes lossy WebP at quality 95
        assert np.abs(data.rgb - small).mean() < 0.02
    else:
        assert np.array_equal(to_uint8(data.rgb), to_uint8(small))


def test_jpeg_round_trip_is_close(small, tmp_path):
    data = read_image(write_image(tmp_path / "a.jpg", small))
    assert data.bit_depth == 8 and np.abs(data.rgb - small).mean() < 0.02


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_precision_survives(small, tmp_path, suffix):
    # A smooth gradient whose values sit between 8-bit levels: only a real 16-bit path keeps them.
    ramp = np.linspace(0.1, 0.1 + 1 / 255, small.shape[1], dtype=np.float32)
    image = np.clip(small * 0.5 + ramp[None, :, None], 0, 1).astype(np.float32)
    alpha = np.linspace(0, 1, small.shape[0], dtype=np.float32)[:, None].repeat(small.shape[1], 1)
    data = read_image(write_image(tmp_path / f"a{suffix}", image, alpha=alpha, bit_depth=16))
    assert (data.bit_depth, data.mode) == (16, "RGBA")
    assert np.abs(data.rgb - image).max() <= 0.5 / 65535 + 1e-7
    assert np.abs(data.alpha - alpha).max() <= 0.5 / 65535 + 1e-7
    assert np.abs(to_uint8(image) / 255.0 - image).max() > 1e-3  # 8 bits would have lost this
    # and it is written back as 16-bit again
    out = write_imagedata(tmp_path / f"b{suffix}", data)
    assert read_image(out).bit_depth == 16


def test_16bit_grey_png(tmp_path):
    grey = (np.arange(48 * 40, dtype=np.uint32).reshape(48, 40) * 31).astype(np.uint16)
    Image.fromarray(grey).save(tmp_path / "g.png")  # Pillow writes mode I;16
    data = read_image(tmp_path / "g.png")
    assert (data.bit_depth, data.mode) == (16, "L")
    assert np.allclose(data.rgb[..., 1], grey / 65535.0, atol=1e-7)
    again = read_image(write_imagedata(tmp_path / "g2.png", data))
    assert (again.bit_depth, again.mode) == (16, "L")


def test_rgba_and_grey_alpha(small, tmp_path):
    alpha = np.zeros(small.shape[:2], np.float32)
    alpha[10:40, 20:60] = 1.0
    alpha[5, 5] = 0.5
    data = read_image(write_image(tmp_path / "a.png", small, alpha=alpha))
    assert data.mode == "RGBA" and np.array_equal(to_uint8(data.alpha), to_uint8(alpha))
    la = np.stack([to_uint8(small.mean(2)), to_uint8(alpha)], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    data = read_image(tmp_path / "la.png")
    assert data.mode == "LA" and data.alpha is not None
    assert np.array_equal(data.rgb[..., 0], data.rgb[..., 2])
    assert np.array_equal(to_uint8(data.alpha), la[..., 1])


def test_grayscale_is_replicated_and_written_grey(small, tmp_path):
    grey = to_uint8(small.mean(2))
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    data = read_image(tmp_path / "g.png")
    assert data.mode == "L" and data.bit_depth == 8
    assert np.array_equal(to_uint8(data.rgb[..., 0]), grey) and np.array_equal(data.rgb[..., 0], data.rgb[..., 1])
    with Image.open(write_imagedata(tmp_path / "g2.png", data)) as reread:
        assert reread.mode == "L"


def test_palette_with_and_without_transparency(small, tmp_path):
    pal = Image.fromarray(to_uint8(small)).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    data = read_image(tmp_path / "p.png")
    assert data.mode == "P" and data.alpha is None
    assert np.array_equal(to_uint8(data.rgb), np.asarray(pal.convert("RGB")))
    pal.save(tmp_path / "pt.png", transparency=0)
    data = read_image(tmp_path / "pt.png")
    assert data.mode == "P" and data.alpha is not None
    assert np.array_equal(data.alpha == 0, np.asarray(pal) == 0)
    with Image.open(write_imagedata(tmp_path / "out.png", data)) as out:
        assert out.mode == "RGBA"  # palettes are expanded: SR output has more colours than 16


def test_exif_rotated_jpeg_is_upright(small, tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to display
    Image.fromarray(to_uint8(small)).save(tmp_path / "r.jpg", quality=95, exif=exif)
    data = read_image(tmp_path / "r.jpg")
    assert data.rgb.shape == (small.shape[1], small.shape[0], 3)
    assert np.abs(data.rgb - np.rot90(small, -1)).mean() < 0.02


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_helper_matches_pillow(orientation):
    from PIL import ImageOps

    array = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5) * 10
    image = Image.fromarray(array, "L")
    exif = image.getexif()
    exif[0x0112] = orientation
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    assert np.array_equal(apply_orientation(array, orientation), expected)


def _png_with_size(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_refusals(small, tmp_path, monkeypatch):
    png = write_image(tmp_path / "ok.png", small).read_bytes()
    jpg = write_image(tmp_path / "ok.jpg", small).read_bytes()
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_bytes(b"this is not an image")
    (tmp_path / "zero.png").write_bytes(_png_with_size(0, 10))
    for name in ("cut.png", "cut.jpg", "empty.png", "text.png", "zero.png", "missing.png"):
        with pytest.raises(ImageError):
            read_image(tmp_path / name)
    # A decompression bomb: 50k x 50k pixels declared in a file of a few bytes; refused before decoding.
    for side in (12_000, 50_000):
        (tmp_path / "bomb.png").write_bytes(_png_with_size(side, side))
        with pytest.raises(ImageTooLargeError, match="DESRA_MAX_PIXELS"):
            read_image(tmp_path / "bomb.png")
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "ok.png", max_pixels=64 * 96 - 1)
    monkeypatch.setenv("DESRA_MAX_PIXELS", str(64 * 96 - 1))
    with pytest.raises(ImageTooLargeError):
        read_image(tmp_path / "ok.png")
    monkeypatch.setenv("DESRA_MAX_PIXELS", str(64 * 96))
    assert read_image(tmp_path / "ok.png").rgb.shape == (64, 96, 3)


def test_write_refusals(small, tmp_path):
    alpha = np.ones(small.shape[:2], np.float32)
    with pytest.raises(ImageError, match="JPEG cannot store alpha"):
        write_image(tmp_path / "a.jpg", small, alpha=alpha)
    with pytest.raises(PairMismatchError, match=r"alpha \(63, 96\) does not match the image \(64, 96\)"):
        write_image(tmp_path / "a.png", small, alpha=alpha[:-1])
    with pytest.raises(ImageError, match="16-bit"):
        write_image(tmp_path / "a.webp", small, bit_depth=16)
    with pytest.raises(ImageError):
        write_image(tmp_path / "a.gif", small)
    with pytest.raises(ImageError):
        write_image(tmp_path / "a.png", small[..., 0])
    assert not list(tmp_path.iterdir())


def test_masks_and_listing(tmp_path):
    mask = np.zeros((20, 30), bool)
    mask[5:10, 3:25] = True
    write_mask(tmp_path / "m.png", mask)
    assert np.array_equal(read_mask(tmp_path / "m.png"), mask)
    label = Image.fromarray(mask.astype(np.uint8) * 2, "P")  # labelme-style palette label file
    label.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0])
    label.save(tmp_path / "label.png")
    assert np.array_equal(read_mask(tmp_path / "label.png"), mask)
    Image.fromarray(mask.astype(np.uint8), "L").save(tmp_path / "zero_one.png")  # 0/1 grey label image
    assert np.array_equal(read_mask(tmp_path / "zero_one.png"), mask)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    (tmp_path / "B.JPG").write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["B.JPG", "label.png", "m.png", "zero_one.png"]


def test_keep_8bit_gives_the_pixels_whose_unit_float_is_read_image(small, tmp_path):
    from desra.core.imageio import unit_float

    alpha = np.zeros(small.shape[:2], np.float32)
    alpha[3:30, 4:50] = 1.0
    grey = to_uint8(small.mean(2))
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    Image.fromarray(to_uint8(small)).quantize(colors=16).save(tmp_path / "p.png", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(to_uint8(small)).save(tmp_path / "r.jpg", quality=95, exif=exif)
    files = [write_image(tmp_path / "a.png", small), write_image(tmp_path / "rgba.png", small, alpha=alpha),
             tmp_path / "g.png", tmp_path / "p.png", tmp_path / "r.jpg"]
    for path in files:
        full, kept = read_image(path), read_image(path, keep_8bit=True)
        assert kept.rgb.dtype == np.uint8 and kept.rgb.shape == full.rgb.shape, path.name
        np.testing.assert_array_equal(unit_float(kept.rgb), full.rgb)  # the same bits, not just close
        assert (kept.alpha is None) == (full.alpha is None) and kept.mode == full.mode
        if kept.alpha is not None:
            np.testing.assert_array_equal(unit_float(kept.alpha), full.alpha)
    sixteen = read_image(write_image(tmp_path / "s.png", small, bit_depth=16), keep_8bit=True)
    assert sixteen.bit_depth == 16 and sixteen.rgb.dtype == np.float32  # 16 bits are never cut to 8


def test_complete_png_with_a_black_last_row_still_reads(small, tmp_path):
    # A black last row is what a PNG cut short looks like once decoded, so its data is counted: it is complete.
    picture = to_uint8(small)
    picture[-1] = 0
    path = tmp_path / "black-bottom.png"
    Image.fromarray(picture).save(path)
    np.testing.assert_array_equal(read_image(path, keep_8bit=True).rgb, picture)


def test_keep_8bit_png_with_exif_orientation_or_transparent_colour_is_read_as_pillow_reads_it(small, tmp_path):
    # OpenCV decodes only plain RGB PNGs for keep_8bit; an eXIf orientation must still turn the image.
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = to_uint8(small)
    Image.fromarray(pixels).save(tmp_path / "turned.png", exif=exif)
    turned = read_image(tmp_path / "turned.png", keep_8bit=True)
    assert turned.rgb.shape == (small.shape[1], small.shape[0], 3)
    np.testing.assert_array_equal(turned.rgb, np.rot90(pixels, -1))
    Image.fromarray(pixels).save(tmp_path / "trns.png", transparency=(0, 0, 0))
    np.testing.assert_array_equal(read_image(tmp_path / "trns.png", keep_8bit=True).rgb, pixels)


def test_plain_rgb_png_is_read_without_pillow_and_still_refused_above_the_pixel_limit(small, tmp_path):
    import subprocess
    import sys

    path = write_image(tmp_path / "plain.png", small)
    h, w = small.shape[:2]
    with pytest.raises(ImageTooLargeError, match=f"{w} x {h}"):
        read_image(path, keep_8bit=True, max_pixels=h * w - 1)
    # A file with a PNG's IHDR bytes but not its signature is Pillow's to refuse, not OpenCV's to guess at.
    (tmp_path / "no-signature.png").write_bytes(b"\0" * 8 + path.read_bytes()[8:])
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "no-signature.png", keep_8bit=True)
    # The detector's reads of plain RGB PNGs skip Pillow's import (25 ms of every `desra detect`).
    probe = (f"import sys; from desra.core.imageio import read_image; d = read_image({str(path)!r}, keep_8bit=True); "
             "print(d.rgb.dtype, d.rgb.shape, 'PIL' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["uint8", f"({h},", f"{w},", "3)", "False"]
