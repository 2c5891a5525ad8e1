"""desra's own SR models: a YAML config per model, an MSE stage and a GAN stage fine-tuned from it.

A variant (another seed, x2, L1-only, another architecture) is another file in ``configs/zoo/``.
Training data are real photos that installed packages ship (read where they are installed, never
copied) plus procedural dead-leaves images; LR inputs are made on the fly with the Real-ESRGAN-style
degradation of :mod:`desra.train.degradations`. Each stage writes into ``OUT/<stage>/`` (checkpoints,
events) and exports ``OUT/<name>-<stage>.safetensors`` with a model card ``OUT/<name>-<stage>.md``;
the GAN stage also exports its discriminator ``OUT/<name>-disc.safetensors``.
"""

from __future__ import annotations

import functools
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from desra.core.errors import ConfigError, DatasetError
from desra.core.events import last_losses, read_events, total_wall_seconds
from desra.train.degradations import DegradationConfig
from desra.train.loop import TrainConfig, TrainResult

STAGES = ("mse", "gan")

# Real photos held out of every zoo training set: datasets/demo/ is made from them and the model
# cards' PSNR is measured on them (CC0 / public domain, see datasets/demo/LICENSES.md).
HELDOUT_PHOTOS = ("skimage:data/astronaut.png", "skimage:data/chelsea.png", "skimage:data/coffee.png", "skimage:data/rocket.jpg")


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
    """Keyword arguments of basicsr's UNetDiscriminatorSN (GAN stage)."""
    description: str = ""
    """One line on what this variant is for."""
    source: str = ""
    """The YAML file this came from."""


_TOP_KEYS = {"name", "scale", "seed", "architecture", "arch_params", "data", "degradation", "mse", "gan", "discriminator", "description"}


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
    data_raw = dict(raw["data"])
    data_unknown = sorted(set(data_raw) - {"photos", "dead_leaves", "dead_leaves_size", "dead_leaves_offset", "patch", "batch"})
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


# --- data -------------------------------------------------------------------------------------------


