"""Running an SR network on images of any size.

The image stays on the CPU as a numpy array; only one tile at a time goes to the device. Tiles
overlap by ``overlap`` input pixels and are blended: in each overlap a tile's outermost quarter is
discarded (the network saw padding there, not the neighbouring pixels) and the middle half is
cross-faded linearly, so tiled output equals untiled output wherever the network's receptive field
fits in a quarter of the overlap, and no seam can show up as a false artifact in the D map.

On CUDA, ``half=True`` runs under autocast (fp16, or bf16 for networks whose descriptor says fp16
is unsafe); a tile whose output is not finite is rerun in fp32 and the rest of the image stays in
fp32. A CUDA out-of-memory error halves the tile size and starts again. Both are reported through
``on_event``. Outputs are clamped to [0, 1].

Outputs are bounded like inputs: an upscale whose output would have more pixels than
``$DESRA_MAX_OUTPUT_PIXELS`` (default :data:`desra.core.imageio.DEFAULT_MAX_OUTPUT_PIXELS`) is refused with
:class:`ImageTooLargeError`, giving the size it would need, before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from desra.core.errors import (
    ConfigError,
    DesraError,
    DeviceError,
    ImageError,
    ImageTooLargeError,
)

if TYPE_CHECKING:
    from desra.core.imageio import ImageData
    from desra.models.checkpoint import SRModel

MIN_TILE = 16  # smallest tile side in input pixels (also where an OOM retry gives up)


@dataclass(frozen=True)
class InferenceEvent:
    """Something the caller should be told about: ``kind`` is 'oom_retry', 'fp32_fallback', 'half_ignored' or 'overlap_capped'."""

    kind: str  # machine-readable event type
    message: str  # one line for people

    def __str__(self) -> str:
        return self.message


EventFn = Callable[[InferenceEvent], None]
ProgressFn = Callable[[int, int], None]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of ``tile``-px tiles covering ``length`` px, spread evenly, neighbours overlapping >= ``overlap``."""
    if tile >= length:
        return [0]
    step = tile - overlap
    count = -(-(length - tile) // step) + 1
    # Even spacing instead of a short last step: no tile overlaps its neighbour much more than the others.
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def blend_weights(size: int, left_overlap: int, right_overlap: int) -> np.ndarray:
    """(size,) float32 weights of one tile along one axis, overlaps with its neighbours in px (0 = image border).

    In an overlap the outer quarter gets weight 0 (the network saw padding there), the next half a
    linear ramp, the rest 1; the two ramps of neighbouring tiles sum to 1 (cross-fade).
    """
    position = np.arange(size, dtype=np.float32) + 0.5
    weights = np.ones(size, dtype=np.float32)
    for overlap, distance in ((left_overlap, position), (right_overlap, size - position)):
        if overlap > 0:
            weights = np.minimum(weights, np.clip((distance - overlap / 4) / (overlap / 2), 0.0, 1.0))
    return weights


def axis_weights(starts: list[int], tile: int, scale: int) -> list[np.ndarray]:
    """Output-space blend weights for each tile start along one axis."""
    result = []
    for i, start in enumerate(starts):
        left = starts[i - 1] + tile - start if i > 0 else 0
        right = start + tile - starts[i + 1] if i + 1 < len(starts) else 0
        result.append(blend_weights(tile * scale, left * scale, right * scale))
    return result


def _pad_to_multiple(x, multiple: int):
    """Pad (N,C,H,W) on the bottom/right to a multiple (reflection where the tile allows it)."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


class _Runner:
    """Runs single tiles on the device, switching to fp32 for good after a non-finite half output."""

    def __init__(self, model: SRModel, device: str, half: bool, emit: EventFn):
        import torch

        self.module = model.module
        self.descriptor = model.descriptor
        self.device = torch.device(device)
        self.emit = emit
        self.autocast_dtype = None
        if half and self.device.type == "cuda":
            self.autocast_dtype = torch.float16 if self.descriptor.supports_half else torch.bfloat16
        elif half:
            emit(InferenceEvent("half_ignored", f"half precision is only used on CUDA; running fp32 on {device}"))

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        """(h, w, 3) float32 tile -> (s*h, s*w, 3) float32 output clamped to [0, 1]."""
        import torch

        h, w = tile.shape[:2]
        scale = self.descriptor.scale
        x = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1)))[None].to(self.device)
        x = _pad_to_multiple(x, self.descriptor.size_multiple)
        out = self._forward(x, self.autocast_dtype)
        if self.autocast_dtype is not None and not bool(torch.isfinite(out).all()):
            self.emit(
                InferenceEvent(
                    "fp32_fallback",
                    f"{self.descriptor.name}: {str(self.autocast_dtype).removeprefix('torch.')} output was not finite; "
                    "rerunning in fp32 (and staying in fp32 for the rest of this image)",
                )
            )
            self.autocast_dtype = None
            out = self._forward(x, None)
        out = out[0, :, : h * scale, : w * scale].float().clamp(0.0, 1.0)
        return out.permute(1, 2, 0).cpu().numpy()

    def _forward(self, x, dtype):
        import torch

        with torch.inference_mode():
            if dtype is None:
                return self.module(x)
            with torch.autocast(device_type=self.device.type, dtype=dtype):
                return self.module(x)


def _is_oom(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower()
    )


def check_output_size(height: int, width: int, scale: int, *, what: str = "the input", max_output_pixels: int | None = None) -> None:
    """Refuse (ImageTooLargeError) upscaling a ``height`` x ``width`` image by ``scale`` beyond the output pixel limit.

    The message gives the output size, the memory its float32 RGB copy alone would take, and the limit.
    """
    from desra.core.imageio import max_output_pixels_limit

    limit = max_output_pixels_limit(max_output_pixels)
    out_h, out_w = int(height) * int(scale), int(width) * int(scale)
    if out_h * out_w > limit:
        gigabytes = out_h * out_w * 3 * 4 / 1e9
        raise ImageTooLargeError(
            f"{what} is {width} x {height}; at x{scale} the output would be {out_w} x {out_h} = {out_h * out_w} pixels "
            f"({gigabytes:.1f} GB as float32 RGB), above the output limit of {limit} pixels; "
            "use a smaller input, or raise DESRA_MAX_OUTPUT_PIXELS if this machine has the memory"
        )


def read_for_upscale(path: str | os.PathLike, scale: int, *, max_pixels: int | None = None, what: str | None = None) -> ImageData:
    """Read the image file at ``path`` to upscale by ``scale``: its header is checked against the output limit
    (:func:`check_output_size`, naming it ``what``, default the path) before anything is decoded."""
    from desra.core.imageio import image_size, read_image

    read_kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    width, height = image_size(path, **read_kwargs)
    check_output_size(height, width, scale, what=str(path) if what is None else what)
    return read_image(path, **read_kwargs)


def _check_inputs(model: SRModel, image: np.ndarray, tile: int | None, overlap: int, device: str) -> None:
    import torch

    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != model.descriptor.in_channels:
        got = getattr(image, "shape", type(image).__name__)
        raise ImageError(
            f"upscale expects an (H, W, {model.descriptor.in_channels}) float image in [0, 1], got {got}"
        )
    if not np.issubdtype(image.dtype, np.floating):
        raise ImageError(f"upscale expects a float image in [0, 1], got {image.dtype}; convert with image / 255.0")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"upscale got an empty image of shape {image.shape}")
    check_output_size(image.shape[0], image.shape[1], model.descriptor.scale)
    if tile is not None and tile < MIN_TILE:
        raise ConfigError(f"tile must be at least {MIN_TILE} pixels (or None for no tiling), got {tile}")
    if overlap < 0:
        raise ConfigError(f"overlap must be >= 0 pixels, got {overlap}")
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was requested but CUDA is not available here; run on the cpu device instead")


def upscale(
    model: SRModel,
    image: np.ndarray,
    *,
    tile: int | None = None,
    overlap: int = 32,
    device: str = "cpu",
    half: bool = False,
    on_event: EventFn | None = None,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """Super-resolve an (H, W, 3) float32 [0, 1] image -> (sH, sW, 3) float32 [0, 1].

    ``tile`` is the tile side in input pixels (None: whole image at once); ``overlap`` the overlap
    between neighbouring tiles in input pixels.
    """
    _check_inputs(model, image, tile, overlap, device)
    emit = on_event or (lambda event: None)
    model.module.to(device)
    runner = _Runner(model, device, half, emit)
    image = np.asarray(image, dtype=np.float32)
    current = tile
    while True:
        try:
            return _upscale_tiled(runner, image, current, overlap, progress)
        except Exception as error:  # noqa: BLE001 - only OOM is handled, everything else re-raised
            if not _is_oom(error):
                raise
            _release_cuda_memory()
            size = current or max(image.shape[:2])
            if size // 2 < max(MIN_TILE, 2 * model.descriptor.size_multiple):
                raise DeviceError(
                    f"out of memory on {device} even with {size} px tiles; run on the cpu device or free GPU memory"
                ) from None
            current = size // 2
            emit(InferenceEvent("oom_retry", f"out of memory on {device} with {size} px tiles; retrying with {current} px tiles"))


def _release_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _upscale_tiled(runner: _Runner, image: np.ndarray, tile: int | None, overlap: int, progress: ProgressFn | None) -> np.ndarray:
    h, w = image.shape[:2]
    if tile is None or (tile >= h and tile >= w):
        out = runner(image)
        if progress:
            progress(1, 1)
        return out
    scale = runner.descriptor.scale
    if overlap > tile // 2:
        # Said, not silent: with the smaller overlap, tiles match untiled output only where the
        # network's receptive field fits in a quarter of it (module docstring).
        runner.emit(InferenceEvent(
            "overlap_capped",
            f"overlap {overlap} px does not fit {tile} px tiles; using {tile // 2} px, so tiled output equals "
            f"untiled only for networks that see <= {tile // 8} px around a pixel (use tiles >= {2 * overlap} px)",
        ))
        overlap = tile // 2
    th, tw = min(tile, h), min(tile, w)
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    wys, wxs = axis_weights(ys, th, scale), axis_weights(xs, tw, scale)
    out = np.zeros((h * scale, w * scale, runner.descriptor.out_channels), dtype=np.float32)
    weight_sum = np.zeros((h * scale, w * scale, 1), dtype=np.float32)
    total, done = len(ys) * len(xs), 0
    for y, wy in zip(ys, wys):
        for x, wx in zip(xs, wxs):
            weight = (wy[:, None] * wx[None, :])[..., None]
            result = runner(image[y : y + th, x : x + tw])
            region = np.s_[y * scale : (y + th) * scale, x * scale : (x + tw) * scale]
            out[region] += result * weight
            weight_sum[region] += weight
            done += 1
            if progress:
                progress(done, total)
    return np.divide(out, weight_sum, out=out)  # in place: a second output-sized array is not needed


def _resize_alpha(alpha: np.ndarray, scale: int) -> np.ndarray:
    import cv2

    h, w = alpha.shape
    resized = cv2.resize(alpha, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    return np.clip(resized, 0.0, 1.0).astype(np.float32)


ALPHA_MODES = ("resize", "model")


def upscale_image(model: SRModel, image: ImageData, *, alpha_mode: str = "resize", **kwargs: Any) -> ImageData:
    """Upscale an ImageData: SR on the RGB, alpha upscaled separately, bit depth and mode kept.

    ``alpha_mode`` 'resize' (default) resizes alpha bicubically; 'model' runs it through the network
    as a grey image, as Real-ESRGAN's default does. Other keyword arguments go to :func:`upscale`.
    """
    if alpha_mode not in ALPHA_MODES:
        raise ConfigError(f"alpha_mode must be one of {ALPHA_MODES}, got {alpha_mode!r}")
    h, w = image.rgb.shape[:2]
    check_output_size(h, w, model.descriptor.scale, what=str(image.path) if image.path else "the input")
    rgb = upscale(model, image.rgb, **kwargs)
    alpha = None
    if image.alpha is not None:
        if alpha_mode == "model":
            grey = np.repeat(image.alpha[..., None], 3, axis=2)
            alpha = upscale(model, grey, **{**kwargs, "progress": None}).mean(axis=2)
        else:
            alpha = _resize_alpha(image.alpha, model.descriptor.scale)
    return dataclasses.replace(image, rgb=rgb, alpha=alpha)


@dataclass(frozen=True)
class FolderResult:
    """Outcome of :func:`upscale_folder`."""

    written: list[Path]  # output files, in input order
    failed: list[tuple[Path, str]]  # (input file, one-line reason) for every image that failed


def upscale_folder(
    model: SRModel,
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    progress: ProgressFn | None = None,
    on_event: EventFn | None = None,
    max_pixels: int | None = None,
    **kwargs: Any,
) -> FolderResult:
    """Upscale every image in ``input_dir`` into ``output_dir``; a failing image is recorded and skipped.

    ``progress(done, total)`` counts images. Other keyword arguments go to :func:`upscale_image`.
    """
    from desra.core import imageio

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    files = imageio.list_images(input_dir)
    # Images in formats desra does not read (an animated GIF, ...) are failures with a reason, not skipped quietly.
    failed: list[tuple[Path, str]] = imageio.list_unsupported_images(input_dir)
    if not files and not failed:
        raise ImageError(f"no images found in {input_dir} (looked for {', '.join(imageio.IMAGE_EXTENSIONS)})")
    written: list[Path] = []
    for index, source in enumerate(files, start=1):
        try:
            image = read_for_upscale(source, model.descriptor.scale, max_pixels=max_pixels)
            result = upscale_image(model, image, on_event=on_event, **kwargs)
            target = output_dir / source.name
            imageio.write_imagedata(target, result)
            written.append(target)
        except DeviceError:
            raise  # the device is gone for every image, not just this one
        except DesraError as error:
            failed.append((source, str(error)))
        except (OSError, RuntimeError, ValueError) as error:
            failed.append((source, f"{type(error).__name__}: {error}"))
        if progress:
            progress(index, len(files))
    return FolderResult(written=written, failed=failed)
