"""The model card of a zoo export, ``OUT/<name>-<stage>.md``: how the file was made and how good it is."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from desra.train.zoo_config import HELDOUT_PHOTOS, ZooConfig
from desra.train.zoo_data import dead_leaves_indices
from desra.train.zoo_eval import COLLAPSED_DB


def write_model_card(out: Path, config: ZooConfig, stage: str, summary: dict[str, Any]) -> Path:
    """Write ``OUT/<name>-<stage>.md`` from the summary :func:`desra.train.zoo.train_zoo_model` builds; returns its path."""
    from desra.core.atomic import atomic_write_text

    path = Path(out) / f"{config.name}-{stage}.md"
    atomic_write_text(path, "\n".join(card_lines(config, stage, summary)))
    return path


def card_lines(config: ZooConfig, stage: str, summary: dict[str, Any]) -> list[str]:
    """The card's Markdown lines: recipe, data, held-out PSNR table, collapse check, final losses."""
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
        f"final sinc + resize + JPEG), options {json.dumps(config.degradation.non_defaults())} over Real-ESRGAN's defaults",
        "",
        f"## Held-out quality (bicubic x{config.scale} LR of the held-out photos, PSNR dB, RGB)",
        "",
    ]
    this = summary["heldout_psnr_bicubic"]
    if stage == "gan" and summary.get("mse_heldout_psnr_bicubic"):
        parent = summary["mse_heldout_psnr_bicubic"]
        lines += ["| photo | MSE model | GAN model |", "|---|---|---|"]
        lines += [f"| {k} | {parent.get(k, float('nan')):.2f} | {v:.2f} |" for k, v in this.items()]
    else:
        lines += ["| photo | PSNR |", "|---|---|"] + [f"| {k} | {v:.2f} |" for k, v in this.items()]
    copied = summary["nearest_upsampling_psnr"]
    lines += [
        "",
        f"Output vs nearest-neighbour upsampling of the same LR (mean PSNR): {copied:.1f} dB"
        + (f" -- **above {COLLAPSED_DB:.0f} dB: the network collapsed to copying its input; do not use it**" if copied > COLLAPSED_DB else ""),
    ]
    lines += ["", f"Final training losses: {json.dumps({k: round(v, 4) for k, v in summary['losses'].items()})}", ""]
    if stage == "gan":
        lines += ["How this GAN recipe was chosen, what else was tried and what the discriminator did: `docs/zoo.md`.", ""]
    return lines


def _threads() -> int:
    import torch

    return torch.get_num_threads()
