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
def _loaded_pair(pair: str | None, mse_path: str | None, gan_path: str | None) -> Any:
    from desra.models.pairs import choose_pair

    return choose_pair(pair, mse_path, gan_path)


def pair_models(choice: str | None, mse_upload: str | None = None, gan_upload: str | None = None) -> Any:
    """The ``desra.models.pairs.ModelPair`` of a pair choice, loaded once per server; ConfigError when it cannot be honoured."""
    from desra.core.errors import ConfigError

    if choice == UPLOADED:
        if not mse_upload or not gan_upload:
            raise ConfigError(
                "'uploaded checkpoints' needs both files: the MSE (L1) model and the GAN model fine-tuned from it "
                "(DeSRA compares the two; a GAN model alone cannot be checked)"
            )
        return _loaded_pair(None, str(Path(mse_upload)), str(Path(gan_upload)))
    if not choice:
        raise ConfigError("no model pair chosen; pick the embedded pair or upload an MSE and a GAN checkpoint")
    return _loaded_pair(choice, None, None)


def default_segmenter() -> str:
    """The Segmenter choice a tab starts with: the runs' default (the paper's SegFormer, ``b5``)."""
    from desra.service.detection import DEFAULT_SEGMENTER

    return DEFAULT_SEGMENTER