def package_file(spec: str) -> Path:
    """Resolve 'package:relative/path' to the file inside the installed package (package is not imported)."""
    import importlib.util

    package, _, relative = spec.partition(":")
    if not relative:
        raise ConfigError(f"photo {spec!r} is not of the form 'package:relative/path' (e.g. 'skimage:data/retina.jpg')")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise DatasetError(f"photo {spec!r}: package {package!r} is not installed; install it or drop the photo")
    root = Path(next(iter(found.submodule_search_locations))).resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ConfigError(f"photo {spec!r} points outside the installed package {package!r}; name a file inside it")
    if not path.is_file():
        raise DatasetError(f"photo {spec!r}: {path} does not exist in the installed {package}")
    return path


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) float32 RGB in [0, 1] (grey is repeated, alpha dropped)."""
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return rgb


def dead_leaves(size: int, seed: int) -> np.ndarray:
    """A dead-leaves image (Lee et al. 2001): occluding discs, power-law radii; (size, size, 3) float32 [0, 1].

    Scale-invariant edges and flat regions like natural images, with some discs striped so fine
    regular texture (where GAN-SR invents patterns) is present too.
    """
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.float32)
    image[:] = rng.uniform(0, 1, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    r_min, r_max = 2.0, size / 4
    for _ in range(int(size * size / 20)):
        # Radius density ~ r^-3 (inverse CDF sampling), the scale-invariant choice.
        u = rng.uniform()
        radius = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
        cy, cx = rng.uniform(-radius, size + radius, 2)
        y0, y1 = max(0, int(cy - radius)), min(size, int(cy + radius) + 1)
        x0, x1 = max(0, int(cx - radius)), min(size, int(cx + radius) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        inside = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= radius**2
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        if rng.uniform() < 0.2:
            period, angle = rng.uniform(3, 12), rng.uniform(0, math.pi)
            phase = (np.cos(angle) * xx[y0:y1, x0:x1] + np.sin(angle) * yy[y0:y1, x0:x1]) * 2 * math.pi / period
            other = rng.uniform(0, 1, 3).astype(np.float32)
            mix = (0.5 + 0.5 * np.sin(phase))[..., None].astype(np.float32)
            patch = colour * mix + other * (1 - mix)
            image[y0:y1, x0:x1][inside] = patch[inside]
        else:
            image[y0:y1, x0:x1][inside] = colour
    return image


def dead_leaves_indices(data: DataConfig) -> range:
    """Indices of the dead-leaves images a config trains on (image i of seed s is drawn from seed s * 1000 + i)."""
    return range(data.dead_leaves_offset, data.dead_leaves_offset + data.dead_leaves)


def training_sources(data: DataConfig) -> tuple[str, ...]:
    """Every HR source a config trains on: its photos, then 'dead_leaves[i]@SIZE' per procedural image (the seed draws their content)."""
    return (*data.photos, *(f"dead_leaves[{i}]@{data.dead_leaves_size}" for i in dead_leaves_indices(data)))


def training_facts(config: ZooConfig) -> dict[str, Any]:
    """{"hr": training_sources, "degradation": every DegradationConfig field}: what desra.fingerprint.relations compares."""
    return {"hr": list(training_sources(config.data)), "degradation": dict(sorted(config.degradation.__dict__.items()))}


@functools.lru_cache(maxsize=8)
def _training_images(data: DataConfig, seed: int) -> tuple[np.ndarray, ...]:
    images = [read_rgb(package_file(spec)) for spec in data.photos]
    images += [dead_leaves(data.dead_leaves_size, seed * 1000 + i) for i in dead_leaves_indices(data)]
    small = [spec for spec, im in zip(data.photos, images, strict=False) if min(im.shape[:2]) < data.patch]
    if small:
        raise DatasetError(f"training photos {small} are smaller than the {data.patch} px patch; drop them or lower data.patch")
    return tuple(images)


def make_batch_fn(config: ZooConfig, stage: str = "mse") -> Callable[[int], tuple[Any, Any]]:
    """``batch_fn(iteration) -> (lr, hr)`` for :func:`desra.train.loop.train`, a pure function of (seed, iteration).

    HR: the stage's ``batch`` random crops (random image, position, flip, 90-degree rotation) as
    ``(N, 3, patch, patch)``; LR: their second-order degradation ``(N, 3, patch/s, patch/s)``.
    """
    import torch

    from desra.train.degradations import degrade

    images = _training_images(config.data, config.seed)
    patch, batch = config.stages[stage].patch, config.stages[stage].batch
    if patch % config.scale or any(min(im.shape[:2]) < patch for im in images):
        raise ConfigError(f"{config.source}: {stage} patch {patch} must be a multiple of scale {config.scale} and fit every training image")

    def batch_fn(iteration: int):
        sequence = np.random.SeedSequence([config.seed, iteration])
        rng = np.random.default_rng(sequence)
        crops = []
        for _ in range(batch):
            image = images[rng.integers(len(images))]
            y = rng.integers(0, image.shape[0] - patch + 1)
            x = rng.integers(0, image.shape[1] - patch + 1)
            crop = image[y : y + patch, x : x + patch]
            if rng.uniform() < 0.5:
                crop = crop[:, ::-1]
            crop = np.rot90(crop, k=int(rng.integers(4)))
            crops.append(np.ascontiguousarray(crop.transpose(2, 0, 1)))
        hr = torch.from_numpy(np.stack(crops))
        degradation_seed = int(sequence.generate_state(1, dtype=np.uint64)[0] >> 1)
        return degrade(hr, config.scale, degradation_seed, config.degradation), hr

    return batch_fn


# --- networks, export, evaluation -------------------------------------------------------------------


def build_generator(config: ZooConfig):
    """A freshly initialised generator (seeded from the config) as described by the config."""
    import torch

    from desra.models.archs import get_arch

    torch.manual_seed(config.seed)
    generator = get_arch(config.architecture).build(dict(config.arch_params))
    from desra.models.checkpoint import describe

    if describe(config.architecture, config.arch_params).scale != config.scale:
        raise ConfigError(f"{config.source}: arch_params give scale {describe(config.architecture, config.arch_params).scale}, config says scale {config.scale}")
    return generator


def build_discriminator(config: ZooConfig):
    """basicsr's UNetDiscriminatorSN with the config's options, seeded; ``spectral_norm: false`` strips its SN."""
    import torch

    from desra.models import basicsr_adapter as ba

    torch.manual_seed(config.seed + 1)
    return ba.unet_discriminator_sn(**{"num_in_ch": 3, **config.discriminator})


def _heldout_outputs(module, scale: int, photos: tuple[str, ...], device: str, size_multiple: int):
    """Yield (photo name, bicubic LR, SR output, HR) as (1, 3, h, w) CPU tensors for each held-out photo.

    Photos are cropped so the LR side is a multiple of ``size_multiple`` (RRDBNet x2 pixel-unshuffles its input).
    """
    import torch

    from desra.train.degradations import bicubic_lr

    module = module.to(device).eval()
    for spec in photos:
        hr = read_rgb(package_file(spec))
        step = scale * size_multiple
        height, width = (hr.shape[0] // step) * step, (hr.shape[1] // step) * step
        hr_t = torch.from_numpy(np.ascontiguousarray(hr[:height, :width].transpose(2, 0, 1)))[None]
        lr_t = bicubic_lr(hr_t, scale)
        with torch.no_grad():
            sr = module(lr_t.to(device)).clamp(0, 1).cpu()
        yield Path(spec.partition(":")[2]).stem, lr_t, sr, hr_t


def psnr_8bit(a, b) -> float:
    """PSNR (dB) of two [0, 1] tensors rounded to 8 bits, 4 px border cropped."""
    mse = ((((a * 255).round() - (b * 255).round())[..., 4:-4, 4:-4]) ** 2).mean().item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def _psnr_table(outputs) -> dict[str, float]:
    """Photo name -> PSNR of SR against HR, plus their mean, from :func:`_heldout_outputs` tuples."""
    results = {name: psnr_8bit(sr, hr) for name, _, sr, hr in outputs}
    results["mean"] = float(np.mean(list(results.values())))
    return results


def heldout_psnr(module, scale: int, photos: tuple[str, ...] = HELDOUT_PHOTOS, device: str = "cpu", size_multiple: int = 1) -> dict[str, float]:
    """PSNR (dB, RGB, 8-bit, 4 px border cropped) of ``module`` on the held-out photos downscaled by bicubic."""
    return _psnr_table(_heldout_outputs(module, scale, photos, device, size_multiple))


COLLAPSED_DB = 45.0
"""Mean PSNR to nearest-neighbour upsampling above which a model does little but copy its input."""


def nearest_upsampling_psnr(module, scale: int, photos: tuple[str, ...] = HELDOUT_PHOTOS, device: str = "cpu", size_multiple: int = 1) -> float:
    """Mean PSNR (dB) between ``module``'s output and nearest-neighbour upsampling of the same held-out bicubic LR.

    A collapsed network (SRVGG's residual branch stuck at ~0, which deep SRVGGs showed at lr 5e-4)
    scores above :data:`COLLAPSED_DB` here, while its held-out PSNR against HR looks normal: nearest
    upsampling scores about as high as a blurry L1 model does.
    """
    return _copy_psnr(_heldout_outputs(module, scale, photos, device, size_multiple), scale)


def _copy_psnr(outputs, scale: int) -> float:
    """Mean PSNR of SR against nearest-neighbour upsampled LR, from :func:`_heldout_outputs` tuples."""
    import torch.nn.functional as F

    return float(np.mean([psnr_8bit(sr, F.interpolate(lr, scale_factor=scale, mode="nearest")) for _, lr, sr, _ in outputs]))


def stage_dir(out: Path, stage: str) -> Path:
    """Run folder of one stage: ``OUT/<stage>``."""
    return Path(out) / stage


def exported_path(out: Path, config: ZooConfig, what: str) -> Path:
    """``OUT/<name>-<what>.safetensors`` for what in mse / gan / disc."""
    return Path(out) / f"{config.name}-{what}.safetensors"


def _state_from(path: Path, key: str) -> dict[str, Any]:
    from desra.train.loop import load_checkpoint

    state = load_checkpoint(path)
    if state.get(key) is None:
        raise ConfigError(f"{path} holds no {key!r} weights")
    return state[key]


def train_zoo_model(
    config: ZooConfig,
    out: str | Path,
    stage: str,
    *,
    resume: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Train one stage of a zoo model into ``out``, export its weights and model card; returns a summary.

    The GAN stage starts from the EMA weights of ``OUT/<name>-mse.safetensors`` (train the MSE stage
    first into the same ``out``).
    """
    from desra.fingerprint.lineage import LINEAGE_KEY, current_command, make_lineage
    from desra.models.checkpoint import (
        describe,
        read_state_dict,
        save_discriminator,
        save_model,
    )

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {STAGES}")
    if stage not in config.stages:
        raise ConfigError(f"{config.source} has no `{stage}:` section; add one or train another stage")
    out = Path(out)
    train_config = config.stages[stage]
    generator = build_generator(config)
    discriminator = None
    source_state, source_metadata = None, None
    if stage == "gan":
        parent = exported_path(out, config, "mse")
        if not parent.is_file():
            raise ConfigError(
                f"the gan stage starts from {parent}, which does not exist; run "
                f"`desra zoo train --stage mse --config {config.source} --out {out}` first"
            )
        state, source_metadata = read_state_dict(parent)
        generator.load_state_dict(state)
        source_state = state
        discriminator = build_discriminator(config)
    started = time.time()
    result: TrainResult = train_config_run(train_config, generator, discriminator, config, out, stage, resume, on_event)
    descriptor = describe(config.architecture, config.arch_params, name=f"{config.name}-{stage}", role=stage)
    # One pass over the held-out photos serves both measures.
    outputs = list(_heldout_outputs(result.ema.float(), config.scale, HELDOUT_PHOTOS, result.device, descriptor.size_multiple))
    psnr, copy_psnr = _psnr_table(outputs), _copy_psnr(outputs, config.scale)
    provenance = {
        "config": config.source,
        "stage": stage,
        "iterations": result.iterations,
        "seed": config.seed,
        "device": result.device,
        "wall_s_this_call": round(result.wall_s, 1),
        "command": command,
        "heldout_psnr_bicubic": {k: round(v, 3) for k, v in psnr.items()},
        "nearest_upsampling_psnr": round(copy_psnr, 2),
        "training": training_facts(config),
    }
    lineage = make_lineage(
        "zoo-train", result.ema, source=source_state, source_name=f"{config.name}-mse" if stage == "gan" else None,
        recipe={"command": command or current_command(), "config": config.source, "stage": stage, "iterations": result.iterations, "seed": config.seed},
        source_metadata=source_metadata,
    )
    weights_path = save_model(exported_path(out, config, stage), result.ema.cpu(), descriptor, extra_metadata={**provenance, LINEAGE_KEY: lineage})
    events = read_events(stage_dir(out, stage))
    losses = result.losses or last_losses(events)  # a resume of a finished run trains nothing
    summary = {**provenance, "weights": str(weights_path), "losses": losses, "wall_s_total": total_wall_seconds(events)}
    if stage == "gan":
        disc_path = save_discriminator(
            exported_path(out, config, "disc"),
            discriminator.cpu(),
            {"num_in_ch": 3, **config.discriminator},
            name=f"{config.name}-disc",
            extra_metadata=provenance,
        )
        summary["discriminator"] = str(disc_path)
        parent_meta = read_state_dict(exported_path(out, config, "mse"))[1]
        summary["mse_heldout_psnr_bicubic"] = parent_meta.get("extra", {}).get("heldout_psnr_bicubic", {})
    write_model_card(out, config, stage, summary)
    summary["elapsed_s"] = time.time() - started
    return summary


def train_config_run(train_config, generator, discriminator, config, out, stage, resume, on_event) -> TrainResult:
    """Run :func:`desra.train.loop.train` for one stage with the config's data."""
    from desra.train.loop import train

    return train(train_config, generator, discriminator, make_batch_fn(config, stage), stage_dir(out, stage), resume=resume, on_event=on_event)


def write_model_card(out: Path, config: ZooConfig, stage: str, summary: dict[str, Any]) -> Path:
    """Write ``OUT/<name>-<stage>.md``: how the file was made and how good it is."""
    from desra.core.atomic import atomic_write_text

    train_config = config.stages[stage]
    lines = [
        f"# {config.name}-{stage}",
        "",
        config.description or "A desra zoo model.",
        "",
        f"- **Role**: {'MSE-SR parent (L1 only)' if stage == 'mse' else 'GAN-SR model fine-tuned from ' + config.name + '-mse'}",
        f"- **Architecture**: `{config.architecture}` {json.dumps(config.arch_params)}, x{config.scale}",
        f"- **Config**: `{config.source}` (seed {config.seed})",
        f"- **Command**: `{summary.get('command') or 'desra zoo train --stage ' + stage + ' --config ' + config.source + ' --out OUT'}`",
        f"- **Iterations**: {summary['iterations']}, batch {train_config.batch}, HR patch {train_config.patch}",
        f"- **Optimiser**: Adam betas {tuple(train_config.betas)}, lr_g {train_config.lr_g}"
        + (f", lr_d {train_config.lr_d}" if stage == "gan" else "") + f", EMA {train_config.ema} (exported weights are the EMA)",
        f"- **Losses**: L1 {train_config.l1_weight}, perceptual (discriminator feature matching) {train_config.percep_weight}, "
        f"GAN {train_config.gan_weight} ({train_config.gan_kind}), discriminator warm-up {train_config.d_warmup} it",
    ]
    if stage == "gan":
        lines.append(f"- **Discriminator**: basicsr UNetDiscriminatorSN {json.dumps({'num_in_ch': 3, **config.discriminator})}, shipped as `{config.name}-disc.safetensors`")
    lines += [
        f"- **Device / wall time**: {summary['device']}, {summary['wall_s_total']:.0f} s of training "
        f"({platform.processor() or platform.machine()}, torch threads {_threads()}, Python {sys.version.split()[0]})",
        f"- **Data**: {len(config.data.photos)} packaged photos read from installed packages "
        f"({', '.join(config.data.photos)}) + {config.data.dead_leaves} dead-leaves images "
        f"({config.data.dead_leaves_size} px, indices {list(dead_leaves_indices(config.data))} of seed {config.seed}); held-out photos never used: {', '.join(HELDOUT_PHOTOS)}",
        "- **Degradation**: Real-ESRGAN second-order (blur/sinc, resize, Gaussian/Poisson noise, JPEG, twice; "
        f"final sinc + resize + JPEG), options {json.dumps(_nondefault(config.degradation))} over Real-ESRGAN's defaults",
        "",
        "## Held-out quality (bicubic x{s} LR of the held-out photos, PSNR dB, RGB)".format(s=config.scale),
        "",
    ]
    this = summary["heldout_psnr_bicubic"]
    if stage == "gan" and summary.get("mse_heldout_psnr_bicubic"):
        parent = summary["mse_heldout_psnr_bicubic"]
        lines += ["| photo | MSE model | GAN model |", "|---|---|---|"]
        lines += [f"| {k} | {parent.get(k, float('nan')):.2f} | {v:.2f} |" for k, v in this.items()]
    else:
        lines += ["| photo | PSNR |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in this.items()]
    copy_psnr = summary["nearest_upsampling_psnr"]
    lines += [
        "",
        f"Output vs nearest-neighbour upsampling of the same LR (mean PSNR): {copy_psnr:.1f} dB"
        + (f" -- **above {COLLAPSED_DB:.0f} dB: the network collapsed to copying its input; do not use it**" if copy_psnr > COLLAPSED_DB else ""),
    ]
    lines += ["", f"Final training losses: {json.dumps({k: round(v, 4) for k, v in summary['losses'].items()})}", ""]
    if stage == "gan":
        lines += ["How this GAN recipe was chosen, what else was tried and what the discriminator did: `docs/zoo.md`.", ""]
    path = Path(out) / f"{config.name}-{stage}.md"
    atomic_write_text(path, "\n".join(lines))
    return path


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def _nondefault(config: DegradationConfig) -> dict[str, Any]:
    default = DegradationConfig()
    return {k: v for k, v in config.__dict__.items() if getattr(default, k) != v}


# --- showcase -----------------------------------------------------------------------------------------


def showcase_window(mask: np.ndarray, bbox: tuple[int, int, int, int], size: int) -> tuple[int, int]:
    """Top-left (y0, x0) of the ``size`` x ``size`` window that overlaps ``bbox`` (x0, y0, x1, y1) and shows the most
    of both flagged and clean pixels (a crop wholly inside a large region shows no boundary)."""
    height, width = mask.shape
    step = max(1, size // 8)
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def starts(low: int, high: int, limit: int) -> list[int]:
        first, last = int(np.clip(low - size + 1, 0, limit)), int(np.clip(high, 0, limit))
        return sorted({*range(first, last + 1, step), last})

    ys, xs = starts(bbox[1], bbox[3], height - size), starts(bbox[0], bbox[2], width - size)
    best, best_score = (0, 0), -1.0
    for y in ys:
        for x in xs:
            flagged = (integral[y + size, x + size] - integral[y, x + size] - integral[y + size, x] + integral[y, x]) / size**2
            score = min(flagged, 1.0 - flagged)
            if score > best_score:
                best, best_score = (y, x), score
    return best


def showcase_strip(mse: np.ndarray, gan: np.ndarray, mask: np.ndarray, bbox: tuple[int, int, int, int], size: int = 256) -> np.ndarray:
    """One README crop near ``bbox`` (x0, y0, x1, y1): MSE | GAN | GAN with the mask in red; (size, 3*size+8, 3) float32."""
    height, width = mask.shape
    size = min(size, height, width)
    y0, x0 = showcase_window(mask, bbox, size)
    window = (slice(y0, y0 + size), slice(x0, x0 + size))
    overlay = gan[window].copy()
    red = np.array([1.0, 0.1, 0.1], np.float32)
    overlay[mask[window]] = 0.55 * overlay[mask[window]] + 0.45 * red
    gap = np.ones((size, 4, 3), np.float32)
    return np.concatenate([mse[window], gap, gan[window], gap, overlay], axis=1)


def showcase(out_dir: str | Path, *, pair: str = "desra-demo-x4", lr_dir: str | Path | None = None, count: int = 4,
             progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Run DeSRA detection with ``pair`` on the demo photos and write up to ``count`` README crops
    ``showcase_<stem>.png`` (MSE | GAN | mask overlay, around each photo's most prominent region)."""
    from desra.core.imageio import list_images, read_image, write_image
    from desra.core.paths import datasets_dir
    from desra.detect.pipeline import DetectConfig, detect_lr
    from desra.models.checkpoint import load_pair

    lr_dir = Path(lr_dir) if lr_dir is not None else datasets_dir() / "demo"
    photos = list_images(lr_dir)
    if not photos:
        raise DatasetError(f"no images in {lr_dir}; pass --lr with a folder of LR photos")
    mse_model, gan_model = load_pair(pair)
    found = []
    for done, path in enumerate(photos, 1):
        detection, mse, gan = detect_lr(read_image(path).rgb, mse_model, gan_model, DetectConfig(),
                                        segmenter_note="showcase: semantics off (no segmenter weights offline)")
        if detection.regions:
            found.append((detection.regions[0].prominence, path.stem, showcase_strip(mse, gan, detection.mask, detection.regions[0].bbox)))
        if progress:
            progress(done, len(photos))
    written = []
    for _, stem, strip in sorted(found, key=lambda item: -item[0])[:count]:
        target = Path(out_dir) / f"showcase_{stem}.png"
        write_image(target, strip)
        written.append(target)
    if not written:
        raise DatasetError(f"pair {pair!r} flagged no artifact region on the {len(photos)} photos in {lr_dir}; nothing to show")
    return written
