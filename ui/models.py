"""Which model pairs the dashboard offers, and loading them once per server (models are read-only)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

UPLOADED = "uploaded checkpoints"
"""Pair choice meaning: use the MSE and GAN checkpoint files the user uploaded."""


def present_pairs() -> list[str]:
    """Registered pairs whose both models load here without a download (the embedded pair first).

    Published models converted from an installed package, or rebuilt from a shipped delta, count:
    they are converted on first use.
    """
    from desra.models import registry

    return [
        pair.name
        for pair in registry.list_pairs()
        if registry.is_available(registry.get_model(pair.mse)) and registry.is_available(registry.get_model(pair.gan))
    ]


@functools.lru_cache(maxsize=4)
def _registered_pair(name: str) -> tuple[Any, Any]:
    from desra.models.checkpoint import load_pair

    return load_pair(name)


@functools.lru_cache(maxsize=4)
def _uploaded_pair(mse_path: str, gan_path: str) -> tuple[Any, Any]:
    from desra.models.checkpoint import load_model

    return load_model(mse_path, role="mse"), load_model(gan_path, role="gan")


def pair_models(choice: str | None, mse_upload: str | None = None, gan_upload: str | None = None) -> tuple[Any, Any]:
    """(mse SRModel, gan SRModel) for a pair choice; ConfigError when the choice cannot be honoured."""
    from desra.core.errors import ConfigError, PairMismatchError

    if choice == UPLOADED:
        if not mse_upload or not gan_upload:
            raise ConfigError(
                "'uploaded checkpoints' needs both files: the MSE (L1) model and the GAN model fine-tuned from it "
                "(DeSRA compares the two; a GAN model alone cannot be checked)"
            )
        mse, gan = _uploaded_pair(str(Path(mse_upload)), str(Path(gan_upload)))
        if mse.descriptor.scale != gan.descriptor.scale:
            raise PairMismatchError(
                f"the uploaded MSE model is x{mse.descriptor.scale} but the GAN model is x{gan.descriptor.scale}; "
                "upload the two sides of one pair"
            )
        return mse, gan
    if not choice:
        raise ConfigError("no model pair chosen; pick the embedded pair or upload an MSE and a GAN checkpoint")
    return _registered_pair(choice)


def default_segmenter() -> str:
    """The paper's SegFormer (``b5``). Without its weights the load fails fast and the banner says why."""
    return "b5"


@functools.lru_cache(maxsize=2)
def _segmenter(spec: str) -> Any:
    from desra.detect.semantic import load_segmenter

    return load_segmenter(spec)


def segmenter_for(spec: str | None) -> tuple[Any, str | None]:
    """(segmenter or None, why semantics will not run) for a Segmenter choice; a failed load is not cached."""
    from desra.core.errors import SegmenterError
    from desra.detect.semantic import resolve_segmenter

    if spec is None or spec.strip().lower() in ("", "none", "off"):
        return resolve_segmenter(spec)
    try:
        return _segmenter(spec.strip()), None
    except SegmenterError as error:
        return None, f"{error}; continuing without semantic adjustment (A_k = 1)"
