"""Dashboard tab "Curate": the curated fine-tune set at a glance, with pseudo-GT previews.

Lists every item of the workspace's set with split, mask source and provenance; shows the GAN-SR
output against its pseudo-GT (DeSRA Eq. 10: MSE-SR inside the mask, GAN-SR outside); removes
items (a soft delete, undone with Restore), reassigns train/val at random, exports a zip.
"""

# No `from __future__ import annotations` here: Gradio must see the real gr.SelectData class in
# the select handler's annotation to pass the event in.
import time
from typing import Any

from ui.common import guarded
from ui.context import AppContext


def build(ctx: AppContext):
    """Lay out the tab's components inside the enclosing `gr.Tab`; returns its on-open refresh (fn, inputs, outputs)."""
    import gradio as gr

    with gr.Row():
        refresh = gr.Button("↻ Refresh", scale=0)
        show_removed = gr.Checkbox(False, label="Show removed items")
        summary = gr.Markdown("", elem_id="curate-summary")
    gallery = gr.Gallery(
        label="Curated set (GAN-SR outputs)", columns=6, height=240, object_fit="contain", allow_preview=False,
        elem_id="curate-gallery", elem_classes="desra-thumbs",
    )
    selected = gr.State(None)
    with gr.Row():
        with gr.Column(scale=3):
            compare = gr.ImageSlider(label="GAN-SR (left) / pseudo-GT (right)", format="png", type="filepath", elem_id="curate-compare")
        with gr.Column(scale=2):
            mask = gr.Image(label="Mask", type="filepath", interactive=False, height=260)
            provenance = gr.JSON(label="Item and provenance")
            with gr.Row():
                remove = gr.Button("Remove", variant="stop")
                restore = gr.Button("Restore (undo remove)")
    with gr.Accordion("Splits and export", open=False):
        with gr.Row():
            val_fraction = gr.Slider(0, 1, value=0.25, step=0.05, label="Validation fraction")
            resplit = gr.Button("Assign train/val at random")
        with gr.Row():
            export = gr.Button("Export the set as a zip")
            archive = gr.File(label="Zip", interactive=False)

    listing = [gallery, summary]
    refresh.click(guarded(lambda s: _listing(ctx, s)), [show_removed], listing, api_visibility="private")
    show_removed.change(guarded(lambda s: _listing(ctx, s)), [show_removed], listing, api_visibility="private")
    def select(show: bool, event: gr.SelectData):
        return _select(ctx, show, event)

    gallery.select(guarded(select), [show_removed], [selected, compare, mask, provenance], api_visibility="private")
    for button, action in ((remove, "remove"), (restore, "restore")):
        button.click(
            guarded(lambda item, s, a=action: _toggle(ctx, item, a, s)), [selected, show_removed], [*listing, provenance], api_visibility="private"
        )
    resplit.click(guarded(lambda f, s: _resplit(ctx, f, s)), [val_fraction, show_removed], listing, api_visibility="private")
    export.click(guarded(lambda: _export(ctx)), None, [archive], api_visibility="private")
    # The set changes from the Correct tab: the app reruns this whenever the tab is opened.
    return guarded(lambda s: _listing(ctx, s)), [show_removed], listing


def _open(ctx: AppContext):
    from desra.repair.curated import open_set

    if not (ctx.curated_dir / "manifest.sqlite").exists():
        return None
    return open_set(ctx.curated_dir)


def _caption(item: Any) -> str:
    removed = " · removed" if item.deleted else ""
    return f"{item.name} · {item.split} · {item.mask_source} · mask {item.mask_fraction:.1%}{removed}"


def _listing(ctx: AppContext, show_removed: bool):
    curated = _open(ctx)
    if curated is None:
        return [], "The set is empty: save items from **Correct**."
    items = curated.items(include_deleted=show_removed)
    live = curated.items()
    counts = {split: sum(item.split == split for item in live) for split in ("train", "val")}
    summary = f"**{len(live)} items** ({counts['train']} train, {counts['val']} val) in `{curated.root}`"
    return [(str(item.path("gan")), _caption(item)) for item in items], summary


def _select(ctx: AppContext, show_removed: bool, event):
    curated = _open(ctx)
    item = curated.items(include_deleted=show_removed)[event.index]
    return item.id, (str(item.path("gan")), str(item.path("pseudo_gt"))), str(item.path("mask")), item.to_json()


def _toggle(ctx: AppContext, item_id: str | None, action: str, show_removed: bool):
    import gradio as gr

    if not item_id:
        raise gr.Error("Pick an item in the gallery first.")
    item = getattr(_open(ctx), action)(item_id)
    gr.Info(f"Item {item.id} {'removed (Restore undoes it)' if item.deleted else 'restored'}.")
    return [*_listing(ctx, show_removed), item.to_json()]


def _resplit(ctx: AppContext, val_fraction: float, show_removed: bool):
    import gradio as gr

    curated = _open(ctx)
    if curated is None:
        raise gr.Error("The set is empty: save items from Correct first.")
    counts = curated.split(val_fraction)
    gr.Info(f"{counts['train']} train, {counts['val']} val.")
    return _listing(ctx, show_removed)


def _export(ctx: AppContext) -> str:
    import gradio as gr

    curated = _open(ctx)
    if curated is None:
        raise gr.Error("The set is empty: nothing to export.")
    path = ctx.workspace / "exports" / f"curated-{time.strftime('%Y%m%d-%H%M%S')}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(curated.export_zip(path))
