"""The fast PNG writer used for detect's pictures: same pixels as Pillow's default PNG, valid PNG files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from desra import visualize
from desra.errors import ImageError
from desra.imageio import encode_image, encode_png_uint8, read_image, write_png_uint8


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
