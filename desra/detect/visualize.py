"""Pictures of a detection for people: mask overlay, D-map heat map with colour bar, semantic map
with a class legend. Arrays in, ``(H, W, 3)`` uint8 RGB out; the CLI writes them as PNG, the
dashboard shows them as they are. The README's showcase crops (MSE | GAN | mask overlay, float32
like the SR outputs they cut from) are laid out here too.
"""

from __future__ import annotations

import colorsys

import numpy as np

from desra.core.errors import ConfigError, PairMismatchError

_FONT_SCALE = 0.4
_TEXT_HEIGHT = 14
_BAND_ROWS = 64  # rows converted per step by _to_uint8


def _to_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.copy()
    if image.ndim == 0:
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    # In bands of rows through one small buffer: a float copy of a whole 2048x2048 image is 50 MB
    # of fresh pages, which cost more to fault in than the arithmetic.
    out = np.empty(image.shape, np.uint8)
    buf = np.empty((_BAND_ROWS, *image.shape[1:]), np.clip(image[:1], 0.0, 1.0).dtype)
    for y0 in range(0, image.shape[0], _BAND_ROWS):
        part = buf[: min(_BAND_ROWS, image.shape[0] - y0)]
        np.clip(image[y0 : y0 + _BAND_ROWS], 0.0, 1.0, out=part)
        part *= 255.0
        part += 0.5
        np.copyto(out[y0 : y0 + _BAND_ROWS], part, casting="unsafe")  # truncates, as astype does
    return out


def _text(canvas: np.ndarray, text: str, x: int, y: int, color=(0, 0, 0)) -> None:
    import cv2

    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, _FONT_SCALE, color, 1, cv2.LINE_AA)


def overlay(
    image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (255, 0, 0), alpha: float = 0.4
) -> np.ndarray:
    """Image ``(H, W, 3)`` float [0, 1] or uint8 with ``mask`` ``(H, W)`` bool tinted and outlined -> uint8 RGB."""
    import cv2

    base = _to_uint8(image)
    if mask.shape != base.shape[:2]:
        raise PairMismatchError(
            f"mask {mask.shape} and image {base.shape[:2]} must have the same height and width; "
            "pass the mask the detection made for this image"
        )
    mask = np.ascontiguousarray(mask, dtype=bool)
    tint = np.array(color, dtype=np.float32)
    # The blend (float32, truncated to uint8, as blending a float copy of the whole image) has 256
    # possible results per channel: a table, applied by OpenCV and copied in under the mask, is
    # the same bytes at a third of the time of indexing the flagged pixels out and back.
    table = ((1 - alpha) * np.arange(256, dtype=np.float32)[:, None] + alpha * tint).astype(np.uint8)
    out = np.ascontiguousarray(base)  # OpenCV draws only on C-ordered arrays
    cv2.copyTo(cv2.LUT(out, table.reshape(256, 1, 3)), mask.view(np.uint8), out)
    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    thickness = max(1, round(max(mask.shape) / 500))
    cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness)
    return out


