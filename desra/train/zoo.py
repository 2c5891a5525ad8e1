"""desra's own SR models: train one stage of a zoo config (MSE, then GAN fine-tuned from it) and export it.

The parts live beside this module: the config schema (:mod:`desra.train.zoo_config`), the training
data (:mod:`desra.train.zoo_data`), the held-out evaluation (:mod:`desra.train.zoo_eval`) and the
model card (:mod:`desra.train.zoo_card`). Each stage writes into ``OUT/<stage>/`` (checkpoints,
events) and exports ``OUT/<name>-<stage>.safetensors`` with a model card ``OUT/<name>-<stage>.md``;
the GAN stage also exports its discriminator ``OUT/<name>-disc.safetensors``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from desra.core.errors import ConfigError
from desra.core.events import last_losses, read_events, total_wall_seconds
from desra.train.zoo_config import HELDOUT_PHOTOS, STAGES, ZooConfig
from desra.train.zoo_data import training_facts, zoo_batch_fn
from desra.train.zoo_eval import copy_psnr, heldout_outputs, psnr_table


def build_generator(config: ZooConfig):
    """A freshly initialised generator (seeded from the config) as described by the config."""
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe

    torch.manual_seed(config.seed)
    generator = get_arch(config.architecture).build(dict(config.arch_params))
    scale = describe(config.architecture, config.arch_params).scale
    if scale != config.scale:
        raise ConfigError(f"{config.source}: arch_params give scale {scale}, config says scale {config.scale}")
    return generator


def discriminator_params(config: ZooConfig) -> dict[str, Any]:
    """Builder options of the GAN stage's U-Net discriminator: the config's ``discriminator:`` section on RGB input."""
    return {"num_in_ch": 3, **config.discriminator}


def zoo_discriminator(config: ZooConfig):
    """A fresh U-Net discriminator with the config's options, seeded (seed + 1); ``spectral_norm: false`` strips its SN."""
    import torch

    from desra.models.discriminator import load_discriminator

    torch.manual_seed(config.seed + 1)
    return load_discriminator(params=discriminator_params(config)).module


def stage_dir(out: Path, stage: str) -> Path:
    """Run folder of one stage: ``OUT/<stage>``."""
    return Path(out) / stage


def exported_path(out: Path, config: ZooConfig, what: str) -> Path:
    """``OUT/<name>-<what>.safetensors`` for what in mse / gan / disc."""
    return Path(out) / f"{config.name}-{what}.safetensors"


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
    from desra.models.checkpoint import describe, read_state_dict, save_model
    from desra.models.discriminator import save_discriminator
    from desra.models.lineage import LINEAGE_KEY, current_command, make_lineage
    from desra.train.loop import train
    from desra.train.zoo_card import write_model_card

    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {STAGES}")
    if stage not in config.stages:
        raise ConfigError(f"{config.source} has no `{stage}:` section; add one or train another stage")
    out = Path(out)
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
        source_state, source_metadata = read_state_dict(parent)
        generator.load_state_dict(source_state)
        discriminator = zoo_discriminator(config)
    started = time.time()
    result = train(config.stages[stage], generator, discriminator, zoo_batch_fn(config, stage), stage_dir(out, stage),
                   resume=resume, on_event=on_event)
    descriptor = describe(config.architecture, config.arch_params, name=f"{config.name}-{stage}", role=stage)
    # One pass over the held-out photos serves both measures.
    outputs = list(heldout_outputs(result.ema.float(), config.scale, HELDOUT_PHOTOS, result.device, descriptor.size_multiple))
    provenance = {
        "config": config.source,
        "stage": stage,
        "iterations": result.iterations,
        "seed": config.seed,
        "device": result.device,
        "wall_s_this_call": round(result.wall_s, 1),
        "command": command,
        "heldout_psnr_bicubic": {k: round(v, 3) for k, v in psnr_table(outputs).items()},
        "nearest_upsampling_psnr": round(copy_psnr(outputs, config.scale), 2),
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
        disc_path = save_discriminator(exported_path(out, config, "disc"), discriminator.cpu(), discriminator_params(config),
                                       name=f"{config.name}-disc", extra_metadata=provenance)
        summary["discriminator"] = str(disc_path)
        summary["mse_heldout_psnr_bicubic"] = source_metadata.get("extra", {}).get("heldout_psnr_bicubic", {})
    write_model_card(out, config, stage, summary)
    summary["elapsed_s"] = time.time() - started
    return summary
