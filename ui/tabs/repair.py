"""Dashboard tab "Repair": launch a DeSRA fine-tune as a durable job and watch it (DeSRA Sec. 3.3).

The job runs in the workspace's job runner (``desra.core.jobs``), not in the web server: closing the
page or restarting the server loses nothing, and the page polls the job with a ``gr.Timer``.
Also registers the ``submit_job`` and ``job_status`` API endpoints for scripts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from desra.core.events import latest_progress
from ui.common import guarded as _guard
from ui.context import AppContext
from ui.models import UPLOADED, present_pairs

POLL_S = 2.0
"""Seconds between two looks at a running job."""
FINISHED = ("done", "failed", "cancelled")
"""Job states after which polling stops."""


def build(ctx: AppContext) -> None:
    """Lay out the tab's components inside the enclosing `gr.Tab`."""
    import gradio as gr

    from ui.common import library_gaps, not_available_markdown

    gaps = library_gaps("desra.core.jobs:JobStore")
    if gaps:
        gr.Markdown(not_available_markdown("Repair", gaps))
        return
    _register_api(ctx)
    finetune_gaps = library_gaps("desra.repair.finetune:finetune")
    gr.Markdown(
        "Fine-tune the GAN model on the curated set: inside each mask the target is the MSE-SR output, "
        "elsewhere the GAN-SR output (DeSRA Eq. 10). The job keeps running if you close this page; "
        "pick it again under **Job** to watch it."
    )
    if finetune_gaps:
        gr.Markdown(not_available_markdown("Launching a fine-tune", finetune_gaps))
    with gr.Row():
        with gr.Column(scale=1):
            set_dir = gr.Textbox(str(ctx.curated_dir), label="Curated set folder (inside the workspace)")
            pairs = present_pairs()
            pair = gr.Dropdown(
                [*pairs, UPLOADED], value=pairs[0] if pairs else UPLOADED, label="Model to repair",
                info="a registered pair's GAN model (its discriminator too, when shipped), or your GAN checkpoint",
                elem_id="repair-pair",
            )
            gan_file = gr.File(
                label="GAN checkpoint to fine-tune", file_types=[".pth", ".pt", ".safetensors"], elem_id="repair-gan",
                visible=not pairs,
            )
            iters = gr.Number(1000, label="Iterations", precision=0, minimum=1, info="the paper: about 1000")
            with gr.Accordion("Advanced", open=False):
                save_every = gr.Number(100, label="Checkpoint and preview every N iterations", precision=0, minimum=1)
                lr = gr.Number(1e-4, label="Learning rate", minimum=0)
                patch = gr.Number(256, label="HR crop size (px)", precision=0, minimum=16)
                batch = gr.Number(4, label="Crops per iteration", precision=0, minimum=1)
                device = gr.Dropdown(["auto", "cpu", "cuda"], value="auto", label="Device")
            launch = gr.Button("Launch fine-tune", variant="primary", interactive=not finetune_gaps)
            with gr.Row():
                job_pick = gr.Dropdown(_job_choices(ctx), label="Job", allow_custom_value=True, scale=3)
                refresh = gr.Button("↻", scale=0, min_width=40)
            with gr.Row():
                cancel = gr.Button("Cancel", variant="stop")
                resume = gr.Button("Resume")
        with gr.Column(scale=2):
            status = gr.Markdown("No job selected.", elem_id="repair-status")
            curves = gr.LinePlot(
                x="iter", y="loss", color="term", label="Losses", x_title="iteration", y_title="loss", height=260
            )
            previews = gr.Gallery(
                label="Previews on held-out artifact images", columns=4, height=220, object_fit="contain", elem_classes="desra-thumbs"
            )
            with gr.Accordion("Log", open=False):
                log = gr.Textbox(lines=12, max_lines=12, show_label=False, autoscroll=True)
    with gr.Column(visible=False) as results:
        gr.Markdown("### Result")
        with gr.Row():
            with gr.Column(scale=1):
                model_files = gr.File(
                    label="Repaired model (safetensors with metadata; basicsr params_ema)", file_count="multiple", elem_id="repair-model"
                )
                evaluate = gr.Button("Evaluate the repair on the val items", variant="primary")
                metrics = gr.Dataframe(
                    headers=["metric", "value"], label="Detection before vs after (DeSRA Table 3)", interactive=False,
                    column_widths=["40%", "60%"], wrap=True,
                    elem_id="repair-metrics",
                )
            with gr.Column(scale=2):
                val_item = gr.Dropdown([], label="Val item")
                before_after = gr.ImageSlider(
                    label="GAN-SR before (left) / after repair (right)", format="png", type="filepath", elem_id="repair-before-after"
                )
    timer = gr.Timer(POLL_S, active=False)
    views = [status, curves, previews, log, results, model_files, metrics, val_item, timer]

    launch.click(
        _guard(lambda *values: _launch(ctx, *values)),
        [set_dir, pair, gan_file, iters, save_every, lr, patch, batch, device],
        [job_pick],
        api_visibility="private",
    ).then(_guard(lambda j: _poll(ctx, j)), [job_pick], views, api_visibility="private")
    pair.change(lambda p: gr.File(visible=p == UPLOADED), [pair], [gan_file], api_visibility="private")
    refresh.click(lambda: gr.Dropdown(choices=_job_choices(ctx)), None, [job_pick], api_visibility="private")
    job_pick.change(_guard(lambda j: _poll(ctx, j)), [job_pick], views, api_visibility="private")
    timer.tick(_guard(lambda j: _poll(ctx, j)), [job_pick], views, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    cancel.click(_guard(lambda j: _act(ctx, j, "cancel")), [job_pick], views, api_visibility="private", concurrency_limit=None)
    resume.click(_guard(lambda j: _act(ctx, j, "resume")), [job_pick], views, api_visibility="private", concurrency_limit=None)
    evaluate.click(
        _guard(lambda j, *, progress=gr.Progress(): _evaluate(ctx, j, progress)), [job_pick], [metrics, val_item], api_visibility="private"
    )
    val_item.change(_guard(lambda j, i: _before_after(ctx, j, i)), [job_pick, val_item], [before_after], api_visibility="private")


def _store(ctx: AppContext):
    from desra.core.jobs import JobStore

    return JobStore(ctx.workspace)


def _job_choices(ctx: AppContext) -> list[str]:
    return [job.id for job in _store(ctx).list(limit=50) if job.kind == "finetune"]


def _launch(
    ctx: AppContext, set_dir: str, pair: str | None, gan_file: str | None, iters: float, save_every: float,
    lr: float, patch: float, batch: float, device: str,
):
    import shutil

    import gradio as gr

    from desra.core.errors import ConfigError

    params: dict[str, Any] = {
        "set": set_dir, "iters": int(iters), "save_every": int(save_every),
        "lr": float(lr), "patch": int(patch), "batch": int(batch),
    }
    if pair == UPLOADED:
        if not gan_file:
            raise ConfigError("'uploaded checkpoints' needs the GAN checkpoint to fine-tune; upload it under the model choice")
        # Gradio's upload cache is cleaned hourly; the job may run longer, so keep a copy in the workspace.
        kept = ctx.uploads_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(gan_file).name}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(gan_file, kept)
        params["model"] = str(kept)
    elif pair:
        params["pair"] = pair
    else:
        raise ConfigError("no model chosen; pick the pair whose GAN model you want to repair, or upload a GAN checkpoint")
    job = _submit(ctx, "finetune", params, device)
    gr.Info(f"Job {job['id']} queued.")
    return gr.Dropdown(choices=_job_choices(ctx), value=job["id"])


