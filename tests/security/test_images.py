"""Images that are not what they claim (review 2026-12-01, defects 5 and 6).

Truncated data must be refused, as the README promises, not padded with black; animations are not
single images: in a folder they are listed among the failures with a reason, never skipped quietly;
labelme files holding something other than an object fail in one line.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from desra.core.errors import ImageError
from desra.core.imageio import read_image, read_mask


@pytest.mark.parametrize("keep_8bit", [False, True])
@pytest.mark.parametrize(("bit_depth", "colour"), [(8, 2), (8, 0), (16, 2), (16, 6)])
def test_png_holding_5_of_its_200_rows_is_refused(tmp_path, make_png, bit_depth, colour, keep_8bit):
    # Intact chunks and a clean zlib end, but the data stops after row 5: Pillow padded the rest with black.
    # keep_8bit decodes plain RGB files with OpenCV first; its refusal must end in the same message.
    path = make_png(tmp_path / "short.png", 100, 200, bit_depth=bit_depth, colour=colour, rows=5, value=200)
    with pytest.raises(ImageError, match="truncated: its image data holds about 5 of its 200 rows"):
        read_image(path, keep_8bit=keep_8bit)


def test_truncated_mask_png_is_refused(tmp_path, make_png):
    path = make_png(tmp_path / "mask.png", 64, 64, colour=0, rows=3, value=255)
    with pytest.raises(ImageError, match="truncated"):
        read_mask(path)


def test_complete_pngs_of_every_layout_still_read(tmp_path, photo):
    from PIL import Image

    rgb = (photo("astronaut")[:37, :53] * 255).astype(np.uint8)
    layouts = {"RGB": rgb, "L": rgb[..., 0], "RGBA": np.dstack([rgb, rgb[..., :1]]), "1": rgb[..., 0] > 128}
    for interlace in (0, 1):  # Adam7 rows are counted per pass
        for mode, array in layouts.items():
            path = tmp_path / f"{mode}-{interlace}.png"
            Image.fromarray(array).convert(mode).save(path, interlace=interlace)
            assert read_image(path).rgb.shape == (37, 53, 3)
        palette = tmp_path / f"P-{interlace}.png"
        Image.fromarray(rgb).quantize(16).save(palette, interlace=interlace, bits=4)
        assert read_image(palette).mode == "P"


def test_truncated_png_in_a_folder_is_a_listed_failure(tmp_path, make_png, desra_cli):
    folder = tmp_path / "in"
    folder.mkdir()
    make_png(folder / "short.png", 40, 200, rows=5, value=200)
    make_png(folder / "fine.png", 40, 20, value=200)
    result = desra_cli("sr", "--model", "desra-demo-x4-mse", "--input", folder, "--output", tmp_path / "out",
                       "--device", "cpu")
    assert result.returncode == 2
    assert "desra: failed: short.png:" in result.stderr and "5 of its 200 rows" in result.stderr
    assert (tmp_path / "out" / "fine.png").is_file() and not (tmp_path / "out" / "short.png").exists()


def _frames(photo):
    from PIL import Image

    rgb = (photo("astronaut")[:32, :32] * 255).astype(np.uint8)
    return [Image.fromarray(rgb), Image.fromarray(255 - rgb)]


def test_animated_gif_in_a_folder_is_listed_among_the_failures(tmp_path, photo, desra_cli):
    folder = tmp_path / "in"
    folder.mkdir()
    first, second = _frames(photo)
    first.save(folder / "anim.gif", save_all=True, append_images=[second])
    first.save(folder / "still.png")
    result = desra_cli("sr", "--model", "desra-demo-x4-mse", "--input", folder, "--output", tmp_path / "out",
                       "--device", "cpu")
    assert result.returncode == 2
    failed = [line for line in result.stderr.splitlines() if line.startswith("desra: failed:")]
    assert len(failed) == 1 and failed[0].startswith("desra: failed: anim.gif: GIF images are not read by desra")
    assert "1 of 2 images failed" in result.stderr
    assert (tmp_path / "out" / "still.png").is_file()


def test_folder_holding_only_a_gif_says_so(tmp_path, photo):
    from desra.models.checkpoint import load_model
    from desra.models.inference import upscale_folder

    first, second = _frames(photo)
    first.save(tmp_path / "anim.gif", save_all=True, append_images=[second])
    result = upscale_folder(load_model("desra-demo-x4-mse"), tmp_path, tmp_path / "out")
    assert result.written == [] and [p.name for p, _ in result.failed] == ["anim.gif"]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_animated_or_multipage_files_with_a_supported_extension_are_refused(tmp_path, photo, fmt):
    # An APNG named .png is as much an animation as a GIF: desra does not guess which frame was meant.
    first, second = _frames(photo)
    path = tmp_path / f"anim.{fmt.lower()}"
    first.save(path, format=fmt, save_all=True, append_images=[second])
    with pytest.raises(ImageError, match="animated or multi-page .* with 2 frames"):
        read_image(path)


def test_labelme_file_holding_null_or_a_list_fails_in_one_line(tmp_path, labelme_file):
    from desra.detect.labelme_io import read_gt_mask

    for payload, kind in ((None, "NoneType"), ([1, 2], "list"), ("text", "str")):
        path = labelme_file(tmp_path / f"{kind}.json", payload=payload) if payload is not None else tmp_path / "null.json"
        if payload is None:
            path.write_text("null")
        with pytest.raises(ImageError, match=f"holds a JSON {kind}, expected an object"):
            read_gt_mask(path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"shapes": {"label": "a"}}, "'shapes' is a dict, expected list"),
        ({"shapes": ["polygon"]}, "every entry of 'shapes' must be an object"),
        ({"imageHeight": "16"}, "'imageHeight' is a str, expected int"),
        ({"imageWidth": True}, "'imageWidth' is a bool, expected int"),
        ({"imagePath": 7}, "'imagePath' is a int, expected str"),
        ({"imageData": "!!not base64!!"}, "imageData is not base64"),
        ({"imageData": "aGVsbG8gd29ybGQ="}, "imageData embedded in .* is not a readable image"),
        ({"imageHeight": -5}, "sizes must be positive"),
    ],
)
def test_labelme_fields_of_the_wrong_type_fail_in_one_line(tmp_path, labelme_file, fields, message):
    from desra.detect.labelme_io import read_gt_mask

    with pytest.raises(ImageError, match=message):
        read_gt_mask(labelme_file(tmp_path / "bad.json", **fields))


def test_labelme_cli_eval_reports_a_bad_label_file_in_one_line(tmp_path, labelme_file, make_png, desra_cli, cli_error):
    # Through a command: `desra eval` reading a labelme file that holds a list.
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    make_png(pred / "photo_mask.png", 16, 16, colour=0)
    labelme_file(gt / "photo.json", payload=[{"label": "a"}])
    line = cli_error(desra_cli("eval", "--pred", pred, "--gt", gt))
    assert "holds a JSON list, expected an object" in line


def test_pillow_truncation_guard_is_kept(tmp_path, photo):
    # A library that flips ImageFile.LOAD_TRUNCATED_IMAGES on (basicsr-era code does) must not make desra accept cut files.
    from PIL import Image, ImageFile

    buffer = io.BytesIO()
    Image.fromarray((photo("astronaut")[:64, :64] * 255).astype(np.uint8)).save(buffer, "PNG")
    cut = tmp_path / "cut.png"
    cut.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        with pytest.raises(ImageError, match="truncated"):
            read_image(cut)
        assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_detect_lists_an_animated_gif_among_the_failures(tmp_path, photo, desra_cli):
    folder = tmp_path / "lr"
    folder.mkdir()
    first, second = _frames(photo)
    first.save(folder / "anim.gif", save_all=True, append_images=[second])
    first.save(folder / "still.png")
    result = desra_cli("detect", "--lr", folder, "--pair", "desra-demo-x4", "--segmenter", "none",
                       "--out", tmp_path / "out")
    assert "internal error" not in result.stderr
    assert "desra: failed: anim: GIF images are not read by desra" in result.stderr, result.stderr[-2000:]
    report = (tmp_path / "out" / "report.json").read_text()
    assert '"name": "anim"' in report and "still" in report


def test_calibrate_names_a_gif_it_cannot_read(tmp_path, photo, capsys):
    # `desra calibrate --images DIR` has no failure list: it names each unread file on stderr and calibrates the rest.
    import torch

    from desra.cli import main
    from desra.core.imageio import write_image
    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model
    from tests.conftest import save_tiny_segformer

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 2, "act_type": "prelu"}
    models = []
    for seed, role in ((0, "mse"), (1, "gan")):
        torch.manual_seed(seed)
        net = get_arch("srvgg").build(params)
        models.append(str(save_model(tmp_path / f"{role}.safetensors", net, describe("srvgg", params, name=role, role=role))))
    folder = tmp_path / "hr"
    folder.mkdir()
    write_image(folder / "a.png", photo("astronaut")[:96, :96])
    first, second = _frames(photo)
    first.save(folder / "anim.gif", save_all=True, append_images=[second])
    segformer = save_tiny_segformer(tmp_path / "tiny-ade")
    code = main(["calibrate", "--mse-model", models[0], "--gan-model", models[1], "--images", str(folder),
                 "--segmenter", str(segformer), "--min-pixels", "200", "--out", str(tmp_path / "w.tsv")])
    captured = capsys.readouterr()
    assert code == 0 and "on 1 image(s)" in captured.out
    assert "desra: skipped: anim.gif: GIF images are not read by desra" in captured.err
