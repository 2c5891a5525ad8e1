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

from desra.core.errors import DuplicateNameError, UnknownNameError

BENCHMARK_MODULES = (
    "desra.benchmarks.sr",
    "desra.benchmarks.detect",
    "desra.benchmarks.finetune",
    "desra.benchmarks.fingerprint",
    "desra.benchmarks.gpu",
)

# Named sets of benchmarks run by ``desra bench --suite NAME``, each with the device kind it needs.
# 'gpu': every GPU figure the README reports, planned to take under 8 minutes on one H100/H200.
SUITES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gpu": ("cuda", ("gpu-sr", "gpu-dmap", "finetune-throughput", "fingerprint-extract", "gpu-ddp")),
}


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


def cuda_missing(device: str) -> str | None:
    """Why ``device`` cannot run CUDA benchmarks (one line), or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "needs a CUDA device; torch.cuda.is_available() is False on this machine"
    if not device.startswith("cuda"):
        return f"needs a CUDA device; this run is on {device!r} (a GPU is here: pass --device cuda)"
    return None


def cuda_skip(ctx: BenchContext, name: str) -> list[BenchResult] | None:
    """One NaN row saying why benchmark ``name`` did not run when ``ctx`` has no CUDA device, else None."""
    reason = cuda_missing(ctx.device)
    if reason is None:
        return None
    return [BenchResult(metric="skipped", value=float("nan"), unit="", params={"device": ctx.device}, note=f"{name}: {reason}")]


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
    from desra.models.registry import get_model

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


def run_suite(name: str, ctx: BenchContext, on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every benchmark of suite ``name``, or skip each with its reason when the device is missing.

    The report is that of :func:`run_benchmarks` plus ``suite``, ``skipped`` (name -> reason),
    ``failed`` (name -> error line) and ``seconds`` (name -> wall time). A benchmark that fails is
    recorded and the next one runs, so one run on a lent GPU gives every figure it can;
    ``on_progress(report)`` is called after each benchmark (to save partial results).
    """
    if name not in SUITES:
        raise UnknownNameError(f"unknown suite {name!r}; known: {', '.join(sorted(SUITES))}")
    _load_all()
    needs, names = SUITES[name]
    missing = [n for n in names if n not in _REGISTRY]
    if missing:
        raise UnknownNameError(f"suite {name!r} lists unregistered benchmarks: {', '.join(missing)}")
    reason = cuda_missing(ctx.device) if needs == "cuda" else None
    report: dict[str, Any] = {"environment": environment_info(ctx.device), "suite": name, "benchmarks": {},
                              "skipped": {}, "failed": {}, "seconds": {}}
    for bench in names:
        if reason is not None:
            report["skipped"][bench] = reason
            continue
        start = time.perf_counter()
        try:
            report["benchmarks"][bench] = [asdict(r) for r in _REGISTRY[bench].run(ctx)]
        except Exception as error:  # noqa: BLE001 - recorded per benchmark; the suite goes on
            report["failed"][bench] = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        report["seconds"][bench] = round(time.perf_counter() - start, 2)
        if on_progress is not None:
            on_progress(report)
    return report
