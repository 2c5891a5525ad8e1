"""labelme annotations <-> boolean artifact masks (the paper's masks were drawn in labelme).

Reading goes through labelme's own code: ``labelme.LabelFile`` decodes the file (``imageData``
embedded or null, EXIF orientation applied to the referenced image, size checked against
``imageHeight``/``imageWidth``, ``mask`` shapes decoded) and ``labelme.utils.shapes_to_label``
rasterises every shape type (polygon, rectangle, circle, line, linestrip, point, mask, ...).

labelme files are untrusted input: before labelme sees one, its JSON must be an object with fields
of the right types, and every size in it (declared, embedded image, referenced image, shape masks)
must be within the pixel limit of :mod:`desra.core.imageio`, read from headers only. Importing labelme
switches Pillow's bomb guard off for the whole process; it is switched back on here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from desra.core.errors import ImageError, ImageTooLargeError


def _labelme():
    """labelme's modules, with Pillow's bomb guard put back: importing labelme sets MAX_IMAGE_PIXELS to None process-wide."""
    import labelme
    import labelme._label_file
    import labelme.utils

    from desra.core.imageio import keep_pillow_guards

    keep_pillow_guards()
    return labelme


def _field(raw: dict, key: str, types: tuple[type, ...], path: Path):
    value = raw.get(key)
    if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
        names = " or ".join(t.__name__ for t in types)
        raise ImageError(f"labelme file {path}: {key!r} is a {type(value).__name__}, expected {names} or null")
    return value


def _check_sizes(raw: dict, path: Path, image: Path) -> None:
    """Refuse, before labelme decodes or allocates anything, images and masks above the pixel limit."""
    from desra.core.imageio import (
        check_pixels,
        image_size,
        image_size_of_bytes,
        max_pixels_limit,
    )

    limit = max_pixels_limit()
    height, width = raw.get("imageHeight"), raw.get("imageWidth")
    if height is not None and width is not None:
        if height <= 0 or width <= 0:
            raise ImageError(f"labelme file {path} declares a {width} x {height} image; sizes must be positive")
        check_pixels(width, height, limit, f"labelme file {path} (declared imageWidth x imageHeight)")
    if raw.get("imageData") is not None:
        image_size_of_bytes(_b64(raw["imageData"], path, "imageData"), f"the imageData embedded in {path}")
    elif image.is_file():
        image_size(image)
    for index, shape in enumerate(raw.get("shapes") or []):
        if isinstance(shape, dict) and isinstance(shape.get("mask"), str):
            image_size_of_bytes(_b64(shape["mask"], path, f"shape {index}'s mask"), f"shape {index}'s mask in {path}")


def _b64(text: str, path: Path, what: str) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as error:
        raise ImageError(f"labelme file {path}: {what} is not base64 ({error})") from None


def _load(path: Path) -> tuple[list[dict], tuple[int, int]]:
    """labelme's own parsing: (shapes with decoded masks, (H, W) of the EXIF-oriented image)."""
    from PIL import Image

    _labelme()
    from labelme import LabelFile, utils
    from labelme._label_file import LabelFileError, _load_shape_json_obj

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise ImageError(f"labelme file {path} is not readable JSON: {error}") from error
    if not isinstance(raw, dict):
        raise ImageError(
            f"labelme file {path} holds a JSON {type(raw).__name__}, expected an object with shapes, imagePath, "
            "imageData, imageHeight and imageWidth (as labelme saves it)"
        )
    for key, types in (("imageHeight", (int,)), ("imageWidth", (int,)), ("imagePath", (str,)), ("imageData", (str,)),
                       ("shapes", (list,))):
        _field(raw, key, types, path)
    if not all(isinstance(shape, dict) for shape in raw.get("shapes") or []):
        raise ImageError(f"labelme file {path}: every entry of 'shapes' must be an object (label, points, shape_type)")
    declared = (raw.get("imageHeight"), raw.get("imageWidth"))
    image = path.parent / str(raw.get("imagePath") or "").replace("\\", "/")
    _check_sizes(raw, path, image)
    try:
        if raw.get("imageData") is None and not image.is_file() and all(declared):
            # The image was not shipped with the labels: the declared size is all there is.
            return [_load_shape_json_obj(s) for s in raw.get("shapes") or []], (int(declared[0]), int(declared[1]))
        lf = LabelFile(str(path))
        w, h = utils.img_data_to_pil(lf.image_data).size
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"labelme file {path}: an image in it is too large ({error})") from None
    except (LabelFileError, KeyError, TypeError, ValueError, RuntimeError, OSError) as error:
        raise ImageError(
            f"labelme file {path} could not be read: {error}. It needs imageData embedded, or imagePath "
            f"pointing to the image beside it, or imageHeight/imageWidth"
        ) from error
    return lf.shapes, (h, w)


def read_labelme_mask(path: str | os.PathLike, *, labels: set[str] | None = None) -> np.ndarray:
    """Union of the shapes in a labelme JSON (all, or those whose label is in ``labels``): ``(H, W)`` bool."""
    path = Path(path)
    shapes, size = _load(path)
    from labelme import utils

    shapes = [s for s in shapes if labels is None or s["label"] in labels]
    if not shapes:
        return np.zeros(size, dtype=bool)
    try:
        cls, _ = utils.shapes_to_label(size, shapes, {s["label"]: 1 for s in shapes})
    except (AssertionError, ValueError) as error:
        raise ImageError(f"labelme file {path} has a shape labelme cannot rasterise: {error}") from error
    return cls > 0


def mask_to_shapes(mask: np.ndarray, *, label: str = "artifact", min_points: int = 3) -> list[dict]:
    """Outer contours of a ``(H, W)`` bool mask as labelme polygon shapes (for correcting detections in labelme)."""
    import cv2

    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    shapes = []
    for contour in contours:
        points = contour[:, 0, :].astype(float).tolist()
        if len(points) < min_points:
            continue
        shapes.append(
            {
                "label": label,
                "points": points,
                "group_id": None,
                "description": "desra detect",
                "shape_type": "polygon",
                "flags": {},
                "mask": None,
            }
        )
    return shapes


def write_labelme(path: str | os.PathLike, mask: np.ndarray, image_path: str, *, label: str = "artifact") -> None:
    """Write a labelme JSON (imageData null, imagePath relative) whose polygons outline ``mask`` ``(H, W)`` bool."""
    from desra.core.atomic import atomic_write_text

    version = _labelme().__version__

    payload = {
        "version": version,
        "flags": {},
        "shapes": mask_to_shapes(mask, label=label),
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": int(mask.shape[0]),
        "imageWidth": int(mask.shape[1]),
    }
    atomic_write_text(path, json.dumps(payload, indent=2))


def read_gt_mask(path: str | os.PathLike) -> np.ndarray:
    """A ground-truth mask from a labelme ``.json`` or a mask image (nonzero = artifact): ``(H, W)`` bool."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_labelme_mask(path)
    from desra.core.imageio import read_mask

    return read_mask(path)
