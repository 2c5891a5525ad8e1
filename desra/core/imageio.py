"""Reading and writing images: the one place where files become arrays and back.

Formats: PNG, JPEG, WebP, TIFF, BMP. Layouts: grayscale, grayscale + alpha, RGB, RGBA, palette
(with or without transparency); 8 and 16 bits per channel. EXIF orientation is applied on read.

Policy (one for the whole project):
- Colour: the library always works on ``(H, W, 3)`` float32 RGB in [0, 1]; grey images are
  replicated to three channels and written back as grey when their ImageData says so.
- Alpha: SR runs on the RGB only; alpha is kept as a separate ``(H, W)`` float32 plane and upscaled
  on its own (as Real-ESRGAN does), then written back. JPEG cannot store alpha: writing alpha to a
  ``.jpg`` is refused rather than silently dropped.
- 16-bit: read at full precision (values / 65535) and written back as 16-bit PNG/TIFF, so the
  extra precision survives to the output; asking for 16-bit in a format without it is refused.
- Palette images are expanded to RGB(A) and written as RGB(A): an SR output has more colours than
  a palette can hold.
- Refused with :class:`ImageError`: unreadable, corrupt or truncated files (a PNG whose image data
  ends before its last row is truncated even when its chunks are intact), zero-size images,
  animated or multi-page files (which frame would be meant is not ours to guess), layouts without a
  defined meaning here (32-bit integer/float). Refused with :class:`ImageTooLargeError`, before any
  pixel is decoded: images with more pixels than the limit (``max_pixels`` argument, else
  ``$DESRA_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`): no decompression bombs.
- Pillow's own guards stay in force for the whole process: its bomb limit is never switched off
  (labelme switches it off when imported; :mod:`desra.detect.labelme_io` puts it back) and truncated files
  are never loaded half-way (``ImageFile.LOAD_TRUNCATED_IMAGES`` is kept False).
- Outputs are bounded too: :func:`max_output_pixels_limit` (``$DESRA_MAX_OUTPUT_PIXELS``, default
  :data:`DEFAULT_MAX_OUTPUT_PIXELS`) is what :mod:`desra.models.inference` refuses to allocate beyond.

PNG at the byte level (the completeness check, the fast writer of desra's own pictures) is
:mod:`desra.core.png`. What is left is one policy applied to every format and layout on the way in
and out; it runs a little over 400 lines because each layout's rule sits next to the code that keeps it.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from desra.core.errors import (
    ConfigError,
    ImageError,
    ImageTooLargeError,
    PairMismatchError,
)
from desra.core.png import (
    check_png_complete,
    plain_rgb8_header,
    png_header,
    write_png_uint8,
)

DEFAULT_MAX_PIXELS = 100_000_000  # pixels (width x height) accepted when neither argument nor env var says otherwise
# Output pixels (sW x sH) an upscale may allocate, as many as an input may have: 100 MP is 1.2 GB as
# float32 RGB; measured peaks are ~19 bytes per output pixel tiled (demo model, 128 px tiles) and ~60
# untiled, so at most ~2 GB / ~6 GB, and detect_lr on the outputs costs no more than detecting on the
# largest input pair accepted anyway. A 9000 x 9000 input at x4 (1.3 G output pixels) is refused.
DEFAULT_MAX_OUTPUT_PIXELS = 100_000_000
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
# Image formats desra does not read: a folder holding them lists them as failures instead of skipping them quietly.
OTHER_IMAGE_EXTENSIONS = (
    ".gif", ".apng", ".avif", ".heic", ".heif", ".jxl", ".jp2", ".j2k", ".ico", ".psd", ".tga", ".ppm", ".pgm",
    ".pbm", ".pnm", ".exr", ".hdr", ".dds", ".svg",
)
_FORMATS = {"PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP"}  # MPO: multi-picture JPEG from cameras, first frame
_GREY_MODES = ("L", "LA")
_RAISE_HINT = "raise the limit with DESRA_MAX_PIXELS if you trust the file"


@dataclass(frozen=True)
class ImageData:
    """A decoded image and what is needed to write it back the way it came."""

    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]; uint8 for an 8-bit file read with keep_8bit
    alpha: np.ndarray | None  # (H, W) in rgb's type and scale, or None when the image has no alpha
    bit_depth: int  # 8 or 16 bits per channel in the source file
    mode: str  # source layout: "L", "LA", "RGB", "RGBA" or "P" (palette)
    path: Path | None = None  # file it was read from, if any


def _limit_from(value: int | None, variable: str, default: int) -> int:
    if value is not None:
        limit = value
    else:
        raw = os.environ.get(variable, "").strip()
        try:
            limit = int(float(raw)) if raw else default
        except (ValueError, OverflowError):
            raise ConfigError(f"{variable} must be a number of pixels, got {raw!r}") from None
    if limit <= 0:
        raise ConfigError(f"the pixel limit ({variable}) must be positive, got {limit}")
    return limit


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The input pixel limit in force: ``max_pixels``, else ``$DESRA_MAX_PIXELS``, else DEFAULT_MAX_PIXELS."""
    return _limit_from(max_pixels, "DESRA_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def max_output_pixels_limit(max_output_pixels: int | None = None) -> int:
    """The output pixel limit in force: the argument, else ``$DESRA_MAX_OUTPUT_PIXELS``, else DEFAULT_MAX_OUTPUT_PIXELS."""
    return _limit_from(max_output_pixels, "DESRA_MAX_OUTPUT_PIXELS", DEFAULT_MAX_OUTPUT_PIXELS)


def check_pixels(width: int, height: int, limit: int, what: str) -> None:
    """Refuse (ImageTooLargeError) a ``width`` x ``height`` image above ``limit`` pixels; ``what`` names it."""
    if width * height > limit:
        raise ImageTooLargeError(
            f"{what} has {width} x {height} = {width * height} pixels, above the limit of {limit}; {_RAISE_HINT}"
        )


def keep_pillow_guards(limit: int | None = None) -> None:
    """Put Pillow's process-wide guards back in force: a bomb limit (never None) and no half-loaded truncated files."""
    from PIL import Image, ImageFile

    # labelme sets MAX_IMAGE_PIXELS = None on import, switching Pillow's bomb guard off for every
    # caller in the process; ours is the one that decides, so Pillow's may rise to it but is never off.
    wanted = max(limit or 0, DEFAULT_MAX_PIXELS)
    if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS < wanted:
        Image.MAX_IMAGE_PIXELS = wanted
    ImageFile.LOAD_TRUNCATED_IMAGES = False


def _open_image(source, name: str, limit: int):
    """Pillow image of ``source`` (path or file object) after the header checks; nothing decoded yet."""
    from PIL import Image, UnidentifiedImageError

    keep_pillow_guards(limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"{name} is too large to open ({error}); {_RAISE_HINT}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, struct.error) as error:
        raise ImageError(f"{name} is not a readable image ({error}); expected PNG, JPEG, WebP, TIFF or BMP") from None
    if image.format not in _FORMATS:
        image.close()
        raise ImageError(f"{name} is a {image.format} image; desra reads PNG, JPEG, WebP, TIFF and BMP")
    width, height = image.size
    if width == 0 or height == 0:
        image.close()
        raise ImageError(f"{name} has zero size ({width} x {height})")
    try:
        check_pixels(width, height, limit, name)
        frames = int(getattr(image, "n_frames", 1) or 1) if image.format != "MPO" else 1
    except ImageTooLargeError:
        image.close()
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as error:
        image.close()
        raise ImageError(f"{name} is corrupt or truncated ({error})") from None
    if frames > 1:
        image.close()
        # MPO (camera JPEG with a preview) is one picture; any other multi-frame file is an animation or a stack.
        raise ImageError(
            f"{name} is an animated or multi-page {image.format} with {frames} frames; desra reads single images. "
            "Save the frame you want as its own PNG"
        )
    return image


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ImageError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes)")


def _open(path: Path, limit: int):
    _check_file(path)
    return _open_image(path, str(path), limit)


def image_size(path: str | os.PathLike, *, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image file from its header, after the same checks as read_image; no pixel decoded."""
    path = Path(path)
    with _open(path, max_pixels_limit(max_pixels)) as image:
        return image.size


def image_size_of_bytes(data: bytes, name: str, *, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of encoded image bytes from the header, refused like read_image; ``name`` is for messages."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    with _open_image(io.BytesIO(data), name, max_pixels_limit(max_pixels)) as image:
        return image.size


def _sixteen_bit_layout(path: Path, image) -> str | None:
    """The grey/colour layout of a 16-bit PNG or TIFF, None for 8-bit files."""
    if image.format == "PNG":
        header = png_header(path)
        if header is not None and header.bit_depth == 16:
            return {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}.get(header.colour)
        return None
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        if 16 in bits:
            return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(int(image.tag_v2.get(277, 1)))
    return None


def _orientation(image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except (ValueError, TypeError, OSError):
        return 1


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip an (H, W[, C]) array as EXIF orientation 1-8 says, so it displays upright."""
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(array))


def _decode_16bit(path: Path, layout: str, orientation: int) -> tuple[np.ndarray, np.ndarray | None]:
    import cv2

    # Pillow reduces 16-bit colour to 8 bits; OpenCV keeps all 16 (and ignores EXIF with UNCHANGED).
    data = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16:
        raise ImageError(f"{path} could not be decoded as a 16-bit image (corrupt or truncated?)")
    array = apply_orientation(array, orientation).astype(np.float32) / 65535.0
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2), None
    alpha = array[..., 3].copy() if array.shape[2] == 4 and layout in ("LA", "RGBA") else None
    rgb = array[..., 2::-1] if array.shape[2] >= 3 else np.repeat(array[..., :1], 3, axis=2)
    return np.ascontiguousarray(rgb), alpha


