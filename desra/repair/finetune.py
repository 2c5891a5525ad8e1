"""DeSRA fine-tuning: train a GAN-SR model on (real LR, pseudo-GT) pairs of a curated set.

The training itself is :func:`desra.train.loop.train` (the loop zoo models use); this module supplies
the data (aligned random LR / pseudo-GT crops with flips from the set's train split, a pure
function of seed and iteration so a resumed run sees the same batches), the starting networks,
previews on val items, and the exports: ``model.safetensors`` (desra metadata),
``model_basicsr.pth`` (``params_ema``), ``discriminator_basicsr.pth`` (``params``) and
``options.yml`` so the run can be continued in basicsr / Real-ESRGAN (:mod:`desra.repair.basicsr_export`).

Run folder::

    RUN/run.json             what was fine-tuned from what (written at the start)
    RUN/events.jsonl         progress events (iteration, losses, it/s, ETA; checkpoints; previews)
    RUN/ckpt/iter_*.pt       resumable checkpoints (atomic)
    RUN/previews/iter_*/     SR of a few val items at each checkpoint
    RUN/model.safetensors    the fine-tuned generator (EMA weights) with architecture metadata
    RUN/generator.safetensors  the same without EMA averaging

Multi-GPU: ``torchrun --nproc_per_node N -m desra finetune <same flags>`` trains with DDP
(:mod:`desra.train.loop`); ``batch`` is per process, each process draws its own crops, and only
rank 0 writes the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from desra.core.errors import CheckpointError, ConfigError, DatasetError
from desra.core.settings import (
    MODEL,
    PAIR,
    READ,
    WRITE,
    check_values,
    from_flags,
    required,
    setting,
)
from desra.train.losses import GAN_KINDS


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of one DeSRA fine-tune (defaults: the paper's recipe, FACTS.md): the one type that
    ``desra finetune``'s flags, the dashboard and the ``finetune`` job kind all build.

    Each field records its flag (``--set`` for ``set_dir``, ``--no-amp`` for ``amp``) and the values
    it allows (:mod:`desra.core.settings`); the job kind's settings are made from these fields
    (:data:`desra.jobs.job_settings.FinetuneJob`), and values are checked once, here, on construction.
    """

    set_dir: str = required(role=READ, flag="set")
    """Curated set folder (``desra set create``)."""
    out: str | None = setting(role=WRITE, flag=True)
    """Run folder (a job's own folder when a job runs it; :func:`finetune` needs one)."""
    pair: str | None = setting(role=PAIR, flag=True)
    """Registered pair whose GAN side is fine-tuned (its discriminator is used when shipped)."""
    model: str | None = setting(role=MODEL, flag=True)
    """GAN-SR checkpoint to fine-tune instead of a pair's (file or registry id)."""
    disc: str | None = setting(role=MODEL, flag=True)
    """Discriminator checkpoint; None -> the pair's, else a fresh U-Net SN discriminator (warned)."""
    iters: int = setting(1000, minimum=1, flag=True)
    """Total iterations (the paper: about 1000 are enough)."""
    lr: float = setting(1e-4, minimum=0, flag=True)
    """Adam learning rate of generator and discriminator."""
    patch: int = setting(256, minimum=8, flag=True)
    """HR (pseudo-GT) crop size in pixels; the LR crop is patch / scale."""
    batch: int = setting(4, minimum=1, flag=True)
    """Crops per iteration per process (under torchrun the global batch is N x this; the paper: 12 x 4 GPUs)."""
    save_every: int = setting(100, minimum=1, flag=True)
    """Checkpoint and preview every this many iterations."""
    device: str = setting("auto", flag=True, runner=True)
    """'auto', 'cpu', 'cuda' or 'cuda:N' (for a job: the device it is queued for)."""
    seed: int = setting(0, minimum=0, flag=True)
    """Seed of crop positions, flips and torch."""
    l1_weight: float = setting(1.0, minimum=0, flag=True)
    """Weight of L1 to the pseudo-GT."""
    percep_weight: float = setting(1.0, minimum=0, flag=True)
    """Weight of the perceptual term (discriminator feature matching, see desra.train.losses)."""
    gan_weight: float = setting(0.1, minimum=0, flag=True)
    """Weight of the adversarial loss."""
    gan_kind: str = setting("vanilla", choices=GAN_KINDS, flag=True)
    """GAN loss kind ('vanilla' as Real-ESRGAN, 'ragan', 'hinge')."""
    ema: float = setting(0.999, minimum=0)
    """EMA decay of the exported generator (no flag: the library's and scripts' choice)."""
    previews: int = setting(3, minimum=0)
    """Val items rendered at each checkpoint (no flag)."""
    amp: bool = setting(True, flag="no_amp", negated=True)
    """Mixed precision on CUDA (``--no-amp`` turns it off)."""

    def __post_init__(self) -> None:
        check_values(self, ConfigError, "fine-tune")
        if bool(self.pair) == bool(self.model):
            raise ConfigError("give exactly one of --pair NAME or --model GAN_CKPT")

    @classmethod
    def from_flags(cls, values: Mapping[str, Any]) -> FinetuneConfig:
        """Build from ``desra finetune``'s parsed flags (``vars(args)``); flags left unset keep the defaults above."""
        return from_flags(cls, values)

    def train_config(self):
        """The :class:`desra.train.loop.TrainConfig` of this fine-tune."""
        from desra.train.loop import TrainConfig

        return TrainConfig(
            iters=self.iters, lr_g=self.lr, lr_d=self.lr, l1_weight=self.l1_weight,
            percep_weight=self.percep_weight, gan_weight=self.gan_weight, gan_kind=self.gan_kind,
            ema=self.ema, batch=self.batch, patch=self.patch, seed=self.seed,
            save_every=self.save_every, log_every=max(1, min(10, self.save_every)), device=self.device, amp=self.amp,
        )


