"""Batch detection (and ``desra set add``) on Ray Data: the local engine's per-image steps, spread over the
cores and GPUs of a cluster.

:func:`detect_folder_ray` takes what :func:`desra.service.detection.detect_folder` takes and gives
what it gives (the same files in ``out``, byte for byte, and the same ``report.json`` apart from
``elapsed_s``). One row per image streams through:

  LR images:  read + both SR models (``upscale_pair``; an actor pool, one copy of each model per actor,
              a share of a GPU each when the run is on CUDA)
              -> D map, semantics, morphology, regions (``detect_artifacts``) and the image's files
                 (``write_image_outputs``): an actor pool, the segmenter loaded once per actor
  SR pairs:   read -> the same detect-and-write actors

``desra set add`` (:func:`prepare_files_ray`) runs ``desra.service.sets.prepare_file`` (read, SR,
DeSRA-det unless a mask was given) in one actor pool and hands each result back in file order; the
caller stores it, so the set's manifest is written by one process.

An image that fails (a ``DesraError``) travels on as that row's error and is listed as the local engine
lists it; the others go on. Rows reach the driver in the order they finish and are put back in input
order before anything is reported.

Without ``address`` a local Ray is started here (a small object store, no dashboard, quiet logs) and
shut down at the end; with one, the run joins that cluster and only disconnects from it. The workers
read the inputs and write the outputs, so on a cluster both must be on a file system every node sees,
and desra must be installed on every node (docs/scale.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desra.core.errors import ConfigError, DependencyError, DesraError

if TYPE_CHECKING:  # numpy, torch and ray stay out of import time
    from desra.detect.pipeline import DetectConfig
    from desra.models.pairs import ModelPair
    from desra.service.detection import Batch, Semantics
    from desra.service.sets import PreparedImage

INSTALL_HINT = "pip install 'desra[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """Where and how the Ray engine runs."""

    address: str | None = None
    """Ray cluster to join ('auto', 'host:6379', 'ray://host:10001'); None starts a local Ray here."""
    gpus_per_worker: float = 0.5
    """GPU share of each SR and each detect actor when the run is on CUDA (0.5: one of each per GPU)."""
    num_cpus: int | None = None
    """CPUs of a local Ray (default: the cores this process may use); unused with ``address``."""
    object_store_bytes: int = 256 * 1024**2
    """Object store of a local Ray: small, as images beyond it spill to disk; unused with ``address``."""

    def __post_init__(self) -> None:
        if not 0.0 < self.gpus_per_worker <= 8.0:
            raise ConfigError(
                f"--gpus-per-worker must be a GPU share in (0, 8] (got {self.gpus_per_worker}); "
                "0.5 puts one SR and one detect actor on each GPU"
            )


@dataclass(frozen=True)
class _ShippedSemantics:
    """A run's semantics as they travel to the actors: a loaded SegFormer does not pickle, so each actor
    loads it again from its source."""

    semantics: Semantics | None
    """The run's semantics without the loaded segmenter (None: no semantics given)."""
    segmenter: tuple[str, str] | None
    """(source, device) of the run's segmenter; None without one."""

    @classmethod
    def of(cls, semantics: Semantics | None) -> _ShippedSemantics:
        """Pack ``semantics`` for the actors."""
        loaded = semantics.segmenter if semantics is not None else None
        if loaded is None:
            return cls(semantics, None)
        return cls(replace(semantics, segmenter=None), (loaded.name, loaded.device))

    def load(self) -> Semantics | None:
        """The run's semantics in this actor, its segmenter loaded here."""
        if self.segmenter is None:
            return self.semantics
        from desra.detect.semantic import load_segmenter

        source, device = self.segmenter
        return replace(self.semantics, segmenter=load_segmenter(source, device=device))


@dataclass(frozen=True)
class _Plan:
    """What every image's steps need, the same for the whole run: shipped once to each actor."""

    out: Path
    config: DetectConfig
    semantics: _ShippedSemantics
    models: ModelPair | None
    tile: int | None
    half: bool
    save_sr: bool
    save_d: bool


