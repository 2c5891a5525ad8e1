"""Watch fixtures: real photo crops as LR files, the `desra watch` CLI in a subprocess, and the job workers stopped after each test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# The dashboard's fixtures, for the Watch tab's browser test (which serves its own workspace).
from tests.ui.conftest import client, page, save_screenshot, server  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--pair", "desra-demo-x4", "--segmenter", "none", "--settle", "0.2", "--fingerprint-iters", "20", "--poll", "0.2"]
"""`desra watch start` flags every test uses: the embedded pair, no SegFormer download, short waits, a quick fingerprint."""


def write_tiles(photo: np.ndarray, folder: Path, prefix: str, side: int = 96, count: int | None = None) -> list[Path]:
    """``side`` px tiles of a real photo written as PNG LR files ``<prefix>_<y>_<x>.png`` (row-major, at most ``count``)."""
    from desra.core.imageio import write_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for y in range(0, photo.shape[0] - side + 1, side):
        for x in range(0, photo.shape[1] - side + 1, side):
            if count is not None and len(paths) == count:
                return paths
            paths.append(write_image(folder / f"{prefix}_{y}_{x}.png", photo[y:y + side, x:x + side]))
    return paths


@pytest.fixture
def workspace(tmp_path) -> Path:
    """A fresh workspace; the job workers a test started there are stopped (SIGTERM) when it ends."""
    path = tmp_path / "ws"
    yield path
    from desra.jobs.store import JobStore

    if (path / "jobs" / "jobs.db").exists():
        for worker in JobStore(path).workers():
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def watch_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``desra watch ARGS`` to completion (text output)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "desra", "watch", *args], check=False, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=kwargs.pop("timeout", 600), **kwargs)


def start_service(folder: Path, workspace: Path, *extra: str) -> subprocess.Popen:
    """``desra watch start FOLDER`` in the background, its output a line-buffered pipe."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "desra", "watch", "start", str(folder), "--workspace", str(workspace), *FAST, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT, bufsize=1)


def wait_for_line(process: subprocess.Popen, needle: str, seen: list[str]) -> str:
    """Read the service's output until a line containing ``needle`` (every line read goes into ``seen``)."""
    for line in process.stdout:
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"the service ended before printing {needle!r}:\n{''.join(seen)[-3000:]}")
