"""Security tests' fixtures: hostile files built byte by byte, and desra run under an address-space limit.

Memory-bound cases run desra in a subprocess whose address space is capped
(``resource.RLIMIT_AS``), so a regression that allocates gigabytes fails fast with MemoryError
instead of swapping the machine. Measured 2026-12-01: ``python -m desra sr`` with the demo model
needs 3.75 GiB of address space to import torch + basicsr and run (3.5 GiB fails to map libraries),
so the cap is 5 GiB: a normal run fits, the review's 14-16 GB allocations cannot.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import desra

LIMIT_GIB = 5.0  # address space for a desra subprocess: 3.75 GiB baseline + headroom (see module docstring)
SOURCE_ROOT = str(Path(desra.__file__).resolve().parents[1])  # the desra the tests import, also for subprocesses


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESRA_MAX")}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": SOURCE_ROOT, "CUDA_VISIBLE_DEVICES": ""})
    env.update(extra or {})
    return env


def _run_limited(argv: list[str], limit_gib: float, env: dict[str, str] | None, timeout: float, cwd) -> subprocess.CompletedProcess:
    limit = int(limit_gib * 2**30)

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        argv, preexec_fn=cap, capture_output=True, text=True, env=_env(env), timeout=timeout, cwd=cwd or SOURCE_ROOT,
        check=False,
    )


@pytest.fixture
def desra_cli():
    """``desra_cli(*args, limit_gib=5, env=None)`` runs ``python -m desra ARGS`` under an address-space cap."""

    def run(*args: str, limit_gib: float = LIMIT_GIB, env: dict[str, str] | None = None, timeout: float = 180, cwd=None):
        return _run_limited([sys.executable, "-m", "desra", *map(str, args)], limit_gib, env, timeout, cwd)

    return run


@pytest.fixture
def limited_python():
    """``limited_python(code, limit_gib=5)`` runs a Python snippet under an address-space cap."""

    def run(code: str, *, limit_gib: float = LIMIT_GIB, env: dict[str, str] | None = None, timeout: float = 180):
        return _run_limited([sys.executable, "-c", code], limit_gib, env, timeout, None)

    return run


def error_lines(stderr: str) -> list[str]:
    """The ``desra: error:`` / ``internal error`` lines of a CLI run's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("desra: error") or "internal error" in line]


@pytest.fixture
def cli_error():
    """``cli_error(result)`` asserts a CLI run failed cleanly (exit 2, one error line) and returns that line."""

    def check(result: subprocess.CompletedProcess) -> str:
        lines = error_lines(result.stderr)
        assert result.returncode == 2, f"exit {result.returncode}, stderr: {result.stderr[-2000:]}"
        assert len(lines) == 1 and "internal error" not in lines[0], result.stderr[-2000:]
        return lines[0]

    return check


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, *, bit_depth: int = 8, colour: int = 2, rows: int | None = None, value: int = 0) -> bytes:
    """A PNG of one flat colour, compressed row by row (a 9000 x 9000 one is ~240 KB), optionally with only ``rows`` rows of data.

    ``colour`` is the PNG colour type (0 grey, 2 RGB, 6 RGBA); nothing image-sized is held in memory.
    """
    samples = {0: 1, 2: 3, 4: 2, 6: 4}[colour] * bit_depth // 8
    row = b"\x00" + bytes([value]) * (width * samples)
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(row) for _ in range(height if rows is None else rows)]
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


@pytest.fixture
def make_png():
    """``make_png(path, width, height, **png_bytes options)`` writes a crafted PNG and returns its path."""

    def write(path, width: int, height: int, **options) -> Path:
        path = Path(path)
        path.write_bytes(png_bytes(width, height, **options))
        return path

    return write


@pytest.fixture
def labelme_file():
    """``labelme_file(path, **fields)`` writes a labelme JSON (fields merged over a minimal valid one)."""

    def write(path, payload=None, **fields) -> Path:
        path = Path(path)
        if payload is None:
            payload = {"version": "5.0.0", "flags": {}, "shapes": [], "imagePath": None, "imageData": None,
                       "imageHeight": 16, "imageWidth": 16}
            payload.update(fields)
        path.write_text(json.dumps(payload))
        return path

    return write


def b64(data: bytes) -> str:
    """Base64 text, as labelme embeds images."""
    return base64.b64encode(data).decode("ascii")
