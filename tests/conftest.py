"""Shared fixtures: real packaged photos (scikit-image's data folder) as float32 RGB in [0, 1], the
device / precision cases the maths and inference tests are parametrised over, a tiny SR network, and
a tiny random SegFormer saved locally (detection and curated-set tests both segment with it)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


def load_photo(name: str) -> np.ndarray:
    """A real photo shipped by scikit-image, as (H, W, 3) float32 in [0, 1]."""
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return (image[..., :3].astype(np.float32) / 255.0).copy()


@pytest.fixture
def photo():
    """Factory fixture: ``photo("astronaut")`` returns that real photo as float32 RGB in [0, 1]."""
    return load_photo


# Devices and precisions the maths and inference tests run under, kornia's way: one list here, and
# the cases this machine cannot run are skipped here, in one place, with the reason. A machine with a
# GPU runs the CUDA, fp16, bf16 and AMP cases by running the suite as it is.
DEVICES = ("cpu", "cuda")
PRECISIONS = ("cpu-fp32", "cuda-fp32", "cuda-fp16", "cuda-bf16")
TOLERANCE = {"fp32": 1e-5, "fp16": 2e-2, "bf16": 6e-2}
"""Largest abs difference from the CPU fp32 result a precision is allowed on [0, 1] images (bf16 keeps 8 mantissa bits)."""


def _skip_unless_runnable(device: str, dtype: str = "fp32") -> None:
    """The one place CUDA cases are skipped, saying why."""
    if device != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine: the cuda / fp16 / bf16 / AMP cases run where there is a GPU")
    if dtype == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name()} has no bfloat16 support")


@dataclass(frozen=True)
class Precision:
    """One device/precision case: ``device`` ('cpu' | 'cuda'), ``dtype`` ('fp32' | 'fp16' | 'bf16')."""

    device: str
    """Torch device name."""
    dtype: str
    """'fp32', 'fp16' or 'bf16'."""

    @property
    def half(self) -> bool:
        """Whether this case runs in reduced precision (desra's ``half=True``)."""
        return self.dtype != "fp32"

    @property
    def tolerance(self) -> float:
        """Largest abs difference from the CPU fp32 result allowed (on [0, 1] images)."""
        return TOLERANCE[self.dtype]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each torch device ('cpu', 'cuda'); CUDA skipped with the reason where there is none."""
    _skip_unless_runnable(request.param)
    return request.param


@pytest.fixture(params=PRECISIONS)
def precision(request) -> Precision:
    """Each device/precision case of :data:`PRECISIONS`; those this machine cannot run are skipped."""
    device, dtype = request.param.split("-")
    _skip_unless_runnable(device, dtype)
    return Precision(device, dtype)


@pytest.fixture
def cuda() -> str:
    """'cuda', for tests of CUDA-only behaviour; skipped with the reason where there is no GPU."""
    _skip_unless_runnable("cuda")
    return "cuda"


def make_tiny_sr(seed: int, scale: int = 4, features: int = 16):
    """A 3-conv + PixelShuffle SR network with a nearest-neighbour skip, initialised from ``seed``."""
    import torch
    from torch import nn

    class TinySR(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = scale
            self.body = nn.Sequential(
                nn.Conv2d(3, features, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(features, features, 3, padding=1),
                nn.LeakyReLU(0.1),
                nn.Conv2d(features, 3 * scale * scale, 3, padding=1),
                nn.PixelShuffle(scale),
            )

        def forward(self, x):
            return self.body(x) + nn.functional.interpolate(x, scale_factor=self.scale, mode="nearest")

    torch.manual_seed(seed)
    return TinySR().eval()


@pytest.fixture
def tiny_sr():
    """Factory fixture: ``tiny_sr(seed, scale=4)`` -> a fresh tiny SR ``nn.Module``."""
    return make_tiny_sr


def save_tiny_segformer(folder, id2label=None):
    """A random-init SegFormer (a few thousand parameters) written with save_pretrained: its folder."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    from desra.detect.semantic import ADE20K_CLASSES

    labels = id2label if id2label is not None else dict(enumerate(ADE20K_CLASSES))
    config = SegformerConfig(
        num_labels=len(labels), id2label=labels, label2id={v: k for k, v in labels.items()},
        hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=16,
    )
    import torch

    torch.manual_seed(0)
    SegformerForSemanticSegmentation(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_segformer(tmp_path_factory):
    """Folder of a tiny random-init ADE20K-labelled SegFormer (checks loading and resizing, not quality)."""
    return save_tiny_segformer(tmp_path_factory.mktemp("segformer") / "tiny-ade")


@pytest.fixture
def segformer_saver():
    """Factory fixture: ``segformer_saver(folder, id2label=None)`` saves a tiny SegFormer there."""
    return save_tiny_segformer


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    """A headless Debian chromium driven by Playwright, one for the whole session (Playwright's sync API
    cannot run a second instance inside the first; skipped when /usr/bin/chromium is absent)."""
    if not CHROMIUM.exists():
        pytest.skip("browser tests need Debian chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def wait_until(predicate, timeout: float = 60.0, what: str = "the condition"):
    """Poll ``predicate`` every 0.05 s until it returns something truthy (returned), or fail after ``timeout`` s naming ``what``."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"waited {timeout} s for {what}")


def start_worker(workspace) -> subprocess.Popen:
    """A `desra jobs worker` on ``workspace`` (CPU), output discarded; the caller stops it."""
    return subprocess.Popen(
        [sys.executable, "-m", "desra", "jobs", "worker", "--workspace", str(workspace), "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