@dataclass(frozen=True)
class FinetuneResult:
    """Files a finished fine-tune leaves in its run folder."""

    out: Path
    """Run folder."""
    model: Path
    """``model.safetensors``: fine-tuned generator with desra metadata."""
    basicsr_model: Path
    """``model_basicsr.pth``: ``{"params_ema": ...}`` for basicsr / Real-ESRGAN."""
    options: Path
    """``options.yml``: basicsr options to continue training."""
    iterations: int
    """Iterations completed."""
    wall_s: float
    """Seconds this call trained."""
    device: str
    """Device used."""


@dataclass(frozen=True)
class TrainData:
    """Train-split images of a set in memory."""

    lr: list[np.ndarray]
    """(h, w, 3) float32 LR images."""
    target: list[np.ndarray]
    """(s*h, s*w, 3) float32 pseudo-GT images."""
    scale: int
    """SR scale."""
    lr_patch: int
    """LR crop size actually used (patch / scale, shrunk to the smallest image)."""


def load_train_data(set_dir: str | os.PathLike, patch: int) -> TrainData:
    """Read the train split (LR + pseudo-GT) and fix the LR crop size; ``DatasetError`` when unusable."""
    from desra.repair.curated import check_scale, open_set

    curated = open_set(set_dir)
    items = curated.items("train")
    if not items:
        raise DatasetError(
            f"the set {curated.root} has no train items; add LR images with `desra set add` "
            f"and split with `desra set split {curated.root} --val 0.75`"
        )
    scale = curated.scale
    lrs, targets = [], []
    for item in items:
        arrays = curated.load(item.id)
        check_scale(arrays.lr.shape, arrays.pseudo_gt.shape, scale, f"pseudo-GT of {item.id}")
        lrs.append(arrays.lr)
        targets.append(arrays.pseudo_gt)
    if patch % scale:
        raise ConfigError(f"--patch {patch} is not a multiple of the model scale {scale}; use e.g. {patch - patch % scale}")
    smallest = min(min(lr.shape[:2]) for lr in lrs)
    lr_patch = min(patch // scale, smallest)
    if lr_patch < patch // scale:
        warnings.warn(
            f"--patch {patch} is larger than the smallest train image ({smallest * scale} px at SR size); "
            f"using {lr_patch * scale} px crops", stacklevel=2,
        )
    return TrainData(lrs, targets, scale, lr_patch)


def make_batch_fn(data: TrainData, batch: int, seed: int) -> Callable[..., tuple[Any, Any]]:
    """``batch_fn(i, rank=0) -> (lr (B,3,p,p), target (B,3,sp,sp))`` float32 tensors: aligned random crops with flips, pure in (seed, i, rank)."""
    import torch

    p, s = data.lr_patch, data.scale

    def batch_fn(iteration: int, rank: int = 0):
        # Rank 0 keeps the one-process seed, so a single-process run is unchanged; other torchrun
        # ranks (>= 1, never colliding with it) draw their own crops.
        rng = np.random.default_rng([seed, iteration] if rank == 0 else [seed, iteration, rank])
        lrs, hrs = [], []
        for _ in range(batch):
            k = int(rng.integers(len(data.lr)))
            lr_img, hr_img = data.lr[k], data.target[k]
            y = int(rng.integers(lr_img.shape[0] - p + 1))
            x = int(rng.integers(lr_img.shape[1] - p + 1))
            lr_crop = lr_img[y:y + p, x:x + p]
            hr_crop = hr_img[y * s:(y + p) * s, x * s:(x + p) * s]
            # The 8 flips/rotations of the square, the same for both crops so they stay aligned.
            hflip, vflip, transpose = rng.random(3) < 0.5
            for flip, fn in ((hflip, np.fliplr), (vflip, np.flipud), (transpose, lambda a: a.transpose(1, 0, 2))):
                if flip:
                    lr_crop, hr_crop = fn(lr_crop), fn(hr_crop)
            lrs.append(np.ascontiguousarray(lr_crop.transpose(2, 0, 1)))
            hrs.append(np.ascontiguousarray(hr_crop.transpose(2, 0, 1)))
        return torch.from_numpy(np.stack(lrs)), torch.from_numpy(np.stack(hrs))

    return batch_fn


def _drop_corrupt_checkpoints(out: Path, emit: Callable[[dict[str, Any]], None]) -> None:
    """Set aside (rename ``*.corrupt``) final-named checkpoints that do not load, newest first, so resume takes the last good one."""
    from desra.train.loop import list_checkpoints, load_checkpoint

    for _, path in reversed(list_checkpoints(out)):
        try:
            state = load_checkpoint(path)
            if "iteration" in state and "generator" in state:
                return
        except CheckpointError:
            pass
        path.rename(path.with_name(path.name + ".corrupt"))
        emit({"event": "warning", "message": f"checkpoint {path.name} is unreadable; set aside, resuming from the previous one"})


def _write_previews(ema, items: list, scale: int, folder: Path, device: str) -> dict[str, float]:
    """Render val items with the EMA generator (centre crop of at most 128 LR px) -> mean L1 to their pseudo-GT."""
    import torch

    from desra.core.imageio import write_image

    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for item_id, lr, target in items:
        h, w = lr.shape[:2]
        c = min(128, h, w)
        y, x = (h - c) // 2, (w - c) // 2
        crop = torch.from_numpy(np.ascontiguousarray(lr[y:y + c, x:x + c].transpose(2, 0, 1)))[None].to(device)
        sr = ema(crop).float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
        write_image(folder / f"{item_id}.png", sr)
        errors.append(float(np.abs(sr - target[y * scale:(y + c) * scale, x * scale:(x + c) * scale]).mean()))
    return {"val_l1_pseudo_gt": float(np.mean(errors))} if errors else {}


def finetune(
    config: FinetuneConfig,
    *,
    resume: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the GAN generator of ``config`` on the set's pseudo-GT and export the result.

    Under torchrun every process calls this; rank 0 alone writes the run folder (events, run.json,
    checkpoints, previews, exports) and every rank returns the same result once the exports exist.
    """
    from desra.train.distributed import distributed

    if config.out is None:
        raise ConfigError("a fine-tune needs a run folder: pass --out DIR")
    with distributed(config.device) as info:
        return _finetune(config, info, resume=resume, on_event=on_event)


def _finetune(config: FinetuneConfig, info, *, resume: bool, on_event) -> FinetuneResult:
    """:func:`finetune` in one process of ``info`` (a :class:`desra.train.distributed.Distributed`)."""
    from desra.core.atomic import atomic_write_text
    from desra.models.checkpoint import load_model, save_basicsr, save_model
    from desra.models.discriminator import load_discriminator, shipped_discriminator
    from desra.models.pairs import load_pair
    from desra.repair.basicsr_export import basicsr_options, write_basicsr_data
    from desra.repair.curated import open_set
    from desra.train.loop import event_writer, latest_checkpoint, train

    out = Path(config.out).expanduser().resolve()
    if not resume and latest_checkpoint(out) is not None:
        raise ConfigError(
            f"{out} already holds a fine-tune (newest checkpoint {latest_checkpoint(out).name}); pass --resume to "
            "continue it or choose a new --out folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    device = info.device

    emit = event_writer(out, info, on_event)
    data = load_train_data(config.set_dir, config.patch)  # a set problem should surface before models load
    if config.pair:
        _, gan = load_pair(config.pair)
        disc_path = config.disc or shipped_discriminator(config.pair)
    else:
        gan = load_model(config.model, role="gan")
        disc_path = config.disc
    if disc_path is None:
        import torch

        # A fresh D's initialisation follows the run's seed, not whatever the global RNG holds, so the
        # same command gives the same run (and the same on every torchrun rank).
        torch.manual_seed(config.seed)
    discriminator, disc_info = load_discriminator(disc_path)
    if disc_path is None and info.is_main:
        message = ("no discriminator given and none is shipped for this model: starting from a FRESH U-Net SN "
                   "discriminator, whose early feedback is noise; pass --disc D_CKPT when you have it")
        warnings.warn(message, stacklevel=3)
        emit({"event": "warning", "message": message})
    if data.scale != gan.descriptor.scale:
        raise DatasetError(
            f"the set {config.set_dir} is x{data.scale} but the model {gan.descriptor.name} is x{gan.descriptor.scale}; "
            "fine-tune with a set made by this model's pair"
        )
    curated = open_set(config.set_dir)
    val_items = []
    for item in curated.items("val")[: config.previews]:
        arrays = curated.load(item.id)
        val_items.append((item.id, arrays.lr, arrays.pseudo_gt))

    run_info = {
        "config": dataclasses.asdict(config),
        "set": str(curated.root),
        "start_model": gan.descriptor.to_dict(),
        "discriminator": disc_info,
        "device": device,
        "processes": info.world,
        "global_batch": config.batch * info.world,
        "lr_patch": data.lr_patch,
        "train_items": len(data.lr),
    }
    if info.is_main:
        if resume:
            _drop_corrupt_checkpoints(out, emit)
        if not resume or not (out / "run.json").exists():
            atomic_write_text(out / "run.json", json.dumps(run_info, indent=2))
    info.barrier()  # every rank resumes from the checkpoint rank 0 has just vetted

    def preview(iteration: int, ema) -> dict[str, float]:
        return _write_previews(ema, val_items, data.scale, out / "previews" / f"iter_{iteration:06d}", device)

    from desra.models.lineage import (
        LINEAGE_KEY,
        current_command,
        make_lineage,
        metadata_of_file,
        weights_sha256,
    )

    start_sha256 = weights_sha256(gan.module)  # train() changes gan.module in place
    result = train(
        config.train_config(), gan.module, discriminator, make_batch_fn(data, config.batch, config.seed), out,
        resume=resume, on_event=on_event, preview_fn=preview,
    )
    model_path, basicsr_path, options = out / "model.safetensors", out / "model_basicsr.pth", out / "options.yml"
    if info.is_main:
        descriptor = dataclasses.replace(gan.descriptor, name=f"{gan.descriptor.name}-desra", role="gan", source="")
        extra = {"finetuned_from": gan.descriptor.name, "set": str(curated.root), "iterations": result.iterations,
                 "finetune": dataclasses.asdict(config)}
        recipe = {"command": current_command(), "config": dataclasses.asdict(config), "iterations": result.iterations, "set": str(curated.root)}

        def lineage(weights) -> dict[str, Any]:
            return make_lineage("finetune", weights, source_sha256=start_sha256, source_name=gan.descriptor.name, recipe=recipe,
                                source_metadata=metadata_of_file(gan.descriptor.source))

        save_model(model_path, result.ema, descriptor, extra_metadata={**extra, LINEAGE_KEY: lineage(result.ema)})
        # The raw (non-EMA) weights too: after ~1000 iterations an EMA of decay 0.999 still holds
        # 0.999^1000 = 37 % of the starting weights, so users may want to compare both.
        save_model(out / "generator.safetensors", result.generator, descriptor,
                   extra_metadata={**extra, "weights": "raw", LINEAGE_KEY: lineage(result.generator)})
        save_basicsr(basicsr_path, result.ema, key="params_ema")
        save_basicsr(out / "discriminator_basicsr.pth", discriminator, key="params")
        atomic_write_text(options, basicsr_options(config, descriptor, disc_info, out, data.scale))
        write_basicsr_data(curated, out / "basicsr_data")
    info.barrier()  # the files this returns exist for every rank
    return FinetuneResult(out, model_path, basicsr_path, options, result.iterations, result.wall_s, result.device)
