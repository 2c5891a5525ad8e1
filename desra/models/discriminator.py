"""The GAN discriminator the training loop pairs with a generator: loaded, freshly built, or saved.

It is the architecture ``unet_discriminator_sn`` of :mod:`desra.models.archs` (basicsr's
UNetDiscriminatorSN, Real-ESRGAN's U-Net with spectral norm; kind ``"discriminator"``), so
``load_model`` recognises such a file and refuses to upscale with it. The DeSRA fine-tune
(``--disc``, else the pair's :func:`shipped_discriminator`), the zoo's GAN stage and the fine-tune
benchmark all get their discriminator from :func:`load_discriminator`; the zoo ships it with
:func:`save_discriminator`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from desra.core.errors import CheckpointError
from desra.models.archs import UNET_DISCRIMINATOR

DEFAULT_PARAMS = {"num_in_ch": 3, "num_feat": 64, "skip_connection": True}
"""Real-ESRGAN's discriminator: the one a fine-tune starts from when no checkpoint is given."""


class LoadedDiscriminator(NamedTuple):
    """A discriminator ready for :func:`desra.train.loop.train` and the description a run records of it."""

    module: Any
    """torch.nn.Module: (N, C, H, W) image in [0, 1] -> (N, 1, H, W) realness logits."""
    info: dict[str, Any]
    """{"architecture": "unet_discriminator_sn", "arch_params": builder options, "source": file or "fresh"}."""


def load_discriminator(path: str | os.PathLike | None = None, *, params: Mapping[str, Any] | None = None) -> LoadedDiscriminator:
    """The U-Net discriminator from ``path`` (any desra/basicsr layout), or freshly built with ``params`` when ``path`` is None.

    A fresh one takes the global torch seed (callers seed first) and :data:`DEFAULT_PARAMS` unless
    ``params`` is given. A file's builder options come from its desra metadata, else from the
    metadata older zoo files wrote (``extra.discriminator_params``), else from its weights; whether
    it has spectral norm is always read off the weights. CheckpointError for anything else.
    """
    from desra.models.archs import detect_params, get_arch
    from desra.models.checkpoint import read_state_dict

    spec = get_arch(UNET_DISCRIMINATOR)
    if path is None:
        options = dict(DEFAULT_PARAMS if params is None else params)
        return LoadedDiscriminator(spec.build(options), _info(options, "fresh"))
    state_dict, metadata = read_state_dict(path)
    detected = detect_params(spec, state_dict)
    if detected is None:
        raise CheckpointError(
            f"{path} is not basicsr's UNetDiscriminatorSN (no conv0/conv9 weights; keys start {sorted(state_dict)[:4]}); "
            "desra fine-tunes with that discriminator (Real-ESRGAN's), or a fresh one when --disc is left out"
        )
    recorded = metadata.get("arch_params") if metadata.get("architecture") == UNET_DISCRIMINATOR else None
    legacy = (metadata.get("extra") or {}).get("discriminator_params")
    options = dict(recorded or legacy or {key: detected[key] for key in DEFAULT_PARAMS})
    options["spectral_norm"] = detected["spectral_norm"]
    module = spec.build(options)
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"discriminator {path} does not fit UNetDiscriminatorSN {options}: {str(error)[:300]}") from None
    return LoadedDiscriminator(module, _info(options, str(path)))


def shipped_discriminator(pair: str) -> Path | None:
    """The discriminator shipped for a registered pair: registry id ``<pair>-disc``, else ``weights/<pair>-disc.safetensors``; None when absent."""
    from desra.core.errors import UnknownNameError
    from desra.core.paths import weights_dir
    from desra.models import registry

    try:
        path = registry.model_path(registry.get_model(f"{pair}-disc"))
    except UnknownNameError:
        path = weights_dir() / f"{pair}-disc.safetensors"
    return path if path.is_file() else None


def _info(params: dict[str, Any], source: str) -> dict[str, Any]:
    return {"architecture": UNET_DISCRIMINATOR, "arch_params": params, "source": source}


def save_discriminator(
    path: str | os.PathLike,
    module_or_state_dict: Any,
    params: Mapping[str, Any],
    *,
    name: str = "",
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a U-Net discriminator to ``path`` (.safetensors) atomically, architecture and builder ``params`` as desra metadata."""
    from desra.models.checkpoint import write_safetensors

    payload = {"architecture": UNET_DISCRIMINATOR, "arch_params": dict(params), "role": "discriminator",
               "name": name, "extra": dict(extra_metadata or {})}
    return write_safetensors(path, module_or_state_dict, payload, "save_discriminator")
