"""Dashboard tab "Watch": continual repair of a watched folder (``desra watch``, docs/watch.md).

Shows the timeline of arrivals (thumbnail, flagged share, clean or artifact), the current model
version, each repair round with its report, and promotes or rolls back a version. The same actions
are named endpoints: ``/watch_status``, ``/watch_promote``, ``/watch_rollback``. The service itself
runs outside the dashboard (``desra watch start``); this tab reads and changes its state.
"""

from __future__ import annotations

from typing import Any

from ui.common import guarded
from ui.context import AppContext

NO_WATCH = ("No watch has been started in this workspace. Start one with "
            "`desra watch start DIR --pair NAME --workspace {workspace}`; this tab then shows what it sees and does.")
ROUND_COLUMNS = ["version", "state", "removal", "addition", "promoted", "reason"]


def build(ctx: AppContext):
    """Lay out the tab inside the enclosing ``gr.Tab``; returns its on-open refresh (fn, inputs, outputs)."""
    import gradio as gr

    with gr.Row():
        refresh = gr.Button("↻ Refresh", scale=0, elem_id="watch-refresh")
        summary = gr.Markdown("", elem_id="watch-summary")
    timeline = gr.Gallery(label="Arrivals (GAN-SR, detections outlined)", columns=8, height=260, object_fit="contain",
                          allow_preview=False, elem_id="watch-timeline", elem_classes="desra-thumbs")
    rounds = gr.Dataframe(headers=ROUND_COLUMNS, label="Repair rounds", interactive=False, wrap=True, elem_id="watch-rounds")
    with gr.Accordion("Round reports", open=False):
        reports = gr.JSON(label="Kept report of each round (watch/versions/vKKK/report.json)", elem_id="watch-reports")
    with gr.Row():
        version = gr.Number(label="Model version", precision=0, value=0, minimum=0, elem_id="watch-version")
        promote = gr.Button("Promote this version", variant="primary", elem_id="watch-promote")
        rollback = gr.Button("Roll back to this version", elem_id="watch-rollback")
    answer = gr.JSON(label="Status after the action", elem_id="watch-answer")

    def watch_status() -> dict:
        """What the watch has seen and done: images, artifact_images, clean_images, failed, rounds, current_version."""
        from desra.service import watch

        return watch.status(ctx.workspace)

    def watch_promote(version: float) -> dict:
        """Promote a repaired model version by hand (its round's decision stays in its reason); returns the status."""
        from desra.service import watch

        return watch.promote(ctx.workspace, int(version))

    def watch_rollback(version: float) -> dict:
        """Make an earlier current version (0, or a promoted round) current again; returns the status."""
        from desra.service import watch

        return watch.rollback(ctx.workspace, int(version))

    listing = [summary, timeline, rounds, reports]
    gr.api(guarded(watch_status), api_name="watch_status", concurrency_limit=None)
    promote.click(guarded(watch_promote), [version], [answer], api_name="watch_promote", concurrency_limit=None).then(
        guarded(lambda: _listing(ctx)), None, listing, api_visibility="private")
    rollback.click(guarded(watch_rollback), [version], [answer], api_name="watch_rollback", concurrency_limit=None).then(
        guarded(lambda: _listing(ctx)), None, listing, api_visibility="private")
    refresh.click(guarded(lambda: _listing(ctx)), None, listing, api_visibility="private")
    # The service changes the state from outside: the app reruns this whenever the tab is opened.
    return guarded(lambda: _listing(ctx)), None, listing


def _caption(arrival: dict[str, Any]) -> str:
    if arrival["state"] in ("clean", "artifact"):
        return f"{arrival['name']} · {arrival['state']} · {100 * arrival['flagged']:.1f} % flagged · v{arrival['version']}"
    return f"{arrival['name']} · {arrival['state']}"


def _listing(ctx: AppContext) -> tuple[str, list, list, list]:
    """(summary, gallery items, round rows, round reports) of the workspace's watch, or the how-to when there is none."""
    from desra.core.errors import ConfigError
    from desra.service import watch

    try:
        report = watch.status(ctx.workspace)
    except ConfigError:  # no watch started here yet
        return NO_WATCH.format(workspace=ctx.workspace), [], [], []
    arrivals = watch.timeline(ctx.workspace)
    summary = (f"**Current model version: {report['current_version']}** · {report['images']} images "
               f"({report['artifact_images']} with artifacts, {report['clean_images']} clean) · "
               f"{report['failed']} files could not be read · {len(report['rounds'])} repair rounds")
    gallery = [(a["thumb"], _caption(a)) for a in arrivals if a["thumb"]]
    rows = [[r[column] for column in ROUND_COLUMNS] for r in report["rounds"]]
    return summary, gallery, rows, watch.round_reports(ctx.workspace)
