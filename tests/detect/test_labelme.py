"""labelme ground truth: every shape type, imageData embedded and null, EXIF orientation."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from desra.core.errors import ImageError
from desra.detect.labelme_io import read_gt_mask, read_labelme_mask, write_labelme

H, W = 60, 80


def _png_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _shape(kind, points, label="artifact", **extra):
    return {"label": label, "points": points, "group_id": None, "description": "", "shape_type": kind,
            "flags": {}, "mask": None, **extra}


def _write(path, shapes, *, image_data=None, image_path="photo.png", h=H, w=W):
    path.write_text(json.dumps({"version": "6.3.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
                                "imageData": image_data, "imageHeight": h, "imageWidth": w}))
    return path


@pytest.fixture
def photo_png(tmp_path, photo):
    img = (photo("coffee")[:H, :W] * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "photo.png")
    return img


def _mask_shape():
    patch = np.zeros((6, 8), np.uint8)
    patch[1:5, 2:7] = 1
    # labelme stores a mask shape as a PNG of its bbox, points = top-left and bottom-right corners.
    return _shape("mask", [[40, 40], [47, 45]], mask=_png_b64(patch * 255)), patch


@pytest.mark.parametrize("embedded", [True, False])
def test_every_shape_type(tmp_path, photo_png, embedded):
    mask_shape, patch = _mask_shape()
    shapes = {
        "polygon": _shape("polygon", [[5, 5], [25, 5], [5, 25]]),
        "rectangle": _shape("rectangle", [[30, 2], [40, 10]]),
        "circle": _shape("circle", [[60, 15], [60, 22]]),
        "line": _shape("line", [[2, 50], [30, 50]]),
        "linestrip": _shape("linestrip", [[60, 40], [70, 40], [70, 55]]),
        "point": _shape("point", [[20, 40]]),
        "mask": mask_shape,
    }
    data = _png_b64(photo_png) if embedded else None
    for kind, shape in shapes.items():
        m = read_labelme_mask(_write(tmp_path / f"{kind}.json", [shape], image_data=data))
        assert m.shape == (H, W) and m.dtype == bool and m.any(), kind
    get = lambda kind: read_labelme_mask(tmp_path / f"{kind}.json")  # noqa: E731
    poly = get("polygon")
    assert poly[6, 6] and poly[10, 10] and not poly[20, 20]  # inside vs beyond the hypotenuse
    rect = get("rectangle")
    ys, xs = np.nonzero(rect)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (2, 10, 30, 40)  # corners inclusive
    circle = get("circle")  # radius 7 around (60, 15)
    assert circle[15, 60] and circle[15, 66] and not circle[15, 69] and not circle[24, 60]
    line = get("line")  # 10 px wide
    assert line[50, 15] and line[46, 15] and not line[40, 15]
    strip = get("linestrip")
    assert strip[40, 65] and strip[50, 70] and not strip[55, 60]
    point = get("point")  # disc of radius 5
    assert point[40, 20] and point[43, 20] and not point[40, 27]
    m = get("mask")
    np.testing.assert_array_equal(m[40:46, 40:48], patch.astype(bool))
    assert m.sum() == patch.sum()
    union = read_labelme_mask(_write(tmp_path / "all.json", list(shapes.values()), image_data=data))
    np.testing.assert_array_equal(union, np.logical_or.reduce([get(k) for k in shapes]))


def test_label_filter(tmp_path, photo_png):
    path = _write(tmp_path / "two.json", [_shape("rectangle", [[0, 0], [9, 9]], label="artifact"),
                                          _shape("rectangle", [[20, 20], [29, 29]], label="ok")])
    assert read_labelme_mask(path, labels={"artifact"}).sum() == 100
    assert read_labelme_mask(path).sum() == 200


def test_exif_rotated_image_with_null_image_data(tmp_path):
    # Stored 80 wide x 60 high, EXIF orientation 6: shown (and labelled) 60 wide x 80 high.
    stored = np.zeros((60, 80, 3), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    path = _write(tmp_path / "rotated.json", [_shape("rectangle", [[5, 60], [15, 75]])],
                  image_path="rotated.jpg", h=80, w=60)
    m = read_labelme_mask(path)
    assert m.shape == (80, 60)
    ys, xs = np.nonzero(m)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (60, 75, 5, 15)
    bad = _write(tmp_path / "wrong.json", [], image_path="rotated.jpg", h=60, w=80)
    with pytest.raises(ImageError):  # declared size disagrees with the oriented image
        read_labelme_mask(bad)


def test_missing_image_falls_back_to_declared_size_and_broken_files_raise(tmp_path):
    path = _write(tmp_path / "alone.json", [_shape("rectangle", [[1, 1], [4, 4]])], image_path="gone.png")
    assert read_labelme_mask(path).shape == (H, W)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ImageError):
        read_labelme_mask(tmp_path / "broken.json")
    bad = _write(tmp_path / "bad.json", [_shape("circle", [[1, 1]])], image_path="gone.png")
    with pytest.raises(ImageError):
        read_labelme_mask(bad)


def test_mask_round_trip_through_labelme_and_png(tmp_path):
    from desra.core.imageio import write_mask

    mask = np.zeros((H, W), bool)
    mask[10:30, 20:50] = True
    mask[40:55, 5:15] = True
    write_labelme(tmp_path / "det.json", mask, "photo.png")
    back = read_labelme_mask(tmp_path / "det.json")
    # Axis-aligned rectangles have exact polygon outlines: the round trip is exact, not 99 %.
    np.testing.assert_array_equal(back, mask)
    write_mask(tmp_path / "det.png", mask)
    np.testing.assert_array_equal(read_gt_mask(tmp_path / "det.png"), mask)
