"""Dashboard tab "Detect": DeSRA-det on uploaded or demo LR images (the ``detect`` API endpoint).

Both models of a pair super-resolve each LR image; the D map compares their local texture (DeSRA
Eq. 7), optionally adjusted per semantic class (Eq. 8-9), thresholded and cleaned into a mask.
Everything is computed by the library; this tab writes each result into the workspace
(``detections/<run>/<image>/``) and shows it: MSE vs GAN slider, D heat map, semantic map, mask
overlay, ranked regions, downloads.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from ui.common import guarded
from ui.context import AppContext

MAX_IMAGES = 16
"""Most LR images one Detect run accepts (the queue is shared; bigger batches belong in a job)."""
REGION_COLUMNS = ["rank", "x0", "y0", "x1", "y1", "area (px)", "mean D", "prominence", "classes"]
"""Columns of the ranked region table."""


def build(ctx: AppContext) -> None:
    """Lay out the tab's components inside the enclosing `gr.Tab`."""
    import gradio as gr

    from desra.detect.pipeline import DetectConfig
    from ui.models import UPLOADED, default_segmenter, present_pairs

    defaults = DetectConfig()
    pairs = present_pairs()
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            images = gr.File(label="LR images (one or many)", file_count="multiple", file_types=["image"], elem_id="detect-images")
            demo = gr.Dropdown(_demo_images(), value=None, label="…or a demo image", elem_id="detect-demo")
            pair = gr.Dropdown(
                [*pairs, UPLOADED], value=pairs[0] if pairs else UPLOADED, label="Model pair (MSE parent + GAN model)",
                info="DeSRA compares a GAN model with the MSE model it was fine-tuned from",
            )
            with gr.Accordion("Upload a pair", open=not pairs):
                mse_file = gr.File(label="MSE (L1) checkpoint", file_types=[".pth", ".pt", ".safetensors"], elem_id="detect-mse")
                gan_file = gr.File(label="GAN checkpoint", file_types=[".pth", ".pt", ".safetensors"], elem_id="detect-gan")
            segmenter = gr.Dropdown(
                ["none", "b0", "b5"], value=default_segmenter(), allow_custom_value=True, label="Segmenter",
                info="SegFormer ADE20K (b0 fast, b5 the paper's) or a local folder; none skips the semantic adjustment",
            )
            threshold = gr.Slider(0.05, 0.95, value=defaults.threshold, step=0.05, label="Threshold on adjusted D (paper: 0.7)")
            window = gr.Slider(3, 21, value=defaults.window, step=2, label="Texture window (px)")
            min_area = gr.Number(defaults.min_area, label="Minimum region area (px)", precision=0, minimum=0)
            scale_area = gr.Checkbox(defaults.scale_min_area, label="Scale the minimum area to the image size (reference: 2000x1500)")
            run = gr.Button("Detect artifacts", variant="primary", elem_id="detect-run")
        with gr.Column(scale=3):
            banner = gr.HTML("", label="banner", elem_id="detect-banner")
            with gr.Row():
                summary = gr.Dataframe(headers=["image", "flagged", "regions", "semantics"], label="Results", interactive=False, scale=3)
                showing = gr.Dropdown([], label="Showing", scale=1, elem_id="detect-showing")
            slider = gr.ImageSlider(label="MSE-SR (left) vs GAN-SR (right)", format="png", type="filepath", elem_id="detect-slider")
            with gr.Row():
                heatmap = gr.Image(label="D map (low = GAN texture departs from MSE)", type="filepath", interactive=False)
                semantic = gr.Image(label="Semantic map (ADE20K classes)", type="filepath", interactive=False, visible=False)
                overlay = gr.Image(label="Detected mask", type="filepath", interactive=False, elem_id="detect-overlay")
            regions = gr.Dataframe(headers=REGION_COLUMNS, label="Regions, most prominent first", interactive=False)
            downloads = gr.File(label="Mask PNG, labelme JSON, report JSON", file_count="multiple", interactive=False, elem_id="detect-downloads")
    results = gr.State([])

    views = [banner, slider, heatmap, semantic, overlay, regions, downloads]

    def detect(
        images, demo_image, pair, mse_checkpoint, gan_checkpoint, segmenter, threshold, window, min_area, scale_min_area,
        progress=gr.Progress(),
    ):
        """Detect GAN-SR artifacts on LR images with a model pair; returns the views of the first image that worked.

        A file that cannot be read or detected on is skipped: the banner lists each with its reason and the
        summary marks it ``failed``; the call fails only when every file does."""
        return _detect(
            ctx, images, demo_image, pair, mse_checkpoint, gan_checkpoint, segmenter, threshold, window, min_area,
            scale_min_area, progress=progress,
        )

    run.click(
        guarded(detect),
        [images, demo, pair, mse_file, gan_file, segmenter, threshold, window, min_area, scale_area],
        [*views, summary, showing, results, ctx.current],
        api_name="detect",
        api_description=(
            "Detect GAN-SR artifacts on LR images with a model pair; returns the views of the first image that worked "
            "(files that fail are skipped and listed in the banner; the call fails only when all do)."
        ),
    ).then(_semantic_visible, [semantic], [semantic], api_visibility="private")
    showing.input(guarded(_show), [showing, results], [*views, ctx.current], api_visibility="private").then(
        _semantic_visible, [semantic], [semantic], api_visibility="private"
    )


