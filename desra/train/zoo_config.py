"""The zoo's config schema: one YAML file per model (``configs/zoo/*.yaml``), checked into frozen dataclasses.

A variant (another seed, x2, L1-only, another architecture) is another file; :func:`load_zoo_config`
refuses unknown keys, held-out photos in the training data and a GAN stage without a discriminator,
each with a :class:`~desra.core.errors.ConfigError` naming the key and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from desra.core.errors import ConfigError
from desra.train.degradations import DegradationConfig
from desra.train.loop import TrainConfig

STAGES = ("mse", "gan")
"""Training stages of a zoo model, in the order they run (the GAN stage starts from the MSE export)."""

HELDOUT_PHOTOS = ("skimage:data/astronaut.png", "skimage:data/chelsea.png", "skimage:data/coffee.png", "skimage:data/rocket.jpg")
"""Real photos held out of every zoo training set: datasets/demo/ is made from them and the model
cards' PSNR is measured on them (CC0 / public domain, see datasets/demo/LICENSES.md)."""


@dataclass(frozen=True)
class DataConfig:
    """Where training crops come from and how big they are."""

    photos: tuple[str, ...]
    """Training photos as 'package:relative/path' inside an installed package (e.g. 'skimage:data/retina.jpg')."""
    dead_leaves: int = 0
    """Number of procedural dead-leaves images added to the photos."""
    dead_leaves_size: int = 384
    """Side of each dead-leaves image in pixels."""
    dead_leaves_offset: int = 0
    """Index of the first dead-leaves image: configs on disjoint data take disjoint index ranges of one seed."""
    patch: int = 128
    """HR crop side in pixels (a multiple of the scale); a stage may set its own ``patch``."""
    batch: int = 8
    """Crops per iteration; a stage may set its own ``batch``."""


@dataclass(frozen=True)
class ZooConfig:
    """One zoo model: network, data, degradation and both training stages."""

    name: str
    """Model name; files are <name>-mse / <name>-gan / <name>-disc."""
    scale: int
    """Upscaling factor (2 or 4)."""
    seed: int
    """Seed of initialisation, crops and degradations."""
    architecture: str
    """Generator architecture registered in desra.models.archs ('srvgg', 'rrdbnet', ...)."""
    arch_params: dict[str, Any]
    """Keyword arguments of the architecture builder."""
    data: DataConfig
    """Training data."""
    degradation: DegradationConfig
    """LR synthesis parameters."""
    stages: dict[str, TrainConfig]
    """Training settings per stage ('mse' and optionally 'gan')."""
    discriminator: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the U-Net discriminator (architecture ``unet_discriminator_sn``, GAN stage)."""
    description: str = ""
    """One line on what this variant is for."""
    source: str = ""
    """The YAML file this came from."""


_TOP_KEYS = {"name", "scale", "seed", "architecture", "arch_params", "data", "degradation", "mse", "gan", "discriminator", "description"}
_DATA_KEYS = {"photos", "dead_leaves", "dead_leaves_size", "dead_leaves_offset", "patch", "batch"}


def load_zoo_config(path: str | Path) -> ZooConfig:
    """Read and check a zoo YAML file; ConfigError says which key is wrong and what was expected."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"zoo config {path} does not exist; pass a file like configs/zoo/desra-demo-x4.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"zoo config {path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ConfigError(f"zoo config {path} must be a mapping of options, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"zoo config {path}: unknown key(s) {unknown}; known keys are {sorted(_TOP_KEYS)}")
    for key in ("name", "scale", "architecture", "arch_params", "data", "mse"):
        if key not in raw:
            raise ConfigError(f"zoo config {path} lacks the required key {key!r}")
    scale, seed = raw["scale"], raw.get("seed", 0)
    if scale not in (2, 3, 4) or not isinstance(seed, int):
        raise ConfigError(f"zoo config {path}: scale must be 2, 3 or 4 and seed an integer; got scale={scale!r}, seed={seed!r}")
    data = _data_config(dict(raw["data"]), scale, path)
    stages = {}
    for stage in STAGES:
        if stage in raw:
            options = {"batch": data.batch, "patch": data.patch, "seed": seed, **dict(raw[stage] or {})}
            stages[stage] = TrainConfig.from_dict(options)
    if "gan" in stages and not raw.get("discriminator"):
        raise ConfigError(f"zoo config {path}: a gan stage needs a `discriminator:` section (UNetDiscriminatorSN options)")
    return ZooConfig(
        name=str(raw["name"]),
        scale=int(scale),
        seed=int(seed),
        architecture=str(raw["architecture"]),
        arch_params=dict(raw["arch_params"]),
        data=data,
        degradation=DegradationConfig.from_dict(raw.get("degradation")),
        stages=stages,
        discriminator=dict(raw.get("discriminator") or {}),
        description=str(raw.get("description", "")),
        source=str(path),
    )


def _data_config(data_raw: dict[str, Any], scale: int, path: Path) -> DataConfig:
    """The ``data:`` section as a DataConfig; ConfigError for unknown options, a patch off the scale or held-out photos."""
    data_unknown = sorted(set(data_raw) - _DATA_KEYS)
    if data_unknown:
        raise ConfigError(f"zoo config {path}: unknown data option(s) {data_unknown}")
    data = DataConfig(**{**data_raw, "photos": tuple(data_raw.get("photos") or ())})
    if data.patch % scale:
        raise ConfigError(f"zoo config {path}: data.patch {data.patch} is not a multiple of scale {scale}")
    if len(set(data.photos)) != len(data.photos) or data.dead_leaves < 0 or data.dead_leaves_offset < 0:
        raise ConfigError(f"zoo config {path}: data.photos lists a photo twice or dead_leaves/dead_leaves_offset is negative; list each photo once")
    if not data.photos and not data.dead_leaves:
        raise ConfigError(f"zoo config {path}: data lists no photos and no dead_leaves images; give at least one source")
    held = sorted(set(data.photos) & set(HELDOUT_PHOTOS))
    if held:
        raise ConfigError(f"zoo config {path}: {held} are held out for evaluation and the demo set; remove them from data.photos")
    return data
