"""Dashboard tab "Correct": fix the detected mask by hand and save the item to the curated set.

The editor shows the GAN-SR image with one fixed layer, the mask, in translucent red: brush adds,
the eraser removes. Unticking a region clears its box. labelme JSON goes both ways, for people who
label in labelme. Saving stores LR, MSE-SR, GAN-SR, the mask and its pseudo-GT (DeSRA Eq. 10) in
the workspace's curated set.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ui.common import guarded
from ui.context import AppContext

NO_ITEM = "Nothing to correct yet: run **Detect** first; its result appears here."


def build(ctx: AppContext) -> None:
    """Lay out the tab's components inside the enclosing `gr.Tab`."""
    import gradio as gr

    from ui.common import library_gaps, not_available_markdown
    from ui.editor_mask import BRUSH_COLOR

    gaps = library_gaps("desra.curated:create_set", "desra.imageio:read_image", "desra.labelme_io:write_labelme")
    if gaps:
        gr.Markdown(not_available_markdown("Correct", gaps))
        return
    info = gr.Markdown(NO_ITEM, elem_id="correct-item")
    with gr.Row():
        with gr.Column(scale=3):
            editor = gr.ImageEditor(
                label="Mask over the GAN-SR image: brush adds, eraser removes",
                type="numpy",
                image_mode="RGBA",
                sources=(),
                transforms=(),
                brush=gr.Brush(colors=[BRUSH_COLOR], default_color=BRUSH_COLOR, color_mode="fixed"),
                eraser=gr.Eraser(),
                layers=gr.LayerOptions(allow_additional_layers=False, layers=["mask"]),
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

    ctx.current.change(guarded(_load), [ctx.current], [info, editor, regions], api_visibility="private")
    regions.input(guarded(_apply_regions), [ctx.current, regions], [editor], api_visibility="private")
    labelme_in.upload(guarded(_import_labelme), [ctx.current, labelme_in], [editor], api_visibility="private")
    export.click(guarded(_export_labelme), [ctx.current, editor], [labelme_out], api_visibility="private")
    save.click(
        guarded(lambda cur, ed, sp, ids: _save(ctx, cur, ed, sp, ids)),
        [ctx.current, editor, split, saved_items],
        [saved_items, saved, saved_mask],
        api_visibility="private",
    )


def _require(current: dict | None) -> dict:
    import gradio as gr

    if not current:
        raise gr.Error("Nothing to correct yet: run Detect first.")
    return current


def _detected_mask(current: dict) -> np.ndarray:
    from desra.imageio import read_mask

    return read_mask(Path(current["folder"]) / "mask.png")


def _editor_value(current: dict, mask: np.ndarray) -> dict[str, Any]:
    from ui.editor_mask import mask_to_layer

    return {"background": str(Path(current["folder"]) / "gan.png"), "layers": [mask_to_layer(mask)], "composite": None}


def _load(current: dict | None):
    import gradio as gr

    if not current:
        return NO_ITEM, None, gr.CheckboxGroup(choices=[], value=[])
    labels = [_region_label(region) for region in current["regions"]]
    info = (
        f"**{current['name']}** (x{current['scale']}, {len(labels)} detected regions). "
        "Brush over artifacts the detector missed, erase false alarms, then save."
    )
    return info, _editor_value(current, _detected_mask(current)), gr.CheckboxGroup(choices=labels, value=labels)


def _region_label(region: dict) -> str:
    return f"#{region['id']}: {region['area']} px, mean D {region['mean_d']:.2f}"


def _apply_regions(current: dict | None, accepted: list[str]):
    current = _require(current)
    mask = _detected_mask(current).copy()
    for region in current["regions"]:
        if _region_label(region) not in accepted:
            x0, y0, x1, y1 = region["bbox"]
            mask[y0:y1, x0:x1] = False
    return _editor_value(current, mask)


def _import_labelme(current: dict | None, upload: str | None):
    from desra.errors import PairMismatchError
    from desra.labelme_io import read_gt_mask

    current = _require(current)
    if not upload:
        return _editor_value(current, _detected_mask(current))
    mask = read_gt_mask(upload)
    shape = _detected_mask(current).shape
    if mask.shape != shape:
        raise PairMismatchError(
            f"the imported mask is {mask.shape[1]}x{mask.shape[0]} but the GAN-SR image is {shape[1]}x{shape[0]}; "
            "label the SR output (not the LR input) of this image"
        )
    return _editor_value(current, mask)


def _mask_from_editor(current: dict, editor: dict | None) -> np.ndarray:
    from ui.editor_mask import layer_to_mask

    detected = _detected_mask(current)
    layers = (editor or {}).get("layers") or []
    if not layers:
        return detected  # the editor was never touched: its layer is the detected mask
    return layer_to_mask(layers[0], detected.shape)


def _export_labelme(current: dict | None, editor: dict | None) -> str:
    from desra.labelme_io import write_labelme

    current = _require(current)
    mask = _mask_from_editor(current, editor)
    path = Path(current["folder"]) / f"{current['name']}_corrected.json"
    write_labelme(path, mask, "gan.png")
    return str(path)


def _save(ctx: AppContext, current: dict | None, editor: dict | None, split: str, saved_items: dict):
    import gradio as gr

    from desra.curated import create_set, open_set
    from desra.imageio import read_image, write_mask

    current = _require(current)
    folder = Path(current["folder"])
    mask = _mask_from_editor(current, editor)
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