def _read_plain_rgb8_png(path: Path, limit: int) -> np.ndarray | None:
    """uint8 RGB pixels of a plain 8-bit RGB PNG decoded by OpenCV, or None for any other file or any fault.

    Pillow decodes into its own 4-byte pixels and copies them out twice on the way to numpy (40 MB
    of fresh pages for a 2048x2048 image); OpenCV's libpng decodes into the array and refuses
    truncated data itself. The header is read here, so Pillow is not even imported (25 ms) for
    such files; the pixel limit is checked as for any file. On any fault the caller reads the file
    with Pillow, which says what is wrong (libpng prints its own line first).
    """
    header = plain_rgb8_header(path)
    if header is None or header.width == 0 or header.height == 0:
        return None
    check_pixels(header.width, header.height, limit, str(path))
    import cv2

    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint8 or pixels.shape != (header.height, header.width, 3):
        return None
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)


def _check_png_decoded(image, path: Path) -> None:
    """ImageError if a PNG that Pillow has loaded held fewer rows of data than its header declares.

    Pillow leaves the rows its decoder never reached at zero. So a non-interlaced PNG whose last
    row holds a non-zero byte is complete: its data reached the last row. Only otherwise (a black
    last row, a palette index 0, an interlaced file) is the stream inflated again and counted by
    :func:`check_png_complete`, which costs as much as the decoding did.
    """
    if image.format != "PNG":
        return
    if not image.info.get("interlace") and image.crop((0, image.height - 1, image.width, image.height)).tobytes().strip(b"\0"):
        return
    check_png_complete(path)


