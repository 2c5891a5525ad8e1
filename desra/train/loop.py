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

Multi-process (``torchrun``, DDP): :func:`desra.train.distributed.distributed` joins the process
group; :func:`train` then wraps generator and discriminator in ``DistributedDataParallel`` and asks
``batch_fn(iteration, rank)`` for that process's own batch, so the batch size is per process
(basicsr's ``batch_size_per_gpu``). Only rank 0 writes checkpoints, events and previews; every rank
resumes from the same checkpoint.

One call of :func:`train` is a sequence of named steps over one private state object (``_Run``):
``_setup`` (networks on the device, EMA, optimisers), ``_resume``, ``_wrap_for_ranks``, then per
iteration ``_generator_step``, ``_ema_step``, ``_discriminator_step``, the progress event and
``_save_checkpoint``; events go through :mod:`desra.core.events`. The module is over 400 lines
because those steps share that state and the checkpoint format they write and read back; the
process group lives apart in :mod:`desra.train.distributed`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from desra.core.atomic import atomic_path
from desra.core.errors import CheckpointError, ConfigError
from desra.core.events import append_event
from desra.train.distributed import (
    Distributed,
    distributed,
    mean_over_ranks,
    rank_batches,
)
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
    except Exception as error:  # any unpickling failure means the same to the user
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
        run = _setup(config, generator, discriminator, Path(out_dir), info, on_event, preview_fn)
        start = _resume(run, resume)
        _wrap_for_ranks(run)
        return _loop(run, rank_batches(batch_fn, info), start)


@dataclass
class _Run:
    """What the steps of one :func:`train` call share: the networks, their optimisers and where events go."""

    config: TrainConfig
    """The run's settings."""
    info: Distributed
    """This process's place in the launch."""
    out_dir: Path
    """The run folder (ckpt/, events.jsonl)."""
    generator: Any
    """The generator (plain module: state dicts, EMA and hooks use it)."""
    discriminator: Any
    """The discriminator, or None when no GAN or perceptual term needs one."""
    ema: Any
    """The EMA copy of the generator (the generator itself when EMA is off)."""
    opt_g: Any
    """Adam of the generator."""
    opt_d: Any
    """Adam of the discriminator (None without one)."""
    scaler_g: Any
    """Gradient scaler of the generator's loss (a no-op without AMP)."""
    scaler_d: Any
    """Gradient scaler of the discriminator's loss."""
    use_amp: bool
    """Mixed precision (CUDA only)."""
    emit: Callable[[dict[str, Any]], None]
    """Writes one event of the run (:func:`event_writer`)."""
    preview_fn: Callable[[int, Any], dict[str, Any] | None] | None
    """Called with the EMA generator at each checkpoint (rank 0)."""
    g_run: Any = None
    """What the generator's forward passes go through: the module, or its DDP wrapper under torchrun."""
    d_run: Any = None
    """The same for the discriminator."""

    @property
    def device(self) -> str:
        """The device this process trains on."""
        return self.info.device

    @property
    def uses_d(self) -> bool:
        """True when the discriminator is trained (a GAN or perceptual weight is set)."""
        return self.discriminator is not None


def _setup(config: TrainConfig, generator, discriminator, out_dir: Path, info: Distributed, on_event, preview_fn) -> _Run:
    """Check the networks against the config, move them to the device, build EMA, optimisers and gradient scalers."""
    import torch

    wants_d = config.gan_weight > 0 or config.percep_weight > 0
    if wants_d and discriminator is None:
        raise ConfigError(
            f"gan_weight={config.gan_weight} / percep_weight={config.percep_weight} need a discriminator, but none was given; "
            "pass one or set both weights to 0"
        )
    if not wants_d:
        discriminator = None  # given but without a loss that uses it: left untouched
    if discriminator is None and config.d_warmup:
        raise ConfigError("d_warmup needs a discriminator and a GAN or perceptual weight")

    device = info.device
    torch.manual_seed(config.seed)
    generator = generator.to(device).train()
    ema = copy.deepcopy(generator).eval() if config.ema > 0 else generator
    if config.ema > 0:
        _set_requires_grad(ema, False)
    opt_g = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=config.lr_g, betas=config.betas)
    opt_d = None
    if discriminator is not None:
        discriminator = discriminator.to(device).train()
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=config.betas)
    use_amp = config.amp and device.startswith("cuda")
    return _Run(
        config, info, out_dir, generator, discriminator, ema, opt_g, opt_d,
        torch.amp.GradScaler("cuda", enabled=use_amp), torch.amp.GradScaler("cuda", enabled=use_amp),
        use_amp, event_writer(out_dir, info, on_event), preview_fn,
    )


