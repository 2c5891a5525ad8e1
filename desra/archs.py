"""Architecture registry: how to build each SR network and how to recognise it from a state dict.

Written out by hand (no folder scanning). Each :class:`ArchSpec` knows its basicsr builder, how to
read the hyperparameters back from parameter names and shapes (so a checkpoint without metadata
still loads, and the error for an unknown one names what was seen), whether half precision is
safe, and which multiple the input size must have.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from desra.errors import ArchitectureError, DuplicateNameError, UnknownNameError

StateDict = Mapping[str, Any]  # parameter name -> torch.Tensor (anything with .shape)


def _identity(state_dict: StateDict) -> dict[str, Any]:
    return dict(state_dict)


@dataclass(frozen=True)
class ArchSpec:
    """One registered SR architecture."""

    name: str  # registry id, e.g. "rrdbnet"
    build: Callable[[dict[str, Any]], Any]  # params -> freshly initialised torch.nn.Module
    detect: Callable[[StateDict], dict[str, Any] | None]  # state dict -> params, None if not this arch
    scale: Callable[[dict[str, Any]], int]  # params -> upscaling factor
    channels: Callable[[dict[str, Any]], tuple[int, int]]  # params -> (input, output) channels
    supports_half: Callable[[dict[str, Any]], bool] = lambda params: True  # fp16 known to stay finite
    size_multiple: Callable[[dict[str, Any]], int] = lambda params: 1  # input H, W padded to this multiple
    normalize: Callable[[StateDict], dict[str, Any]] = _identity  # rename foreign key layouts to basicsr's
    derived_buffers: tuple[str, ...] = field(default=())  # buffer name suffixes the network recomputes itself


_ARCHS: dict[str, ArchSpec] = {}


def register_arch(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to the registry; a second spec with the same name raises DuplicateNameError."""
    if spec.name in _ARCHS:
        raise DuplicateNameError(f"architecture {spec.name!r} is registered twice")
    _ARCHS[spec.name] = spec
    return spec


def get_arch(name: str) -> ArchSpec:
    """The registered architecture ``name``; UnknownNameError lists the known ones."""
    try:
        return _ARCHS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown architecture {name!r}; registered: {', '.join(sorted(_ARCHS))}"
        ) from None


def list_archs() -> list[str]:
    """Names of all registered architectures, sorted."""
    return sorted(_ARCHS)


def detect_architecture(state_dict: StateDict) -> tuple[str, dict[str, Any], int]:
    """Recognise a state dict: ``(arch name, params, scale)``; ArchitectureError if nothing fits."""
    for spec in _ARCHS.values():
        params = spec.detect(spec.normalize(state_dict))
        if params is not None:
            return spec.name, params, spec.scale(params)
    sample = ", ".join(list(state_dict)[:6])
    raise ArchitectureError(
        f"could not recognise the architecture of a state dict with {len(state_dict)} tensors "
        f"(first keys: {sample}); known architectures: {', '.join(sorted(_ARCHS))}. "
        "Pass the architecture and its parameters explicitly (--arch / arch_params)."
    )


def _count(state_dict: StateDict, pattern: str) -> int:
    """Number of distinct integers captured by ``pattern`` (group 1) over the keys."""
    regex = re.compile(pattern)
    return len({m.group(1) for key in state_dict if (m := regex.match(key))})


# --- RRDBNet (ESRGAN, Real-ESRGAN, BSRGAN, LDL) ---------------------------------------------------

_KAIR_RRDB_RENAMES = (
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\."), r"body.\1.rdb\2."),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv1\."), "conv_up1."),
    (re.compile(r"^upconv2\."), "conv_up2."),
    (re.compile(r"^HRconv\."), "conv_hr."),
)


def _rrdb_normalize(state_dict: StateDict) -> dict[str, Any]:
    # KAIR (BSRNet/BSRGAN) and the ESRGAN "new arch" name the same layers differently.
    if not any(key.startswith("RRDB_trunk.") for key in state_dict):
        return dict(state_dict)
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in _KAIR_RRDB_RENAMES:
            key = pattern.sub(replacement, key)
        out[key] = value
    return out


def _rrdb_detect(sd: StateDict) -> dict[str, Any] | None:
    if "body.0.rdb1.conv1.weight" not in sd or "conv_first.weight" not in sd or "conv_last.weight" not in sd:
        return None
    num_out = int(sd["conv_last.weight"].shape[0])
    num_in = int(sd["conv_first.weight"].shape[1])
    # basicsr's RRDBNet pixel-unshuffles x2/x1 inputs, multiplying the first conv's input channels.
    ratio = num_in // num_out if num_in % num_out == 0 else 0
    scale = {1: 4, 4: 2, 16: 1}.get(ratio)
    if scale is None:
        return None
    return {
        "num_in_ch": num_in // {4: 1, 2: 4, 1: 16}[scale],
        "num_out_ch": num_out,
        "scale": scale,
        "num_feat": int(sd["conv_first.weight"].shape[0]),
        "num_block": _count(sd, r"^body\.(\d+)\."),
        "num_grow_ch": int(sd["body.0.rdb1.conv1.weight"].shape[0]),
    }


def _rrdb_build(params: dict[str, Any]):
    from desra import basicsr_adapter

    return basicsr_adapter.rrdbnet(**params)


register_arch(
    ArchSpec(
        name="rrdbnet",
        build=_rrdb_build,
        detect=_rrdb_detect,
        scale=lambda p: int(p.get("scale", 4)),
        channels=lambda p: (int(p["num_in_ch"]), int(p["num_out_ch"])),
        size_multiple=lambda p: {4: 1, 2: 2, 1: 4}[int(p.get("scale", 4))],
        normalize=_rrdb_normalize,
    )
)


