"""Dashboard tab "Verify a model": is an uploaded SR checkpoint derived from a registered one? (Quan et al.)

Lays out components and calls :mod:`desra.service.fingerprints` (as ``desra fingerprint register|verify``
does); the fingerprint registry is the workspace's ``fingerprints.sqlite``, the same one
``desra fingerprint register|verify --workspace`` uses.
Registers the ``register_fingerprint`` and ``verify_model`` API endpoints.
"""

from __future__ import annotations

from pathlib import Path

from ui.common import guarded
from ui.context import AppContext

CHECKPOINT_TYPES = [".pth", ".pt", ".safetensors"]
"""Checkpoint files the uploads accept."""


def build(ctx: AppContext):
    """Lay out the tab's components inside the enclosing `gr.Tab`; returns the on-open refresh of the registered names."""
    import gradio as gr

    gr.Markdown(
        "Upload a suspect SR checkpoint and pick a registered source model. desra optimises the "
        "suspect's **critical image** (the input it maps most nearly onto itself, Quan et al. Eq. 1) "
        "with the source's settings and compares colour + LGP histograms: the suspect is judged "
        "**derived** when the distance is below eta (chi-squared test, 1.387e-4 at sigma 0.015, p 0.05). "
        "White-box: it needs the weights. 5000 iterations take minutes on a CPU. Models desra writes record their "
        "**lineage** (source weights' sha256, recipe) in their metadata; it is shown beside the verdict and checked "
        "against it, never used in its place: metadata can be forged."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            suspect = gr.File(label="Suspect checkpoint", file_types=CHECKPOINT_TYPES, elem_id="verify-suspect")
            against = gr.Dropdown(_names(ctx), label="Registered source model", allow_custom_value=True, elem_id="verify-against")
            with gr.Accordion("Test settings", open=False):
                sigma = gr.Number(0.015, label="sigma (std of one feature difference)", minimum=1e-6)
                p_level = gr.Number(0.05, label="p (significance level)", minimum=1e-6, maximum=0.999)
            verify = gr.Button("Verify", variant="primary", elem_id="verify-run")
            with gr.Accordion("Register a source model", open=not _names(ctx)):
                source = gr.File(label="Source checkpoint", file_types=CHECKPOINT_TYPES, elem_id="verify-source")
                name = gr.Textbox(label="Name", placeholder="my-model-v1", elem_id="verify-name")
                iterations = gr.Number(5000, label="Critical-image iterations (paper: 5000)", precision=0, minimum=1)
                size = gr.Number(128, label="Critical-image size (px, paper: 128)", precision=0, minimum=8)
                register = gr.Button("Register", elem_id="verify-register")
                registered = gr.Markdown("")
        with gr.Column(scale=2):
            verdict = gr.HTML("", elem_id="verify-verdict")
            lineage = gr.Markdown("", elem_id="verify-lineage")
            bar = gr.BarPlot(x="quantity", y="relative to eta", label="Distance against eta (derived below 1)", height=220, y_lim=[0, None], elem_id="verify-bar")
            with gr.Row():
                source_image = gr.Image(label="Source critical image", interactive=False, height=256, elem_id="verify-source-critical")
                suspect_image = gr.Image(label="Suspect critical image", interactive=False, height=256, elem_id="verify-suspect-critical")
            details = gr.JSON(label="Verdict", elem_id="verify-json")

    def verify_model(suspect_file, source_name, sigma_value, p_value, progress=gr.Progress()):
        """Verify a suspect checkpoint against a registered fingerprint; returns the verdict, the suspect's recorded lineage
        (shown beside the verdict, never deciding it), the verdict JSON and both critical images."""
        return _verify(ctx, suspect_file, source_name, sigma_value, p_value, progress)

    def register_fingerprint(source_file, source_name, iteration_count, side, progress=gr.Progress()):
        """Register a source checkpoint's fingerprint under a name in the workspace registry."""
        return _register(ctx, source_file, source_name, iteration_count, side, progress)

    verify.click(
        guarded(verify_model), [suspect, against, sigma, p_level], [verdict, lineage, bar, source_image, suspect_image, details],
        api_name="verify_model",
    )
    register.click(
        guarded(register_fingerprint), [source, name, iterations, size], [registered, against], api_name="register_fingerprint",
    )
    return (lambda: gr.Dropdown(choices=_names(ctx)), None, [against])


def _registry(ctx: AppContext) -> Path:
    from desra.service.fingerprints import registry_file

    return registry_file(ctx.workspace)


def _names(ctx: AppContext) -> list[str]:
    from desra.fingerprint.verify import list_fingerprints

    return list_fingerprints(_registry(ctx))


def _file_path(upload, what: str) -> str:
    from desra.core.errors import CheckpointError

    if not upload:
        raise CheckpointError(f"no {what} checkpoint uploaded; upload a .pth, .pt or .safetensors file")
    return str(upload if isinstance(upload, str) else getattr(upload, "name", upload))


def _verify(ctx: AppContext, suspect_file, source_name, sigma, p_level, progress):
    import gradio as gr
    import pandas as pd

    from desra.service.fingerprints import verify_suspect
    from ui.common import banner_html, gradio_progress

    verification = verify_suspect(
        _file_path(suspect_file, "suspect"), _registry(ctx), source_name, sigma=float(sigma), p=float(p_level),
        progress=gradio_progress(progress, "optimising the suspect's critical image"),
    )
    name, v = verification.suspect.descriptor.name, verification.result.verdict
    text = (
        f"{name} is DERIVED from {source_name} (d = {v.distance:.3e} < eta = {v.eta:.3e}, p = {v.p_value:.3g})"
        if v.match
        else f"{name} is NOT derived from {source_name} (d = {v.distance:.3e} >= eta = {v.eta:.3e}, p = {v.p_value:.3g})"
    )
    frame = pd.DataFrame({"quantity": ["eta", "distance"], "relative to eta": [1.0, v.distance / v.eta]})
    # The verdict above comes from the fingerprint alone; the metadata's lineage is shown beside it.
    return (
        banner_html(text, kind="ok" if v.match else "warning"),
        _lineage_markdown(verification.lineage),
        gr.BarPlot(value=frame),
        verification.result.source.critical,
        verification.result.critical,
        verification.to_json(),
    )


def _lineage_markdown(report) -> str:
    """The lineage panel: what the metadata claims, how it compares with the verdict, and that it can be forged."""
    from desra.models.lineage import FORGERY_NOTE

    flag = {"contradicted": "**Warning: the metadata contradicts the fingerprint.** ", "weights-differ": "**Warning: the metadata was written for other weights.** "}
    return (
        f"**Lineage (from the suspect's metadata):** {report.claim()}\n\n"
        f"{flag.get(report.check.status, '')}Lineage check: *{report.check.status}*: {report.check.message}.\n\n"
        f"_Note: {FORGERY_NOTE}._"
    )


def _register(ctx: AppContext, source_file, name, iterations, size, progress):
    import gradio as gr

    from desra.fingerprint.critical import CriticalConfig
    from desra.service.fingerprints import register_model
    from ui.common import gradio_progress

    path = _file_path(source_file, "source")
    config = CriticalConfig(size=int(size), iterations=int(iterations))
    record = register_model(path, name, _registry(ctx), config, source=Path(path).name,
                            progress=gradio_progress(progress, "optimising the critical image"))
    return f"Registered **{record.name}** (x{record.scale}, {config.iterations} iterations).", gr.Dropdown(choices=_names(ctx), value=record.name)
