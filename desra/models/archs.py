"""Architecture registry: how to build each SR network and how to recognise it from a state dict.

Written out by hand (no folder scanning). Each :class:`ArchSpec` knows its basicsr builder, how to
read the hyperparameters back from parameter names and shapes (so a checkpoint without metadata
still loads, and the error for an unknown one names what was seen), whether half precision is
safe, and which multiple the input size must have.

Parameters that come from outside the tensors (file metadata, the registry, arguments) are checked
against what the tensors say by :func:`check_params` before anything is built: a 0.8 MB file whose
metadata claims a network a thousand times wider is refused, not allocated.

Each spec has a ``kind``: ``"sr"`` for the upscaling networks, ``"discriminator"`` for the GAN
discriminator the training loop pairs with them (``unet_discriminator_sn``, loaded and saved by
:mod:`desra.models.discriminator`). Detection and listing look at SR networks unless asked for
another kind, so a discriminator is never taken for an upscaler.

The module is long because it is one table: the registry functions (about 230 lines) and one spec
per architecture with its detection, parameter evidence and weight bound; an architecture's parts
are read together, so they are kept side by side rather than a module per architecture.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from desra.core.errors import ArchitectureError, DuplicateNameError, UnknownNameError

StateDict = Mapping[str, Any]  # parameter name -> torch.Tensor (anything with .shape)


def _identity(state_dict: StateDict) -> dict[str, Any]:
    return dict(state_dict)


def _keep_detected(detected: dict[str, Any], claimed: Mapping[str, Any], state_dict: StateDict) -> dict[str, Any]:
    return detected


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
    # Builder options no tensor shape reveals (dropout rates, ...): passed through unchecked.
    unchecked: tuple[str, ...] = field(default=())
    # (detected, claimed, state dict) -> detected, with what the tensors cannot tell apart taken from the claim.
    reconcile: Callable[[dict[str, Any], Mapping[str, Any], StateDict], dict[str, Any]] = _keep_detected
    # Parameter -> where in the tensors its value is read, for the mismatch message.
    evidence: Mapping[str, str] = field(default_factory=dict)
    # Regex of the keys this architecture owns, for a detect() that refuses stray keys: check_params
    # reads the parameters from these alone, so the key check after building can name the strays.
    own_keys: str = ""
    # params -> a lower bound of the weights the built network holds: a state dict with fewer
    # elements cannot fill it, so a few tiny tensors under many block names (detected as a deep
    # network) are refused before the network is allocated.
    min_weights: Callable[[dict[str, Any]], int] | None = None
    kind: str = "sr"  # one of KINDS: an upscaling network, or the discriminator GAN training pairs with one


KINDS = ("sr", "discriminator")
"""What a registered network is for: ``sr`` upscales images, ``discriminator`` judges them in GAN training."""

UNET_DISCRIMINATOR = "unet_discriminator_sn"
"""Registry name of Real-ESRGAN's U-Net discriminator (basicsr's UNetDiscriminatorSN), the one stored in desra's files."""

_ARCHS: dict[str, ArchSpec] = {}


