"""Dashboard tab "Attribute an image": which zoo model made this SR image? (Vonderfecht & Liu)

Lays out components and calls :func:`desra.attribution.pipeline.attribute_image` with the classifier
and PRNU fingerprints written by ``desra attribute train``; shows that run's test accuracy tables,
R(A, B) matrix and t-SNE so the ranking can be judged. Registers the ``attribute_image`` API endpoint.
"""

from __future__ import annotations

from pathlib import Path

from ui.common import guarded
from ui.context import AppContext


def experiment_dirs(ctx: AppContext) -> list[Path]:
    """Where a trained attribution experiment is looked for, in order: the workspace, then the project's runs/ for the
    default (large) zoo of `desra attribute train`, then the tiny zoo's (`--zoo tiny`)."""
    from desra.core.paths import project_root

    runs = project_root() / "runs"
    return [ctx.workspace / "attribution" / "experiment", runs / "attribution-large" / "experiment", runs / "attribution" / "experiment"]


def build(ctx: AppContext) -> None:
    """Lay out the tab's components inside the enclosing `gr.Tab`."""
    import gradio as gr

    found = next((d for d in experiment_dirs(ctx) if (d / "classifier.safetensors").is_file()), None)
    gr.Markdown(
        "Upload an SR image (at least 64x64). desra's attribution classifier, a small ConvNeXt-style CNN "
        "trained from scratch on desra's own zoo, ranks the zoo models and parses the scale and "
        "the loss (L1 or GAN), voting over up to 32 crops; the PRNU-style baseline's nearest fingerprint "
        "is shown beside it. It only knows the zoo's models: an image from any other model is still "
        "attributed to its closest zoo member."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            image = gr.Image(label="SR image", type="filepath", elem_id="attribute-image")
            experiment = gr.Textbox(
                str(found or experiment_dirs(ctx)[1]), label="Experiment folder (from `desra attribute train`)", elem_id="attribute-experiment"
            )
            run = gr.Button("Attribute", variant="primary", elem_id="attribute-run")
        with gr.Column(scale=2):
            ranking = gr.Dataframe(headers=["rank", "model", "probability", "PRNU rank"], label="Ranked models", interactive=False, elem_id="attribute-ranking")
            with gr.Row():
                scale = gr.Label(label="Parsed scale", elem_id="attribute-scale")
                loss = gr.Label(label="Parsed loss", elem_id="attribute-loss")
    with gr.Accordion("How reliable is this? The experiment's test results", open=found is None):
        report = gr.Markdown(_report_text(found), elem_id="attribute-report")
        with gr.Row():
            r_plot = gr.Image(_plot(found, "attribution-r-matrix.png"), label="R(A, B) on test crops", interactive=False)
            tsne = gr.Image(_plot(found, "attribution-tsne.png"), label="t-SNE of classifier embeddings", interactive=False)

    def attribute_image(image_path, experiment_dir):
        """Rank the zoo models for an SR image; returns the ranking table and the parsed scale and loss."""
        return _attribute(image_path, experiment_dir)

    run.click(guarded(attribute_image), [image, experiment], [ranking, scale, loss], api_name="attribute_image").then(
        guarded(_explain), [experiment], [report, r_plot, tsne], api_visibility="private"
    )


def _report_text(folder: Path | None) -> str:
    if folder is None or not (folder / "report.md").is_file():
        return (
            "No trained attribution experiment found. Build one with `desra attribute build-zoo` "
            "then `desra attribute train` (about an hour on a 2-core CPU), or point the folder above at one."
        )
    return (
        "Test photos never seen in training; *crop* = one 64 px crop, *vote* = 10 crops of one image averaged. "
        "Numbers come from desra's tiny CPU zoo, not the paper's 205 models.\n\n" + (folder / "report.md").read_text(encoding="utf-8")
    )


def _plot(folder: Path | None, name: str):
    from desra.core.imageio import read_image

    if folder is None or not (folder / name).is_file():
        return None
    return read_image(folder / name).rgb


def _explain(experiment_dir):
    folder = Path(experiment_dir or "")
    return _report_text(folder), _plot(folder, "attribution-r-matrix.png"), _plot(folder, "attribution-tsne.png")


def _attribute(image_path, experiment_dir):
    from desra.attribution.pipeline import attribute_image
    from desra.core.errors import ImageError
    from desra.core.imageio import read_image

    if not image_path:
        raise ImageError("no image uploaded; upload the SR image to attribute")
    result = attribute_image(read_image(image_path).rgb, Path(experiment_dir))
    prnu_rank = {name: i + 1 for i, (name, _) in enumerate(result.prnu_ranking)}
    rows = [[i + 1, name, f"{100 * p:.1f} %", prnu_rank.get(name, "—")] for i, (name, p) in enumerate(result.ranking)]
    return rows, result.scale, result.loss
