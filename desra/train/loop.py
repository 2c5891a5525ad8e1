"""The one L1/GAN training loop of desra (zoo models and DeSRA fine-tuning both call :func:`train`).

Generator loss: ``l1 * L1 + percep * feature-matching + gan * adversarial`` (DeSRA Sec. 3.3 /
Real-ESRGAN: ``L = l1 L_rec + l2 L_percep + l3 L_adv``; the perceptual term is the download-free
discriminator feature matching of :mod:`desra.train.losses`). The discriminator, when given and when a
GAN or perceptual weight is set, is trained every iteration after the generator. An EMA copy of
the generator (decay ``ema``) is what gets exported.

Reproducible and resumable: data come from ``batch_fn(iteration)``, which must be a pure function
of the iteration (and the caller's seed), so a run resumed from a checkpoint sees exactly the
batches an uninterrupted run would have. Checkpoints ``out_dir/ckpt/iter_XXXXXX.pt`` hold plain
tensors and dicts only (``torch.load(weights_only=True)`` reads them) and are written atomically.

Multi-process (``torchrun``, DDP): when ``WORLD_SIZE`` > 1, :func:`distributed` joins the process
group (nccl on CUDA, gloo on CPU) and gives each process the GPU of its ``LOCAL_RANK``; :func:`train`
then wraps generator and discriminator in ``DistributedDataParallel`` and asks
``batch_fn(iteration, rank)`` for that process's own batch, so the batch size is per process
(basicsr's ``batch_size_per_gpu``). Only rank 0 writes checkpoints, events and previews; every rank
resumes from the same checkpoint. One process never touches ``torch.distributed``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from desra.core.atomic import atomic_path
from desra.core.errors import CheckpointError, ConfigError
from desra.core.events import append_event
from desra.core.process import die_with_parent
from desra.train.losses import GAN_KINDS

_CKPT_NAME = re.compile(r"^iter_(\d{6,})\.pt$")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training run."""

    iters: int = 1000
    """Total generator iterations (a resumed run continues up to this)."""
    lr_g: float = 1e-4
    """Adam learning rate of the generator."""
    lr_d: float = 1e-4
    """Adam learning rate of the discriminator."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas of both optimisers (Real-ESRGAN's)."""
    l1_weight: float = 1.0
    """Weight of the L1 reconstruction loss."""
    percep_weight: float = 0.0
    """Weight of the perceptual term (discriminator feature matching; needs a discriminator)."""
    gan_weight: float = 0.0
    """Weight of the generator's adversarial loss (needs a discriminator)."""
    gan_kind: str = "vanilla"
    """GAN loss: 'vanilla' (Real-ESRGAN), 'ragan' (relativistic average) or 'hinge'."""
    d_warmup: int = 0
    """Iterations at the start where only the discriminator learns (generator frozen)."""
    ema: float = 0.999
    """Decay of the exponential moving average of generator weights (0 disables it; warmed up, see ema_decay)."""
    batch: int = 8
    """Batch size batch_fn produces (recorded; batch_fn decides)."""
    patch: int = 128
    """HR patch size batch_fn produces (recorded; batch_fn decides)."""
    seed: int = 0
    """Seed of torch's generator at the start (data seeding is batch_fn's job)."""
    save_every: int = 500
    """Write a checkpoint every this many iterations (and always at the end)."""
    keep_checkpoints: int = 3
    """How many of the newest checkpoints to keep (older ones are deleted)."""
    log_every: int = 10
    """Append an event to events.jsonl every this many iterations."""
    device: str = "auto"
    """'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'."""
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""

    def __post_init__(self) -> None:
        checks = [
            (self.iters >= 1, f"iters must be >= 1, got {self.iters}"),
            (self.lr_g > 0 and self.lr_d > 0, f"learning rates must be > 0, got lr_g={self.lr_g}, lr_d={self.lr_d}"),
            (min(self.l1_weight, self.percep_weight, self.gan_weight) >= 0, "loss weights must be >= 0"),
            (self.gan_kind in GAN_KINDS, f"gan_kind {self.gan_kind!r} is not one of {GAN_KINDS}"),
            (0 <= self.ema < 1, f"ema must be in [0, 1), got {self.ema}"),
            (self.save_every >= 1 and self.log_every >= 1 and self.keep_checkpoints >= 1,
             "save_every, log_every and keep_checkpoints must be >= 1"),
            (self.l1_weight + self.percep_weight + self.gan_weight > 0, "at least one loss weight must be > 0"),
            (0 <= self.d_warmup < self.iters, f"d_warmup must be in [0, iters), got {self.d_warmup}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"invalid training config: {message}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (e.g. YAML); unknown keys raise ConfigError naming the known ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; known options are {sorted(known)}")
        values = dict(values)
        if "betas" in values:
            values["betas"] = tuple(float(b) for b in values["betas"])
        return cls(**values)


@dataclass(frozen=True)
class TrainResult:
    """What a finished :func:`train` call leaves behind."""

    out_dir: Path
    """The run folder (ckpt/, events.jsonl)."""
    checkpoint: Path
    """The last checkpoint written (iteration == config.iters)."""
    iterations: int
    """Iterations completed in total (== config.iters)."""
    wall_s: float
    """Seconds this call spent training (not counting earlier runs resumed from)."""
    device: str
    """The device trained on ('cpu', 'cuda:0', ...)."""
    losses: dict[str, float] = field(default_factory=dict)
    """Mean losses over the last logging window."""
    generator: Any = None
    """The trained generator (torch.nn.Module, train mode, on ``device``)."""
    ema: Any = None
    """The EMA generator (eval mode); equals ``generator`` when EMA is off."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present else 'cpu'; other names are checked and returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but no CUDA GPU is available; use device 'auto' or 'cpu'")
    return device


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer; torchrun sets it, so launch with torchrun or unset it") from None


def launch_rank() -> int:
    """Global rank torchrun gave this process (``RANK``), 0 without torchrun."""
    return _env_int("RANK", 0) if _env_int("WORLD_SIZE", 1) > 1 else 0


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` launch; a plain process is rank 0 of 1."""

    rank: int
    """Global rank; rank 0 writes every file."""
    world: int
    """Number of processes (1 without torchrun)."""
    local_rank: int
    """Rank on this machine; picks the GPU."""
    device: str
    """Device of this process ('cpu', 'cuda:LOCAL_RANK', ...)."""

    @property
    def is_main(self) -> bool:
        """True on the process that writes checkpoints, events, previews and exports."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every process gets here (nothing to wait for with one process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier(device_ids=[self.local_rank] if self.device.startswith("cuda") else None)


def _rank_device(device: str, local_rank: int) -> str:
    """The device of torchrun process ``local_rank``: CPU stays CPU, a GPU request becomes ``cuda:LOCAL_RANK``."""
    import torch

    resolved = resolve_device(device)
    if not resolved.startswith("cuda"):
        return resolved
    if resolved != "cuda":
        raise ConfigError(
            f"device {device!r} names one GPU, but under torchrun each process takes the GPU of its LOCAL_RANK; "
            "pass --device cuda (or auto) and choose GPUs with CUDA_VISIBLE_DEVICES"
        )
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"torchrun started a process with LOCAL_RANK={local_rank} but only {count} GPU(s) are visible; "
            f"use --nproc_per_node {count} or fewer"
        )
    return f"cuda:{local_rank}"


@contextlib.contextmanager
def distributed(device: str = "auto") -> Iterator[Distributed]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (nccl on CUDA, gloo on CPU), leave it on exit or error.

    Yields this process's :class:`Distributed`. Nested use (``desra.repair.finetune`` around :func:`train`)
    reuses the group the outer one joined; one process starts nothing.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        yield Distributed(0, 1, 0, resolve_device(device))
        return
    import torch
    import torch.distributed as dist

    local_rank = _env_int("LOCAL_RANK", 0)
    info = Distributed(launch_rank(), world, local_rank, _rank_device(device, local_rank))
    if dist.is_initialized():
        yield info
        return
    die_with_parent()  # torchrun starts workers in sessions of their own; a kill -9 of it must take them along
    on_gpu = info.device.startswith("cuda")
    if on_gpu:
        torch.cuda.set_device(info.device)
    dist.init_process_group("nccl" if on_gpu else "gloo")
    try:
        yield info
    finally:
        dist.destroy_process_group()


def _rank_batches(batch_fn: Callable[..., tuple[Any, Any]], info: Distributed) -> Callable[[int], tuple[Any, Any]]:
    """``iteration -> (lr, hr)`` of this process: ``batch_fn`` itself for one process, ``batch_fn(i, rank)`` under torchrun."""
    if info.world == 1:
        return batch_fn
    try:
        inspect.signature(batch_fn).bind(1, 0)
    except (TypeError, ValueError):
        raise ConfigError(
            f"this run was launched as {info.world} torchrun processes, but its batch_fn takes only the iteration, "
            "so every process would train on the same data; run it as one process (without torchrun), or give "
            "batch_fn a rank argument"
        ) from None
    return lambda iteration: batch_fn(iteration, info.rank)


def _mean_over_ranks(values: dict[str, float], info: Distributed) -> dict[str, float]:
    """Average logged numbers over all processes (each saw its own batch); unchanged for one process."""
    if info.world == 1 or not values:
        return values
    import torch
    import torch.distributed as dist

    keys = list(values)
    total = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(total)
    return dict(zip(keys, (total / info.world).tolist(), strict=True))


def checkpoint_path(out_dir: str | Path, iteration: int) -> Path:
    """``out_dir/ckpt/iter_XXXXXX.pt`` for ``iteration``."""
    return Path(out_dir) / "ckpt" / f"iter_{iteration:06d}.pt"


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``out_dir/ckpt`` as ``(iteration, path)``, oldest first.

    Only final names count: a write in progress lives under a hidden temporary name until it is
    complete and renamed, so a partial file is never listed.
    """
    folder = Path(out_dir) / "ckpt"
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _CKPT_NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None when there is none."""
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Read a training checkpoint with ``torch.load(weights_only=True)`` onto ``map_location``; CheckpointError if unreadable."""
    import torch

    try:
        return torch.load(Path(path), map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise CheckpointError(f"cannot read training checkpoint {path}: {error}; delete it to resume from the previous one") from error


def ema_decay(decay: float, step: int) -> float:
    """EMA decay used after ``step`` generator updates: ``min(decay, (1 + step) / (10 + step))``.

    The warm-up keeps a short run's average from being dominated by its starting weights (with a
    flat 0.999, 22 % of the EMA after 1500 updates would still be the initial network).
    """
    return min(decay, (1.0 + step) / (10.0 + step))


def _ema_update(ema_model, model, decay: float) -> None:
    import torch

    with torch.no_grad():
        for ema_p, p in zip(ema_model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(ema_model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)


def _set_requires_grad(module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def train(
    config: TrainConfig,
    generator,
    discriminator,
    batch_fn: Callable[..., tuple[Any, Any]],
    out_dir: str | Path,
    *,
    resume: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    preview_fn: Callable[[int, Any], dict[str, Any] | None] | None = None,
) -> TrainResult:
    """Train ``generator`` (and ``discriminator``, may be None) for ``config.iters`` iterations.

    ``batch_fn(i)`` -> ``(lr, hr)`` tensors ``(N, 3, h, w)`` / ``(N, 3, s*h, s*w)`` in [0, 1] for
    iteration ``i`` (1-based), the same every time it is called with ``i``; under torchrun it is
    called as ``batch_fn(i, rank)`` and must give each rank different data. ``on_event(event)``
    receives every logged event (the dicts written to ``events.jsonl``; rank 0 only);
    ``preview_fn(i, ema)`` is called (on rank 0) at each checkpoint with the EMA generator in eval
    mode and may return a dict of numbers that is logged. With ``resume`` the newest checkpoint in
    ``out_dir`` is restored first (generator, discriminator, EMA, optimisers, iteration; on every
    rank); without it ``out_dir`` must hold no checkpoints, so a finished run is never overwritten
    by accident.
    """
    with distributed(config.device) as info:
        return _train(config, generator, discriminator, _rank_batches(batch_fn, info), Path(out_dir), info,
                      resume=resume, on_event=on_event, preview_fn=preview_fn)


def _train(config: TrainConfig, generator, discriminator, batch_fn: Callable[[int], tuple[Any, Any]], out_dir: Path,
           info: Distributed, *, resume: bool, on_event, preview_fn) -> TrainResult:
    """:func:`train` in one process of ``info`` (``batch_fn`` already gives this rank's batches)."""
    import torch

    device = info.device
    uses_d = discriminator is not None and (config.gan_weight > 0 or config.percep_weight > 0)
    if (config.gan_weight > 0 or config.percep_weight > 0) and discriminator is None:
        raise ConfigError(
            f"gan_weight={config.gan_weight} / percep_weight={config.percep_weight} need a discriminator, but none was given; "
            "pass one or set both weights to 0"
        )
    if not uses_d and config.d_warmup:
        raise ConfigError("d_warmup needs a discriminator and a GAN or perceptual weight")

    torch.manual_seed(config.seed)
    generator = generator.to(device).train()
    ema_model = copy.deepcopy(generator).eval() if config.ema > 0 else generator
    if config.ema > 0:
        _set_requires_grad(ema_model, False)
    opt_g = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=config.lr_g, betas=config.betas)
    opt_d = None
    if uses_d:
        discriminator = discriminator.to(device).train()
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=config.betas)
    use_amp = config.amp and device.startswith("cuda")
    scaler_g = torch.amp.GradScaler("cuda", enabled=use_amp)
    scaler_d = torch.amp.GradScaler("cuda", enabled=use_amp)

    start = 0
    existing = latest_checkpoint(out_dir)
    if resume and existing is not None:
        state = load_checkpoint(existing, map_location=device)
        generator.load_state_dict(state["generator"])
        if config.ema > 0:
            ema_model.load_state_dict(state["ema"])
        opt_g.load_state_dict(state["opt_g"])
        if uses_d:
            if state.get("discriminator") is None:
                raise CheckpointError(f"{existing} holds no discriminator but this run trains one; resume with the same config")
            discriminator.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["opt_d"])
        if use_amp and state.get("scaler_g"):
            scaler_g.load_state_dict(state["scaler_g"])
            scaler_d.load_state_dict(state["scaler_d"])
        start = int(state["iteration"])
    elif existing is not None:
        raise ConfigError(
            f"{out_dir} already holds checkpoints (newest {existing.name}); pass --resume to continue that run "
            "or choose an empty output folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)

    # Forward passes whose gradients must be averaged over ranks go through these (the modules
    # themselves for one process); state dicts, EMA and the feature hooks use the plain modules.
    g_run, d_run = generator, discriminator
    if info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.local_rank] if device.startswith("cuda") else None
        g_run = DistributedDataParallel(generator, device_ids=ids)
        if uses_d:
            # Spectral norm's power-iteration buffers depend only on the weights (equal on every rank
            # after each gradient all-reduce) and on the number of forwards (equal too), so they stay
            # equal without a broadcast before each of D's forwards; DDP copies rank 0's once here.
            d_run = DistributedDataParallel(discriminator, device_ids=ids, forward_sync_buffers=False)

    def emit(event: dict[str, Any]) -> None:
        if not info.is_main:
            return
        append_event(out_dir, event)
        if on_event is not None:
            on_event(event)

    def save(iteration: int) -> Path:
        path = checkpoint_path(out_dir, iteration)
        if info.is_main:
            write(iteration, path)
        info.barrier()  # no rank runs on (or returns) before rank 0's checkpoint is complete
        return path

    def write(iteration: int, path: Path) -> None:
        state = {
            "iteration": iteration,
            "generator": generator.state_dict(),
            "ema": ema_model.state_dict() if config.ema > 0 else None,
            "discriminator": discriminator.state_dict() if uses_d else None,
            "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict() if opt_d is not None else None,
            "scaler_g": scaler_g.state_dict() if use_amp else None,
            "scaler_d": scaler_d.state_dict() if use_amp else None,
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        }
        with atomic_path(path) as temp:
            torch.save(state, temp)
        for _, old in list_checkpoints(out_dir)[: -config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        emit({"event": "checkpoint", "iter": iteration, "path": str(path), "time": time.time()})
        if preview_fn is not None:
            ema_model.eval()
            with torch.no_grad():
                metrics = preview_fn(iteration, ema_model)
            if metrics:
                emit({"event": "preview", "iter": iteration, "metrics": metrics, "time": time.time()})

    from desra.train import losses as L

    started = time.time()
    # Marks where this call starts, so readers of the events can tell iterations redone after a kill.
    emit({"event": "start", "iter": start, "time": time.time()})
    window: dict[str, list[float]] = {}
    window_start, window_iter = time.time(), start
    last_losses: dict[str, float] = {}
    last_path = latest_checkpoint(out_dir) if start else None

    def amp():
        return torch.autocast("cuda") if use_amp else contextlib.nullcontext()

    for iteration in range(start + 1, config.iters + 1):
        lr, hr = batch_fn(iteration)
        lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
        warmup = iteration <= config.d_warmup
        logged: dict[str, float] = {}

        # Generator step (skipped while only the discriminator warms up).
        if uses_d:
            _set_requires_grad(discriminator, False)
        if warmup:
            with torch.no_grad(), amp():
                sr = g_run(lr)
        else:
            with amp():
                sr = g_run(lr)
                loss_g = sr.new_zeros((), dtype=torch.float32)
                if config.l1_weight > 0:
                    rec = L.l1(sr.float(), hr)
                    loss_g = loss_g + config.l1_weight * rec
                    logged["l1"] = rec.item()
                if uses_d:
                    fake_logits, fake_feats = L.run_with_features(discriminator, sr)
                    with torch.no_grad():
                        real_logits, real_feats = L.run_with_features(discriminator, hr)
                    if config.percep_weight > 0:
                        fm = L.feature_matching([f.float() for f in fake_feats], [f.float() for f in real_feats])
                        loss_g = loss_g + config.percep_weight * fm
                        logged["percep"] = fm.item()
                    if config.gan_weight > 0:
                        adv = L.gan_generator_loss(fake_logits.float(), real_logits.float(), config.gan_kind)
                        loss_g = loss_g + config.gan_weight * adv
                        logged["gan_g"] = adv.item()
            if not torch.isfinite(loss_g):
                raise ConfigError(
                    f"generator loss became {loss_g.item()} at iteration {iteration}; lower the learning rates or "
                    "the GAN weight, or resume from the previous checkpoint"
                )
            opt_g.zero_grad(set_to_none=True)
            scaler_g.scale(loss_g).backward()
            scaler_g.step(opt_g)
            scaler_g.update()
            if config.ema > 0:
                _ema_update(ema_model, generator, ema_decay(config.ema, iteration - config.d_warmup))

        # Discriminator step.
        if uses_d:
            _set_requires_grad(discriminator, True)
            with amp():
                real_logits = d_run(hr)
                fake_logits = d_run(sr.detach())
                loss_d = L.gan_discriminator_loss(real_logits.float(), fake_logits.float(), config.gan_kind)
            opt_d.zero_grad(set_to_none=True)
            scaler_d.scale(loss_d).backward()
            scaler_d.step(opt_d)
            scaler_d.update()
            logged["d"] = loss_d.item()
            logged["d_real"] = torch.sigmoid(real_logits.float()).mean().item()
            logged["d_fake"] = torch.sigmoid(fake_logits.float()).mean().item()

        for key, value in logged.items():
            window.setdefault(key, []).append(value)
        if iteration % config.log_every == 0 or iteration == config.iters:
            now = time.time()
            it_per_s = (iteration - window_iter) / max(now - window_start, 1e-9)
            last_losses = _mean_over_ranks({k: sum(v) / len(v) for k, v in window.items()}, info)
            emit({
                "iter": iteration,
                "iters": config.iters,
                "losses": last_losses,
                "it_per_s": it_per_s,
                "eta_s": (config.iters - iteration) / it_per_s if it_per_s > 0 else math.inf,
                "time": now,
            })
            window, window_start, window_iter = {}, now, iteration
        if iteration % config.save_every == 0 or iteration == config.iters:
            last_path = save(iteration)

    if last_path is None:
        raise CheckpointError(f"{out_dir} has no checkpoint although the run is complete; remove the folder and train again")
    wall = time.time() - started
    emit({"event": "done", "iter": config.iters, "wall_s": wall, "device": device, "time": time.time()})
    return TrainResult(
        out_dir=out_dir,
        checkpoint=last_path,
        iterations=config.iters,
        wall_s=wall,
        device=device,
        losses=last_losses,
        generator=generator,
        ema=ema_model.eval() if config.ema > 0 else generator,
    )