def _resume(run: _Run, resume: bool) -> int:
    """Restore the newest checkpoint when resuming (refuse an existing run otherwise) -> the iteration to continue from."""
    config, existing = run.config, latest_checkpoint(run.out_dir)
    start = 0
    if resume and existing is not None:
        state = load_checkpoint(existing, map_location=run.device)
        run.generator.load_state_dict(state["generator"])
        if config.ema > 0:
            run.ema.load_state_dict(state["ema"])
        run.opt_g.load_state_dict(state["opt_g"])
        if run.uses_d:
            if state.get("discriminator") is None:
                raise CheckpointError(f"{existing} holds no discriminator but this run trains one; resume with the same config")
            run.discriminator.load_state_dict(state["discriminator"])
            run.opt_d.load_state_dict(state["opt_d"])
        if run.use_amp and state.get("scaler_g"):
            run.scaler_g.load_state_dict(state["scaler_g"])
            run.scaler_d.load_state_dict(state["scaler_d"])
        start = int(state["iteration"])
    elif existing is not None:
        raise ConfigError(
            f"{run.out_dir} already holds checkpoints (newest {existing.name}); pass --resume to continue that run "
            "or choose an empty output folder"
        )
    run.out_dir.mkdir(parents=True, exist_ok=True)
    return start


def _wrap_for_ranks(run: _Run) -> None:
    """Route the forward passes whose gradients must be averaged over ranks through DDP (the modules themselves for one process)."""
    run.g_run, run.d_run = run.generator, run.discriminator
    if run.info.world == 1:
        return
    from torch.nn.parallel import DistributedDataParallel

    ids = [run.info.local_rank] if run.device.startswith("cuda") else None
    run.g_run = DistributedDataParallel(run.generator, device_ids=ids)
    if run.uses_d:
        # Spectral norm's power-iteration buffers depend only on the weights (equal on every rank
        # after each gradient all-reduce) and on the number of forwards (equal too), so they stay
        # equal without a broadcast before each of D's forwards; DDP copies rank 0's once here.
        run.d_run = DistributedDataParallel(run.discriminator, device_ids=ids, forward_sync_buffers=False)


def event_writer(out_dir: Path, info: Distributed, on_event: Callable[[dict[str, Any]], None] | None) -> Callable[[dict[str, Any]], None]:
    """``emit(event)`` for a run: append to ``out_dir``'s events file (:mod:`desra.core.events`) and hand it to ``on_event``, on rank 0 only."""

    def emit(event: dict[str, Any]) -> None:
        if not info.is_main:
            return
        append_event(out_dir, event)
        if on_event is not None:
            on_event(event)

    return emit


def _autocast(run: _Run):
    """Mixed precision around a forward pass when the run uses AMP, else nothing."""
    import torch

    return torch.autocast("cuda") if run.use_amp else contextlib.nullcontext()


def _generator_step(run: _Run, lr, hr, iteration: int, logged: dict[str, float]):
    """One generator update (only a forward pass while the discriminator warms up) -> the SR batch."""
    import torch

    from desra.train import losses as L

    config, discriminator = run.config, run.discriminator
    if run.uses_d:
        _set_requires_grad(discriminator, False)
    if iteration <= config.d_warmup:
        with torch.no_grad(), _autocast(run):
            return run.g_run(lr)
    with _autocast(run):
        sr = run.g_run(lr)
        loss_g = sr.new_zeros((), dtype=torch.float32)
        if config.l1_weight > 0:
            rec = L.l1(sr.float(), hr)
            loss_g = loss_g + config.l1_weight * rec
            logged["l1"] = rec.item()
        if run.uses_d:
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
    run.opt_g.zero_grad(set_to_none=True)
    run.scaler_g.scale(loss_g).backward()
    run.scaler_g.step(run.opt_g)
    run.scaler_g.update()
    return sr


def _ema_step(run: _Run, iteration: int) -> None:
    """Move the EMA generator toward the generator just updated (nothing while D warms up or with EMA off)."""
    config = run.config
    if config.ema > 0 and iteration > config.d_warmup:
        _ema_update(run.ema, run.generator, ema_decay(config.ema, iteration - config.d_warmup))


def _discriminator_step(run: _Run, hr, sr, logged: dict[str, float]) -> None:
    """One discriminator update on the real batch and the (detached) SR batch."""
    import torch

    from desra.train import losses as L

    _set_requires_grad(run.discriminator, True)
    with _autocast(run):
        real_logits = run.d_run(hr)
        fake_logits = run.d_run(sr.detach())
        loss_d = L.gan_discriminator_loss(real_logits.float(), fake_logits.float(), run.config.gan_kind)
    run.opt_d.zero_grad(set_to_none=True)
    run.scaler_d.scale(loss_d).backward()
    run.scaler_d.step(run.opt_d)
    run.scaler_d.update()
    logged["d"] = loss_d.item()
    logged["d_real"] = torch.sigmoid(real_logits.float()).mean().item()
    logged["d_fake"] = torch.sigmoid(fake_logits.float()).mean().item()


