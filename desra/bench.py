"""Named benchmarks for ``desra bench``.

Speed and memory targets live here, never in timed tests. A benchmark is a function that takes a
:class:`BenchContext` and returns :class:`BenchResult` rows; it is registered by name with
:func:`register_benchmark` in one of the modules listed in ``BENCHMARK_MODULES`` (written out by
hand, imported only when benchmarks run).
"""

from __future__ import annotations

import importlib
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from desra.errors import DuplicateNameError, UnknownNameError

BENCHMARK_MODULES = (
    "desra.benchmarks.sr",
    "desra.benchmarks.detect",
    "desra.benchmarks.finetune",
    "desra.benchmarks.fingerprint",
)


@dataclass(frozen=True)
class BenchContext:
    """What a benchmark may use: the device to run on and how many timed repeats to take."""

    device: str = "cpu"
    repeats: int = 5
    quick: bool = False


@dataclass(frozen=True)
class BenchResult:
    """One measured number: ``metric`` in ``unit`` for the given parameters (median of repeats)."""

    metric: str
    value: float
    unit: str
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: its name, a one-line description and the function that runs it."""

    name: str
    description: str
    run: Callable[[BenchContext], list[BenchResult]]


_REGISTRY: dict[str, Benchmark] = {}


def register_benchmark(name: str, description: str) -> Callable:
    """Decorator registering ``fn(ctx) -> list[BenchResult]`` under ``name``."""

    def decorate(fn: Callable[[BenchContext], list[BenchResult]]):
        if name in _REGISTRY:
            raise DuplicateNameError(f"benchmark {name!r} is registered twice")
        _REGISTRY[name] = Benchmark(name, description, fn)
        return fn

    return decorate


def _load_all() -> None:
    for module in BENCHMARK_MODULES:
        importlib.import_module(module)


def list_benchmarks() -> list[Benchmark]:
    """All registered benchmarks, sorted by name."""
    _load_all()
    return sorted(_REGISTRY.values(), key=lambda b: b.name)


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def embedded_network() -> tuple[str, dict[str, Any]]:
    """(architecture, arch_params) of desra's embedded pair, from the registry: benchmarks time the shipped network."""
    from desra.registry import get_model

    entry = get_model("desra-demo-x4-gan")
    return entry.architecture, dict(entry.arch_params)


def environment_info(device: str) -> dict[str, Any]:
    """Device and library versions recorded with every benchmark report."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "device": device,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        import cv2

        info["opencv"] = cv2.__version__
    except ImportError:
        pass
    return info


def run_benchmarks(names: Iterable[str] | None, ctx: BenchContext) -> dict[str, Any]:
    """Run the named benchmarks (all when ``names`` is empty) and return a JSON-ready report."""
    _load_all()
    selected = list(names or sorted(_REGISTRY))
    for name in selected:
        if name not in _REGISTRY:
            known = ", ".join(sorted(_REGISTRY)) or "none"
            raise UnknownNameError(f"unknown benchmark {name!r}; registered: {known}")
    report: dict[str, Any] = {"environment": environment_info(ctx.device), "benchmarks": {}}
    for name in selected:
        results = _REGISTRY[name].run(ctx)
        report["benchmarks"][name] = [asdict(r) for r in results]
    return report
