"""labelme annotations <-> boolean artifact masks (the paper's masks were drawn in labelme).

Reading goes through labelme's own code: ``labelme.LabelFile`` decodes the file (``imageData``
embedded or null, EXIF orientation applied to the referenced image, size checked against
``imageHeight``/``imageWidth``, ``mask`` shapes decoded) and ``labelme.utils.shapes_to_label``
rasterises every shape type (polygon, rectangle, circle, line, linestrip, point, mask, ...).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from desra.errors import ImageError


def _load(path: Path) -> tuple[list[dict], tuple[int, int]]:
    """labelme's own parsing: (shapes with decoded masks, (H, W) of the EXIF-oriented image)."""
    from labelme import LabelFile, utils
    from labelme._label_file import LabelFileError, _load_shape_json_obj

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ImageError(f"labelme file {path} is not readable JSON: {error}") from error
    declared = (raw.get("imageHeight"), raw.get("imageWidth"))
    image = path.parent / str(raw.get("imagePath") or "").replace("\\", "/")
    try:
        if raw.get("imageData") is None and not image.is_file() and all(declared):
            # The image was not shipped with the labels: the declared size is all there is.
            return [_load_shape_json_obj(s) for s in raw.get("shapes", [])], (int(declared[0]), int(declared[1]))
        lf = LabelFile(str(path))
    except (LabelFileError, KeyError, TypeError, ValueError) as error:
        raise ImageError(
            f"labelme file {path} could not be read: {error}. It needs imageData embedded, or imagePath "
            f"pointing to the image beside it, or imageHeight/imageWidth"
        ) from error
    w, h = utils.img_data_to_pil(lf.image_data).size
    return lf.shapes, (h, w)


def read_labelme_mask(path: str | os.PathLike, *, labels: set[str] | None = None) -> np.ndarray:
    """Union of the shapes in a labelme JSON (all, or those whose label is in ``labels``): ``(H, W)`` bool."""
    from labelme import utils

    path = Path(path)
    shapes, size = _load(path)
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
    from labelme import __version__

    from desra.atomic import atomic_write_text

    payload = {
        "version": __version__,
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
    from desra.imageio import read_mask

    return read_mask(path)
