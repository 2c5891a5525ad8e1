"""Detected regions, described and ranked by how prominent they are.

Viewers overlook many small or faint artifacts, so a mask alone is not enough: each 8-connected
region gets a bbox, area, mean D, dominant classes and a prominence score, most prominent first::

    prominence = sqrt(area / valid_area) * (1 - mean_D) * mean_A

- ``sqrt(area / valid_area)``: size, as a linear extent (a region 4x the area is 2x as visible);
- ``1 - mean_D``: severity, how far GAN texture departs from the MSE texture (D before semantics);
- ``mean_A``: the class weight A_k averaged over the region (1 without semantics); classes whose
  MSE texture is smooth (sky, wall: A = 1) show added texture more than grass or trees (A = 0.75).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    """One detected artifact region (coordinates in the full SR image, x right, y down)."""

    id: int
    """1-based rank: 1 is the most prominent."""
    bbox: tuple[int, int, int, int]
    """(x0, y0, x1, y1), half-open, in full-image pixels."""
    area: int
    """Pixels in the region."""
    mean_d: float
    """Mean D (before semantics) over the region, in (0, 1]."""
    min_d: float
    """Lowest D in the region."""
    classes: tuple[tuple[str, float], ...]
    """Up to three dominant ADE20K classes with their pixel fractions (empty without semantics)."""
    prominence: float
    """sqrt(area / valid_area) * (1 - mean_d) * mean A_k, in [0, 1]; regions are sorted by it."""

    def to_json(self) -> dict:
        """Plain-JSON form of the region."""
        out = asdict(self)
        out["bbox"] = list(self.bbox)
        out["classes"] = [{"name": n, "fraction": f} for n, f in self.classes]
        return out


def rank_regions(
    mask: np.ndarray,
    d: np.ndarray,
    labels: np.ndarray | None = None,
    class_weights: np.ndarray | None = None,
    class_names: tuple[str, ...] | None = None,
    *,
    offset: int = 0,
) -> list[Region]:
    """Regions of a valid-region mask ``(h, w)`` bool with D ``(h, w)`` float32, most prominent first.

    ``labels`` ``(h, w)`` int and ``class_weights`` ``(K,)`` add classes and the A_k factor;
    ``offset`` (the 5 px border) shifts bboxes into full-image coordinates.
    """
    import cv2

    from desra.detect.morphology import foreground_box

    valid_area = float(mask.size)
    box = foreground_box(np.asarray(mask, dtype=bool))
    if box is None:
        return []
    # Components labelled in the box around the flagged pixels only (the same components), and
    # statistics over the flagged pixels only: the background is most of the image and none of
    # its sums are used.
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask[box].astype(np.uint8), connectivity=8)
    where = np.flatnonzero(comp)
    flat = comp.ravel()[where]
    dflat = np.ascontiguousarray(d[box]).ravel()[where].astype(np.float64)
    area = np.bincount(flat, minlength=n).astype(np.float64)
    sum_d = np.bincount(flat, weights=dflat, minlength=n)
    min_d = np.full(n, np.inf)
    np.minimum.at(min_d, flat, dflat)
    mean_a = np.ones(n)
    flat_labels = np.ascontiguousarray(labels[box]).ravel()[where] if labels is not None else None
    if flat_labels is not None and class_weights is not None:
        mean_a = np.bincount(flat, weights=class_weights[flat_labels], minlength=n) / np.maximum(area, 1)
    per_class = None
    if flat_labels is not None:
        k_classes = int(labels.max()) + 1
        per_class = np.bincount(flat * k_classes + flat_labels, minlength=n * k_classes).reshape(n, k_classes)
    names = class_names or ()
    dy, dx = box[0].start, box[1].start
    found = []
    for k in range(1, n):
        mean_d = sum_d[k] / area[k]
        prominence = np.sqrt(area[k] / valid_area) * (1.0 - mean_d) * mean_a[k]
        classes: tuple[tuple[str, float], ...] = ()
        if per_class is not None:
            top = [c for c in np.argsort(-per_class[k], kind="stable")[:3] if per_class[k, c] > 0]
            classes = tuple(
                (names[c] if c < len(names) else str(c), round(float(per_class[k, c] / area[k]), 4)) for c in top
            )
        x, y, w, h = (int(v) for v in stats[k, :4])
        x, y = x + dx, y + dy
        found.append(
            (
                float(prominence),
                (x + offset, y + offset, x + w + offset, y + h + offset),
                int(area[k]),
                float(mean_d),
                float(min_d[k]),
                classes,
            )
        )
    found.sort(key=lambda r: (-r[0], -r[2]))
    return [
        Region(id=i + 1, bbox=bbox, area=a, mean_d=round(md, 6), min_d=round(mn, 6), classes=cls, prominence=round(p, 6))
        for i, (p, bbox, a, md, mn, cls) in enumerate(found)
    ]
