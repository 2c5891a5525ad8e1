"""Dashboard tab "Detect": being built; says which library pieces it waits for."""

from __future__ import annotations

from ui.context import AppContext


def build(ctx: AppContext) -> None:
    """Lay out the tab's components inside the enclosing `gr.Tab`."""
    import gradio as gr

    from ui.common import library_gaps, not_available_markdown

    gaps = library_gaps("desra.detect:detect_lr")
    gr.Markdown(not_available_markdown("Detect", gaps) if gaps else "**Detect** is being built.")