def _submit(ctx: AppContext, kind: str, params: dict[str, Any], device: str) -> dict[str, Any]:
    """Queue a job whose every path stays inside the workspace (reads may also use the shipped weights, data and configs)."""
    from desra.core.job_settings import Confinement
    from desra.core.paths import configs_dir, datasets_dir, weights_dir

    workspace = ctx.workspace.resolve()
    confine = Confinement(
        read=(workspace, datasets_dir().resolve(), weights_dir().resolve(), configs_dir().resolve()),
        write=(workspace,),
        description="the dashboard reads only inside its workspace and the shipped weights, datasets and configs, "
                    "and writes only inside its workspace",
    )
    store = _store(ctx)
    job = store.submit(kind, params, device=device, base=workspace, confine=confine)
    store.ensure_workers()
    return job.to_json()


def _act(ctx: AppContext, job_id: str | None, action: str):
    import gradio as gr

    if not job_id:
        raise gr.Error("Pick a job first.")
    store = _store(ctx)
    getattr(store, action)(job_id)
    if action == "resume":
        store.ensure_workers()
    return _poll(ctx, job_id)


def job_progress(ctx: AppContext, job_id: str) -> dict[str, Any]:
    """The job as JSON plus its latest progress event and the tail of its log (the ``job_status`` answer)."""
    store = _store(ctx)
    job = store.status(job_id)
    events = store.events(job_id)
    answer = job.to_json()
    answer["progress"] = latest_progress(events)
    answer["log_tail"] = store.log(job_id, tail_bytes=4000)
    return answer


