"""Dashboard tab "Evaluate": score DeSRA-det and the baselines against your labelled masks (the ``evaluate`` API endpoint).

The comparison is :func:`desra.service.evaluation.compare_methods` (every chosen method on the
same MSE-SR/GAN-SR pair of each LR image, scored as in the paper's Table 1); this module lays out
components. Everything is written under ``evaluations/<run>/`` in the workspace.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from ui.common import guarded
from ui.context import AppContext

MAX_IMAGES = 32
"""Most images one evaluation run accepts in the dashboard."""
METHOD_LABELS = {
    "desra": "DeSRA-det (full)",
    "desra-nosem": "DeSRA-det without semantics",
    "absolute-d": "absolute texture difference",
    "ldl": "LDL-style |MSE - GAN| residual",
    "ssim": "1 - SSIM",
}
"""Rows of the table, in the paper's spirit (Table 1 and the ablation of Table 4)."""


def build(ctx: AppContext) -> None:
    """Lay out the tab's components inside the enclosing `gr.Tab`."""
    import gradio as gr

    from desra.detect.pipeline import METHODS
    from ui.models import UPLOADED, default_segmenter, present_pairs

    pairs = present_pairs()
    gr.Markdown(
        "Upload LR images and, for each, a labelled mask at SR size with the same name "
        "(`photo.png` ↔ `photo.json` from labelme, or `photo_mask.png`). Every method detects on the same "
        "SR outputs; scores are mean IoU and region precision / recall (p = 0.5)."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            images = gr.File(label="LR images", file_count="multiple", file_types=["image"], elem_id="evaluate-images")
            labels = gr.File(
                label="Labelled masks (PNG or labelme JSON)", file_count="multiple", file_types=["image", ".json"],
                elem_id="evaluate-labels",
            )
            pair = gr.Dropdown([*pairs, UPLOADED], value=pairs[0] if pairs else UPLOADED, label="Model pair")
            with gr.Accordion("Upload a pair", open=not pairs):
                mse_file = gr.File(label="MSE (L1) checkpoint", file_types=[".pth", ".pt", ".safetensors"], elem_id="evaluate-mse")
                gan_file = gr.File(label="GAN checkpoint", file_types=[".pth", ".pt", ".safetensors"], elem_id="evaluate-gan")
            methods = gr.CheckboxGroup(
                [(METHOD_LABELS.get(m, m), m) for m in METHODS], value=list(METHODS), label="Methods"
            )
            segmenter = gr.Dropdown(["none", "b0", "b5"], value=default_segmenter(), allow_custom_value=True, label="Segmenter")
            scale_area = gr.Checkbox(True, label="Scale the minimum area to the image size")
            run = gr.Button("Evaluate", variant="primary")
        with gr.Column(scale=3):
            banner = gr.HTML("", label="banner")
            table = gr.Dataframe(headers=["method", "IoU (%)", "precision", "recall", "images"], label="Scores", interactive=False)
            failures = gr.Markdown("", label="not scored")
            showing = gr.Dropdown([], label="Per image")
            per_image = gr.Dataframe(headers=["method", "IoU (%)", "precision", "recall"], interactive=False, label="This image")
            gallery = gr.Gallery(
                label="Labelled mask (green) and each method's detection (red) on the GAN-SR output",
                columns=3, height=220, object_fit="contain", elem_classes="desra-thumbs", elem_id="evaluate-gallery",
            )
    run_state = gr.State(None)
    def evaluate(images, labels, pair, mse_checkpoint, gan_checkpoint, methods, segmenter, scale_min_area, progress=gr.Progress()):
        """Score DeSRA-det and baselines against labelled masks; returns the Table-1-style scores."""
        return _evaluate(ctx, images, labels, pair, mse_checkpoint, gan_checkpoint, methods, segmenter, scale_min_area, progress)

    run.click(
        guarded(evaluate),
        [images, labels, pair, mse_file, gan_file, methods, segmenter, scale_area],
        [banner, table, failures, showing, run_state],
        api_name="evaluate",
        api_description="Score DeSRA-det and baselines against labelled masks; returns the Table-1-style scores.",
    ).then(guarded(_per_image), [showing, run_state], [per_image, gallery], api_visibility="private")
    showing.input(guarded(_per_image), [showing, run_state], [per_image, gallery], api_visibility="private")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _evaluate(ctx, uploads, label_files, pair, mse_file, gan_file, methods, segmenter_spec, scale_area, progress=None):
    import gradio as gr

    from desra.core.errors import ConfigError
    from desra.detect.pipeline import DetectConfig
    from desra.service.detection import resolve_semantics
    from desra.service.evaluation import compare_methods
    from ui.common import banner_html, gradio_progress
    from ui.models import pair_models

    if len(uploads or []) > MAX_IMAGES:
        raise ConfigError(f"{len(uploads)} images; the dashboard evaluates at most {MAX_IMAGES} at once (use `desra eval` for more)")
    models = pair_models(pair, mse_file, gan_file)
    comparison = compare_methods(
        uploads or [], label_files or [], models, methods or [],
        resolve_semantics(segmenter_spec, class_weights=models.class_weights),
        DetectConfig(scale_min_area=bool(scale_area)),
        ctx.workspace / "evaluations" / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}",
        progress=gradio_progress(progress, "SR and detection"),
    )
    summaries = comparison.summaries
    rows = [
        [METHOD_LABELS.get(m, m), _percent(s.iou), _ratio(s.precision), _ratio(s.recall), len(s.images)]
        for m, s in summaries.items()
    ]
    first = next(iter(summaries.values()))
    failed = "\n".join(f"- `{name}`: {why}" for name, why in first.failures)
    scored = [score.name for score in first.images]
    off = comparison.semantics_off
    banner = banner_html(f"Semantic adjustment is OFF for DeSRA-det: {off}") if off else ""
    state = {"dir": str(comparison.run_dir), "methods": list(comparison.methods), "scores": {m: [vars(i) for i in s.images] for m, s in summaries.items()}}
    return (
        banner,
        rows,
        f"**Not scored:**\n{failed}" if failed else "",
        gr.Dropdown(choices=scored, value=scored[0] if scored else None),
        state,
    )