def _decode_8bit(image, *, keep_8bit: bool = False) -> tuple[np.ndarray, np.ndarray | None, str]:
    from PIL import ImageOps

    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)  # a copy, so only when there is something to turn
    mode = image.mode
    if mode in ("I", "F", "I;16", "I;16B", "I;16L"):
        raise ImageError(f"{image.filename or 'image'}: {mode} images (32-bit or unusual 16-bit) are not supported")
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if has_alpha else "RGB")
        source_mode = "P"
    elif mode == "1":
        image, source_mode = image.convert("L"), "L"
    elif mode in ("L", "LA", "RGB", "RGBA"):
        source_mode = mode
    else:  # CMYK, YCbCr, LAB, RGBX ... -> RGB
        image, source_mode = image.convert("RGB"), "RGB"
    array = np.asarray(image)
    if array.ndim == 2:
        rgb, alpha = np.repeat(array[..., None], 3, axis=2), None
    elif image.mode == "LA":
        rgb, alpha = np.repeat(array[..., :1], 3, axis=2), array[..., 1].copy()
    else:
        rgb, alpha = np.ascontiguousarray(array[..., :3]), (array[..., 3].copy() if image.mode == "RGBA" else None)
    if keep_8bit:
        return rgb, alpha, source_mode
    return unit_float(rgb), (None if alpha is None else unit_float(alpha)), source_mode


