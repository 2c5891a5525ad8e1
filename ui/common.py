"""Glue shared by the dashboard tabs: error messages, library availability, progress, banners.

Nothing here computes anything about images; it adapts the library's conventions (DesraError,
``progress(done, total)`` callbacks) to Gradio's (``gr.Error``, ``gr.Progress``).
"""

from __future__ import annotations

import functools
import html
import importlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("desra.ui")


def guarded(fn: Callable) -> Callable:
    """Wrap an event handler so every failure reaches the page as a ``gr.Error`` message.

    A :class:`~desra.errors.DesraError` shows its own message (what came in, what was expected,
    how to fix it); anything else shows its type and text and is logged with the traceback. The
    server keeps running either way. ``functools.wraps`` keeps the signature Gradio inspects for
    ``gr.Progress`` parameters.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import gradio as gr

        from desra.errors import DesraError

        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except DesraError as error:
            # gr.Error renders HTML: escape so file names and user text cannot inject markup.
            raise gr.Error(html.escape(str(error)), title=type(error).__name__, print_exception=False) from error
        except Exception as error:  # noqa: BLE001 - the page's last line of defence
            log.exception("dashboard handler %s failed", fn.__name__)
            raise gr.Error(
                html.escape(f"internal error: {type(error).__name__}: {error} (details in the server log)"),
                title="Internal error",
                print_exception=False,
            ) from error

    return wrapper


def library_gaps(*requirements: str) -> list[str]:
    """Which of ``"module:attribute"`` requirements cannot be imported yet (empty when all are there)."""
    gaps = []
    for requirement in requirements:
        module_name, _, attribute = requirement.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            gaps.append(requirement)
            continue
        if attribute and not hasattr(module, attribute):
            gaps.append(requirement)
    return gaps


def not_available_markdown(feature: str, gaps: list[str]) -> str:
    """The honest message a tab shows in place of a feature whose library pieces have not landed."""
    missing = ", ".join(f"`{gap.replace(':', '.')}`" for gap in gaps)
    return (
        f"**{feature}: not available yet.** This dashboard only calls the desra library, and the "
        f"pieces it needs are not in this installation: {missing}."
    )


def banner_html(text: str, *, kind: str = "warning") -> str:
    """A coloured banner (``kind`` in warning/info/ok) holding ``text`` (escaped); empty text gives no banner."""
    if not text:
        return ""
    return f'<div class="desra-banner desra-banner-{kind}" role="status">{html.escape(text)}</div>'


def gradio_progress(progress: Any, description: str) -> Callable[[int, int], None]:
    """Adapt a ``gr.Progress`` to the library's ``progress(done, total)`` callback."""

    def report(done: int, total: int) -> None:
        progress((done, total), desc=description)

    return report


def write_picture(path, picture) -> None:
    """Write a ``desra.visualize`` picture ((H, W, 3) uint8 RGB) as a PNG through the library's writer."""
    from desra.imageio import write_image

    write_image(path, picture.astype("float32") / 255.0)


BANNER_CSS = """
.desra-banner { padding: 0.6em 0.9em; border-radius: 6px; margin: 0.3em 0; font-weight: 600; }
.desra-banner-warning { background: #fff4ce; border: 1px solid #e0b000; color: #5c4400; }
.desra-banner-info { background: #e8f1fd; border: 1px solid #5b8def; color: #153e75; }
.desra-banner-ok { background: #e6f6ea; border: 1px solid #3aa55d; color: #14532d; }
.desra-thumbs .grid-container {
  grid-template-columns: repeat(6, minmax(100px, 1fr)) !important;
  grid-template-rows: none !important;
  grid-auto-rows: 160px !important;
}
"""
"""Styles passed to ``launch(css=...)``: :func:`banner_html` banners, and thumbnail grids
(``elem_classes="desra-thumbs"``: Gradio 6 stretches a gallery of one or two images to full width)."""
