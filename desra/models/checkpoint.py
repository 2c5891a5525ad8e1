"""Loading and saving SR checkpoints, returning a typed description of the network.

Files read: ``.pth``/``.pt`` (basicsr layouts with ``params_ema`` or ``params``, plain state dicts,
``module.`` prefixes from DataParallel) and ``.safetensors``. Pickles are only ever opened with
``torch.load(weights_only=True)``: a file whose unpickling would call anything but tensor
constructors is refused with :class:`UnsafeCheckpointError` before any of its code runs.

Files written: ``.safetensors`` with a metadata entry ``desra`` holding the JSON of the
:class:`ModelDescriptor` (so the architecture never has to be guessed from a file name again), and
basicsr-style ``.pth`` files for tools that expect them.

Files are untrusted input: metadata that is not a JSON object of the expected types, parameters
that disagree with the tensors (checked before the network is built, so a small file cannot make
desra allocate a large network), and weights that are NaN or infinite are all refused with a
:class:`CheckpointError` naming what is wrong.

The module runs past 400 lines because it is one concern, a checkpoint file <-> a described SR
network, whose every refusal of an untrusted file carries its own message; the GAN discriminator's
files are :mod:`desra.models.discriminator`'s, and a pair's loading is :mod:`desra.models.pairs`'.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desra.core.errors import (
    ArchitectureError,
    CheckpointError,
    ConfigError,
    PairMismatchError,
    UnknownNameError,
    UnsafeCheckpointError,
)

METADATA_KEY = "desra"
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
# Keys under which training frameworks nest the generator's weights, most preferred first
# (basicsr/Real-ESRGAN/SwinIR keep the EMA copy under params_ema; it is the one they publish;
# desra's own training checkpoints keep "ema" and "generator").
NESTED_KEYS = ("params_ema", "params", "ema", "generator", "state_dict")
ROLES = ("mse", "gan", "unknown")


@dataclass(frozen=True)
class ModelDescriptor:
    """What a loaded SR network is; everything callers need without touching the state dict."""

    name: str  # registry id or file stem
    architecture: str  # key in desra.models.archs, e.g. "rrdbnet"
    arch_params: dict[str, Any]  # keyword arguments of the architecture's builder
    scale: int  # output size / input size
    in_channels: int  # channels the network takes (3 for RGB)
    out_channels: int  # channels it returns
    role: str = "unknown"  # "mse" (L1/MSE-trained parent), "gan" or "unknown"
    supports_half: bool = True  # fp16 is known to give finite outputs
    size_multiple: int = 1  # input H and W are padded to a multiple of this
    source: str = ""  # file the weights came from

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelDescriptor:
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class SRModel:
    """A ready-to-run SR network: its description and the module (eval mode) on its device."""

    descriptor: ModelDescriptor  # what the network is
    module: Any = field(repr=False)  # torch.nn.Module in eval mode, (N,C,H,W) [0,1] -> (N,C,sH,sW)


def describe(architecture: str, arch_params: dict[str, Any], *, name: str = "", role: str = "unknown", source: str = "") -> ModelDescriptor:
    """Build the descriptor of ``architecture`` with ``arch_params`` (scale, channels, size rules from desra.models.archs)."""
    from desra.models.archs import get_arch

    if role not in ROLES:
        raise ConfigError(f"role must be one of {ROLES}, got {role!r}")
    spec = get_arch(architecture)
    params = dict(arch_params)
    in_ch, out_ch = spec.channels(params)
    return ModelDescriptor(
        name=name,
        architecture=architecture,
        arch_params=params,
        scale=spec.scale(params),
        in_channels=in_ch,
        out_channels=out_ch,
        role=role,
        supports_half=spec.supports_half(params),
        size_multiple=spec.size_multiple(params),
        source=source,
    )


# --- reading ----------------------------------------------------------------------------------------


def _strip_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    # DataParallel / DistributedDataParallel save every key as "module.<name>".
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module."):]: value for key, value in state_dict.items()}
    return state_dict


def _load_pickle(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = _unpickler_detail(error)
        if _not_an_opcode(detail):
            # A byte no pickle protocol uses as an opcode: not a pickle at all (random or corrupt data).
            raise CheckpointError(
                f"{path} is not a readable PyTorch checkpoint (corrupt pickle stream: {detail}); "
                "expected a .pth/.pt state dict saved by torch.save"
            ) from None
        raise UnsafeCheckpointError(
            f"{path} is a pickle that would run code or build objects other than tensors when loaded "
            f"({detail}); desra loads checkpoints with weights_only=True and refused it, nothing ran. "
            "If you trust the file, convert it to .safetensors in its own environment."
        ) from None
    except Exception as error:  # noqa: BLE001 - random bytes reach the unpickler as IndexError, KeyError, ...
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {_first_line(error)}); "
            "expected a .pth/.pt state dict saved by torch.save"
        ) from None


def _not_an_opcode(detail: str) -> bool:
    """Whether torch's 'Unsupported operand N' names a byte that is no pickle opcode (so not a refused instruction)."""
    import pickletools
    import re

    match = re.match(r"Unsupported operand (\d+)", detail)
    return bool(match) and chr(int(match.group(1))) not in {op.code for op in pickletools.opcodes}


