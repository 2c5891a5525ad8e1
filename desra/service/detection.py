"""Detect artifacts and write each image's outputs: the one writer of `desra detect`, the detect job and the dashboard.

A run resolves its semantic adjustment once (:func:`resolve_semantics`), lists its images
(:func:`lr_batch` for LR images through a model pair, :func:`sr_batch` for SR outputs matched by
stem) and detects them (:func:`detect_folder`), writing per image, under the names of
:class:`OutputNames`: the mask (0/255 PNG, SR size), the overlay on the GAN-SR image, the
semantic map (edge-padded to SR size, when segmentation ran), the D map (``.npy``, on request)
and the JSON report, then ``report.json`` for the run. The dashboard writes one image's outputs
with the same :func:`write_detection`.

Progress goes through the library's ``progress(done, total)`` callback: the CLI draws it with
tqdm, the dashboard with ``gr.Progress``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desra.core.errors import DesraError

if TYPE_CHECKING:  # numpy and torch stay out of import time
    from desra.detect.pipeline import DetectConfig, Detection
    from desra.detect.semantic import ClassWeights, Segmenter
    from desra.models.pairs import ModelPair

DEFAULT_SEGMENTER = "b5"
"""The segmenter a run uses unless told otherwise: the paper's SegFormer. Without its weights the load fails
fast and every output says the semantic adjustment is off."""
PREFETCH_MAX_PIXELS = 16_000_000
"""Pairs of SR files are decoded ahead only while both hold at most this many pixels each (read from
their headers), so read-ahead never doubles the memory of a large pair."""


@dataclass(frozen=True)
class Semantics:
    """The semantic adjustment (DeSRA Eq. 8-9) of one run, resolved once."""

    segmenter: Segmenter | None
    """The loaded SegFormer; None when semantics are off, unavailable or not used by the method."""
    note: str | None
    """Why there is no segmenter (None when there is one, or when the method does not segment)."""
    class_weights: ClassWeights | None
    """The A_k table; None = the authors' bundled table."""

    def detect_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``detect_artifacts`` / ``detect_lr`` that carry these semantics."""
        return {"segmenter": self.segmenter, "class_weights": self.class_weights, "segmenter_note": self.note}

    def summary(self, config: DetectConfig) -> dict[str, Any]:
        """The run report's ``semantics``: ``used``, ``reason`` (why not, else None) and ``segmenter``."""
        from desra.detect.pipeline import semantics_note

        reason = semantics_note(config, self.segmenter, self.note)
        return {"used": reason is None, "reason": reason, "segmenter": self.segmenter.name if reason is None else None}


_SEGMENTERS: dict[tuple[str, str], Segmenter] = {}
_SEGMENTERS_KEPT = 2  # a b5 SegFormer holds about 340 MB; a server keeps the last two it was asked for


def resolve_semantics(
    segmenter: str | None, *, method: str = "desra", class_weights: str = "", device: str = "cpu"
) -> Semantics:
    """Load the segmenter ``segmenter`` (hub id, 'b5', 'b0', a folder or 'none') and the A_k table ``class_weights``.

    Methods other than 'desra' load nothing. A segmenter that cannot be loaded (offline, missing
    folder) is not an error: the run goes on with A_k = 1 and ``note`` says why, as every output
    does. Loaded segmenters are kept for the next run of this process (they are only read).
    """
    from desra.detect import semantic

    if method != "desra":
        return Semantics(None, None, None)
    key = ((segmenter or "").strip(), device)
    loaded, note = _SEGMENTERS.get(key), None
    if loaded is None:
        loaded, note = semantic.resolve_segmenter(segmenter, device=device)
        if loaded is not None:
            while len(_SEGMENTERS) >= _SEGMENTERS_KEPT:
                _SEGMENTERS.pop(next(iter(_SEGMENTERS)))
            _SEGMENTERS[key] = loaded
    weights = semantic.load_class_weights(class_weights) if class_weights else None
    return Semantics(loaded, note, weights)


@dataclass(frozen=True)
class OutputNames:
    """File names of one detection's outputs inside its folder."""

    mask: str
    """Artifact mask, 0/255 PNG at SR size."""
    overlay: str
    """The mask drawn over the GAN-SR image (PNG)."""
    semantic: str
    """ADE20K label map with its legend, SR size (PNG; written only when segmentation ran)."""
    json: str
    """The detection's JSON report."""
    d: str
    """D before semantics on the valid region (float32 ``.npy``; written only on request)."""
    heatmap: str | None = None
    """The D map as a picture (PNG), or None for no picture."""

    @classmethod
    def for_stem(cls, stem: str) -> OutputNames:
        """The names `desra detect` writes: ``<stem>_mask.png``, ``<stem>_overlay.png``, ``<stem>.json``, ..."""
        return cls(f"{stem}_mask.png", f"{stem}_overlay.png", f"{stem}_semantic.png", f"{stem}.json", f"{stem}_D.npy")


DASHBOARD_NAMES = OutputNames("mask.png", "overlay.png", "semantic.png", "report.json", "D.npy", heatmap="heatmap.png")
"""The names in a dashboard result folder (one image per folder; its downloads keep these names)."""