def _colormap(values: np.ndarray, name: str) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[name](values)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def heatmap(d: np.ndarray, vmin: float = 0.0, vmax: float = 1.0, *, cmap: str = "inferno", label: str = "D") -> np.ndarray:
    """A map ``(h, w)`` float coloured over [vmin, vmax] with a labelled colour bar on the right -> uint8 RGB."""
    if vmax <= vmin:
        raise ConfigError(f"heat-map range must have vmax > vmin (got {vmin}, {vmax})")
    h, w = d.shape
    scaled = np.clip((np.asarray(d, np.float32) - vmin) / (vmax - vmin), 0.0, 1.0)
    body = _colormap(scaled, cmap)
    bar_w, gap, text_w = max(12, w // 40), 6, 60
    canvas = np.full((h, w + gap + bar_w + text_w, 3), 255, dtype=np.uint8)
    canvas[:, :w] = body
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    x0 = w + gap
    canvas[:, x0 : x0 + bar_w] = _colormap(ramp, cmap)
    ticks = 5 if h >= 5 * _TEXT_HEIGHT else 2
    for i in range(ticks):
        frac = i / (ticks - 1)
        y = int(round((1 - frac) * (h - 1)))
        canvas[y, x0 + bar_w - 3 : x0 + bar_w + 3] = 0
        ty = min(max(y + 4, _TEXT_HEIGHT - 4), h - 2)
        _text(canvas, f"{vmin + frac * (vmax - vmin):.2f}", x0 + bar_w + 4, ty)
    if h >= 3 * _TEXT_HEIGHT:
        # Right of the tick labels, between two ticks, so it never overlaps a number.
        _text(canvas, label[:2], x0 + bar_w + 40, int(round(0.375 * (h - 1))) + 4)
    return canvas


def class_colors(n: int = 150) -> np.ndarray:
    """A fixed palette of ``n`` distinct RGB colours, ``(n, 3)`` uint8 (golden-ratio hues)."""
    colors = []
    for k in range(n):
        hue = (k * 0.618033988749895) % 1.0
        sat = 0.55 + 0.35 * ((k // 7) % 2)
        val = 0.95 - 0.3 * ((k // 3) % 2)
        colors.append([round(c * 255) for c in colorsys.hsv_to_rgb(hue, sat, val)])
    return np.array(colors, dtype=np.uint8)


def semantic_legend(labels: np.ndarray, class_names, *, max_classes: int = 12) -> np.ndarray:
    """Label map ``(h, w)`` int coloured per class, with a legend of the most frequent classes on the right -> uint8 RGB."""
    names = list(class_names)
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(names)):
        raise ConfigError(f"labels range {labels.min()}..{labels.max()} exceeds the {len(names)} class names")
    palette = class_colors(len(names))
    h, w = labels.shape
    body = palette[labels]
    ids, counts = np.unique(labels, return_counts=True)
    order = ids[np.argsort(-counts)]
    rows = max(1, min(max_classes, len(order), h // _TEXT_HEIGHT))
    legend_w = 160
    canvas = np.full((h, w + legend_w, 3), 255, dtype=np.uint8)
    canvas[:, :w] = body
    for i, k in enumerate(order[:rows]):
        y = 2 + i * _TEXT_HEIGHT
        canvas[y : y + _TEXT_HEIGHT - 3, w + 6 : w + 18] = palette[k]
        share = 100.0 * counts[ids == k][0] / labels.size
        _text(canvas, f"{names[k][:16]} {share:.0f}%", w + 22, y + _TEXT_HEIGHT - 4)
    if len(order) > rows and h >= (rows + 1) * _TEXT_HEIGHT:
        _text(canvas, f"+{len(order) - rows} more", w + 22, 2 + (rows + 1) * _TEXT_HEIGHT - 4)
    return canvas


def showcase_window(mask: np.ndarray, bbox: tuple[int, int, int, int], size: int) -> tuple[int, int]:
    """Top-left (y0, x0) of the ``size`` x ``size`` window that overlaps ``bbox`` (x0, y0, x1, y1) and shows the most
    of both flagged and clean pixels (a crop wholly inside a large region shows no boundary)."""
    height, width = mask.shape
    step = max(1, size // 8)
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def starts(low: int, high: int, limit: int) -> list[int]:
        first, last = int(np.clip(low - size + 1, 0, limit)), int(np.clip(high, 0, limit))
        return sorted({*range(first, last + 1, step), last})

    ys, xs = starts(bbox[1], bbox[3], height - size), starts(bbox[0], bbox[2], width - size)
    best, best_score = (0, 0), -1.0
    for y in ys:
        for x in xs:
            flagged = (integral[y + size, x + size] - integral[y, x + size] - integral[y + size, x] + integral[y, x]) / size**2
            score = min(flagged, 1.0 - flagged)
            if score > best_score:
                best, best_score = (y, x), score
    return best


def showcase_strip(mse: np.ndarray, gan: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int], size: int = 256) -> np.ndarray:
    """One README crop near ``bbox`` (x0, y0, x1, y1): MSE | GAN | GAN with the mask in red; (size, 3*size+8, 3) float32."""
    height, width = mask.shape
    size = min(size, height, width)
    y0, x0 = showcase_window(mask, bbox, size)
    window = (slice(y0, y0 + size), slice(x0, x0 + size))
    overlay = gan[window].copy()
    red = np.array([1.0, 0.1, 0.1], np.float32)
    overlay[mask[window]] = 0.55 * overlay[mask[window]] + 0.45 * red
    gap = np.ones((size, 4, 3), np.float32)
    return np.concatenate([mse[window], gap, gan[window], gap, overlay], axis=1)
