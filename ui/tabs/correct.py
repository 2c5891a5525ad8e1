"""Dashboard tab "Correct": being built; says which library pieces it waits for."""

from __future__ import annotations

from ui.context import AppContext


def build(ctx: AppContext) -> None:
    """Lay out the tab's components inside the enclosing `gr.Tab`."""
    import gradio as gr

    from ui.common import library_gaps, not_available_markdown

    gaps = library_gaps("desra.labelme_io")
    gr.Markdown(not_available_markdown("Correct", gaps) if gaps else "**Correct** is being built.")