def _status_markdown(job: dict[str, Any]) -> str:
    line = f"**Job `{job['id']}`: {job['state']}**"
    event = job["progress"]
    if event and "iter" in event:
        line += f" — iteration {event['iter']} / {event.get('iters', '?')}"
        if event.get("it_per_s"):
            line += f", {event['it_per_s']:.2f} it/s"
        if event.get("eta_s") is not None and job["state"] == "running":
            line += f", ETA {_duration(event['eta_s'])}"
    if job["reason"]:
        line += f"\n\n{job['reason']}"
    return line


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _poll(ctx: AppContext, job_id: str | None):
    import gradio as gr
    import pandas as pd

    if not job_id:
        return ["No job selected.", None, [], "", gr.Column(visible=False), None, None, gr.Dropdown(choices=[]), gr.Timer(active=False)]
    job = job_progress(ctx, job_id)
    store = _store(ctx)
    rows = [
        {"iter": event["iter"], "term": term, "loss": float(value)}
        for event in store.events(job_id)
        if "iter" in event
        for term, value in (event.get("losses") or {}).items()
    ]
    curves = pd.DataFrame(rows, columns=["iter", "term", "loss"])
    out = Path(job["out"])
    # previews/iter_XXXXXX/ holds the SR of a few val items at each checkpoint: show the latest.
    folders = sorted((out / "previews").glob("iter_*")) if out.is_dir() else []
    previews = [(str(p), f"{folders[-1].name}: {p.stem}") for p in sorted(folders[-1].glob("*.png"))] if folders else []
    done = job["state"] == "done"
    return [
        _status_markdown(job),
        curves,
        previews,
        job["log_tail"],
        gr.Column(visible=done),
        _model_files(out) if done else None,
        _metrics_rows(out) if done else None,
        gr.Dropdown(choices=_val_items(job) if done else []),
        gr.Timer(active=job["state"] not in FINISHED),
    ]


def _model_files(out: Path) -> list[str]:
    return [str(out / name) for name in ("model.safetensors", "model_basicsr.pth") if (out / name).exists()]


def _val_items(job: dict[str, Any]) -> list[str]:
    from desra.repair.curated import open_set

    return [item.id for item in open_set(job["params"]["set"]).items("val")]


def _metrics_rows(out: Path) -> list[list[str]] | None:
    """Rows of the evaluate-run report (None until the repair has been evaluated)."""
    import json

    path = out / "evaluation" / "report.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text())

    def pct(value):
        return "n/a" if value is None else f"{100 * value:.1f} %"

    return [
        ["val items (with artifacts)", f"{report['items']} ({report['items_with_artifacts']})"],
        ["IoU before → after", f"{pct(report['iou_before'])} → {pct(report['iou_after'])}"],
        ["IoU drop", pct(report["iou_drop"])],
        ["flagged area before → after", f"{pct(report['flagged_before'])} → {pct(report['flagged_after'])}"],
        ["removal rate", f"{pct(report['removal_rate'])} ({report['removed']} of {report['artifacts']} artifacts)"],
        ["addition rate", f"{pct(report['addition_rate'])} ({report['images_with_additions']} of {report['items']} images)"],
    ]


def _finished_run(ctx: AppContext, job_id: str | None) -> dict[str, Any]:
    import gradio as gr

    if not job_id:
        raise gr.Error("Pick a job first.")
    job = _store(ctx).status(job_id).to_json()
    if job["state"] != "done":
        raise gr.Error(f"Job {job_id} is {job['state']}; evaluate it once it is done.")
    return job


def _evaluate(ctx: AppContext, job_id: str | None, progress: Any):
    import gradio as gr

    from desra.repair.evaluate_run import evaluate_run
    from ui.common import gradio_progress

    job = _finished_run(ctx, job_id)
    evaluate_run(job["out"], progress=gradio_progress(progress, "detecting before and after on val items"))
    items = _val_items(job)
    return _metrics_rows(Path(job["out"])), gr.Dropdown(choices=items, value=items[0] if items else None)


def _before_after(ctx: AppContext, job_id: str | None, item_id: str | None):
    """(GAN-SR before, GAN-SR after repair) of one val item; the repaired output is computed once and kept."""
    from desra.core.imageio import read_image, write_image
    from desra.models.checkpoint import load_model
    from desra.models.inference import upscale
    from desra.repair.curated import open_set

    if not item_id:
        return None
    job = _finished_run(ctx, job_id)
    item = open_set(job["params"]["set"]).item(item_id)
    after = Path(job["out"]) / "evaluation" / "after" / f"{item_id}.png"
    if not after.exists():
        tuned = load_model(Path(job["out"]) / "model.safetensors", role="gan")
        after.parent.mkdir(parents=True, exist_ok=True)
        write_image(after, upscale(tuned, read_image(item.path("lr")).rgb))
    return str(item.path("gan")), str(after)


def _register_api(ctx: AppContext) -> None:
    import gradio as gr

    def submit_job(kind: str, params: dict, device: str = "auto") -> dict:
        """Queue a job (kind: finetune, detect, calibrate, zoo-train, sleep; params: the command's flags) and start a worker; returns the job as JSON."""
        return _guard(_submit)(ctx, kind, dict(params or {}), device)

    def job_status(job_id: str) -> dict:
        """State of a job: its JSON, its latest progress event (iter, iters, losses, it_per_s, eta_s) and its log tail."""
        return _guard(job_progress)(ctx, job_id)

    gr.api(submit_job, api_name="submit_job", concurrency_limit=None)
    gr.api(job_status, api_name="job_status", concurrency_limit=None)
