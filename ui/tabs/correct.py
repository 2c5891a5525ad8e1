"""Dashboard tab "Correct": fix the detected mask by hand and save the item to the curated set.

The editor shows the GAN-SR image with the current mask tinted yellow; on its one fixed layer the
red brush adds to the mask, the blue brush removes from it, the eraser takes strokes back (see
``ui.editor_mask``). Unticking a region clears its box. labelme JSON goes both ways, for people
who label in labelme. Saving stores LR, MSE-SR, GAN-SR, the mask and its pseudo-GT (DeSRA Eq. 10)
in the workspace's curated set.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ui.common import guarded
from ui.context import AppContext

NO_ITEM = "Nothing to correct yet: run **Detect** first; its result appears here."


def build(ctx: AppContext):
    """Lay out the tab's components inside the enclosing `gr.Tab`; returns its on-open loader (fn, inputs, outputs)."""
    import gradio as gr

    from ui.editor_mask import ADD_COLOR, REMOVE_COLOR

    info = gr.Markdown(NO_ITEM, elem_id="correct-item")
    with gr.Row():
        with gr.Column(scale=3):
            editor = gr.ImageEditor(
                label="GAN-SR image, mask in yellow: red brush adds, blue brush removes, eraser undoes strokes",
                type="numpy",
                image_mode="RGBA",
                sources=(),
                transforms=(),
                brush=gr.Brush(colors=[ADD_COLOR, REMOVE_COLOR], default_color=ADD_COLOR, color_mode="fixed"),
                eraser=gr.Eraser(),
                layers=gr.LayerOptions(allow_additional_layers=False, layers=["strokes"]),
                format="png",
                height=620,
                elem_id="correct-editor",
            )
        with gr.Column(scale=1):
            regions = gr.CheckboxGroup(label="Accepted regions (untick to clear a false alarm's box)", elem_id="correct-regions")
            split = gr.Radio(["train", "val"], value="train", label="Split", info="val items are held out to judge the repair")
            save = gr.Button("Save to curated set", variant="primary", elem_id="correct-save")
            saved = gr.Markdown("", elem_id="correct-saved")
            saved_mask = gr.Image(label="Saved mask", type="filepath", height=180, interactive=False)
            with gr.Accordion("labelme", open=False):
                labelme_in = gr.File(label="Import a labelme JSON or mask PNG", file_types=[".json", ".png"])
                export = gr.Button("Export labelme JSON")
                labelme_out = gr.File(label="labelme JSON", interactive=False)

    saved_items = gr.State({})  # detection folder -> curated item id, so a second save updates that item
    loaded = gr.State(None)  # detection folder now in the editor
    base = gr.State(None)  # mask PNG the strokes apply to: the detection, less unticked regions, or an import

    regions.input(guarded(_apply_regions), [ctx.current, regions], [editor, base], api_visibility="private")
    labelme_in.upload(guarded(_import_labelme), [ctx.current, labelme_in], [editor, base], api_visibility="private")
    export.click(guarded(_export_labelme), [ctx.current, base, editor], [labelme_out], api_visibility="private")
    save.click(
        guarded(lambda cur, b, ed, sp, ids: _save(ctx, cur, b, ed, sp, ids)),
        [ctx.current, base, editor, split, saved_items],
        [saved_items, saved, saved_mask],
        api_visibility="private",
    )
    # The editor is filled when the tab opens (a canvas filled while its tab is hidden stays
    # blank), and only when Detect made a new result, so tab switches keep unsaved brushing.
    return guarded(_load), [ctx.current, loaded], [info, editor, regions, loaded, base]


def _require(current: dict | None) -> dict:
    import gradio as gr

    if not current:
        raise gr.Error("Nothing to correct yet: run Detect first.")
    return current


def _detected_mask(current: dict) -> np.ndarray:
    from desra.core.imageio import read_mask
    from desra.service.detection import DASHBOARD_NAMES

    return read_mask(Path(current["folder"]) / DASHBOARD_NAMES.mask)


def _start(current: dict, mask: np.ndarray, name: str) -> tuple[dict[str, Any], str]:
    """Save ``mask`` as the base the strokes apply to; -> (editor value with the mask tinted in, base path)."""
    from desra.core.imageio import read_image, write_mask
    from desra.detect import visualize
    from ui.common import write_picture

    folder = Path(current["folder"])
    token = uuid.uuid4().hex[:6]  # a new name per change: the browser must not show a cached older view
    base = folder / f"{name}-{token}.png"
    write_mask(base, mask)
    background = folder / f"{name}-{token}_view.png"
    write_picture(background, visualize.overlay(read_image(folder / "gan.png").rgb, mask, color=(255, 210, 0)))
    return {"background": str(background), "layers": [], "composite": None}, str(base)


