"""Where a training process runs: the device, and its place in a ``torchrun`` launch (DDP).

When ``WORLD_SIZE`` > 1, :func:`distributed` joins the process group (nccl on CUDA, gloo on CPU) and
gives each process the GPU of its ``LOCAL_RANK``; :func:`desra.train.loop.train` then asks
``batch_fn(iteration, rank)`` for that process's own batch (:func:`rank_batches`) and averages the
logged losses over ranks (:func:`mean_over_ranks`). One process never touches ``torch.distributed``.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from desra.core.errors import ConfigError, DeviceError
from desra.core.process import die_with_parent


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is present else 'cpu'; other names are checked and returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was asked for but no CUDA GPU is available; use device 'auto' or 'cpu'")
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


def rank_batches(batch_fn: Callable[..., tuple[Any, Any]], info: Distributed) -> Callable[[int], tuple[Any, Any]]:
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


def mean_over_ranks(values: dict[str, float], info: Distributed) -> dict[str, float]:
    """Average logged numbers over all processes (each saw its own batch); unchanged for one process."""
    if info.world == 1 or not values:
        return values
    import torch
    import torch.distributed as dist

    keys = list(values)
    total = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(total)
    return dict(zip(keys, (total / info.world).tolist(), strict=True))