def unit_float(pixels: np.ndarray) -> np.ndarray:
    """8-bit pixels -> float32 ``k / 255`` in [0, 1], the values :func:`read_image` gives (same bits)."""
    values = pixels.astype(np.float32)
    values /= 255.0  # in place: one float copy of a large image, not two
    return values


def read_image(path: str | os.PathLike, *, max_pixels: int | None = None, keep_8bit: bool = False) -> ImageData:
    """Read an image file -> ImageData (RGB float32 (H, W, 3) in [0, 1], optional alpha, bit depth, mode).

    ``keep_8bit`` leaves an 8-bit file's pixels as uint8 (16-bit files are float32 either way): the
    detector reads them as :func:`unit_float` would, without a float copy four times their size.
    """
    path = Path(path)
    limit = max_pixels_limit(max_pixels)
    _check_file(path)
    if keep_8bit:
        pixels = _read_plain_rgb8_png(path, limit)
        if pixels is not None:
            return ImageData(rgb=pixels, alpha=None, bit_depth=8, mode="RGB", path=path)
    image = _open_image(path, str(path), limit)
    with image:
        try:
            image.load()  # decodes everything: truncated or corrupt data fails here, not later
            _check_png_decoded(image, path)
            layout = _sixteen_bit_layout(path, image)
            if layout is not None:
                rgb, alpha = _decode_16bit(path, layout, _orientation(image))
                mode, bit_depth = layout, 16
            else:
                rgb, alpha, mode = _decode_8bit(image, keep_8bit=keep_8bit)
                bit_depth = 8
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageError(f"{path} is corrupt or truncated ({error})") from None
    return ImageData(rgb=rgb, alpha=alpha, bit_depth=bit_depth, mode=mode, path=path)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] (any shape) -> uint8 in [0, 255], rounded, out-of-range values clipped."""
    return np.round(np.clip(np.asarray(rgb, dtype=np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def _to_uint16(array: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0) * 65535.0).astype(np.uint16)


def _check_rgb(rgb: np.ndarray, alpha: np.ndarray | None, path: Path) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ImageError(f"cannot write {path}: expected an (H, W, 3) float image in [0, 1], got {getattr(rgb, 'shape', type(rgb))}")
    if alpha is not None and alpha.shape != rgb.shape[:2]:
        raise PairMismatchError(f"cannot write {path}: alpha {alpha.shape} does not match the image {rgb.shape[:2]}; pass the alpha of this image")


def encode_image(
    rgb: np.ndarray,
    suffix: str,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    grayscale: bool = False,
    quality: int = 95,
) -> bytes:
    """Encode (H, W, 3) float32 [0, 1] (+ optional (H, W) alpha) into the bytes of a ``suffix`` file."""
    suffix = suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ImageError(f"cannot write {suffix!r} files; use one of {', '.join(IMAGE_EXTENSIONS)}")
    if bit_depth not in (8, 16):
        raise ImageError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if alpha is not None and suffix in (".jpg", ".jpeg"):
        raise ImageError("JPEG cannot store alpha; write .png, .webp or .tif to keep the transparency")
    if bit_depth == 16:
        return _encode_16bit(rgb, suffix, alpha, grayscale)
    from PIL import Image

    planes = [to_uint8(rgb.mean(axis=2))[..., None]] if grayscale else [to_uint8(rgb)]
    if alpha is not None:
        planes.append(to_uint8(alpha)[..., None])
    array = np.concatenate(planes, axis=2)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
    if mode == "LA" and suffix in (".bmp", ".webp"):  # these formats have no grey+alpha layout
        array, mode = np.concatenate([np.repeat(array[..., :1], 3, axis=2), array[..., 1:]], axis=2), "RGBA"
    image = Image.fromarray(array[..., 0] if mode == "L" else array, mode)
    buffer = io.BytesIO()
    options = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
    image.save(buffer, format={".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, suffix[1:].upper()), **options)
    return buffer.getvalue()


def _encode_16bit(rgb: np.ndarray, suffix: str, alpha: np.ndarray | None, grayscale: bool) -> bytes:
    import cv2

    if suffix not in (".png", ".tif", ".tiff"):
        raise ImageError(f"16-bit images can be written as .png or .tif, not {suffix}; change the extension")
    if grayscale and alpha is None:
        array = _to_uint16(rgb.mean(axis=2))
    else:
        array = _to_uint16(rgb[..., ::-1])  # OpenCV wants BGR
        if alpha is not None:
            array = np.concatenate([array, _to_uint16(alpha)[..., None]], axis=2)
    ok, buffer = cv2.imencode(suffix, array)
    if not ok:
        raise ImageError(f"OpenCV could not encode a 16-bit {suffix} image of shape {array.shape}")
    return buffer.tobytes()


def write_image(
    path: str | os.PathLike,
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    grayscale: bool = False,
) -> Path:
    """Write (H, W, 3) float32 [0, 1] (+ (H, W) alpha) atomically; format from the extension."""
    from desra.core.atomic import atomic_write_bytes

    path = Path(path)
    _check_rgb(rgb, alpha, path)
    atomic_write_bytes(path, encode_image(rgb, path.suffix, alpha=alpha, bit_depth=bit_depth, grayscale=grayscale))
    return path


def write_imagedata(path: str | os.PathLike, image: ImageData) -> Path:
    """Write an ImageData back with its alpha, bit depth and grey/colour layout (palette -> RGB(A))."""
    return write_image(
        path, image.rgb, alpha=image.alpha, bit_depth=image.bit_depth, grayscale=image.mode in _GREY_MODES
    )


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write an (H, W) bool mask as an 8-bit grey PNG with 0 / 255 (the fast lossless writer)."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or 0 in mask.shape:
        raise ImageError(f"a mask must be a non-empty (H, W) array, got shape {mask.shape}")
    # uint8 throughout: np.where(mask, 255, 0) would build an int64 image 8x the mask's size first.
    return write_png_uint8(path, np.multiply(mask.astype(bool), 255, dtype=np.uint8))


def read_mask(path: str | os.PathLike, *, max_pixels: int | None = None) -> np.ndarray:
    """Read a mask image -> (H, W) bool.

    Palette label files count index != 0; label images storing 0/1 (grey, max value 1) count
    value != 0; everything else counts grey level > half of the full range (0/255 masks).
    """
    path = Path(path)
    image = _open(path, max_pixels_limit(max_pixels))
    with image:
        try:
            image.load()
            _check_png_decoded(image, path)
            if image.mode in ("P", "PA"):
                return np.asarray(image.convert("P") if image.mode == "PA" else image) != 0
            if image.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L"):
                values = np.asarray(image)
                if values.max(initial=0) <= 1:
                    return values != 0
        except (OSError, SyntaxError, ValueError) as error:
            raise ImageError(f"{path} is corrupt or truncated ({error})") from None
    return read_image(path, max_pixels=max_pixels).rgb.mean(axis=2) > 0.5


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` with a known extension, sorted by name (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder} is not a folder")
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def list_unsupported_images(folder: str | os.PathLike) -> list[tuple[Path, str]]:
    """(file, one-line reason) for images directly in ``folder`` in a format desra does not read (GIF, HEIC, ...), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder} is not a folder")
    return [
        (
            p,
            (
                f"{p.suffix.lower()[1:].upper()} images are not read by desra (animations included); "
                "convert it to PNG (one file per frame) to process it"
            ),
        )
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in OTHER_IMAGE_EXTENSIONS
    ]
