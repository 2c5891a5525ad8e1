"""Repair (DeSRA Sec. 3.3): start a fine-tune as a job, watch its run, evaluate it, compare before and after.

The fine-tune itself is :func:`desra.repair.finetune.finetune`, which ``desra finetune`` runs and
a job runs through that command; here is what the dashboard (and scripts) do around it:
:func:`start_finetune` is the one place a fine-tune job is built from a
:class:`~desra.repair.finetune.FinetuneConfig` (its flags, the workspace sandbox, the device),
:func:`run_view` everything a watcher shows of a job's run folder, :func:`evaluate_job` and
:func:`before_after` the evaluation of a finished run.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desra.core.errors import JobError
from desra.service.jobs import (
    job_events,
    job_progress,
    job_status,
    list_jobs,
    submit_job,
)

FINETUNE = "finetune"
"""The job kind of a fine-tune."""


def start_finetune(workspace: str | os.PathLike, config) -> dict[str, Any]:
    """Queue ``config`` (a ``FinetuneConfig`` without ``out``: the job's folder is its run) as a fine-tune job in the workspace sandbox on ``config.device``; starts a worker -> the job as JSON."""
    from desra.jobs.job_settings import job_params

    job = submit_job(workspace, FINETUNE, job_params(config), device=config.device, confined=True, start_workers=True)
    return job.to_json()


def keep_upload(folder: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copy an uploaded file into ``folder`` under a time-stamped name -> the copy.

    Gradio's upload cache is cleaned hourly and a fine-tune may run longer, so the job gets a copy
    that lives in the workspace.
    """
    kept = Path(folder) / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(path).name}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, kept)
    return kept


def finetune_jobs(workspace: str | os.PathLike, limit: int = 50) -> list[str]:
    """Ids of the workspace's fine-tune jobs, newest first."""
    return [job.id for job in list_jobs(workspace, kind=FINETUNE, limit=limit)]


@dataclass(frozen=True)
class RunView:
    """What a watcher shows of one fine-tune job."""

    job: dict[str, Any]
    """The job's status answer (:func:`desra.service.jobs.job_progress`)."""
    losses: list[dict[str, Any]]
    """The loss curves: one ``{"iter", "term", "loss"}`` row per logged loss term and iteration."""
    previews: list[tuple[str, str]]
    """``(png path, caption)`` of the latest checkpoint's previews on val items."""
    model_files: list[str]
    """The exported model files once the job is done (safetensors, basicsr ``params_ema``)."""
    report_rows: list[list[str]] | None
    """The evaluation's summary rows once the run has been evaluated (``evaluate_run.summary_rows``)."""
    val_items: list[str]
    """Ids of the set's val items once the job is done (what before/after compares)."""

    @property
    def done(self) -> bool:
        """True when the job finished and its exports exist."""
        return self.job["state"] == "done"


def loss_curves(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{"iter", "term", "loss"}`` rows of every loss of every progress event."""
    return [
        {"iter": event["iter"], "term": term, "loss": float(value)}
        for event in events
        if "iter" in event
        for term, value in (event.get("losses") or {}).items()
    ]


def latest_previews(run: Path) -> list[tuple[str, str]]:
    """``(png, caption)`` of ``RUN/previews/iter_XXXXXX/`` of the newest checkpoint (the SR of a few val items)."""
    folders = sorted((run / "previews").glob("iter_*")) if run.is_dir() else []
    if not folders:
        return []
    return [(str(png), f"{folders[-1].name}: {png.stem}") for png in sorted(folders[-1].glob("*.png"))]


def model_files(run: Path) -> list[str]:
    """The exported models of a finished run that exist: ``model.safetensors``, ``model_basicsr.pth``."""
    return [str(run / name) for name in ("model.safetensors", "model_basicsr.pth") if (run / name).exists()]


def val_items(job: dict[str, Any]) -> list[str]:
    """Ids of the val items of the set a fine-tune job trained on."""
    from desra.repair.curated import open_set

    return [item.id for item in open_set(job["params"]["set"]).items("val")]


def run_view(workspace: str | os.PathLike, job_id: str) -> RunView:
    """Everything a watcher shows of fine-tune job ``job_id``: status, loss curves, previews and, once done, its results."""
    from desra.repair.evaluate_run import read_report, summary_rows

    events = job_events(workspace, job_id)  # read once: the 2 s poll shows both progress and curves
    job = job_progress(workspace, job_id, events=events)
    run = Path(job["out"])
    done = job["state"] == "done"
    report = read_report(run) if done else None
    return RunView(
        job=job,
        losses=loss_curves(events),
        previews=latest_previews(run),
        model_files=model_files(run) if done else [],
        report_rows=summary_rows(report) if report is not None else None,
        val_items=val_items(job) if done else [],
    )


def finished_run(workspace: str | os.PathLike, job_id: str) -> dict[str, Any]:
    """The JSON of fine-tune job ``job_id`` once it is done; ``JobError`` while it is not."""
    job = job_status(workspace, job_id).to_json()
    if job["state"] != "done":
        raise JobError(f"job {job_id} is {job['state']}; evaluate it once it is done")
    return job


def evaluate_job(
    workspace: str | os.PathLike, job_id: str, *, progress: Callable[[int, int], None] | None = None
) -> list[list[str]]:
    """Evaluate the finished fine-tune ``job_id`` on its val items (``evaluate_run``: writes RUN/evaluation) -> the summary rows."""
    from desra.repair.evaluate_run import evaluate_run, summary_rows

    job = finished_run(workspace, job_id)
    return summary_rows(evaluate_run(job["out"], progress=progress))


def before_after(workspace: str | os.PathLike, job_id: str, item_id: str) -> tuple[str, str]:
    """``(GAN-SR before, GAN-SR after repair)`` image paths of one val item; the repaired output is computed once and kept."""
    from desra.repair.curated import open_set
    from desra.repair.evaluate_run import after_image, evaluation_dir

    job = finished_run(workspace, job_id)
    item = open_set(job["params"]["set"]).item(item_id)
    after = after_image(evaluation_dir(job["out"]), item_id)
    if not after.exists():
        from desra.core.imageio import read_image, write_image
        from desra.models.checkpoint import load_model
        from desra.models.inference import upscale

        tuned = load_model(Path(job["out"]) / "model.safetensors", role="gan")
        after.parent.mkdir(parents=True, exist_ok=True)
        write_image(after, upscale(tuned, read_image(item.path("lr")).rgb))
    return str(item.path("gan")), str(after)