def register_arch(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to the registry; a second spec with the same name raises DuplicateNameError."""
    if spec.name in _ARCHS:
        raise DuplicateNameError(f"architecture {spec.name!r} is registered twice")
    if spec.kind not in KINDS:
        raise ArchitectureError(f"architecture {spec.name!r} has kind {spec.kind!r}; expected one of {KINDS}")
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


def detect_params(spec: ArchSpec, state_dict: StateDict) -> dict[str, Any] | None:
    """``spec.detect(state_dict)``, with tensors of unexpected rank or shape (a hostile file's) meaning "not this architecture"."""
    try:
        return spec.detect(state_dict)
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, AttributeError):
        return None


def list_archs(kind: str = "sr") -> list[str]:
    """Names of the registered architectures of ``kind`` (one of :data:`KINDS`), sorted."""
    return sorted(name for name, spec in _ARCHS.items() if spec.kind == kind)


def detect_architecture(state_dict: StateDict, *, kind: str = "sr") -> tuple[str, dict[str, Any], int]:
    """Recognise a state dict among the architectures of ``kind``: ``(arch name, params, scale)``; ArchitectureError if nothing fits."""
    for spec in _ARCHS.values():
        if spec.kind != kind:
            continue
        params = detect_params(spec, spec.normalize(state_dict))
        if params is not None:
            return spec.name, params, spec.scale(params)
    sample = ", ".join(list(state_dict)[:6])
    raise ArchitectureError(
        f"could not recognise the architecture of a state dict with {len(state_dict)} tensors "
        f"(first keys: {sample}); known architectures: {', '.join(list_archs(kind))}. "
        "Save the model with desra (its metadata names the architecture), or load it with architecture= and arch_params=."
    )


def other_kind(architecture: str | None, state_dict: StateDict, kind: str = "sr") -> ArchSpec | None:
    """The registered architecture not of ``kind`` that ``architecture`` names or ``state_dict`` matches, else None.

    ``load_model`` asks this before building an upscaler: a discriminator file must be refused, not
    detected as something else.
    """
    if architecture in _ARCHS and _ARCHS[architecture].kind != kind:
        return _ARCHS[architecture]
    for spec in _ARCHS.values():
        if spec.kind != kind and detect_params(spec, spec.normalize(state_dict)) is not None:
            return spec
    return None


def _brief(value: Any, limit: int = 120) -> str:
    """repr() cut to ``limit`` characters: a hostile file's claims must not turn an error into pages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same(claimed: Any, detected: Any) -> bool:
    """Whether a claimed parameter value equals the detected one (types included: "64" is not 64, True is not 1)."""
    if isinstance(claimed, bool) or isinstance(detected, bool):
        return isinstance(claimed, bool) and isinstance(detected, bool) and claimed == detected
    if isinstance(detected, float) and isinstance(claimed, (int, float)):
        return math.isclose(float(claimed), detected, rel_tol=1e-6)
    if isinstance(detected, (list, tuple)):
        return isinstance(claimed, (list, tuple)) and len(claimed) == len(detected) and all(
            _same(c, d) for c, d in zip(claimed, detected)
        )
    return type(claimed) is type(detected) and claimed == detected


def check_params(name: str, claimed: Mapping[str, Any], state_dict: StateDict, *, source: str = "") -> dict[str, Any]:
    """Check parameters from metadata/registry/arguments against the tensors BEFORE building -> the params to build.

    Every claimed parameter that the tensor shapes or key counts determine must equal what they
    say; names the builder does not take are refused. ArchitectureError names each disagreement.
    """
    spec = get_arch(name)
    what = source or "the state dict"
    if not isinstance(claimed, Mapping):
        raise ArchitectureError(f"{what}: {name} parameters must be a mapping of names to values, got {type(claimed).__name__}")
    state_dict = spec.normalize(state_dict)
    detected = detect_params(spec, state_dict)
    if detected is None and spec.own_keys:
        own = re.compile(spec.own_keys)
        detected = detect_params(spec, {k: v for k, v in state_dict.items() if own.match(k)})
    if detected is None:
        raise ArchitectureError(
            f"{what} does not look like a {name} network (first keys: {', '.join(list(state_dict)[:6])}); "
            f"its parameters {_brief(dict(claimed))} cannot be checked against the tensors, so nothing was built"
        )
    detected = spec.reconcile(dict(detected), claimed, state_dict)
    unknown = sorted(k for k in claimed if k not in detected and k not in spec.unchecked)
    if unknown:
        raise ArchitectureError(
            f"{what}: {name} has no parameter(s) {_brief(unknown)}; "
            f"known: {', '.join(sorted({*detected, *spec.unchecked}))}"
        )
    wrong = [
        f"{key}={_brief(claimed[key], 60)} but the tensors say {_brief(detected[key], 60)}"
        + (f" ({spec.evidence[key]})" if key in spec.evidence else "")
        for key in claimed
        if key in detected and not _same(claimed[key], detected[key])
    ]
    if wrong:
        raise ArchitectureError(
            f"{what}: the {name} parameters disagree with the tensors in the file: {'; '.join(wrong)}; "
            "nothing was built. Fix or drop the parameters (metadata, registry entry or arguments)"
        )
    # Parameters the claim leaves out take the builder's defaults, which are modest; the key check after building catches them.
    return dict(claimed)


BUDGET_SLACK = 1_000_000  # weights a network may hold beyond twice the file's before check_weight_budget refuses


def check_weight_budget(name: str, params: Mapping[str, Any], state_dict: StateDict, *, source: str = "") -> None:
    """ArchitectureError when ``params`` describe a network with more weights than ``state_dict`` holds (checked before building)."""
    spec = get_arch(name)
    if spec.min_weights is None:
        return
    try:
        needed = int(spec.min_weights(dict(params)))
    except (KeyError, TypeError, ValueError):
        return  # parameters of unexpected shape: the builder reports them itself
    held = sum(int(getattr(t, "numel", lambda: 0)()) for t in state_dict.values())
    # Slack of 2x + 1 M weights (4 MB): a file missing a tensor or two still reaches the key check
    # after building, which names them; only a file far smaller than its network is stopped here.
    if needed > 2 * held + BUDGET_SLACK:
        raise ArchitectureError(
            f"{source or 'the state dict'}: {name} {_brief(dict(params))} would hold at least {needed} weights "
            f"({needed * 4 / 1e9:.2f} GB as float32) but the file holds only {held}; its tensors do not describe "
            "that network, so nothing was built"
        )


def _conv(cin: int, cout: int, k: int = 3) -> int:
    """Weights and bias of a k x k convolution."""
    return cin * cout * k * k + cout


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


def _rrdb_weights(p: dict[str, Any]) -> int:
    nf, gc, blocks = int(p.get("num_feat", 64)), int(p.get("num_grow_ch", 32)), int(p.get("num_block", 23))
    cin = int(p["num_in_ch"]) * {4: 1, 2: 4, 1: 16}[int(p.get("scale", 4))]
    rdb = sum(_conv(nf + i * gc, gc) for i in range(4)) + _conv(nf + 4 * gc, nf)
    return _conv(cin, nf) + blocks * 3 * rdb + 4 * _conv(nf, nf) + _conv(nf, int(p["num_out_ch"]))


def _rrdb_build(params: dict[str, Any]):
    from desra.models import basicsr_adapter

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
        min_weights=_rrdb_weights,
        evidence={
            "num_feat": "output channels of conv_first.weight",
            "num_block": "number of body.N blocks",
            "num_grow_ch": "output channels of body.0.rdb1.conv1.weight",
            "num_in_ch": "input channels of conv_first.weight, after the pixel-unshuffle of x1/x2",
            "num_out_ch": "output channels of conv_last.weight",
            "scale": "ratio of conv_first's input channels to conv_last's output channels",
        },
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


def _srvgg_reconcile(detected: dict[str, Any], claimed: Mapping[str, Any], sd: StateDict) -> dict[str, Any]:
    # ReLU and LeakyReLU have no weights: a claim of either is as good as detection gets.
    if detected["act_type"] != "prelu" and claimed.get("act_type") in ("relu", "leakyrelu"):
        detected["act_type"] = claimed["act_type"]
    # The last conv holds out_ch * upscale^2 channels; detection assumed out_ch == in_ch, a claim may say otherwise.
    out_ch = claimed.get("num_out_ch")
    if isinstance(out_ch, int) and not isinstance(out_ch, bool) and out_ch > 0 and out_ch != detected["num_out_ch"]:
        last = max(int(m.group(1)) for key in sd if (m := re.match(r"^body\.(\d+)\.weight$", key)) and sd[key].ndim == 4)
        channels = int(sd[f"body.{last}.weight"].shape[0])
        upscale = math.isqrt(channels // out_ch)
        if upscale * upscale * out_ch == channels:
            detected["num_out_ch"], detected["upscale"] = out_ch, upscale
    return detected


def _srvgg_weights(p: dict[str, Any]) -> int:
    nf, convs = int(p.get("num_feat", 64)), int(p.get("num_conv", 16))
    act = nf if p.get("act_type", "prelu") == "prelu" else 0
    last = _conv(nf, int(p.get("num_out_ch", 3)) * int(p.get("upscale", 4)) ** 2)
    return _conv(int(p.get("num_in_ch", 3)), nf) + act + convs * (_conv(nf, nf) + act) + last


def _srvgg_build(params: dict[str, Any]):
    from desra.models import basicsr_adapter

    return basicsr_adapter.srvgg(**params)


register_arch(
    ArchSpec(
        name="srvgg",
        build=_srvgg_build,
        detect=_srvgg_detect,
        scale=lambda p: int(p.get("upscale", 4)),
        channels=lambda p: (int(p.get("num_in_ch", 3)), int(p.get("num_out_ch", 3))),
        reconcile=_srvgg_reconcile,
        min_weights=_srvgg_weights,
        own_keys=r"^body\.\d+\.(weight|bias)$",
        evidence={
            "num_feat": "output channels of body.0.weight",
            "num_conv": "number of body.N convolutions minus the first and the last",
            "num_in_ch": "input channels of body.0.weight",
            "num_out_ch": "output channels of the last conv / upscale^2",
            "upscale": "output channels of the last conv / num_out_ch, square root",
            "act_type": "PReLU weights present or not",
        },
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


SWINIR_MAX_IMG_SIZE = 256  # training size accepted without an attn_mask in the file to confirm it


def _swinir_reconcile(detected: dict[str, Any], claimed: Mapping[str, Any], sd: StateDict) -> dict[str, Any]:
    # The shifted-window mask is rebuilt from img_size (a file trained at 32 may be loaded at 64), so
    # the claim is free, but the network allocates (img_size / window)^2 windows per shifted block
    # from it: beyond a modest size (10^4 would be gigabytes) it must match the mask stored in the file.
    size = claimed.get("img_size")
    if isinstance(size, int) and not isinstance(size, bool) and 0 < size <= SWINIR_MAX_IMG_SIZE:
        detected["img_size"] = size
    # img_range scales the input, it has no tensor of its own.
    if isinstance(claimed.get("img_range"), (int, float)) and not isinstance(claimed.get("img_range"), bool):
        detected["img_range"] = float(claimed["img_range"])
    return detected


def _swinir_weights(p: dict[str, Any]) -> int:
    # A lower bound: each transformer block's qkv, projection and MLP matrices (biases, norms and
    # the upsampler left out), which dominate the network.
    dim = int(p.get("embed_dim", 96))
    hidden = int(dim * float(p.get("mlp_ratio", 4.0)))
    blocks = sum(int(d) for d in p.get("depths", (6, 6, 6, 6)))
    return blocks * (4 * dim * dim + 2 * dim * hidden)


def _swinir_build(params: dict[str, Any]):
    from desra.models import basicsr_adapter

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
        unchecked=("qk_scale", "drop_rate", "attn_drop_rate", "drop_path_rate", "use_checkpoint", "patch_size"),
        reconcile=_swinir_reconcile,
        min_weights=_swinir_weights,
        evidence={
            "embed_dim": "output channels of conv_first.weight",
            "in_chans": "input channels of conv_first.weight",
            "depths": "number of layers.I.residual_group.blocks.J per layer",
            "num_heads": "columns of each layer's relative_position_bias_table",
            "window_size": "rows of relative_position_bias_table = (2 * window - 1)^2",
            "mlp_ratio": "mlp.fc1 output channels / embed_dim",
            "img_size": f"attn_mask windows x window size; any size up to {SWINIR_MAX_IMG_SIZE} is accepted",
            "upscale": "the upsampler's convolutions",
        },
    )
)


# --- UNetDiscriminatorSN (Real-ESRGAN's U-Net discriminator; kind "discriminator") ------------------


def _unet_disc_detect(sd: StateDict) -> dict[str, Any] | None:
    if "conv0.weight" not in sd or "conv9.weight" not in sd:
        return None
    return {
        "num_in_ch": int(sd["conv0.weight"].shape[1]),
        "num_feat": int(sd["conv0.weight"].shape[0]),
        # Skip connections add no weights: every published U-Net discriminator uses them.
        "skip_connection": True,
        # The zoo can train the same U-Net with plain convolutions (no weight_orig / weight_u keys).
        "spectral_norm": any(key.endswith("weight_orig") for key in sd),
    }


def _unet_disc_build(params: dict[str, Any]):
    from desra.models import basicsr_adapter

    return basicsr_adapter.unet_discriminator_sn(**params)


register_arch(
    ArchSpec(
        name=UNET_DISCRIMINATOR,
        build=_unet_disc_build,
        detect=_unet_disc_detect,
        scale=lambda p: 1,
        channels=lambda p: (int(p.get("num_in_ch", 3)), 1),
        kind="discriminator",
        unchecked=("skip_connection",),
        evidence={
            "num_in_ch": "input channels of conv0.weight",
            "num_feat": "output channels of conv0.weight",
            "spectral_norm": "weight_orig keys present or not",
        },
    )
)
