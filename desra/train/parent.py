"""A derived MSE parent for a published GAN-SR model whose own parent cannot be had.

DeSRA compares a GAN model's output with the output of the MSE (L1) model it was fine-tuned from.
For RealESRGAN_x4plus that parent is RealESRNet_x4plus, which cannot be downloaded here. This
module derives a stand-in with desra's own training loop: an L1 (PSNR-oriented) fine-tune of the
GAN model on desra's Real-ESRGAN degradations of packaged photos. The trunk stays frozen and its
features are computed once, so only the last RRDB blocks, ``conv_body`` and the upsampling head
train, and the result is shipped as a *delta*: the changed tensors (fp16) plus the sha256 of the
base weights, from which :func:`desra.models.parent_delta.rebuild` restores the parent bit for bit. It approximates the
paper's pair; it is not RealESRNet.

Pipeline: :func:`training_crops` (HR crops -> seeded LR) -> :func:`cache_trunk` (frozen features)
-> :func:`derive` (train the head with :func:`desra.train.loop.train`, round to fp16, write the delta
and the card) -> :func:`evaluate` (held-out PSNR, high-frequency energy on smooth areas, the copy
check).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from desra.core.errors import ConfigError, DatasetError
from desra.models.parent_delta import apply_delta, make_delta, state_sha256, write_delta
from desra.train.degradations import DegradationConfig
from desra.train.zoo_config import HELDOUT_PHOTOS

HEAD_KEYS = ("conv_body.", "conv_up1.", "conv_up2.", "conv_hr.", "conv_last.")
"""State-dict prefixes of RRDBNet after the trunk: these always train."""


@dataclass(frozen=True)
class ParentConfig:
    """How a parent is derived (``configs/parent/*.yaml``)."""

    name: str
    """Model id of the derived parent."""
    base: str
    """Registry id of the GAN model it is derived from."""
    train_from_block: int
    """First RRDB block that trains; blocks before it are frozen and cached (= num_block: head only)."""
    photos: tuple[str, ...]
    """Training photos, 'package:relative/path' (desra.train.zoo_data.package_file)."""
    heldout: tuple[str, ...] = HELDOUT_PHOTOS
    """Held-out photos for the card's figures (never trained on; the zoo's held-out photos)."""
    crops_per_photo: int = 10
    """Random HR crops taken from each training photo."""
    heldout_crops: int = 4
    """Random HR crops taken from each held-out photo."""
    lr_patch: int = 48
    """LR crop size (HR = lr_patch * scale)."""
    iters: int = 200
    """L1 iterations."""
    lr: float = 2e-4
    """Adam learning rate."""
    batch: int = 4
    """Crops per iteration."""
    seed: int = 0
    """Seed of crop positions, degradations and batches."""
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    """Real-ESRGAN second-order degradation (x4plus defaults)."""


def load_parent_config(path: str | Path) -> ParentConfig:
    """Read a parent config YAML; unknown keys are a ConfigError naming the known ones."""
    import dataclasses

    import yaml

    raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a parent config is a YAML mapping, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(ParentConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    raw = dict(raw)
    for key in ("photos", "heldout"):
        if key in raw:
            raw[key] = tuple(raw[key])
    raw["degradation"] = DegradationConfig.from_dict(raw.get("degradation"))
    return ParentConfig(**raw)


# --- data ------------------------------------------------------------------------------------------


def training_crops(photos: tuple[str, ...], crops_per_photo: int, lr_patch: int, scale: int, seed: int,
                   degradation: DegradationConfig) -> tuple[Any, Any]:
    """(LR ``(N, 3, p, p)``, HR ``(N, 3, s*p, s*p)``) float32 tensors: random crops of each photo, degraded with a per-crop seed."""
    import torch

    from desra.train.degradations import degrade
    from desra.train.zoo_data import package_file, read_rgb

    hr_patch = lr_patch * scale
    rng = np.random.default_rng(seed)
    crops = []
    for spec in photos:
        image = read_rgb(package_file(spec))
        if min(image.shape[:2]) < hr_patch:
            raise DatasetError(f"photo {spec} ({image.shape[1]}x{image.shape[0]}) is smaller than the {hr_patch} px HR crop; drop it or lower lr_patch")
        for _ in range(crops_per_photo):
            y = int(rng.integers(0, image.shape[0] - hr_patch + 1))
            x = int(rng.integers(0, image.shape[1] - hr_patch + 1))
            crops.append(np.ascontiguousarray(image[y : y + hr_patch, x : x + hr_patch].transpose(2, 0, 1)))
    hr = torch.from_numpy(np.stack(crops))
    lr = torch.cat([degrade(hr[i : i + 1], scale, seed * 100_003 + i, degradation) for i in range(len(hr))])
    return lr, hr


def cache_trunk(module, lr, frozen_blocks: int, chunk: int = 8):
    """``conv_first`` features and the output of the first ``frozen_blocks`` RRDB blocks, stacked on channels: ``(N, 2F, h, w)``."""
    import torch

    parts = []
    with torch.no_grad():
        for start in range(0, len(lr), chunk):
            feat = module.conv_first(lr[start : start + chunk])
            trunk = feat
            for block in module.body[:frozen_blocks]:
                trunk = block(trunk)
            parts.append(torch.cat([feat, trunk], 1))
    return torch.cat(parts)


def head_module(module, frozen_blocks: int):
    """An ``nn.Module`` running RRDBNet's tail (blocks ``frozen_blocks..``, ``conv_body``, upsampling) on :func:`cache_trunk` output.

    It shares its parameters with ``module``: training it trains the full network's tail.
    """
    import torch
    import torch.nn.functional as F

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.Sequential(*list(module.body[frozen_blocks:]))
            self.conv_body, self.conv_up1, self.conv_up2 = module.conv_body, module.conv_up1, module.conv_up2
            self.conv_hr, self.conv_last, self.lrelu = module.conv_hr, module.conv_last, module.lrelu
            self.features = module.conv_first.out_channels

        def forward(self, cached):
            feat, trunk = cached[:, : self.features], cached[:, self.features :]
            feat = feat + self.conv_body(self.blocks(trunk))
            # basicsr RRDBNet.forward after the trunk: two nearest x2 steps, then conv_hr and conv_last.
            feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
            feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
            return self.conv_last(self.lrelu(self.conv_hr(feat)))

    return Head()


def trainable_keys(state_dict: Mapping[str, Any], train_from_block: int) -> list[str]:
    """The state-dict keys a derivation changes: RRDB blocks from ``train_from_block`` on and the head."""
    return [
        key for key in state_dict
        if key.startswith(HEAD_KEYS) or (key.startswith("body.") and int(key.split(".")[1]) >= train_from_block)
    ]


# --- derivation ------------------------------------------------------------------------------------


def derive(
    config: ParentConfig,
    out: str | Path,
    *,
    resume: bool = False,
    device: str = "cpu",
    on_event: Callable[[dict[str, Any]], None] | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Derive the parent: cache the trunk, L1-train the tail, write ``<name>.delta.safetensors`` and a card into ``out``."""
    import torch

    from desra.models.checkpoint import load_model
    from desra.train.loop import TrainConfig, train

    out = Path(out)
    base = load_model(config.base, role="gan")
    if base.descriptor.architecture != "rrdbnet":
        raise ConfigError(f"deriving a parent needs an RRDBNet base; {config.base} is {base.descriptor.architecture}")
    blocks = int(base.descriptor.arch_params["num_block"])
    if not 0 <= config.train_from_block <= blocks:
        raise ConfigError(f"train_from_block {config.train_from_block} is outside 0..{blocks} for {config.base}")
    scale = base.descriptor.scale
    module = base.module.float().train()
    base_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    torch.manual_seed(config.seed)
    started = time.time()
    lr, hr = training_crops(config.photos, config.crops_per_photo, config.lr_patch, scale, config.seed, config.degradation)
    cached = cache_trunk(module, lr, config.train_from_block)
    cache_s = time.time() - started
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    head = head_module(module, config.train_from_block)
    for parameter in head.parameters():
        parameter.requires_grad_(True)

    def batch_fn(iteration: int):
        rng = np.random.default_rng([config.seed, iteration])
        index = torch.from_numpy(rng.choice(len(cached), size=config.batch, replace=False))
        return cached[index], hr[index]

    train_config = TrainConfig(iters=config.iters, lr_g=config.lr, lr_d=config.lr, ema=0.0, batch=config.batch,
                               patch=config.lr_patch * scale, seed=config.seed, save_every=max(1, config.iters // 4),
                               log_every=max(1, min(10, config.iters)), device=device, amp=False)
    result = train(train_config, head, None, batch_fn, out / "run", resume=resume, on_event=on_event)
    trained = result.generator.state_dict()
    # The tail's keys in the full network: the head's `blocks.i` is `body.(frozen + i)`.
    full = dict(base_state)
    for key, value in trained.items():
        if key.startswith("blocks."):
            index, rest = key.split(".", 2)[1:]
            full[f"body.{int(index) + config.train_from_block}.{rest}"] = value
        elif not key.startswith("lrelu"):
            full[key] = value
    keys = trainable_keys(full, config.train_from_block)
    delta = make_delta(full, keys)
    parent = apply_delta(base_state, delta)
    metadata = {
        "name": config.name, "base": config.base, "base_sha256": state_sha256(base_state), "sha256": state_sha256(parent),
        "architecture": "rrdbnet", "arch_params": base.descriptor.arch_params, "role": "mse",
        "precision": "changed tensors fp16, the rest as the base", "config": _config_json(config),
        "command": command, "iterations": result.iterations, "train_s": round(result.wall_s, 1), "cache_s": round(cache_s, 1),
        "trained_tensors": len(keys), "device": result.device,
    }
    delta_path = write_delta(out / f"{config.name}.delta.safetensors", delta, metadata)
    return {"delta": str(delta_path), "metadata": metadata, "losses": result.losses}


def _config_json(config: ParentConfig) -> dict[str, Any]:
    raw = asdict(config)
    raw["degradation"] = config.degradation.non_defaults()
    return raw


# --- evaluation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParentEvaluation:
    """Held-out figures of a derived parent against its GAN model (the card's table)."""

    psnr: dict[str, float]
    """Mean PSNR (dB, 8-bit) on held-out degraded crops: parent, gan, bicubic."""
    smooth_hf_energy: dict[str, float]
    """Mean squared Laplacian of the output where the ground truth is smooth: parent, gan, ground truth."""
    nearest_upsampling_psnr: float
    """How close the parent's output is to nearest upsampling of its input (dB; above 45 it copies its input)."""
    crops: int
    """Held-out crops scored."""


def evaluate(parent_module, gan_module, config: ParentConfig, scale: int = 4) -> ParentEvaluation:
    """Score parent and GAN model on held-out crops degraded as in training (other seeds)."""
    import cv2
    import torch
    import torch.nn.functional as F

    from desra.train.zoo_eval import nearest_upsampling_psnr, psnr_8bit

    lr, hr = training_crops(config.heldout, config.heldout_crops, config.lr_patch, scale, config.seed + 1, config.degradation)
    with torch.no_grad():
        outputs = {
            "parent": torch.cat([parent_module(x[None]) for x in lr]).clamp(0, 1),
            "gan": torch.cat([gan_module(x[None]) for x in lr]).clamp(0, 1),
            "bicubic": F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1),
        }
    psnr = {k: float(np.mean([psnr_8bit(a, b) for a, b in zip(v, hr, strict=True)])) for k, v in outputs.items()}

    def grey(image) -> np.ndarray:
        return cv2.cvtColor(np.ascontiguousarray(image.permute(1, 2, 0).numpy(), dtype=np.float32), cv2.COLOR_RGB2GRAY)

    energy: dict[str, list[float]] = {"parent": [], "gan": [], "ground truth": []}
    for i, gt in enumerate(hr):
        truth = grey(gt)
        mean = cv2.blur(truth, (11, 11))
        smooth = np.sqrt(np.maximum(cv2.blur(truth * truth, (11, 11)) - mean * mean, 0)) < 0.02  # flat in the ground truth
        if not smooth.any():
            continue
        for key, image in (("parent", outputs["parent"][i]), ("gan", outputs["gan"][i]), ("ground truth", gt)):
            energy[key].append(float(np.mean(cv2.Laplacian(grey(image), cv2.CV_32F)[smooth] ** 2)))
    return ParentEvaluation(
        psnr=psnr, smooth_hf_energy={k: float(np.mean(v)) if v else 0.0 for k, v in energy.items()},
        nearest_upsampling_psnr=nearest_upsampling_psnr(parent_module, scale), crops=len(hr),
    )


def write_card(out: str | Path, metadata: Mapping[str, Any], evaluation: ParentEvaluation) -> Path:
    """``<name>.md`` beside the delta: what it is, how it was made, and its held-out figures."""
    from desra.core.atomic import atomic_write_text

    config = metadata["config"]
    p, e = evaluation.psnr, evaluation.smooth_hf_energy
    text = f"""# {metadata['name']}: an L1 parent derived from {metadata['base']}

**What it is.** A stand-in for the MSE model {metadata['base']} was fine-tuned from (RealESRNet_x4plus,
which cannot be downloaded where desra is built): {metadata['base']} fine-tuned with L1 only on desra's
Real-ESRGAN degradations of packaged photos. DeSRA results with it approximate the paper's pair; it
is **not** RealESRNet.

- **File**: `{metadata['name']}.delta.safetensors` holds only the {metadata['trained_tensors']} tensors that changed
  (RRDB blocks {config['train_from_block']}+, `conv_body`, the upsampling head) in fp16, plus the sha256 of the base
  weights ({metadata['base_sha256'][:16]}...). desra rebuilds the parent from it and the converted base, and checks
  the result's sha256 ({metadata['sha256'][:16]}...).
- **Data**: {len(config['photos'])} packaged photos, {config['crops_per_photo']} random {config['lr_patch'] * metadata['arch_params']['scale']} px crops each,
  degraded with Real-ESRGAN's second-order pipeline (seed {config['seed']}); held-out: {', '.join(Path(h.split(':')[1]).stem for h in config['heldout'])}.
- **Training**: blocks 0-{config['train_from_block'] - 1} frozen and their features cached ({metadata['cache_s']} s), then
  {metadata['iterations']} iterations of L1, Adam lr {config['lr']}, batch {config['batch']} on {metadata['device']} ({metadata['train_s']} s).
- **Command**: `{metadata['command']}`

## Held-out figures ({evaluation.crops} degraded crops, other seeds than training)

| | PSNR (dB) | high-frequency energy on smooth areas |
|---|---|---|
| {metadata['name']} | {p['parent']:.2f} | {e['parent']:.2e} |
| {metadata['base']} | {p['gan']:.2f} | {e['gan']:.2e} |
| bicubic | {p['bicubic']:.2f} | - |
| ground truth | - | {e['ground truth']:.2e} |

Its output is {evaluation.nearest_upsampling_psnr:.1f} dB from nearest-neighbour upsampling of its input
(a model that copies its input scores above 45 dB).

Licence: derived from {metadata['base']} (BSD-3-Clause, Xintao Wang et al.); the same licence applies.
"""
    path = Path(out) / f"{metadata['name']}.md"
    atomic_write_text(path, text)
    return path


def derive_and_evaluate(config: ParentConfig, out: str | Path, **derive_options: Any) -> tuple[dict[str, Any], ParentEvaluation, Path]:
    """``desra zoo derive-parent``: :func:`derive`, then evaluate the rebuilt parent against its GAN model.

    Writes ``evaluation.json`` and the card into ``out``; returns (derive's summary, the evaluation, the card's path).
    ``derive_options`` go to :func:`derive` (resume, device, on_event, command).
    """
    import json

    from desra.core.atomic import atomic_write_text
    from desra.models.parent_delta import parent_module

    summary = derive(config, out, **derive_options)
    parent, gan = parent_module(summary["delta"])
    evaluation = evaluate(parent, gan, config)
    atomic_write_text(Path(out) / "evaluation.json", json.dumps(asdict(evaluation), indent=2))
    return summary, evaluation, write_card(out, summary["metadata"], evaluation)