def _save_checkpoint(run: _Run, iteration: int) -> Path:
    """Write the checkpoint of ``iteration`` on rank 0 (then prune old ones, log it, preview); every rank waits for it."""
    path = checkpoint_path(run.out_dir, iteration)
    if run.info.is_main:
        _write_checkpoint(run, iteration, path)
        for _, old in list_checkpoints(run.out_dir)[: -run.config.keep_checkpoints]:
            old.unlink(missing_ok=True)
        run.emit({"event": "checkpoint", "iter": iteration, "path": str(path), "time": time.time()})
        _preview(run, iteration)
    run.info.barrier()  # no rank runs on (or returns) before rank 0's checkpoint is complete
    return path


def _write_checkpoint(run: _Run, iteration: int, path: Path) -> None:
    """The checkpoint file: plain tensors and dicts only (``torch.load(weights_only=True)`` reads it), written atomically."""
    import torch

    config = run.config
    state = {
        "iteration": iteration,
        "generator": run.generator.state_dict(),
        "ema": run.ema.state_dict() if config.ema > 0 else None,
        "discriminator": run.discriminator.state_dict() if run.uses_d else None,
        "opt_g": run.opt_g.state_dict(),
        "opt_d": run.opt_d.state_dict() if run.opt_d is not None else None,
        "scaler_g": run.scaler_g.state_dict() if run.use_amp else None,
        "scaler_d": run.scaler_d.state_dict() if run.use_amp else None,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
    }
    with atomic_path(path) as temp:
        torch.save(state, temp)


def _preview(run: _Run, iteration: int) -> None:
    """Call ``preview_fn`` with the EMA generator in eval mode and log the numbers it returns."""
    if run.preview_fn is None:
        return
    import torch

    run.ema.eval()
    with torch.no_grad():
        metrics = run.preview_fn(iteration, run.ema)
    if metrics:
        run.emit({"event": "preview", "iter": iteration, "metrics": metrics, "time": time.time()})


@dataclass
class _LossWindow:
    """Losses logged since the last progress event, and when that window started."""

    started: float
    """time.time() at the window's start."""
    iteration: int
    """The iteration the window started after."""
    values: dict[str, list[float]] = field(default_factory=dict)
    """Each loss term's values, one per iteration."""

    def add(self, logged: dict[str, float]) -> None:
        """Record one iteration's losses."""
        for key, value in logged.items():
            self.values.setdefault(key, []).append(value)


def _progress_event(run: _Run, window: _LossWindow, iteration: int, now: float) -> dict[str, Any]:
    """The events.jsonl progress line of ``iteration``: mean losses of the window (over every rank), speed and ETA."""
    iters = run.config.iters
    it_per_s = (iteration - window.iteration) / max(now - window.started, 1e-9)
    return {
        "iter": iteration,
        "iters": iters,
        "losses": mean_over_ranks({k: sum(v) / len(v) for k, v in window.values.items()}, run.info),
        "it_per_s": it_per_s,
        "eta_s": (iters - iteration) / it_per_s if it_per_s > 0 else math.inf,
        "time": now,
    }


def _loop(run: _Run, batch_fn: Callable[[int], tuple[Any, Any]], start: int) -> TrainResult:
    """Iterations ``start + 1 .. config.iters``: generator step, EMA, discriminator step, events, checkpoints."""
    config, device = run.config, run.device
    started = time.time()
    # Marks where this call starts, so readers of the events can tell iterations redone after a kill.
    run.emit({"event": "start", "iter": start, "time": time.time()})
    window = _LossWindow(time.time(), start)
    last_losses: dict[str, float] = {}
    last_path = latest_checkpoint(run.out_dir) if start else None
    for iteration in range(start + 1, config.iters + 1):
        lr, hr = batch_fn(iteration)
        lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
        logged: dict[str, float] = {}
        sr = _generator_step(run, lr, hr, iteration, logged)
        _ema_step(run, iteration)
        if run.uses_d:
            _discriminator_step(run, hr, sr, logged)
        window.add(logged)
        if iteration % config.log_every == 0 or iteration == config.iters:
            now = time.time()
            event = _progress_event(run, window, iteration, now)
            last_losses = event["losses"]
            run.emit(event)
            window = _LossWindow(now, iteration)
        if iteration % config.save_every == 0 or iteration == config.iters:
            last_path = _save_checkpoint(run, iteration)

    if last_path is None:
        raise CheckpointError(f"{run.out_dir} has no checkpoint although the run is complete; remove the folder and train again")
    wall = time.time() - started
    run.emit({"event": "done", "iter": config.iters, "wall_s": wall, "device": device, "time": time.time()})
    return TrainResult(
        out_dir=run.out_dir,
        checkpoint=last_path,
        iterations=config.iters,
        wall_s=wall,
        device=device,
        losses=last_losses,
        generator=run.generator,
        ema=run.ema.eval() if config.ema > 0 else run.generator,
    )