def write_detection(
    folder: Path,
    names: OutputNames,
    detection: Detection,
    image: Any,
    *,
    name: str,
    save_d: bool = False,
    extra: Mapping[str, Any] | None = None,
    pool: Any = None,
) -> dict[str, Any]:
    """Write one detection's outputs into ``folder``; return its JSON report (``extra`` keys added to it).

    ``image`` is the GAN-SR output the mask is drawn over, ``(H, W, 3)`` float32 [0, 1]. With
    ``pool`` (a thread pool) the overlay is drawn and encoded on another thread while the rest is
    written here: both encoders release the GIL.
    """
    import numpy as np

    from desra.core.atomic import atomic_path, atomic_write_text
    from desra.core.imageio import write_mask
    from desra.core.png import write_png_uint8
    from desra.detect import visualize
    from desra.detect.semantic import ADE20K_CLASSES

    folder.mkdir(parents=True, exist_ok=True)
    files = {"mask": names.mask, "overlay": names.overlay, "json": names.json}

    def write_overlay() -> None:
        # desra's own pictures go through the fast lossless PNG writer (same pixels as Pillow's).
        write_png_uint8(folder / names.overlay, visualize.overlay(image, detection.mask))

    overlay_done = pool.submit(write_overlay) if pool is not None else None
    if overlay_done is None:
        write_overlay()
    write_mask(folder / names.mask, detection.mask)
    if detection.labels is not None:
        files["semantic"] = names.semantic
        # Edge-padded back to the SR size so the map lines up with the image it describes.
        labels = np.pad(detection.labels, detection.config.border, mode="edge")
        write_png_uint8(folder / names.semantic, visualize.semantic_legend(labels, ADE20K_CLASSES))
    if names.heatmap is not None:
        files["heatmap"] = names.heatmap
        write_png_uint8(folder / names.heatmap, visualize.heatmap(detection.d))
    if save_d:
        files["d"] = names.d
        with atomic_path(folder / names.d) as tmp, open(tmp, "wb") as handle:
            np.save(handle, detection.d.astype(np.float32))
    report = {**detection.to_json(), "name": name, "files": files, **(extra or {})}
    atomic_write_text(folder / names.json, json.dumps(report, indent=2, default=str))
    if overlay_done is not None:
        overlay_done.result()
    return report


@dataclass(frozen=True)
class Batch:
    """The images of one detect run."""

    jobs: tuple[tuple[str, Path, Path | None], ...]
    """(stem, LR file, None) or (stem, MSE-SR file, GAN-SR file) per image, in order."""
    failures: tuple[tuple[str, str], ...]
    """(name, why) of files refused before detection (unreadable formats, unmatched stems)."""
    inputs: dict[str, Any]
    """What ``report.json`` records under ``inputs``."""


def lr_batch(lr: Path, models: ModelPair) -> Batch:
    """The LR images of ``lr`` (a file or a folder) to run through ``models``."""
    from desra.core.imageio import list_images, list_unsupported_images

    if not lr.exists():
        raise DesraError(f"--lr {lr} does not exist")
    jobs = tuple((p.stem, p, None) for p in (list_images(lr) if lr.is_dir() else [lr]))
    # Images in formats desra does not read (an animated GIF, ...) are listed as failures, not skipped quietly.
    failures = tuple((p.stem, reason) for p, reason in list_unsupported_images(lr)) if lr.is_dir() else ()
    if not jobs:
        unread = f" ({len(failures)} file(s) in formats desra does not read: {failures[0][1]})" if failures else ""
        raise DesraError(f"no images found in {lr}{unread}")
    inputs = {"lr": str(lr), "mse_model": models.mse.descriptor.name, "gan_model": models.gan.descriptor.name,
              "pair": models.name}
    return Batch(jobs, failures, inputs)


def sr_batch(mse: str | Path, gan: str | Path) -> Batch:
    """MSE-SR and GAN-SR outputs: two files, or two folders matched by file stem (unmatched files are failures)."""
    from desra.core.imageio import list_images

    inputs = {"mse": str(mse), "gan": str(gan)}  # as the user wrote them
    mse, gan = Path(mse), Path(gan)
    if mse.is_file() and gan.is_file():
        return Batch(((gan.stem, mse, gan),), (), inputs)
    if mse.is_dir() and gan.is_dir():
        m = {p.stem: p for p in list_images(mse)}
        g = {p.stem: p for p in list_images(gan)}
        failures = [(s, f"no MSE-SR file for {g[s].name} in {mse}") for s in sorted(set(g) - set(m))]
        failures += [(s, f"no GAN-SR file for {m[s].name} in {gan}") for s in sorted(set(m) - set(g))]
        common = sorted(set(m) & set(g))
        if not common:
            raise DesraError(f"no file names in common between {mse} and {gan}; outputs are matched by file stem")
        return Batch(tuple((s, m[s], g[s]) for s in common), tuple(failures), inputs)
    raise DesraError(f"--mse {mse} and --gan {gan} must both be files or both be folders that exist")


