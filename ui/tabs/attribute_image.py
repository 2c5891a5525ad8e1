"""Dashboard tab "Attribute an image" (attribution issue): placeholder until that work lands."""

from __future__ import annotations

from ui.context import AppContext


def build(ctx: AppContext) -> None:
    """Lay out the tab's components inside the enclosing `gr.Tab`."""
    import gradio as gr

    gr.Markdown("**Attribute an image** is not built yet.")
