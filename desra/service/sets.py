"""Add LR images to a curated set: SR through the pair, DeSRA-det with the chosen segmenter and class weights
(or a mask the user gives), and the item stored with a provenance that records what ran.

`desra set add` calls :func:`add_image` per file. The dashboard's items come from its Detect tab,
whose detections carry the same :func:`detection_provenance` into the items the Correct tab saves.
The set itself (folder and manifest) is ``desra.repair.curated``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and torch stay out of import time
    import numpy as np

    from desra.detect.pipeline import DetectConfig, Detection
    from desra.repair.curated import CuratedSet, Item
    from desra.service.detection import Semantics
    from desra.service.pairs import ModelPair


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
    from desra.detect.pipeline import DetectConfig, detect_lr
    from desra.models.inference import upscale

    config = config or DetectConfig()
    if mask is None:
        kwargs = semantics.detect_kwargs() if semantics is not None else {}
        detection, mse, gan = detect_lr(lr, models.mse, models.gan, config, tile=tile, **kwargs)
        mask, source, made = detection.mask, "detected", detection_provenance(detection, models)
    else:
        mse = upscale(models.mse, lr, tile=tile, device=config.device)
        gan = upscale(models.gan, lr, tile=tile, device=config.device)
        source, made = "file", {**model_provenance(models), "by": "user"}
    return curated.add(
        name, lr, mse, gan, mask, mask_source=source, provenance={**made, **(provenance or {})}, label=label, split=split,
    )