def _start_reads(pool, job, *, first: bool = False):
    """Futures reading an (stem, MSE file, GAN file) job's two images, or None (LR job, or too large to read ahead)."""
    from desra.core.imageio import image_size, read_image

    _, mse, gan = job
    if gan is None:
        return None
    if not first:
        try:
            if any(w * h > PREFETCH_MAX_PIXELS for w, h in (image_size(mse), image_size(gan))):
                return None
        except (DesraError, OSError):
            return None  # read in turn, where the error is reported for this image
    # 8-bit files stay uint8: the detector and the overlay take them so, without 50 MB float copies.
    return pool.submit(read_image, mse, keep_8bit=True), pool.submit(read_image, gan, keep_8bit=True)


def job_inputs(first: Path, second: Path | None) -> dict[str, Any]:
    """What one image's report records of its input files: ``{"inputs": {"lr": ...}}`` or ``{"inputs": {"mse": ..., "gan": ...}}``."""
    if second is None:
        return {"inputs": {"lr": str(first)}}
    return {"inputs": {"mse": str(first), "gan": str(second)}}


def write_image_outputs(
    out: Path,
    stem: str,
    detection: Detection,
    gan: Any,
    *,
    mse: Any = None,
    save_sr: bool = False,
    save_d: bool = False,
    pool: Any = None,
) -> dict[str, Any]:
    """Write one image's files into a run folder ``out`` (:meth:`OutputNames.for_stem`); return its ``report.json`` entry.

    ``save_sr`` (LR jobs) also writes the SR outputs ``mse`` and ``gan`` as ``<stem>_mse.png`` and ``<stem>_gan.png``.
    """
    from desra.core.imageio import write_image

    if save_sr:
        write_image(out / f"{stem}_mse.png", mse)
        write_image(out / f"{stem}_gan.png", gan)
    report = write_detection(out, OutputNames.for_stem(stem), detection, gan, name=stem, save_d=save_d, pool=pool)
    return {
        "name": stem,
        "files": report["files"],
        "regions": len(detection.regions),
        "flagged_fraction": report["flagged_fraction"],
        "semantics_used": detection.semantics_used,
    }


def write_run_report(
    out: Path,
    batch: Batch,
    config: DetectConfig,
    semantics: Semantics,
    images: list[dict[str, Any]],
    failures: list[tuple[str, str]],
    *,
    started: float,
) -> dict[str, Any]:
    """Write the run's ``report.json`` (inputs, parameters, semantics, per-image entries, failures, time); return it."""
    from desra.core.atomic import atomic_write_text

    report = {
        "command": "detect",
        "inputs": batch.inputs,
        "parameters": asdict(config),
        "semantics": semantics.summary(config),
        "images": images,
        "failures": [{"name": n, "error": e} for n, e in failures],
        "elapsed_s": round(time.time() - started, 3),
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    return report


def detect_folder(
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
) -> dict[str, Any]:
    """Detect every image of ``batch`` and write its outputs and ``report.json`` into ``out``; return the run report.

    LR jobs run through ``models`` (``save_sr`` also writes ``<stem>_mse.png`` and ``<stem>_gan.png``).
    An image that fails is listed under ``failures`` with its reason; the others go on.
    """
    from concurrent.futures import ThreadPoolExecutor

    from desra.core.imageio import read_image

    started = time.time() if started is None else started
    tick = progress or (lambda done, total: None)
    jobs = batch.jobs
    out.mkdir(parents=True, exist_ok=True)
    images, failures = [], list(batch.failures)
    # Threads: the MSE and GAN files are decoded side by side (the decoders release the GIL), the
    # next pair while this one is detected, and an image's overlay is encoded while its mask and
    # JSON are written.
    with ThreadPoolExecutor(max_workers=3) as pool:
        pending = _start_reads(pool, jobs[0], first=True)
        # Imported while the first pair decodes: OpenCV and the detector take a tenth of a second.
        from desra.detect.pipeline import detect_artifacts, detect_lr

        for index, (stem, first, second) in enumerate(jobs):
            reading, pending = pending, (_start_reads(pool, jobs[index + 1]) if index + 1 < len(jobs) else None)
            try:
                if second is None:
                    if models is None:
                        raise DesraError(f"{first} is an LR image but no model pair was given to super-resolve it")
                    detection, mse, gan = detect_lr(
                        read_image(first).rgb, models.mse, models.gan, config, tile=tile, half=half,
                        extra=job_inputs(first, second), **semantics.detect_kwargs(),
                    )
                else:
                    reads = reading or _start_reads(pool, (stem, first, second), first=True)
                    mse, gan = (future.result().rgb for future in reads)
                    detection = detect_artifacts(mse, gan, config, extra=job_inputs(first, second), **semantics.detect_kwargs())
                images.append(write_image_outputs(out, stem, detection, gan, mse=mse, save_sr=save_sr and second is None,
                                                  save_d=save_d, pool=pool))
            except DesraError as error:
                failures.append((stem, str(error)))
            tick(index + 1, len(jobs))
    return write_run_report(out, batch, config, semantics, images, failures, started=started)