def _per_image(name: str | None, state: dict | None):
    from desra.core.imageio import read_image, read_mask
    from desra.detect import visualize
    from desra.detect.labelme_io import read_gt_mask
    from desra.detect.metrics import mask_stem
    from ui.common import write_picture

    if not name or not state:
        return [], []
    run_dir = Path(state["dir"])
    rows = []
    for method in state["methods"]:
        score = next((s for s in state["scores"][method] if s["name"] == name), None)
        if score:
            rows.append([METHOD_LABELS.get(method, method), _percent(score["iou"]), _ratio(score["precision"]), _ratio(score["recall"])])
    gan = read_image(run_dir / "gan" / f"{name}.png").rgb
    views = run_dir / "views" / name
    views.mkdir(parents=True, exist_ok=True)
    pictures: list[tuple[str, Any]] = []
    # labelme JSON first, as the library's own matching does
    candidates = sorted((p for p in (run_dir / "labels").iterdir() if mask_stem(p) == name), key=lambda p: p.suffix != ".json")
    if candidates:
        label_path = candidates[0]
        write_picture(views / "labelled.png", visualize.overlay(gan, read_gt_mask(label_path), color=(40, 200, 60)))
        pictures.append((str(views / "labelled.png"), "labelled"))
    for method in state["methods"]:
        write_picture(views / f"{method}.png", visualize.overlay(gan, read_mask(run_dir / method / f"{name}_mask.png")))
        pictures.append((str(views / f"{method}.png"), METHOD_LABELS.get(method, method)))
    return rows, pictures