# --- SRVGGNetCompact (Real-ESRGAN's compact models, desra's embedded demo pair) -------------------


def _srvgg_detect(sd: StateDict) -> dict[str, Any] | None:
    if "body.0.weight" not in sd or any(".rdb" in key for key in sd):
        return None
    conv_ids = sorted(
        int(m.group(1)) for key in sd if (m := re.match(r"^body\.(\d+)\.weight$", key)) and sd[key].ndim == 4
    )
    if len(conv_ids) < 2 or set(sd) - {f"body.{i}.{p}" for i in range(conv_ids[-1] + 1) for p in ("weight", "bias")}:
        return None
    first, last = sd[f"body.{conv_ids[0]}.weight"], sd[f"body.{conv_ids[-1]}.weight"]
    num_in, num_feat = int(first.shape[1]), int(first.shape[0])
    has_prelu = f"body.{conv_ids[0] + 1}.weight" in sd and sd[f"body.{conv_ids[0] + 1}.weight"].ndim == 1
    # ReLU and LeakyReLU have no parameters, so they cannot be told apart; Real-ESRGAN ships PReLU
    # models and trains "leakyrelu" ones, never plain "relu".
    act_type = "prelu" if has_prelu else "leakyrelu"
    # The last conv emits out_ch * upscale^2 channels; assume out_ch == in_ch as all published models do.
    upscale = math.isqrt(int(last.shape[0]) // num_in)
    if upscale * upscale * num_in != int(last.shape[0]):
        return None
    return {
        "num_in_ch": num_in,
        "num_out_ch": num_in,
        "num_feat": num_feat,
        "num_conv": len(conv_ids) - 2,
        "upscale": upscale,
        "act_type": act_type,
    }


def _srvgg_build(params: dict[str, Any]):
    from desra import basicsr_adapter

    return basicsr_adapter.srvgg(**params)


register_arch(
    ArchSpec(
        name="srvgg",
        build=_srvgg_build,
        detect=_srvgg_detect,
        scale=lambda p: int(p.get("upscale", 4)),
        channels=lambda p: (int(p.get("num_in_ch", 3)), int(p.get("num_out_ch", 3))),
    )
)


# --- SwinIR (classical, lightweight and real-world variants) --------------------------------------

_SWINIR_BLOCK = "layers.{i}.residual_group.blocks.{j}."


def _swinir_detect(sd: StateDict) -> dict[str, Any] | None:
    if "layers.0.residual_group.blocks.0.attn.relative_position_bias_table" not in sd:
        return None
    embed_dim = int(sd["conv_first.weight"].shape[0])
    in_chans = int(sd["conv_first.weight"].shape[1])
    num_layers = _count(sd, r"^layers\.(\d+)\.")
    depths = [_count(sd, rf"^layers\.{i}\.residual_group\.blocks\.(\d+)\.") for i in range(num_layers)]
    block = _SWINIR_BLOCK.format(i=0, j=0)
    table = sd[block + "attn.relative_position_bias_table"]
    window_size = (math.isqrt(int(table.shape[0])) + 1) // 2
    num_heads = [
        int(sd[_SWINIR_BLOCK.format(i=i, j=0) + "attn.relative_position_bias_table"].shape[1]) for i in range(num_layers)
    ]
    mlp_ratio = int(sd[block + "mlp.fc1.weight"].shape[0]) / embed_dim
    img_size = 64
    mask_key = _SWINIR_BLOCK.format(i=0, j=1) + "attn_mask"
    if mask_key in sd:  # shifted-window mask of the training size: (windows, ws*ws, ws*ws)
        img_size = math.isqrt(int(sd[mask_key].shape[0])) * window_size
    if "conv_up1.weight" in sd:
        upsampler, upscale = "nearest+conv", 4
    elif "conv_before_upsample.0.weight" in sd:
        upsampler = "pixelshuffle"
        convs = [sd[k] for k in sorted(sd) if re.match(r"^upsample\.\d+\.weight$", k)]
        num_feat = int(sd["conv_before_upsample.0.weight"].shape[0])
        upscale = 3 if int(convs[0].shape[0]) == 9 * num_feat else 2 ** len(convs)
    elif "upsample.0.weight" in sd:
        upsampler = "pixelshuffledirect"
        upscale = math.isqrt(int(sd["upsample.0.weight"].shape[0]) // in_chans)
    else:
        upsampler, upscale = "", 1
    return {
        "img_size": img_size,
        "in_chans": in_chans,
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": num_heads,
        "window_size": window_size,
        "mlp_ratio": mlp_ratio,
        "qkv_bias": (block + "attn.qkv.bias") in sd,
        "ape": "absolute_pos_embed" in sd,
        "patch_norm": "patch_embed.norm.weight" in sd,
        "upscale": upscale,
        "img_range": 1.0,
        "upsampler": upsampler,
        "resi_connection": "1conv" if "conv_after_body.weight" in sd else "3conv",
    }


def _swinir_build(params: dict[str, Any]):
    from desra import basicsr_adapter

    return basicsr_adapter.swinir(**params)


register_arch(
    ArchSpec(
        name="swinir",
        build=_swinir_build,
        detect=_swinir_detect,
        scale=lambda p: int(p.get("upscale", 2)),
        channels=lambda p: (int(p.get("in_chans", 3)), int(p.get("in_chans", 3))),
        # Attention logits and the -100 shift mask are not known to stay finite in fp16; bf16 is used instead.
        supports_half=lambda p: False,
        size_multiple=lambda p: int(p.get("window_size", 7)),
        # The shifted-window mask depends on the training image size and the index is a constant;
        # both are rebuilt by the network, so a checkpoint's copies are ignored.
        derived_buffers=("attn_mask", "relative_position_index"),
    )
)
