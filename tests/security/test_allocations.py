"""Small inputs must not force huge allocations (review 2026-12-01, defect 2).

Each case runs desra under a 5 GiB address-space cap (conftest): a regression that tries to
allocate the 14-37 GB the review measured dies with MemoryError (exit 1, "internal error") and the
test fails in seconds instead of swapping. A fixed desra refuses in one line (exit 2) naming the
size it would need and the limit.
"""

from __future__ import annotations

import json

import pytest


def test_sr_refuses_an_output_too_large_before_decoding(tmp_path, make_png, desra_cli, cli_error):
    # The review's case: 9000 x 9000 is under the 100 MP input limit, its x4 output is 1.3 G pixels (15.5 GB).
    source = make_png(tmp_path / "big.png", 9000, 9000)
    assert source.stat().st_size < 300_000
    result = desra_cli("sr", "--model", "desra-demo-x4-mse", "--input", source, "--output", tmp_path / "out.png",
                       "--device", "cpu")
    line = cli_error(result)
    assert "36000 x 36000 = 1296000000 pixels" in line and "15.6 GB" in line
    assert "output limit of 100000000" in line and "DESRA_MAX_OUTPUT_PIXELS" in line
    assert not (tmp_path / "out.png").exists()


def test_sr_refuses_a_16bit_bomb_too(tmp_path, make_png, desra_cli, cli_error):
    # 16-bit RGBA decodes to 8 bytes a pixel (the largest layout); the output bound still comes first.
    source = make_png(tmp_path / "big16.png", 6000, 6000, bit_depth=16, colour=6)
    line = cli_error(desra_cli("sr", "--model", "desra-demo-x4-mse", "--input", source, "--output", tmp_path / "o.png",
                               "--device", "cpu"))
    assert "24000 x 24000" in line and "output limit" in line


def test_sr_refuses_a_jpeg_whose_header_claims_a_large_size(tmp_path, desra_cli, cli_error):
    # A JPEG header (SOF0) claiming 9000 x 9000 with almost no data behind it: refused from the header alone.
    from PIL import Image

    small = tmp_path / "small.jpg"
    Image.new("RGB", (8, 8), (90, 120, 150)).save(small, quality=90)
    data = bytearray(small.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (9000).to_bytes(2, "big") + (9000).to_bytes(2, "big")
    claim = tmp_path / "claim.jpg"
    claim.write_bytes(bytes(data))
    line = cli_error(desra_cli("sr", "--model", "desra-demo-x4-mse", "--input", claim, "--output", tmp_path / "o.png",
                               "--device", "cpu"))
    assert "36000 x 36000" in line and "output limit" in line


def test_folder_lists_an_oversized_image_as_failed_and_upscales_the_rest(tmp_path, make_png, desra_cli):
    folder = tmp_path / "in"
    folder.mkdir()
    make_png(folder / "big.png", 9000, 9000)
    make_png(folder / "small.png", 24, 16, value=128)
    result = desra_cli("sr", "--model", "desra-demo-x4-mse", "--input", folder, "--output", tmp_path / "out",
                       "--device", "cpu")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "internal error" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("desra: failed:")]
    assert len(failed) == 1 and failed[0].startswith("desra: failed: big.png:") and "output limit" in failed[0]
    assert (tmp_path / "out" / "small.png").is_file() and not (tmp_path / "out" / "big.png").exists()


def test_library_upscale_refuses_before_allocating(limited_python):
    # A broadcast view costs no memory: only an allocation inside upscale() could exhaust the cap.
    code = """
import numpy as np
from desra.models.checkpoint import load_model
from desra.core.errors import ImageTooLargeError
from desra.models.inference import upscale
model = load_model("desra-demo-x4-mse")
image = np.broadcast_to(np.float32(0.5), (9000, 9000, 3))
try:
    upscale(model, image, tile=256)
except ImageTooLargeError as error:
    print("REFUSED", error)
"""
    result = limited_python(code)
    assert result.returncode == 0 and "REFUSED" in result.stdout, result.stderr[-2000:]
    assert "1296000000 pixels" in result.stdout


