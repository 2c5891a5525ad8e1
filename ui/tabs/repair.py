"""Dashboard tab "Repair": launch a DeSRA fine-tune as a durable job and watch it (DeSRA Sec. 3.3).

The job runs in the workspace's job runner (``desra.jobs.store``), not in the web server: closing the
page or restarting the server loses nothing, and the page polls the job with a ``gr.Timer``.
Also registers the ``submit_job`` and ``job_status`` API endpoints for scripts. Every action is
:mod:`desra.service.repair` / :mod:`desra.service.jobs`; this module lays out components.
"""

from __future__ import annotations

from typing import Any

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

    _register_api(ctx)
    from desra.core.settings import field_default, field_minimum
    from desra.repair.finetune import FinetuneConfig

    def number(name: str, label: str, **options: Any):
        """A number input showing the fine-tune setting's own default and minimum."""
        return gr.Number(field_default(FinetuneConfig, name), label=label, minimum=field_minimum(FinetuneConfig, name), **options)

    gr.Markdown(
        "Fine-tune the GAN model on the curated set: inside each mask the target is the MSE-SR output, "
        "elsewhere the GAN-SR output (DeSRA Eq. 10). The job keeps running if you close this page; "
        "pick it again under **Job** to watch it."
    )
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
            iters = number("iters", "Iterations", precision=0, info="the paper: about 1000")
            with gr.Accordion("Advanced", open=False):
                save_every = number("save_every", "Checkpoint and preview every N iterations", precision=0)
                lr = number("lr", "Learning rate")
                patch = number("patch", "HR crop size (px)", precision=0)
                batch = number("batch", "Crops per iteration", precision=0)
                device = gr.Dropdown(["auto", "cpu", "cuda"], value=field_default(FinetuneConfig, "device"), label="Device")
            launch = gr.Button("Launch fine-tune", variant="primary")
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


def _job_choices(ctx: AppContext) -> list[str]:
    from desra.service.repair import finetune_jobs

    return finetune_jobs(ctx.workspace)


def _launch(
    ctx: AppContext, set_dir: str, pair: str | None, gan_file: str | None, iters: float, save_every: float,
    lr: float, patch: float, batch: float, device: str,
):
    import gradio as gr

    from desra.core.errors import ConfigError
    from desra.repair.finetune import FinetuneConfig
    from desra.service.repair import keep_upload, start_finetune

    source: dict[str, str] = {}
    if pair == UPLOADED:
        if not gan_file:
            raise ConfigError("'uploaded checkpoints' needs the GAN checkpoint to fine-tune; upload it under the model choice")
        source["model"] = str(keep_upload(ctx.uploads_dir, gan_file))
    elif pair:
        source["pair"] = pair
    else:
        raise ConfigError("no model chosen; pick the pair whose GAN model you want to repair, or upload a GAN checkpoint")
    config = FinetuneConfig(set_dir=set_dir, iters=int(iters), save_every=int(save_every), lr=float(lr),
                            patch=int(patch), batch=int(batch), device=device, **source)
    job = start_finetune(ctx.workspace, config)
    gr.Info(f"Job {job['id']} queued.")
    return gr.Dropdown(choices=_job_choices(ctx), value=job["id"])


def _act(ctx: AppContext, job_id: str | None, action: str):
    from desra.service.jobs import cancel_job, resume_job

    job_id = _picked(job_id)
    if action == "resume":
        resume_job(ctx.workspace, job_id, start_workers=True)
    else:
        cancel_job(ctx.workspace, job_id)
    return _poll(ctx, job_id)


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
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _poll(ctx: AppContext, job_id: str | None):
    import gradio as gr
    import pandas as pd

    from desra.service.repair import run_view

    if not job_id:
        return ["No job selected.", None, [], "", gr.Column(visible=False), None, None, gr.Dropdown(choices=[]), gr.Timer(active=False)]
    view = run_view(ctx.workspace, job_id)
    return [
        _status_markdown(view.job),
        pd.DataFrame(view.losses, columns=["iter", "term", "loss"]),
        view.previews,
        view.job["log_tail"],
        gr.Column(visible=view.done),
        view.model_files if view.done else None,
        view.report_rows,
        gr.Dropdown(choices=view.val_items),
        gr.Timer(active=view.job["state"] not in FINISHED),
    ]


def _picked(job_id: str | None) -> str:
    import gradio as gr

    if not job_id:
        raise gr.Error("Pick a job first.")
    return job_id


def _evaluate(ctx: AppContext, job_id: str | None, progress: Any):
    import gradio as gr

    from desra.service.repair import evaluate_job, finished_run, val_items
    from ui.common import gradio_progress

    rows = evaluate_job(ctx.workspace, _picked(job_id),
                        progress=gradio_progress(progress, "detecting before and after on val items"))
    items = val_items(finished_run(ctx.workspace, job_id))
    return rows, gr.Dropdown(choices=items, value=items[0] if items else None)


def _before_after(ctx: AppContext, job_id: str | None, item_id: str | None):
    """(GAN-SR before, GAN-SR after repair) of one val item."""
    from desra.service.repair import before_after

    if not item_id:
        return None
    return before_after(ctx.workspace, _picked(job_id), item_id)


def _submit_confined(ctx: AppContext, kind: str, params: dict[str, Any], device: str) -> dict[str, Any]:
    from desra.service.jobs import submit_job

    return submit_job(ctx.workspace, kind, params, device=device, confined=True, start_workers=True).to_json()


def _register_api(ctx: AppContext) -> None:
    import gradio as gr

    from desra.service.jobs import job_progress

    def submit_job(kind: str, params: dict, device: str = "auto") -> dict:
        """Queue a job (kind: finetune, detect, calibrate, zoo-train, sleep; params: the command's flags) and start a worker; returns the job as JSON."""
        return _guard(_submit_confined)(ctx, kind, dict(params or {}), device)

    def job_status(job_id: str) -> dict:
        """State of a job: its JSON, its latest progress event (iter, iters, losses, it_per_s, eta_s) and its log tail."""
        return _guard(job_progress)(ctx.workspace, job_id)

    gr.api(submit_job, api_name="submit_job", concurrency_limit=None)
    gr.api(job_status, api_name="job_status", concurrency_limit=None)
