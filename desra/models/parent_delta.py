"""The derived parent's delta file: the changed tensors (fp16) and the base weights' sha256, and the parent rebuilt from them.

:mod:`desra.train.parent` derives the parent and writes the delta with :func:`make_delta` and
:func:`write_delta`; loading the registry's ``derived_delta`` models needs only this module
(:func:`ensure_rebuilt`, called by ``desra.models.checkpoint.load_model``): the shipped delta and the
base model it names give the parent bit for bit, both sides checked by :func:`state_sha256`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from desra.core.errors import CheckpointError


def state_sha256(state_dict: Mapping[str, Any]) -> str:
    """sha256 over a state dict's keys, shapes and float32 bytes in key order (independent of the file format)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        array = np.ascontiguousarray(_numpy(state_dict[key]), dtype=np.float32)
        digest.update(key.encode() + b"\0" + str(array.shape).encode() + b"\0" + array.tobytes())
    return digest.hexdigest()


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


def make_delta(parent: Mapping[str, Any], keys: list[str]) -> dict[str, np.ndarray]:
    """The tensors ``keys`` of ``parent`` as fp16 arrays (what the delta file stores)."""
    return {key: _numpy(parent[key]).astype(np.float16) for key in keys}


def apply_delta(base: Mapping[str, Any], delta: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Base state dict with the delta's tensors put in (as float32); every delta key must exist with the same shape."""
    out = {key: np.asarray(_numpy(value), dtype=np.float32) for key, value in base.items()}
    for key, value in delta.items():
        if key not in out or out[key].shape != value.shape:
            raise CheckpointError(
                f"delta tensor {key} {tuple(value.shape)} does not fit the base model "
                f"({'missing' if key not in out else tuple(out[key].shape)}); is this delta for another model?"
            )
        out[key] = value.astype(np.float32)
    return out


def write_delta(path: str | Path, delta: Mapping[str, np.ndarray], metadata: Mapping[str, Any]) -> Path:
    """Write the delta as safetensors with JSON metadata under key ``desra_delta`` (atomically)."""
    from safetensors.numpy import save_file

    from desra.core.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in delta.items()}, str(tmp),
                  metadata={"desra_delta": json.dumps(dict(metadata), sort_keys=True)})
    return path


def read_delta(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(fp16 tensors, metadata) of a delta file; CheckpointError when it is not one."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise CheckpointError(f"{path} is not a readable safetensors delta file ({type(error).__name__}: {error})") from None
    if "desra_delta" not in meta:
        raise CheckpointError(f"{path} holds no desra_delta metadata; it is not a parent delta written by desra")
    try:
        info = json.loads(meta["desra_delta"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: its desra_delta metadata is not JSON") from None
    if not isinstance(info, dict) or not {"base", "base_sha256", "sha256"} <= set(info):
        raise CheckpointError(f"{path}: desra_delta metadata must name base, base_sha256 and sha256")
    return tensors, info


def rebuild(delta_path: str | Path, base_state: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The parent's state dict from its delta and the base model's state dict, both sha256-checked."""
    delta, info = read_delta(delta_path)
    base_sha = state_sha256(base_state)
    if base_sha != info["base_sha256"]:
        raise CheckpointError(
            f"{delta_path} was derived from {info['base']} with weights sha256 {info['base_sha256'][:12]}..., "
            f"but the base given has {base_sha[:12]}...; convert the base from the published file it names"
        )
    parent = apply_delta(base_state, delta)
    if state_sha256(parent) != info["sha256"]:
        raise CheckpointError(f"{delta_path}: the rebuilt parent does not match its recorded sha256; the file is damaged")
    return parent, info


def rebuild_with_base(delta_path: str | Path, base: str | None = None):
    """(parent state dict, delta metadata, base SRModel): the base the delta names (or ``base``) loaded and the delta applied."""
    from desra.models.checkpoint import load_model

    _, info = read_delta(delta_path)
    base_model = load_model(base or info["base"], role="gan")
    state, info = rebuild(delta_path, base_model.module.state_dict())
    return state, info, base_model


def parent_module(delta_path: str | Path, base: str | None = None):
    """(derived parent, its base) as eval-mode RRDBNets, the parent rebuilt from its delta."""
    import torch

    from desra.models.archs import get_arch

    state, info, base_model = rebuild_with_base(delta_path, base)
    module = get_arch(info["architecture"]).build(dict(info["arch_params"]))
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return module.eval(), base_model.module.eval()


def ensure_rebuilt(entry) -> Path:
    """The registry model ``entry`` (with ``derived_delta``) as a full safetensors in the models cache, rebuilt once.

    The shipped delta and the base model it names (converted from its published file on first use)
    give the parent bit for bit; the file is written atomically with desra metadata, including
    where it came from, so later loads read it directly.
    """
    import torch

    from desra.core.paths import project_root
    from desra.models.checkpoint import describe, save_model
    from desra.models.lineage import LINEAGE_KEY, Lineage
    from desra.models.registry import rebuilt_path

    target = rebuilt_path(entry)
    state, info, _ = rebuild_with_base(project_root() / entry.derived_delta)
    descriptor = describe(info["architecture"], dict(info["arch_params"]), name=entry.id, role=entry.role,
                          source=str(target))
    # rebuild() has checked the weights against the delta's sha256, so the entry names them without hashing again.
    lineage = Lineage(kind="parent-delta", weights_sha256=info["sha256"], source_name=info["base"], source_sha256=info["base_sha256"],
                      recipe={"command": info.get("command", ""), "delta": str(entry.derived_delta)}).to_json()
    target.parent.mkdir(parents=True, exist_ok=True)
    save_model(target, {k: torch.from_numpy(v) for k, v in state.items()}, descriptor, extra_metadata={
        "derived_from": info["base"], "base_sha256": info["base_sha256"], "sha256": info["sha256"],
        "delta": str(entry.derived_delta), "recipe": info.get("command", ""), LINEAGE_KEY: lineage,
    })
    return target
