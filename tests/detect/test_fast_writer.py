"""The fast PNG writer used for detect's pictures: same pixels as Pillow's default PNG, valid PNG files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from desra.core.errors import ImageError
from desra.core.imageio import encode_image, read_image
from desra.core.png import encode_png_uint8, write_png_uint8
from desra.detect import visualize


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return np.asarray(image).copy()


@pytest.mark.parametrize("name", ["astronaut", "rocket", "chelsea"])
def test_overlay_pixels_equal_the_pillow_default_encoding(photo, name):
    img = photo(name)
    h, w = img.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[h // 5 : h // 2, w // 4 : 3 * w // 4] = True
    picture = visualize.overlay(img, mask)
    before = _decoded(encode_image(picture.astype(np.float32) / 255.0, ".png"))  # how detect wrote it until now
    after = _decoded(encode_png_uint8(picture))
    assert after.dtype == np.uint8 and after.shape == (h, w, 3)
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(after, picture)


def test_grey_arrays_and_the_written_file_read_back_exactly(photo, tmp_path):
    grey = (photo("coffee")[..., 1] * 255).astype(np.uint8)
    np.testing.assert_array_equal(_decoded(encode_png_uint8(grey)), grey)
    rgb = (photo("coffee") * 255).astype(np.uint8)
    path = write_png_uint8(tmp_path / "pic.png", rgb)
    back = read_image(path)
    assert back.bit_depth == 8 and back.mode == "RGB"
    np.testing.assert_array_equal(np.round(back.rgb * 255).astype(np.uint8), rgb)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 4), np.uint8), np.zeros((0, 4), np.uint8)])
def test_other_arrays_are_refused(bad):
    with pytest.raises(ImageError):
        encode_png_uint8(bad)


def test_overlay_blends_only_flagged_pixels_as_a_whole_image_float_blend_does(photo):
    # The blend as it was computed before it was restricted to the flagged pixels (a float copy of
    # the whole image), compared away from the outline that overlay draws on top.
    import cv2

    img = photo("astronaut") * 1.2 - 0.1  # out of range, as unclamped SR outputs are
    h, w = img.shape[:2]
    mask = np.zeros((h, w), bool)
    mask[100:300, 150:400] = True
    mask[350:380, 20:60] = True
    base = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    blend = base.astype(np.float32)
    blend[mask] = 0.6 * blend[mask] + 0.4 * np.array((255, 0, 0), np.float32)
    expected = blend.astype(np.uint8)
    outline = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) != cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8))
    got = visualize.overlay(img, mask)
    assert (mask & ~outline).sum() > 40_000
    np.testing.assert_array_equal(got[~outline], expected[~outline])


def test_masks_are_written_by_the_fast_writer_and_read_back_exactly(rocket_pair, tmp_path):
    from desra.core.imageio import read_mask, write_mask

    _, _, gt = rocket_pair
    path = write_mask(tmp_path / "m.png", gt)
    assert path.read_bytes() == encode_png_uint8(np.where(gt, 255, 0).astype(np.uint8))
    with Image.open(path) as image:
        assert image.mode == "L"
        assert set(np.unique(np.asarray(image))) == {0, 255}
    np.testing.assert_array_equal(read_mask(path), gt)


def test_detection_does_not_change_its_inputs_in_range_or_not(rocket_pair):
    # In-range float32 images are no longer copied before detection: nothing may write into them.
    from desra.detect.pipeline import detect_artifacts

    mse, gan, _ = rocket_pair
    wild = gan * 1.3 - 0.1
    for pair in ((mse, gan), (mse, wild)):
        before = [a.copy() for a in pair]
        detection = detect_artifacts(*pair)
        assert detection.regions
        for a, b in zip(pair, before):
            np.testing.assert_array_equal(a, b)
    assert detect_artifacts(mse, wild).mask.sum() == detect_artifacts(mse, np.clip(wild, 0, 1)).mask.sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 63, 64, 65, 200])
def test_pictures_scale_to_uint8_as_the_whole_image_formula_does(photo, dtype, rows):
    # _to_uint8 converts in bands of rows; any height, band edge or float type gives the same bytes.
    img = (photo("coffee")[:rows] * 1.3 - 0.15).astype(dtype)
    expected = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(visualize.overlay(img, np.zeros(img.shape[:2], bool)), expected)


@pytest.mark.parametrize("shape", [(1, 1), (1, 300), (300, 1, 3), (5, 4, 3), (427, 640), (2048, 2048, 3), (3001, 1500)])
def test_banded_png_decodes_the_same_in_pillow_and_opencv_on_any_thread_count(photo, shape):
    # Large images are deflated in bands of rows joined into one zlib stream (3 bands at
    # 2048x2048 RGB): one valid PNG to both decoders, and the same bytes whatever the threads.
    import cv2

    rgb = (cv2.resize(photo("rocket"), (max(shape[1], 640), max(shape[0], 427)))[: shape[0], : shape[1]] * 255).astype(np.uint8)
    array = rgb if len(shape) == 3 else rgb[..., 0].copy()
    data = encode_png_uint8(array, threads=1)
    assert encode_png_uint8(array, threads=3) == data == encode_png_uint8(array)
    np.testing.assert_array_equal(_decoded(data), array)
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back if array.ndim == 2 else back[..., ::-1], array)
    with Image.open(io.BytesIO(data)) as image:
        image.verify()  # chunk CRCs


@pytest.mark.parametrize("cut", [0, 1, 65520, 65521, 65522, 200_000, 300_000])
def test_adler32_of_two_parts_combines_to_that_of_the_whole(cut):
    import zlib

    from desra.core.png import adler32_combine

    data = np.random.default_rng(cut).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    first, second = data[:cut], data[cut:]
    assert adler32_combine(zlib.adler32(first), zlib.adler32(second), len(second)) == zlib.adler32(data)
    assert adler32_combine(zlib.adler32(b"\xff" * cut), zlib.adler32(b"\xff" * 7), 7) == zlib.adler32(b"\xff" * (cut + 7))
