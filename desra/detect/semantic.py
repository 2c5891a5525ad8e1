"""Semantic adjustment of D (DeSRA Eq. 8-9): SegFormer on ADE20K and per-class weights A_k.

Textured classes (trees, grass) legitimately get more texture from a GAN than smooth ones (sky,
walls), so D is divided by a per-class weight ``A_k = P85(D_k)`` before thresholding. The
segmenter is SegFormer through transformers (hub id or local folder); the weights ship as the
authors' table ``desra/data/ade20k_desra_class_bins.tsv`` (``A_k = (20 - bin_k) / 20``).

No network here: :func:`load_segmenter` fails fast (cache check, then a short connection probe)
with a :class:`~desra.core.errors.SegmenterError` that callers turn into a visible "semantics not
used" note rather than a silent fallback.
"""

from __future__ import annotations

import csv
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from desra.core.errors import ConfigError, PairMismatchError, SegmenterError

DEFAULT_SEGMENTER = "nvidia/segformer-b5-finetuned-ade-640-640"
"""The authors' choice: SegFormer MiT-B5 trained on ADE20K at 640x640."""
FAST_SEGMENTER = "nvidia/segformer-b0-finetuned-ade-512-512"
"""The fast option: MiT-B0 (3.75 M parameters) at 512x512."""
SEGMENTER_ALIASES = {"b5": DEFAULT_SEGMENTER, "b0": FAST_SEGMENTER}
NONE_SPECS = ("none", "off", "")

# The 150 ADE20K (SceneParse150) classes in label-index order, as mmsegmentation and the
# authors' table name them. Index i here is index i of the SegFormer logits.
ADE20K_CLASSES: tuple[str, ...] = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table",
    "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island",
    "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light",
    "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman",
    "bottle", "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy",
    "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag",
    "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot",
    "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce",
    "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)

# Most full-size logit values held at once while resizing (32 M floats = 128 MB).
UPSAMPLE_BUDGET = 32_000_000

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def normalise_class_name(name: str) -> str:
    """Comparable form of an ADE20K class name: lower case, first synonym, single spaces."""
    first = name.replace(";", ",").split(",")[0]
    return " ".join(first.lower().replace("_", " ").split())


@dataclass(frozen=True)
class ClassWeights:
    """Per-class weights A_k for the 150 ADE20K classes."""

    weights: np.ndarray
    """(150,) float32 in (0, 1]: A_k, the divisor of D for pixels of class k."""
    bins: tuple[int | None, ...]
    """The authors' bin index per class (A = (20 - bin) / 20), None where a table gives none."""
    source: str
    """Where the table came from (file path or 'default')."""
    flagged: tuple[bool, ...] = ()
    """Per class: True where calibration had too few pixels and kept the default weight."""


def load_class_weights(path: str | os.PathLike) -> ClassWeights:
    """Read a class-weight TSV (columns ``index``, ``adjustment_weight_A``, optional ``class``, ``bin``, ``flag``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read class-weight table {path}: {error}") from error
    rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
    needed = {"index", "adjustment_weight_A"}
    if not rows or not needed <= set(rows[0]):
        have = ", ".join(rows[0]) if rows else "no rows"
        raise ConfigError(
            f"class-weight table {path} needs tab-separated columns index and adjustment_weight_A "
            f"(found: {have}); see desra/data/ade20k_desra_class_bins.tsv for the format"
        )
    weights = np.full(len(ADE20K_CLASSES), np.nan, dtype=np.float32)
    bins: list[int | None] = [None] * len(ADE20K_CLASSES)
    flagged = [False] * len(ADE20K_CLASSES)
    for line, row in enumerate(rows, start=2):
        try:
            k = int(row["index"])
            a = float(row["adjustment_weight_A"])
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{path} line {line}: index/adjustment_weight_A not numeric ({error})") from error
        if not 0 <= k < len(ADE20K_CLASSES):
            raise ConfigError(f"{path} line {line}: class index {k} outside 0..{len(ADE20K_CLASSES) - 1}")
        if not 0.0 < a <= 1.0:
            raise ConfigError(f"{path} line {line}: weight {a} for class {k} must be in (0, 1]")
        name = row.get("class")
        if name and normalise_class_name(name) != normalise_class_name(ADE20K_CLASSES[k]):
            raise ConfigError(
                f"{path} line {line}: class index {k} is named {name!r} but ADE20K index {k} is "
                f"{ADE20K_CLASSES[k]!r}; the table must follow the 150 ADE20K classes in order"
            )
        weights[k] = a
        if row.get("bin") not in (None, ""):
            bins[k] = int(row["bin"])
        flagged[k] = (row.get("flag") or "").strip() not in ("", "calibrated")
    missing = np.flatnonzero(np.isnan(weights))
    if missing.size:
        raise ConfigError(
            f"class-weight table {path} has no weight for {missing.size} of the 150 ADE20K classes "
            f"(first missing index: {missing[0]}); list all 150"
        )
    return ClassWeights(weights=weights, bins=tuple(bins), source=str(path), flagged=tuple(flagged))


def default_class_weights_path() -> Path:
    """The authors' table shipped with desra (RRDB-family models)."""
    return Path(__file__).resolve().parents[1] / "data" / "ade20k_desra_class_bins.tsv"