def test_output_limit_is_configurable(photo, monkeypatch):
    from desra.core.errors import ConfigError, ImageTooLargeError
    from desra.models.checkpoint import load_model
    from desra.models.inference import upscale

    model = load_model("desra-demo-x4-mse")
    image = photo("astronaut")[:16, :20]  # x4 -> 64 x 80 = 5120 output pixels
    monkeypatch.setenv("DESRA_MAX_OUTPUT_PIXELS", "5000")
    with pytest.raises(ImageTooLargeError, match="output limit of 5000 pixels"):
        upscale(model, image)
    monkeypatch.setenv("DESRA_MAX_OUTPUT_PIXELS", "5120")
    assert upscale(model, image).shape == (64, 80, 3)
    monkeypatch.setenv("DESRA_MAX_OUTPUT_PIXELS", "lots")
    with pytest.raises(ConfigError, match="DESRA_MAX_OUTPUT_PIXELS"):
        upscale(model, image)


def _rewrite_metadata(source, target, **changes):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(source), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - safe_open is no dict
        meta = json.loads(handle.metadata()["desra"])
    meta["arch_params"].update(changes)
    save_file(tensors, str(target), metadata={"desra": json.dumps(meta)})
    return target


def test_metadata_claiming_a_wider_network_is_refused_before_building(tmp_path, desra_cli, cli_error):
    # The review's case: a 0.8 MB demo file whose metadata claims num_feat 4096 made desra build 14.4 GB.
    from desra.models import registry

    source = registry.model_path(registry.get_model("desra-demo-x4-mse"))
    wide = _rewrite_metadata(source, tmp_path / "wide.safetensors", num_feat=4096, num_conv=64)
    assert wide.stat().st_size < 1_000_000
    line = cli_error(desra_cli("sr", "--model", wide, "--input", tmp_path, "--output", tmp_path / "o", "--device", "cpu"))
    assert "num_feat=4096 but the tensors say 48" in line and "num_conv=64 but the tensors say 8" in line
    assert "ArchitectureError" not in line and "nothing was built" in line


def test_rrdbnet_metadata_with_num_block_10000_is_refused(tmp_path, limited_python):
    # One real RRDB block in the file, metadata claiming 10000 of them (~44 GB at 64 features).
    code = f"""
import json, torch
from desra.models.checkpoint import describe, load_model, save_model
from desra.models.archs import get_arch
from desra.core.errors import ArchitectureError
from safetensors import safe_open
from safetensors.torch import save_file
params = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=1, num_grow_ch=32)
path = {str(tmp_path / "rrdb.safetensors")!r}
save_model(path, get_arch("rrdbnet").build(params), describe("rrdbnet", params, name="one-block"))
with safe_open(path, framework="pt") as handle:
    tensors = {{k: handle.get_tensor(k) for k in handle.keys()}}
    meta = json.loads(handle.metadata()["desra"])
meta["arch_params"]["num_block"] = 10000
save_file(tensors, path, metadata={{"desra": json.dumps(meta)}})
try:
    load_model(path)
except ArchitectureError as error:
    print("REFUSED", error)
"""
    result = limited_python(code)
    assert result.returncode == 0 and "REFUSED" in result.stdout, result.stderr[-2000:]
    assert "num_block=10000 but the tensors say 1 (number of body.N blocks)" in result.stdout


def test_labelme_declaring_a_huge_image_is_refused(tmp_path, labelme_file, limited_python):
    # The review's case: 100000 x 100000 declared, no image shipped: 37 GiB for the label raster.
    path = labelme_file(tmp_path / "huge.json", imageHeight=100000, imageWidth=100000,
                        shapes=[{"label": "artifact", "points": [[0, 0], [10, 0], [10, 10]], "shape_type": "polygon"}])
    code = f"""
from desra.core.errors import ImageTooLargeError
from desra.detect.labelme_io import read_gt_mask
try:
    read_gt_mask({str(path)!r})
except ImageTooLargeError as error:
    print("REFUSED", error)
"""
    result = limited_python(code)
    assert result.returncode == 0 and "REFUSED" in result.stdout, result.stderr[-2000:]
    assert "100000 x 100000 = 10000000000 pixels" in result.stdout