def _semantic_visible(path: str | None):
    """Show the semantic map only when segmentation ran (the API returns its path or None)."""
    import gradio as gr

    return gr.Image(visible=path is not None)


def _demo_images() -> list[tuple[str, str]]:
    """(file name, file name) of the shipped demo LR photos: the API takes and shows names, never server paths."""
    return [(name, name) for name in _demo_files()]


def _demo_files() -> dict[str, Path]:
    """The shipped demo LR photos by file name."""
    from desra.core.imageio import list_images
    from desra.core.paths import datasets_dir

    folder = datasets_dir() / "demo"
    return {path.name: path for path in list_images(folder)} if folder.is_dir() else {}


def _demo_path(name: str) -> Path:
    """The demo photo called ``name`` (a file name from :func:`_demo_images`)."""
    from desra.core.errors import ConfigError

    files = _demo_files()
    if name not in files:
        raise ConfigError(f"{name!r} is not a demo image; pick one of {sorted(files)}")
    return files[name]


def _detect(
    ctx: AppContext,
    uploads: list[str] | None,
    demo: str | None,
    pair: str | None,
    mse_file: str | None,
    gan_file: str | None,
    segmenter_spec: str | None,
    threshold: float,
    window: float,
    min_area: float,
    scale_area: bool,
    progress: Any = None,
):
    from desra.core.errors import ConfigError, DesraError
    from desra.detect.pipeline import DetectConfig
    from desra.service.detection import resolve_semantics
    from ui.models import pair_models

    paths = [Path(p) for p in (uploads or [])] or ([_demo_path(Path(demo).name)] if demo else [])
    if not paths:
        raise ConfigError("no image: upload one or more LR images, or pick a demo image")
    if len(paths) > MAX_IMAGES:
        raise ConfigError(f"{len(paths)} images in one run; the dashboard takes at most {MAX_IMAGES} (run `desra detect` on a folder for more)")
    config = DetectConfig().replace(threshold=float(threshold), window=int(window), min_area=int(min_area), scale_min_area=bool(scale_area))
    # Like `desra detect`, a bad file does not stop the run: it is listed with its reason, and only
    # a run in which every file fails is an error.
    failures: list[tuple[str, DesraError]] = []
    images = []
    progress((0, len(paths)), desc="loading models")
    models = pair_models(pair, mse_file, gan_file)  # a bad pair fails every image: one error
    progress((0, len(paths)), desc="reading images")
    for path in paths:
        try:
            images.append((path, _read(path, models.scale)))
        except DesraError as error:
            failures.append((path.name, error))
    if not images:
        raise _all_failed(failures)
    semantics = resolve_semantics(segmenter_spec, class_weights=models.class_weights)
    run_dir = ctx.detections_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    results = []
    for index, (path, lr) in enumerate(images):
        try:
            results.append(_detect_one(path, lr, run_dir, models, config, semantics, pair, index, len(images), progress))
        except DesraError as error:
            failures.append((path.name, error))
    if not results:
        raise _all_failed(failures)
    rows = [[r["name"], f"{r['flagged']:.2%}", len(r["regions"]), "on" if r["semantics_used"] else "off"] for r in results]
    rows += [[name, "failed", "", ""] for name, _ in failures]
    names = [r["key"] for r in results]
    import gradio as gr

    views = _views(results[0])
    if failures:
        views[0] = _failures_banner(failures, len(paths)) + views[0]
    return [*views, rows, gr.Dropdown(choices=names, value=names[0]), results, results[0]]