def import_ray():
    """The ``ray`` module with Ray Data, or a one-line :class:`DependencyError` saying how to install it."""
    try:
        import ray
        import ray.data  # the pipeline needs Ray Data, not only Ray core
    except ImportError as error:
        raise DependencyError(f"--engine ray needs Ray Data, which is not installed ({error}); run {INSTALL_HINT}") from None
    return ray


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[Any]:
    """Yield the connected ``ray`` module: reuses a Ray this process is already connected to, else joins
    ``options.address`` or starts a local Ray; shuts down (a local Ray) or disconnects only what it opened."""
    import logging

    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if options.address:
            ray.init(address=options.address, **quiet)
        else:
            cpus = options.num_cpus or len(os.sched_getaffinity(0))
            ray.init(num_cpus=cpus, object_store_memory=options.object_store_bytes, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {options.address}" if options.address else "a local Ray"
        raise ConfigError(f"could not start or join {where}: {error}; check --address, or leave it out for a local Ray") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _quiet_ray_data(ray) -> None:
    """No Ray Data progress bars or per-run log lines: progress goes through the ``progress`` callback."""
    import logging

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _failed(row: dict[str, Any], error: str) -> dict[str, Any]:
    return {"index": row["index"], "entry": "", "error": error}


class _Upscaler:
    """SR actor: reads an LR image and runs both models on it (one copy of each model per actor)."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from desra.core.imageio import read_image
        from desra.detect.pipeline import upscale_pair

        plan = self.plan
        try:
            lr = read_image(row["first"]).rgb
            mse, gan = upscale_pair(lr, plan.models.mse, plan.models.gan, device=plan.config.device, tile=plan.tile, half=plan.half)
        except DesraError as error:
            empty = np.zeros((0, 0, 3), np.float32)  # a failed row keeps the columns of the others
            return {**row, "error": str(error), "mse": empty, "gan": empty}
        return {**row, "mse": mse, "gan": gan}


class _Detector:
    """Detect-and-write actor: D map, semantics (its segmenter loaded once), morphology, regions, then
    the image's files, through the functions the local engine calls."""

    def __init__(self, plan: _Plan) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.plan = plan
        self.semantics = plan.semantics.load()
        self.pool = ThreadPoolExecutor(max_workers=2)  # the overlay is encoded while the rest is written

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        if row["error"]:
            return _failed(row, row["error"])
        try:
            return {"index": row["index"], "entry": json.dumps(self._detect(row)), "error": ""}
        except DesraError as error:
            return _failed(row, str(error))

    def _detect(self, row: dict[str, Any]) -> dict[str, Any]:
        from desra.core.imageio import read_image
        from desra.detect.pipeline import detect_artifacts, pair_facts
        from desra.service.detection import job_inputs, write_image_outputs

        plan, lr_job = self.plan, not row["second"]
        if lr_job:
            mse, gan = row["mse"], row["gan"]
            extra = {**pair_facts(plan.models.mse, plan.models.gan), **job_inputs(row["first"], None)}
        else:
            mse, gan = (read_image(row[key], keep_8bit=True).rgb for key in ("first", "second"))  # as the local engine
            extra = job_inputs(row["first"], row["second"])
        detection = detect_artifacts(mse, gan, plan.config, extra=extra, **self.semantics.detect_kwargs())
        return write_image_outputs(
            plan.out, row["stem"], detection, gan, mse=mse, save_sr=plan.save_sr and lr_job, save_d=plan.save_d, pool=self.pool,
        )


def _pool_options(ray, config: DetectConfig, options: RayOptions, pools: int) -> dict[str, Any]:
    """Ray options of each actor pool (``pools`` of them share the cluster): a GPU share per actor on
    CUDA, one CPU per actor otherwise; each pool grows while work waits and resources are free."""
    cluster = ray.cluster_resources()
    if str(config.device).startswith("cuda"):
        gpus, share = float(cluster.get("GPU", 0)), options.gpus_per_worker
        if gpus < share * pools:
            raise ConfigError(
                f"--device {config.device} with --gpus-per-worker {share:g}: {pools} actor pool(s) need "
                f"{share * pools:g} GPU(s) to start but the Ray cluster has {gpus:g}; lower --gpus-per-worker "
                "or use --device cpu"
            )
        actors, each = int(gpus / (share * pools)), {"num_cpus": 1, "num_gpus": share}
    else:
        actors, each = int(cluster.get("CPU", 1)) // pools, {"num_cpus": 1}
    return {**each, "compute": ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors))}


