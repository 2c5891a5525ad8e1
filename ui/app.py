"""The desra dashboard: one Gradio Blocks app whose tabs call the library (see docs/dashboard.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ui.context import AppContext

MAX_FILE_SIZE = "64mb"
"""Largest upload the server accepts (Gradio rejects bigger files before they reach a handler)."""
HEAVY_CONCURRENCY = 1
"""How many heavy events (detection, evaluation, ...) run at once across all users: the CPU is the limit."""
QUEUE_SIZE = 32
"""How many events may wait in the queue before new ones are refused with a message."""
CACHE_CLEANUP = (3600, 3600)
"""Gradio's ``delete_cache``: every hour, delete temp files older than an hour (and all at restart)."""

TABS = (
    ("Detect", "detect"),
    ("Correct", "correct"),
    ("Curate", "curate"),
    ("Repair", "repair"),
    ("Evaluate", "evaluate"),
    ("Watch", "watch"),
    ("Verify a model", "verify_model"),
    ("Attribute an image", "attribute_image"),
)
"""(tab label, module under ``ui.tabs``) in page order; each module exposes ``build(ctx)``, which may
return ``(fn, inputs, outputs)`` to run whenever its tab is opened."""

INTRO = (
    "# desra\n"
    "Find the artifacts a GAN super-resolution model paints into real photos by comparing it with "
    "the MSE model it was fine-tuned from (DeSRA, ICML 2023), correct the masks, and repair the "
    "model. Work left to right: **Detect → Correct → Curate → Repair → Evaluate**."
)


def build_app(workspace: Path) -> "gr.Blocks":  # noqa: F821 - gradio is imported lazily
    """The dashboard for ``workspace`` (created if missing); call ``.queue()``/``.launch()`` on it, or use :func:`serve`."""
    import importlib

    import gradio as gr

    from ui.common import set_workspace

    workspace = Path(workspace).expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    set_workspace(workspace)  # error messages show paths relative to it
    with gr.Blocks(title="desra", delete_cache=CACHE_CLEANUP, analytics_enabled=False) as app:
        gr.Markdown(INTRO)
        ctx = AppContext(workspace=workspace, current=gr.State(None))
        with gr.Tabs():
            for label, module_name in TABS:
                with gr.Tab(label, id=module_name, elem_id=f"tab-{module_name}") as tab:
                    on_open = importlib.import_module(f"ui.tabs.{module_name}").build(ctx)
                if on_open:  # a tab showing data other tabs change refreshes itself when opened
                    fn, inputs, outputs = on_open
                    tab.select(fn, inputs, outputs, api_visibility="private", concurrency_limit=None)
        gr.Markdown(f"Workspace: `{workspace}` (every file this dashboard writes or serves lives here).")
    return app


class LoginPageWithoutApiInfo:
    """ASGI middleware: Gradio's login page, served to anyone, carries no description of the API.

    Gradio 6 embeds ``window.gradio_api_info`` (every named endpoint, its parameters and choices such as
    the model-pair list) in the index page it serves without credentials, while ``/gradio_api/info``
    itself answers 401. On a page whose embedded config says ``auth_required`` (the login form, which
    needs no API description), that script is emptied; every other response passes through untouched.
    """

    _API_INFO = re.compile(rb"<script>window\.gradio_api_info = .*?;</script>", re.DOTALL)
    _LOGIN_CONFIG = re.compile(rb'"auth_required"\s*:\s*true')

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":  # a HEAD answer has no body to leak
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def hold_html(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if headers.get(b"content-type", b"").startswith(b"text/html"):
                    start = message  # held until the body is complete
                else:
                    await send(message)
                return
            if start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if self._LOGIN_CONFIG.search(body):
                body = self._API_INFO.sub(b"<script>window.gradio_api_info = null;</script>", body, count=1)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, hold_html)


def serve(workspace: Path, *, host: str = "127.0.0.1", port: int = 7860, auth: tuple[str, str] | None = None) -> None:
    """Build the dashboard and serve it until interrupted; only ``workspace`` (and Gradio's cache inside it) is served."""
    workspace = Path(workspace).expanduser().resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    # Gradio reads these when it is first imported: keep its temp files inside the workspace and
    # make no calls home (the machines this runs on are often offline).
    os.environ.setdefault("GRADIO_TEMP_DIR", str(workspace / ".gradio-cache"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from gradio.routes import App

    from ui.common import BANNER_CSS

    app = build_app(workspace)
    app.queue(default_concurrency_limit=HEAVY_CONCURRENCY, max_size=QUEUE_SIZE)
    # The server app is made here, not by launch, so the middleware is in place before it starts
    # (Starlette refuses middleware on a running app); Gradio adds its own routes and middleware to it.
    server_app = App()
    server_app.add_middleware(LoginPageWithoutApiInfo)
    app.launch(
        _app=server_app,
        server_name=host,
        server_port=port,
        auth=auth,
        allowed_paths=[str(workspace)],
        max_file_size=MAX_FILE_SIZE,
        css=BANNER_CSS,
        ssr_mode=False,
        show_error=True,
        footer_links=["api"],
    )
