"""Glue shared by the dashboard tabs: error messages, library availability, progress, banners.

Nothing here computes anything about images; it adapts the library's conventions (DesraError,
``progress(done, total)`` callbacks) to Gradio's (``gr.Error``, ``gr.Progress``).
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("desra.ui")

_workspace: list[Path] = []  # set once by ui.app.build_app; paths under it are shown relative to it
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~/:<-])/(?!/)[^\s'\"<>()\[\]{},;|`]*")  # not URLs, ratios or closing tags
_ENTITY = re.compile(r"&(?=#?\w+;)")


def set_workspace(workspace: Path) -> None:
    """Tell :func:`plain_message` which folder's paths to show relative (the dashboard's workspace)."""
    _workspace[:] = [Path(workspace).resolve()]


def _shown_path(match: re.Match) -> str:
    text = match.group(0)
    trailing = len(text) - len(text.rstrip(".:"))
    path, tail = Path(text[: len(text) - trailing] or "/"), text[len(text) - trailing:]
    cache = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()
    if path.is_relative_to(cache):
        return path.name + tail  # an upload: its cache folder is a server detail, its name is what the user gave
    for workspace in _workspace:
        if path.is_relative_to(workspace):
            return (str(path.relative_to(workspace)) or ".") + tail
    return (path.name or text[: len(text) - trailing]) + tail


def plain_message(text: str) -> str:
    """``text`` as one line of plain text that is safe as HTML and shows no absolute server path.

    Gradio renders a ``gr.Error`` message as (sanitised) HTML in the page, while the API hands the
    very same string to scripts, so escaping (``&lt;``) would garble the API and leaving it raw
    would let a file name carry markup. Instead the characters that start markup become look-alikes
    (``<`` -> ``‹``, ``>`` -> ``›``, ``&`` of an entity -> ``＆``): the page cannot parse a tag and the
    API reads plain text. Absolute paths become workspace-relative, uploads their file name, and
    anything else outside the workspace its file name.
    """
    text = " ".join(str(text).split())
    text = _ABSOLUTE_PATH.sub(_shown_path, text)
    return _ENTITY.sub("＆", text).replace("<", "‹").replace(">", "›")


def guarded(fn: Callable) -> Callable:
    """Wrap an event handler so every failure reaches the page as a ``gr.Error`` message.

    A :class:`~desra.core.errors.DesraError` shows its own message (what came in, what was expected,
    how to fix it); anything else shows its type and text and is logged with the traceback. Both
    pass through :func:`plain_message` (no markup, no absolute server paths). The
    server keeps running either way. ``functools.wraps`` keeps the signature Gradio inspects for
    ``gr.Progress`` parameters.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import gradio as gr

        from desra.core.errors import DesraError

        try:
            return fn(*args, **kwargs)
        except gr.Error as error:  # a tab's own message may quote what the user sent: plain it too
            error.message = plain_message(str(error.message))
            raise
        except DesraError as error:
            # gr.Error renders HTML in the page and is plain text in the API: see plain_message.
            raise gr.Error(plain_message(str(error)), title=type(error).__name__, print_exception=False) from error
        except Exception as error:  # noqa: BLE001 - the page's last line of defence
            log.exception("dashboard handler %s failed", fn.__name__)
            raise gr.Error(
                plain_message(f"internal error: {type(error).__name__}: {error} (details in the server log)"),
                title="Internal error",
                print_exception=False,
            ) from error

    return wrapper


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
    """Write a ``desra.detect.visualize`` picture ((H, W, 3) uint8 RGB) as a PNG through the library's writer."""
    from desra.core.imageio import write_image

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