def _load(current: dict | None, loaded: str | None):
    import gradio as gr

    if not current:
        return NO_ITEM, None, gr.CheckboxGroup(choices=[], value=[]), None, None
    if current["folder"] == loaded:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    labels = [_region_label(region) for region in current["regions"]]
    info = (
        f"**{current['name']}** (x{current['scale']}, {len(labels)} detected regions). "
        "Paint red over artifacts the detector missed, blue over false alarms, then save."
    )
    value, base = _start(current, _detected_mask(current), "base_mask")
    return info, value, gr.CheckboxGroup(choices=labels, value=labels), current["folder"], base


def _region_label(region: dict) -> str:
    return f"#{region['id']}: {region['area']} px, mean D {region['mean_d']:.2f}"


def _apply_regions(current: dict | None, accepted: list[str]):
    current = _require(current)
    mask = _detected_mask(current).copy()
    for region in current["regions"]:
        if _region_label(region) not in accepted:
            x0, y0, x1, y1 = region["bbox"]
            mask[y0:y1, x0:x1] = False
    return _start(current, mask, "base_mask")


def _import_labelme(current: dict | None, upload: str | None):
    from desra.core.errors import PairMismatchError
    from desra.detect.labelme_io import read_gt_mask

    current = _require(current)
    if not upload:
        return _start(current, _detected_mask(current), "base_mask")
    mask = read_gt_mask(upload)
    shape = _detected_mask(current).shape
    if mask.shape != shape:
        raise PairMismatchError(
            f"the imported mask is {mask.shape[1]}x{mask.shape[0]} but the GAN-SR image is {shape[1]}x{shape[0]}; "
            "label the SR output (not the LR input) of this image"
        )
    return _start(current, mask, "imported_mask")


def _mask_from_editor(current: dict, base: str | None, editor: dict | None) -> np.ndarray:
    from desra.core.imageio import read_mask
    from ui.editor_mask import corrected_mask

    mask = read_mask(base) if base else _detected_mask(current)
    layers = (editor or {}).get("layers") or []
    return corrected_mask(mask, layers[0] if layers else None)


def _export_labelme(current: dict | None, base: str | None, editor: dict | None) -> str:
    from desra.detect.labelme_io import write_labelme

    current = _require(current)
    mask = _mask_from_editor(current, base, editor)
    path = Path(current["folder"]) / f"{current['name']}_corrected.json"
    write_labelme(path, mask, "gan.png")
    return str(path)


def _save(ctx: AppContext, current: dict | None, base: str | None, editor: dict | None, split: str, saved_items: dict):
    import gradio as gr

    from desra.core.imageio import read_image, write_mask
    from desra.repair.curated import create_set, open_set

    current = _require(current)
    folder = Path(current["folder"])
    mask = _mask_from_editor(current, base, editor)
    edited = bool((mask != _detected_mask(current)).any())
    curated = open_set(ctx.curated_dir) if (ctx.curated_dir / "manifest.sqlite").exists() else create_set(ctx.curated_dir)
    item_id = saved_items.get(current["folder"])
    if item_id:
        item = curated.set_mask(item_id, mask, editor="dashboard", note="corrected in the Correct tab")
        verb = "updated"
    else:
        item = curated.add(
            current["name"],
            read_image(folder / "lr.png").rgb,
            read_image(folder / "mse.png").rgb,
            read_image(folder / "gan.png").rgb,
            mask,
            mask_source="edited" if edited else "detected",
            provenance={**current["provenance"], "saved_from": "dashboard", "edited": edited, "time": time.time()},
            split=split,
        )
        verb = "added"
    preview = folder / "saved_mask.png"
    write_mask(preview, mask)
    gr.Info(f"Item {item.id} {verb} in the curated set.")
    message = (
        f"Saved: item `{item.id}` {verb} ({item.split}, mask {item.mask_fraction:.1%} of the image, "
        f"{'edited by hand' if edited else 'as detected'}). See it in **Curate**."
    )
    return {**saved_items, current["folder"]: item.id}, message, str(preview)
