"""Dashboard fixtures: one real `desra serve` per test session, headless Debian chromium, screenshots.

The server is the real CLI in a subprocess on a free loopback port with a temporary workspace, so
the tests exercise exactly what a user starts. Browser tests need ``/usr/bin/chromium`` (Debian's
package; ``playwright install`` cannot download its own browser here) and are skipped with that
reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
SERVER_START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"desra serve exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"desra serve did not answer within {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """The temporary workspace the test server writes into."""
    return tmp_path_factory.mktemp("ui-workspace")


@pytest.fixture(scope="session")
def server(workspace, tmp_path_factory):
    """URL of a running ``desra serve`` on a free 127.0.0.1 port (started once per session)."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("ui-server") / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "desra", "serve", "--port", str(port), "--workspace", str(workspace)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _stop_job_workers(workspace)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / "server.log")


def _stop_job_workers(workspace: Path) -> None:
    """Stop the detached job workers the test server started (their jobs die with them)."""
    import signal

    from desra.jobs.store import JobStore

    if not (workspace / "jobs" / "jobs.db").exists():
        return
    for worker in JobStore(workspace).workers():
        try:
            os.kill(worker.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


@pytest.fixture
def page(browser, server):
    """A fresh page with the dashboard loaded (1400 px wide so tabs lay out as on a laptop)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server)
    page.get_by_role("tab", name="Detect").wait_for()
    yield page
    context.close()


@pytest.fixture
def save_screenshot():
    """``save_screenshot(page, name)``: full-page PNG test-artifacts/ui/ui-<name>.png, copied into
    ``$DESRA_SAVE_SCREENSHOTS`` (e.g. docs/images) unless ``publish=False``."""

    def save(page, name: str, *, publish: bool = True) -> Path:
        for close in page.locator("[data-testid=toast-close]").all():  # messages would cover the page
            close.click()
        page.wait_for_timeout(300)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"ui-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        extra = os.environ.get("DESRA_SAVE_SCREENSHOTS")
        if extra and publish:
            target = (ROOT / extra) if not Path(extra).is_absolute() else Path(extra)
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target / path.name)
        return path

    return save


@pytest.fixture
def photo_png(photo, tmp_path) -> Path:
    """A real photo (scikit-image's chelsea, downscaled x4 to a small LR input) written as PNG."""
    from PIL import Image

    image = Image.fromarray((photo("chelsea") * 255).round().astype(np.uint8))
    image = image.resize((image.width // 4, image.height // 4), Image.Resampling.BOX)
    path = tmp_path / "chelsea_lr.png"
    image.save(path)
    return path


@pytest.fixture
def corrupt_png(tmp_path) -> Path:
    """A file named .png whose bytes are a truncated PNG header followed by junk."""
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"not really an image" * 20)
    return path


@pytest.fixture(scope="session")
def model_pair(tmp_path_factory) -> dict:
    """How the tests pick a model pair: the embedded ``desra-demo-x4`` when its weights are here,
    else a tiny random-init SRVGG x4 pair desra saves itself, uploaded as checkpoints."""
    from desra.models import registry

    pair = registry.get_pair("desra-demo-x4")
    if registry.is_present(registry.get_model(pair.mse)) and registry.is_present(registry.get_model(pair.gan)):
        return {"choice": "desra-demo-x4"}
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model

    folder = tmp_path_factory.mktemp("tiny-pair")
    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 16, "num_conv": 4, "upscale": 4, "act_type": "prelu"}
    torch.manual_seed(0)
    paths = {}
    for role in ("mse", "gan"):
        paths[role] = folder / f"tiny-{role}.safetensors"
        save_model(paths[role], get_arch("srvgg").build(params), describe("srvgg", params, name=f"tiny-{role}", role=role))
    return {"choice": "uploaded checkpoints", **paths}


@pytest.fixture
def choose():
    """``choose(page, label, option)``: pick ``option`` in the Gradio dropdown labelled ``label``."""

    def pick(page, label: str, option: str) -> None:
        page.get_by_role("combobox", name=label).click()
        page.get_by_role("option", name=option, exact=True).click()

    return pick


@pytest.fixture(scope="module")
def client(server):
    """A gradio_client ``Client`` on the test server, as a script would drive the named endpoints."""
    from gradio_client import Client

    return Client(server, verbose=False)


def pair_flags(model_pair) -> list[str]:
    """The `desra detect` flags naming ``model_pair``: ``--pair`` or ``--mse-model`` / ``--gan-model``."""
    if model_pair["choice"] == "desra-demo-x4":
        return ["--pair", "desra-demo-x4"]
    return ["--mse-model", str(model_pair["mse"]), "--gan-model", str(model_pair["gan"])]


def pair_args(model_pair) -> dict:
    """The ``pair`` / ``mse_checkpoint`` / ``gan_checkpoint`` arguments of /detect and /evaluate for ``model_pair``."""
    from gradio_client import handle_file

    if model_pair["choice"] == "desra-demo-x4":
        return {"pair": "desra-demo-x4", "mse_checkpoint": None, "gan_checkpoint": None}
    return {
        "pair": model_pair["choice"],
        "mse_checkpoint": handle_file(str(model_pair["mse"])),
        "gan_checkpoint": handle_file(str(model_pair["gan"])),
    }