def detect_folder_ray(
    batch: Batch,
    out: Path,
    config: DetectConfig,
    semantics: Semantics,
    *,
    models: ModelPair | None = None,
    tile: int | None = None,
    half: bool = False,
    save_sr: bool = False,
    save_d: bool = False,
    started: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    options: RayOptions | None = None,
) -> dict[str, Any]:
    """:func:`desra.service.detection.detect_folder` on Ray: the same files in ``out`` and the same run
    report (written to ``report.json`` and returned); ``options`` say which cluster and GPU shares."""
    from desra.service.detection import write_run_report

    started = time.time() if started is None else started
    options = options or RayOptions()
    tick = progress or (lambda done, total: None)
    lr_jobs = [second is None for _, _, second in batch.jobs]
    if any(lr_jobs) and models is None:
        raise DesraError("LR images need a model pair to super-resolve them; give --pair or --mse-model/--gan-model")
    if len(set(lr_jobs)) > 1:
        raise ConfigError("one Ray run takes either LR images or MSE/GAN pairs, not both")
    out.mkdir(parents=True, exist_ok=True)
    plan = _Plan(out, config, _ShippedSemantics.of(semantics), models, tile, half, save_sr, save_d)
    rows = [
        {"index": i, "stem": stem, "first": str(first), "second": str(second or ""), "error": ""}
        for i, (stem, first, second) in enumerate(batch.jobs)
    ]
    done: dict[int, dict[str, Any]] = {}
    with ray_session(options) as ray:
        _quiet_ray_data(ray)
        pool = _pool_options(ray, config, options, pools=2 if lr_jobs[0] else 1)
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        if lr_jobs[0]:
            dataset = dataset.map(_Upscaler, fn_constructor_args=(plan,), **pool)
        dataset = dataset.map(_Detector, fn_constructor_args=(plan,), **pool)
        for row in dataset.iter_rows():
            done[int(row["index"])] = row
            tick(len(done), len(rows))
    images, failures = [], list(batch.failures)
    for i, (stem, _, _) in enumerate(batch.jobs):
        if done[i]["error"]:
            failures.append((stem, str(done[i]["error"])))
        else:
            images.append(json.loads(done[i]["entry"]))
    return write_run_report(out, batch, config, semantics, images, failures, started=started)


# --- desra set add ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SetPlan:
    """What preparing each LR file of ``desra set add`` needs: shipped once to each actor."""

    models: ModelPair
    config: DetectConfig
    semantics: _ShippedSemantics
    tile: int | None


class _Preparer:
    """Set-add actor: reads an LR file (and its mask file) and prepares it with the local engine's
    ``prepare_file`` (both SR models, then DeSRA-det unless a mask was given)."""

    def __init__(self, plan: _SetPlan) -> None:
        self.plan = plan
        self.semantics = plan.semantics.load()

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        import pickle

        import numpy as np

        from desra.service.sets import prepare_file

        plan = self.plan
        try:
            lr, prepared = prepare_file(
                Path(row["lr"]), plan.models, mask_file=Path(row["mask"]) if row["mask"] else None,
                config=plan.config, semantics=self.semantics, tile=plan.tile,
            )
        except DesraError as error:  # sent whole, so the driver raises it with its own type
            empty = np.zeros((0, 0, 3), np.float32)
            return {"index": row["index"], "error": pickle.dumps(error), "lr": empty, "mse": empty, "gan": empty,
                    "mask": np.zeros((0, 0), bool), "mask_source": "", "provenance": ""}
        return {"index": row["index"], "error": b"", "lr": lr, "mse": prepared.mse, "gan": prepared.gan,
                "mask": np.asarray(prepared.mask, bool), "mask_source": prepared.mask_source,
                "provenance": json.dumps(prepared.provenance)}


def prepare_files_ray(
    files: Sequence[tuple[Path, Path | None]],
    models: ModelPair,
    *,
    config: DetectConfig,
    semantics: Semantics | None = None,
    tile: int | None = None,
    options: RayOptions | None = None,
) -> Iterator[tuple[Any, PreparedImage] | DesraError]:
    """:func:`desra.service.sets.prepare_file` for each (LR file, mask file or None) on Ray, yielded in
    input order as they are ready: (LR image, PreparedImage), or the ``DesraError`` that file raised.

    The caller stores each result (the set's manifest is written by this process only); a local Ray
    started here is shut down when the iteration ends or is abandoned.
    """
    import pickle

    from desra.service.sets import PreparedImage

    options = options or RayOptions()
    plan = _SetPlan(models, config, _ShippedSemantics.of(semantics), tile)
    rows = [{"index": i, "lr": str(lr), "mask": str(mask or "")} for i, (lr, mask) in enumerate(files)]
    if not rows:
        return
    waiting: dict[int, dict[str, Any]] = {}
    with ray_session(options) as ray:
        _quiet_ray_data(ray)
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        dataset = dataset.map(_Preparer, fn_constructor_args=(plan,), **_pool_options(ray, config, options, pools=1))
        following = 0
        for row in dataset.iter_rows():
            waiting[int(row["index"])] = row
            while following in waiting:
                ready = waiting.pop(following)
                following += 1
                if ready["error"]:
                    yield pickle.loads(ready["error"])
                else:
                    prepared = PreparedImage(ready["mse"], ready["gan"], ready["mask"], ready["mask_source"],
                                             json.loads(ready["provenance"]))
                    yield ready["lr"], prepared
