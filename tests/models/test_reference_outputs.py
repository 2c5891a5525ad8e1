"""Published and shipped checkpoints against stored reference outputs (spandrel's way): each model in
REFERENCES loads through desra and super-resolves a fixed crop of a real photo to what it did when the
reference was written, so a change in loading (key layout, architecture detection, ncnn or delta
conversion) or in inference shows up as a number, not as "the output changed shape".

A reference is the 16x16 centre of the x4 output of a 24x24 LR crop (3 KB as float32), stored in
``tests/models/data/reference-<model>.npz`` with the weights file it was made from. A model
whose weights are not on this machine is skipped with the command that fetches it; one loaded from
a different file than the reference's (e.g. the official .pth instead of the ncnn conversion) is
skipped saying so. ``DESRA_WRITE_REFERENCES=1 pytest tests/models/test_reference_outputs.py``
rewrites them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
LR_CROP = np.s_[180:204, 252:276]  # chelsea's fur and whiskers: mid-tones with detail, nothing clipped
OUT_CROP = np.s_[40:56, 40:56]  # the centre of the 96x96 output, away from padding
TOLERANCE = 1e-4  # fp32 on different CPUs: summation order only

REFERENCES = [
    pytest.param("desra-demo-x4-mse", id="demo-mse-srvgg"),
    pytest.param("desra-demo-x4-gan", id="demo-gan-srvgg"),
    pytest.param("realesr-animevideov3", id="animevideov3-srvgg"),
    pytest.param("RealESRGAN_x4plus_anime_6B", id="anime6B-rrdbnet"),
    pytest.param("RealESRGAN_x4plus", id="x4plus-rrdbnet", marks=pytest.mark.slow),
    pytest.param("realesrgan-x4plus-l1-derived", id="l1-derived-rrdbnet", marks=pytest.mark.slow),
]


def _output(model, photo) -> np.ndarray:
    from desra.models.inference import upscale

    return upscale(model, photo("chelsea")[LR_CROP])[OUT_CROP]


@pytest.mark.parametrize("name", REFERENCES)
def test_model_reproduces_its_reference_output(name, photo):
    from desra.models import registry
    from desra.models.checkpoint import load_model

    entry = registry.get_model(name)
    if not registry.is_present(entry):
        pytest.skip(f"{name} weights are not on this machine (`desra models pull {name}`)")
    model = load_model(name)
    path = DATA / f"reference-{name}.npz"
    out = _output(model, photo)
    source = Path(model.descriptor.source).name
    if os.environ.get("DESRA_WRITE_REFERENCES") == "1":
        np.savez_compressed(path, output=out.astype(np.float32), source=source, architecture=model.descriptor.architecture)
    stored = np.load(path)
    if str(stored["source"]) != source:
        pytest.skip(f"reference made from {stored['source']}; this machine loads {name} from {source}")
    assert model.descriptor.architecture == str(stored["architecture"]) and model.descriptor.scale == 4
    assert out.shape == stored["output"].shape == (16, 16, 3)
    assert np.abs(out - stored["output"]).max() <= TOLERANCE