def default_class_weights() -> ClassWeights:
    """The authors' published A_k table (sky 1.00, building 0.80, tree 0.75, ...)."""
    return load_class_weights(default_class_weights_path())


def adjust(d: np.ndarray, labels: np.ndarray, weights: ClassWeights) -> np.ndarray:
    """Semantic-adjusted map ``clip(D / A_k, 0, 1)``: D (h, w) float32 and labels (h, w) int -> (h, w) float32."""
    if d.shape != labels.shape:
        raise PairMismatchError(
            f"D map {d.shape} and label map {labels.shape} must have the same shape; "
            "segment the image the D map was computed on and crop its labels to the D map's valid region"
        )
    a = weights.weights[labels]
    # DeSRA Eq. 9: normalise D by the class's typical value so textured classes are not flagged.
    return np.clip(d / a, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class Segmenter:
    """A loaded SegFormer for ADE20K: the module plus what preprocessing needs."""

    model: Any
    """transformers SegformerForSemanticSegmentation in eval mode."""
    name: str
    """Hub id or local folder it was loaded from."""
    device: str
    """Torch device the model sits on."""
    short_side: int
    """Inputs are resized (aspect kept) so the shorter side has this many pixels."""


def _hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint answers a TCP connection within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(_hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _short_side(source: str, folder: Path | None) -> int:
    if folder is not None and (folder / "preprocessor_config.json").is_file():
        import json

        size = json.loads((folder / "preprocessor_config.json").read_text()).get("size", {})
        if isinstance(size, dict) and (size.get("shortest_edge") or size.get("height")):
            return int(size.get("shortest_edge") or min(size["height"], size.get("width", size["height"])))
    return 640 if "640" in source else 512


def _check_ade20k(model, source: str) -> None:
    labels = getattr(model.config, "id2label", {}) or {}
    if len(labels) != len(ADE20K_CLASSES):
        raise SegmenterError(
            f"segmenter {source!r} predicts {len(labels)} classes; DeSRA's class weights need a model "
            f"trained on ADE20K's 150 classes (e.g. {DEFAULT_SEGMENTER})"
        )
    names = [normalise_class_name(str(labels.get(i, labels.get(str(i), "")))) for i in range(len(ADE20K_CLASSES))]
    wrong = [i for i, n in enumerate(names) if n != normalise_class_name(ADE20K_CLASSES[i])]
    if wrong:
        i = wrong[0]
        raise SegmenterError(
            f"segmenter {source!r} labels are not the ADE20K classes in order: index {i} is "
            f"{names[i]!r}, expected {ADE20K_CLASSES[i]!r} ({len(wrong)} of 150 differ); set "
            f"config.id2label to the ADE20K names or use an ADE20K SegFormer"
        )


def load_segmenter(spec: str | None, *, device: str = "cpu", probe_timeout: float = 3.0) -> Segmenter | None:
    """Load SegFormer from a hub id, alias (``b5``/``b0``) or local folder; ``None``/'none' -> None.

    Raises :class:`SegmenterError` quickly when the weights are neither local nor downloadable.
    """
    if spec is None or spec.strip().lower() in NONE_SPECS:
        return None
    source = SEGMENTER_ALIASES.get(spec.strip().lower(), spec)
    folder = Path(source).expanduser()
    kwargs: dict[str, Any] = {}
    if folder.is_dir():
        source_arg = str(folder)
        kwargs["local_files_only"] = True
    elif folder.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise SegmenterError(
            f"segmenter folder {source!r} does not exist or is not a folder; pass a folder written by "
            f"save_pretrained, a hub id like {DEFAULT_SEGMENTER!r}, or 'none'"
        )
    else:
        folder = None
        source_arg = source
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(source, "config.json"), str):
            kwargs["local_files_only"] = True
        elif not hub_reachable(probe_timeout):
            raise SegmenterError(
                f"SegFormer weights {source!r} are not in the local Hugging Face cache and "
                f"{_hub_endpoint()} cannot be reached (offline). Download them on a connected machine "
                f"(`hf download {source}`) and copy the cache, or pass --segmenter PATH to a folder "
                f"saved with save_pretrained, or --segmenter none"
            )
    try:
        from transformers import SegformerForSemanticSegmentation

        model = SegformerForSemanticSegmentation.from_pretrained(source_arg, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise SegmenterError(f"could not load SegFormer {source!r}: {error}") from error
    _check_ade20k(model, source)
    model.eval().to(device)
    return Segmenter(model=model, name=source, device=device, short_side=_short_side(source, folder))


def resolve_segmenter(spec: str | None, *, device: str = "cpu") -> tuple[Segmenter | None, str | None]:
    """Try :func:`load_segmenter`; return ``(segmenter, None)`` or ``(None, why semantics will not run)``."""
    if spec is None or spec.strip().lower() in NONE_SPECS:
        return None, "semantic adjustment turned off (--segmenter none): A_k = 1 for every class"
    try:
        return load_segmenter(spec, device=device), None
    except SegmenterError as error:
        return None, f"{error}; continuing without semantic adjustment (A_k = 1)"


def _model_input(image: np.ndarray, short_side: int) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = short_side / min(h, w)
    # Keep the aspect ratio; cap the long side so very wide images stay affordable.
    nh = max(32, int(round(min(h * scale, 4 * short_side) / 32)) * 32)
    nw = max(32, int(round(min(w * scale, 4 * short_side) / 32)) * 32)
    resized = cv2.resize(np.clip(image, 0, 1).astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return ((resized - _IMAGENET_MEAN) / _IMAGENET_STD).transpose(2, 0, 1)[None].copy()


def segment(
    segmenter: Segmenter, image: np.ndarray, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """ADE20K label map of an image: ``(H, W, 3)`` float32 [0, 1] -> ``(H, W)`` int32 in 0..149."""
    import torch

    h, w = image.shape[:2]
    x = torch.from_numpy(_model_input(image, segmenter.short_side)).to(segmenter.device)
    with torch.no_grad():
        logits = segmenter.model(pixel_values=x).logits[0].float()
        # Logits are bilinearly resized to the image, then argmax; done in channel groups with a
        # running maximum so a 4K image does not need all 150 full-size planes at once.
        group = max(1, min(logits.shape[0], UPSAMPLE_BUDGET // max(1, h * w)))
        best = torch.full((h, w), -torch.inf, device=logits.device)
        labels = torch.zeros((h, w), dtype=torch.int32, device=logits.device)
        total = logits.shape[0]
        for start in range(0, total, group):
            part = torch.nn.functional.interpolate(
                logits[None, start : start + group], size=(h, w), mode="bilinear", align_corners=False
            )[0]
            value, index = part.max(dim=0)
            better = value > best
            best = torch.where(better, value, best)
            labels = torch.where(better, index.to(torch.int32) + start, labels)
            if progress:
                progress(min(start + group, total), total)
    return labels.cpu().numpy()