def _unpickler_detail(error: BaseException) -> str:
    """The reason torch's weights-only unpickler gives, without its paragraphs of advice ("Unsupported global: ...")."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        rest = text.split(marker, 1)[1].strip()
        line = rest.splitlines()[0].strip() if rest else ""
        return (line.split(" was not an allowed global")[0] if line else "") or _first_line(error)
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "no detail"


def _unwrap(obj: Any, path: Path) -> dict[str, Any]:
    import torch

    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, expected a dict of tensors (a state dict)")
    for key in NESTED_KEYS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    not_names = [k for k in obj if not isinstance(k, str)]
    if not_names:
        raise CheckpointError(
            f"{path} is not a state dict: its keys must be parameter names (strings), found {type(not_names[0]).__name__} "
            f"keys such as {str(not_names[0])[:40]!r}"
        )
    state_dict = _strip_prefix(dict(obj))
    bad = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad or not state_dict:
        raise CheckpointError(
            f"{path} is not a state dict: expected tensors, found {len(bad)} other entries (e.g. {bad[:5]}); "
            f"known layouts: a plain state dict or one nested under {', '.join(NESTED_KEYS)}"
        )
    return state_dict


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read ``path`` -> (state dict of CPU tensors, desra metadata dict or {}); safe loading only."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (expected a .pth, .pt or .safetensors file)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); download or copy it again")
    if path.suffix.lower() == ".safetensors":
        return _read_safetensors(path)
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path} has an unknown checkpoint extension {path.suffix!r}; expected .safetensors or one of {PICKLE_SUFFIXES}"
        )
    return _unwrap(_load_pickle(path), path), {}


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw = handle.metadata() or {}
            state_dict = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from None
    metadata: dict[str, Any] = {}
    if METADATA_KEY in raw:
        try:
            metadata = json.loads(raw[METADATA_KEY])
        except (json.JSONDecodeError, RecursionError) as error:
            raise CheckpointError(f"{path}: the '{METADATA_KEY}' metadata entry is not valid JSON ({error})") from None
        _check_metadata(metadata, path)
    return _strip_prefix(state_dict), metadata


# Metadata fields load_model reads, and the JSON types each may have (None: absent/null).
_METADATA_TYPES: dict[str, tuple[type, ...]] = {
    "architecture": (str,),
    "arch_params": (dict,),
    "role": (str,),
    "name": (str,),
}


def _check_metadata(metadata: Any, path: Path) -> None:
    """CheckpointError unless the desra metadata is a JSON object whose known fields have the right types."""
    if not isinstance(metadata, dict):
        raise CheckpointError(
            f"{path}: the '{METADATA_KEY}' metadata entry is a JSON {type(metadata).__name__}, expected an object "
            "with architecture, arch_params, role and name; re-save the model with desra"
        )
    for key, types in _METADATA_TYPES.items():
        value = metadata.get(key)
        if value is not None and not isinstance(value, types):
            raise CheckpointError(
                f"{path}: metadata field {key!r} is a {type(value).__name__} ({str(value)[:40]!r}), expected "
                f"{' or '.join(t.__name__ for t in types)}; re-save the model with desra"
            )


def check_finite(state_dict: dict[str, Any], source: str = "") -> None:
    """CheckpointError naming the first floating-point tensor holding NaN or infinity (such weights give black images)."""
    import torch

    for key, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{source or 'the state dict'}: tensor {key!r} {tuple(tensor.shape)} holds {bad} NaN or infinite "
                "value(s); the network would output garbage (a black image). Use a checkpoint from before training diverged"
            )


# --- building ---------------------------------------------------------------------------------------


def _short(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def build_from_state_dict(
    state_dict: dict[str, Any],
    architecture: str | None = None,
    arch_params: dict[str, Any] | None = None,
    *,
    name: str = "",
    role: str = "unknown",
    source: str = "",
) -> SRModel:
    """Build a network and load ``state_dict`` into it (architecture/params detected where not given)."""
    from desra.models.archs import (
        check_params,
        check_weight_budget,
        detect_architecture,
        detect_params,
        get_arch,
    )

    check_finite(state_dict, source)
    if architecture is None:
        architecture, detected, _ = detect_architecture(state_dict)
        arch_params = arch_params or detected
    spec = get_arch(architecture)
    state_dict = spec.normalize(state_dict)
    if arch_params is None:
        arch_params = detect_params(spec, state_dict)
        if arch_params is None:
            raise ArchitectureError(
                f"{source or 'the state dict'} does not look like a {architecture} network "
                f"(first keys: {_short(list(state_dict), 6)}); pass its arch_params or the right architecture"
            )
    else:
        # Parameters from metadata, the registry or the caller decide what gets allocated: they must
        # agree with the tensors before anything is built.
        arch_params = check_params(architecture, arch_params, state_dict, source=source)
    check_weight_budget(architecture, arch_params, state_dict, source=source)
    descriptor = describe(architecture, arch_params, name=name, role=role, source=source)
    module = spec.build(descriptor.arch_params)
    own = module.state_dict()
    def derived(key: str) -> bool:
        return key.rsplit(".", 1)[-1] in spec.derived_buffers

    state_dict = {k: v for k, v in state_dict.items() if not derived(k)}
    state_dict.update({k: v for k, v in own.items() if derived(k)})
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        raise ArchitectureError(
            f"{source or 'state dict'} does not fit {architecture} {descriptor.arch_params}: "
            f"missing keys [{_short(missing)}], unexpected keys [{_short(unexpected)}]"
        )
    wrong = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}" for k in own if state_dict[k].shape != own[k].shape]
    if wrong:
        raise ArchitectureError(
            f"{source or 'state dict'} does not fit {architecture} {descriptor.arch_params}: "
            f"shape mismatch (checkpoint vs network) for {_short(wrong, 4)}"
        )
    module.load_state_dict(state_dict, strict=True)
    module.eval()
    return SRModel(descriptor=descriptor, module=module)


def load_model(
    name_or_path: str | os.PathLike,
    *,
    architecture: str | None = None,
    arch_params: dict[str, Any] | None = None,
    role: str | None = None,
    device: str = "cpu",
) -> SRModel:
    """Load a registry id or a checkpoint file into an eval-mode network on ``device``.

    Architecture and parameters come from (first that applies) the arguments, the registry entry,
    the desra metadata stored in the file, or detection from the state dict.
    """
    from desra.models import registry
    from desra.models.archs import other_kind

    text = str(name_or_path)
    path = Path(name_or_path)
    entry = None
    if not path.is_file():
        try:
            entry = registry.get_model(text)
        except UnknownNameError:
            if path.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES) or os.sep in text:
                raise CheckpointError(f"checkpoint {path} does not exist") from None
            pairs = {p.name: p for p in registry.list_pairs()}
            if text in pairs:
                raise UnknownNameError(
                    f"{text!r} is a pair, not a model; load one side ({pairs[text].mse} = mse, "
                    f"{pairs[text].gan} = gan) or both with load_pair({text!r})"
                ) from None
            known = ", ".join(m.id for m in registry.list_models())
            raise UnknownNameError(
                f"{text!r} is neither a checkpoint file nor a registered model; registered: {known}"
            ) from None
        path = registry.local_file(entry) or registry.model_path(entry)
        if not path.is_file() and entry.ncnn_package:
            from desra.models.ncnn_import import ensure_converted

            path = ensure_converted(entry)  # once, from the installed package; later loads find the file
        if not path.is_file() and entry.derived_delta:
            from desra.models.parent_delta import ensure_rebuilt

            path = ensure_rebuilt(entry)  # once, from the shipped delta and its base model
        if not path.is_file():
            raise CheckpointError(
                f"model {entry.id!r} is registered but not present at {path}; "
                f"run `desra models pull {entry.id}` or place the file there by hand"
            )
    state_dict, metadata = read_state_dict(path)
    if other_kind(metadata.get("architecture"), state_dict) is not None:  # the only other kind: a discriminator
        raise CheckpointError(
            f"{path} is a GAN discriminator (basicsr's UNetDiscriminatorSN), not an SR model; it cannot upscale "
            "images. Fine-tuning takes it as `desra finetune --disc FILE`"
        )
    if architecture is None:
        if entry is not None:
            architecture, arch_params = entry.architecture, arch_params or dict(entry.arch_params)
        elif metadata.get("architecture"):
            architecture, arch_params = metadata["architecture"], arch_params or metadata.get("arch_params")
    resolved_role = role or (entry.role if entry is not None else None) or metadata.get("role") or "unknown"
    name = entry.id if entry is not None else metadata.get("name") or path.stem
    model = build_from_state_dict(
        state_dict, architecture, arch_params, name=name, role=resolved_role, source=str(path)
    )
    if device != "cpu":
        model.module.to(device)
    return model


def check_same_scale(mse: SRModel, gan: SRModel, what: str = "model pair") -> None:
    """Raise ``PairMismatchError`` unless the MSE and GAN models of a pair upscale by the same factor."""
    s_mse, s_gan = mse.descriptor.scale, gan.descriptor.scale
    if s_mse != s_gan:
        raise PairMismatchError(
            f"{what}: MSE model {mse.descriptor.name!r} is x{s_mse} but GAN model {gan.descriptor.name!r} is x{s_gan}; "
            "DeSRA compares a GAN model with the MSE model it was fine-tuned from, so both must have the same scale"
        )


# --- writing ----------------------------------------------------------------------------------------


def _tensors(module_or_state_dict: Any) -> dict[str, Any]:
    state_dict = module_or_state_dict
    if hasattr(module_or_state_dict, "state_dict"):
        state_dict = module_or_state_dict.state_dict()
    # safetensors refuses shared or non-contiguous storage; independent CPU copies are always accepted.
    return {key: value.detach().to("cpu").contiguous().clone() for key, value in state_dict.items()}


def write_safetensors(path: str | os.PathLike, module_or_state_dict: Any, payload: dict[str, Any], writer: str) -> Path:
    """Write weights to ``path`` (.safetensors) atomically with ``payload`` as the JSON metadata ``desra``; ``writer`` names the caller in errors."""
    from safetensors.torch import save_file

    from desra.core.atomic import atomic_path

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{writer} writes .safetensors files, got {path}; use save_basicsr for .pth")
    with atomic_path(path) as temp:
        save_file(_tensors(module_or_state_dict), str(temp), metadata={METADATA_KEY: json.dumps(payload, sort_keys=True)})
    return path


def save_model(
    path: str | os.PathLike,
    module_or_state_dict: Any,
    descriptor: ModelDescriptor,
    *,
    extra_metadata: dict[str, Any] | None = None,
) -> Path:
    """Write weights to ``path`` (.safetensors) atomically with the descriptor (+extra) as JSON metadata ``desra``."""
    payload = {**descriptor.to_dict(), "extra": dict(extra_metadata or {})}
    payload["source"] = ""  # where the weights were loaded from is a property of the reader, not the file
    return write_safetensors(path, module_or_state_dict, payload, "save_model")


def save_basicsr(path: str | os.PathLike, module_or_state_dict: Any, *, key: str = "params_ema") -> Path:
    """Write a basicsr-style ``{key: state_dict}`` .pth atomically (loads with weights_only=True)."""
    import torch

    from desra.core.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as temp:
        torch.save({key: _tensors(module_or_state_dict)}, temp)
    return path
