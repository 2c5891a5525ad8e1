"""Add LR images to a curated set: SR through the pair, DeSRA-det with the chosen segmenter and class weights
(or a mask the user gives), and the item stored with a provenance that records what ran.

`desra set add` prepares each file (:func:`prepare_file`: SR and detection, in turn here by :func:`prepare_files`
or spread over a cluster by the Ray engine) and stores it (:func:`store_image`); :func:`add_image` does both for one image. The dashboard's items come from its Detect tab,
whose detections carry the same :func:`detection_provenance` into the items the Correct tab saves.
The set itself (folder and manifest) is ``desra.repair.curated``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from desra.core.errors import DesraError

if TYPE_CHECKING:  # numpy and torch stay out of import time
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    import numpy as np

    from desra.detect.pipeline import DetectConfig, Detection
    from desra.models.pairs import ModelPair
    from desra.repair.curated import CuratedSet, Item
    from desra.service.detection import Semantics


def model_provenance(models: ModelPair) -> dict[str, Any]:
    """The pair an item's SR outputs came from: both descriptors and the registered pair name (None for two files)."""
    return {"models": {"mse": models.mse.descriptor.to_dict(), "gan": models.gan.descriptor.to_dict()}, "pair": models.name}


def detection_provenance(detection: Detection, models: ModelPair) -> dict[str, Any]:
    """What made ``detection``'s mask: the models, the detect config, the segmenter and A_k table (``'none'`` when
    the semantic adjustment did not run) and why semantics did not run (None when they did)."""
    return {
        **model_provenance(models),
        "by": "desra detector",
        "detect_config": asdict(detection.config),
        "segmenter": detection.segmenter or "none",
        "class_weights": detection.class_weights or "none",
        "semantics_used": bool(detection.semantics_used),
        "semantics_note": detection.semantics_note,
    }


def add_image(
    curated: CuratedSet,
    name: str,
    lr: np.ndarray,
    models: ModelPair,
    *,
    config: DetectConfig | None = None,
    semantics: Semantics | None = None,
    mask: np.ndarray | None = None,
    label: np.ndarray | None = None,
    split: str = "train",
    tile: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> Item:
    """Super-resolve ``lr`` ((h, w, 3) float32 [0, 1]) with both models and store it in ``curated``.

    Without ``mask`` the mask is detected by ``desra.detect.pipeline.detect_lr`` with ``config`` and
    ``semantics`` (None: A_k = 1, said so in the provenance); a ``mask`` ((s*h, s*w) bool) is taken
    as the user's. ``label`` is a human-labelled mask kept for evaluate-run; ``provenance`` adds
    the caller's facts (input files). Models and SR run on ``config.device``.
    """
    prepared = prepare_image(lr, models, config=config, semantics=semantics, mask=mask, tile=tile)
    return store_image(curated, name, lr, prepared, label=label, split=split, provenance=provenance)


@dataclass(frozen=True)
class PreparedImage:
    """An LR image made ready for a set: its SR outputs, its mask and what made the mask."""

    mse: np.ndarray
    """(s*h, s*w, 3) float32 [0, 1] MSE-SR output."""
    gan: np.ndarray
    """(s*h, s*w, 3) float32 [0, 1] GAN-SR output."""
    mask: np.ndarray
    """(s*h, s*w) bool artifact mask."""
    mask_source: str
    """'detected' (DeSRA-det ran) or 'file' (the user's mask)."""
    provenance: dict[str, Any]
    """Models, detector settings and semantics, or ``by: user``."""


def prepare_image(
    lr: np.ndarray,
    models: ModelPair,
    *,
    config: DetectConfig | None = None,
    semantics: Semantics | None = None,
    mask: np.ndarray | None = None,
    tile: int | None = None,
) -> PreparedImage:
    """The work of :func:`add_image` before anything is stored: both SR outputs and the detected (or given) mask."""
    from desra.detect.pipeline import DetectConfig, detect_lr, upscale_pair

    config = config or DetectConfig()
    if mask is None:
        kwargs = semantics.detect_kwargs() if semantics is not None else {}
        detection, mse, gan = detect_lr(lr, models.mse, models.gan, config, tile=tile, **kwargs)
        return PreparedImage(mse, gan, detection.mask, "detected", detection_provenance(detection, models))
    mse, gan = upscale_pair(lr, models.mse, models.gan, device=config.device, tile=tile)
    return PreparedImage(mse, gan, mask, "file", {**model_provenance(models), "by": "user"})


def prepare_file(
    lr_file: Path,
    models: ModelPair,
    *,
    mask_file: Path | None = None,
    config: DetectConfig | None = None,
    semantics: Semantics | None = None,
    tile: int | None = None,
) -> tuple[np.ndarray, PreparedImage]:
    """Read an LR file (and the user's mask file, if any) and prepare it: -> (LR image, :class:`PreparedImage`)."""
    from desra.core.imageio import read_image, read_mask

    lr = read_image(lr_file).rgb
    mask = read_mask(mask_file) if mask_file else None
    return lr, prepare_image(lr, models, config=config, semantics=semantics, mask=mask, tile=tile)


def prepare_files(
    files: Sequence[tuple[Path, Path | None]],
    models: ModelPair,
    *,
    config: DetectConfig | None = None,
    semantics: Semantics | None = None,
    tile: int | None = None,
) -> Iterator[tuple[np.ndarray, PreparedImage] | DesraError]:
    """:func:`prepare_file` for each (LR file, mask file or None), in turn, here: the local engine of `desra set add`
    (``desra.service.ray_engine.prepare_files_ray`` is the Ray one). Yields, in input order, (LR image,
    PreparedImage) or the ``DesraError`` that file raised."""
    for lr_file, mask_file in files:
        try:
            yield prepare_file(lr_file, models, mask_file=mask_file, config=config, semantics=semantics, tile=tile)
        except DesraError as error:
            yield error


def store_image(
    curated: CuratedSet,
    name: str,
    lr: np.ndarray,
    prepared: PreparedImage,
    *,
    label: np.ndarray | None = None,
    split: str = "train",
    provenance: dict[str, Any] | None = None,
) -> Item:
    """Store a prepared LR image in ``curated`` as item ``name`` (``provenance`` adds the caller's facts)."""
    return curated.add(
        name, lr, prepared.mse, prepared.gan, prepared.mask, mask_source=prepared.mask_source,
        provenance={**prepared.provenance, **(provenance or {})}, label=label, split=split,
    )