@pytest.mark.parametrize("where", ["imagePath", "imageData", "mask"])
def test_labelme_cannot_smuggle_a_decompression_bomb(tmp_path, make_png, labelme_file, limited_python, where):
    # A 30000 x 30000 grey PNG (900 MP, a few hundred KB) referenced, embedded, or as a shape's mask:
    # importing labelme switched Pillow's bomb guard off, so labelme decoded it in full.
    import base64

    bomb = make_png(tmp_path / "bomb.png", 30000, 30000, colour=0)
    text = base64.b64encode(bomb.read_bytes()).decode()
    shape = {"label": "a", "points": [[0, 0], [4, 4]], "shape_type": "mask" if where == "mask" else "rectangle",
             "mask": text if where == "mask" else None}
    fields = {"imagePath": "bomb.png", "imageHeight": None, "imageWidth": None, "shapes": [shape]}
    if where == "imageData":
        fields.update(imagePath="elsewhere.png", imageData=text)
    if where == "mask":
        make_png(tmp_path / "photo.png", 16, 16)
        fields.update(imagePath="photo.png")
    path = labelme_file(tmp_path / "bomb.json", **fields)
    code = f"""
from desra.core.errors import ImageTooLargeError
from desra.detect.labelme_io import read_gt_mask
try:
    read_gt_mask({str(path)!r})
except ImageTooLargeError as error:
    print("REFUSED", error)
"""
    result = limited_python(code)
    assert result.returncode == 0 and "REFUSED" in result.stdout, result.stderr[-2000:]
    # Refused by desra's header check or by Pillow's guard (which desra keeps on): both name the size and the limit.
    assert "900000000 pixels" in result.stdout and "DESRA_MAX_PIXELS" in result.stdout


def test_pillow_bomb_guard_stays_on_after_labelme(tmp_path, make_png, labelme_file):
    from PIL import Image

    from desra.detect.labelme_io import read_gt_mask

    make_png(tmp_path / "photo.png", 16, 16)
    assert not read_gt_mask(labelme_file(tmp_path / "ok.json", imagePath="photo.png")).any()
    assert Image.MAX_IMAGE_PIXELS is not None
    bomb = make_png(tmp_path / "bomb.png", 30000, 30000, colour=0)
    with pytest.raises(Image.DecompressionBombError):  # Pillow itself refuses, for any code in the process
        Image.open(bomb)


def test_dashboard_detect_upload_meets_the_output_bound(tmp_path, make_png, limited_python):
    # The Detect tab's own handler, as Gradio calls it for an upload: the header is checked against the
    # output bound before anything is decoded.
    source = make_png(tmp_path / "upload.png", 9000, 9000)
    code = f"""
from pathlib import Path
from desra.core.errors import ImageTooLargeError
from ui.context import AppContext
from ui.tabs.detect import _detect
ctx = AppContext(workspace=Path({str(tmp_path / "ws")!r}))
try:
    _detect(ctx, [{str(source)!r}], None, "desra-demo-x4", None, None, "none", 0.7, 11, 200, False,
            progress=lambda *a, **k: None)
except ImageTooLargeError as error:
    print("REFUSED", error)
"""
    # 4.25 GiB: the 3.75 GiB baseline and the models fit, but decoding the 81 MP upload first (~1 GB) would not.
    result = limited_python(code, limit_gib=4.25)
    assert result.returncode == 0 and "REFUSED" in result.stdout, result.stderr[-2000:]
    assert "upload.png" in result.stdout and "output limit" in result.stdout


@pytest.mark.parametrize("arch", ["rrdbnet", "srvgg"])
def test_tiny_tensors_under_many_block_names_are_refused_before_building(tmp_path, limited_python, arch):
    # No metadata at all: detection reads the depth from key names, so 2000 one-element tensors named
    # as blocks would make a network of ~2 G weights (8 GB) out of a file of a few hundred KB.
    path = tmp_path / f"sparse-{arch}.pth"
    code = f"""
import torch
from desra.models.checkpoint import load_model
from desra.core.errors import ArchitectureError
tiny = torch.zeros(1)
if {arch!r} == "rrdbnet":
    sd = {{"conv_first.weight": torch.randn(64, 3, 3, 3), "conv_last.weight": torch.randn(3, 64, 3, 3),
          "body.0.rdb1.conv1.weight": torch.randn(32, 64, 3, 3)}}
    sd.update({{f"body.{{i}}.rdb1.conv1.weight": tiny.clone() for i in range(1, 2000)}})
else:
    sd = {{"body.0.weight": torch.randn(256, 3, 3, 3), "body.1.weight": torch.randn(256)}}
    sd.update({{f"body.{{i}}.weight": torch.zeros(1, 1, 1, 1) if i % 2 == 0 else tiny.clone() for i in range(2, 4000)}})
    sd["body.4000.weight"] = torch.randn(48, 256, 3, 3)
torch.save(sd, {str(path)!r})
try:
    load_model({str(path)!r})
except ArchitectureError as error:
    print("REFUSED", error)
"""
    result = limited_python(code)
    assert result.returncode == 0 and "REFUSED" in result.stdout, result.stderr[-2000:]
    assert "would hold at least" in result.stdout and "nothing was built" in result.stdout
    assert path.stat().st_size < 2_000_000