def _failures_banner(failures: list[tuple[str, Exception]], total: int) -> str:
    """A warning banner listing each failed file with its reason (plain text, no server paths)."""
    from ui.common import banner_html, plain_message

    listed = "; ".join(f"{name}: {plain_message(str(error))}" for name, error in failures)
    return banner_html(f"{len(failures)} of {total} image(s) failed and were skipped: {listed}")


def _all_failed(failures: list[tuple[str, Exception]]) -> Exception:
    """The error of a run in which every file failed: one line naming each file and its reason."""
    from desra.core.errors import DesraError

    kinds = {type(error) for _, error in failures}
    kind = kinds.pop() if len(kinds) == 1 else DesraError
    listed = "; ".join(f"{name}: {error}" for name, error in failures)
    return kind(f"all {len(failures)} image(s) failed: {listed}")


def _read(path: Path, scale: int):
    """The upload's pixels, once its header shows that x``scale`` stays within the output limit (an upload
    refused for its output size is never decoded); errors name the uploaded file, not Gradio's cache path."""
    from desra.core.errors import ImageError
    from desra.models.inference import read_for_upscale

    try:
        return read_for_upscale(path, scale, what=path.name).rgb
    except ImageError as error:
        raise type(error)(str(error).replace(str(path), path.name)) from error


def _detect_one(path, lr, run_dir, models, config, semantics, pair, index, count, progress) -> dict:
    """Detect on one LR image ``lr`` (read from ``path``), write every output into ``run_dir``; returns the result record.

    The detection's files are the ones `desra detect` writes, under the dashboard's names
    (``desra.service.detection.DASHBOARD_NAMES``); the LR and SR images and a labelme JSON of the
    mask sit beside them for the slider, the Correct tab and the downloads.
    """
    from desra.core.imageio import write_image
    from desra.detect.labelme_io import write_labelme
    from desra.detect.pipeline import detect_lr
    from desra.service.detection import DASHBOARD_NAMES, write_detection
    from desra.service.sets import detection_provenance
    from ui.common import gradio_progress

    name = path.stem
    detection, mse, gan = detect_lr(
        lr, models.mse, models.gan, config, extra={"image": path.name, "pair": pair},
        progress=gradio_progress(progress, f"{name} ({index + 1}/{count}): MSE-SR, GAN-SR, D map"),
        **semantics.detect_kwargs(),
    )
    folder = run_dir / f"{index + 1:02d}-{name}"  # two uploads may share a name
    folder.mkdir(parents=True, exist_ok=True)
    write_image(folder / "lr.png", lr)
    write_image(folder / "mse.png", mse)
    write_image(folder / "gan.png", gan)
    write_labelme(folder / f"{name}.json", detection.mask, "gan.png")
    provenance = {**detection_provenance(detection, models), "source": path.name}
    write_detection(folder, DASHBOARD_NAMES, detection, gan, name=name, extra={"provenance": provenance})
    note = detection.semantics_note or ""
    return {
        "folder": str(folder),
        "key": f"{index + 1}. {name}",
        "name": name,
        "scale": models.scale,
        "flagged": detection.flagged_fraction,
        "regions": [region.to_json() for region in detection.regions],
        "semantics_used": bool(detection.semantics_used),
        "semantics_note": note,
        "provenance": provenance,
    }


def _views(result: dict) -> list:
    """Banner, slider pair, heat map, semantic map (None without semantics), overlay, region rows and downloads of one result."""
    from desra.service.detection import DASHBOARD_NAMES as names
    from ui.common import banner_html

    folder = Path(result["folder"])
    banner = (
        banner_html(f"Semantic adjustment is OFF for {result['name']}: {result['semantics_note']}")
        if not result["semantics_used"]
        else banner_html(f"Semantic adjustment on ({result['name']}).", kind="ok")
    )
    semantic = folder / names.semantic
    rows = [
        [r["id"], *r["bbox"], r["area"], round(r["mean_d"], 3), round(r["prominence"], 4),
         ", ".join(f"{c['name']} {c['fraction']:.0%}" for c in r["classes"])]
        for r in result["regions"]
    ]
    return [
        banner,
        (str(folder / "mse.png"), str(folder / "gan.png")),
        str(folder / names.heatmap),
        str(semantic) if semantic.exists() else None,
        str(folder / names.overlay),
        rows,
        [str(folder / names.mask), str(folder / f"{result['name']}.json"), str(folder / names.json)],
    ]


def _show(name: str | None, results: list[dict]):
    for result in results:
        if result["key"] == name:
            return [*_views(result), result]
    import gradio as gr

    raise gr.Error(f"No result named {name!r} in this run; run Detect again.")
