"""`desra sr` and `desra models` end to end on a real photo, with checkpoints in each official layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from desra.cli import main
from desra.core.imageio import read_image, write_image
from desra.models.checkpoint import describe, save_model


@pytest.fixture
def photo_file(photo, tmp_path):
    """A 16 x 24 crop of a real photo (coffee) written as PNG (small: RRDBNet 23x64 is slow on 2 CPU cores)."""
    return write_image(tmp_path / "coffee.png", photo("coffee")[150:166, 200:224])


@pytest.mark.parametrize(
    ("arch", "layout"),
    [("rrdbnet", "params_ema"), ("srvgg", "params"), ("swinir", "params"), ("srvgg", "safetensors")],
)
def test_sr_runs_each_official_layout(official_nets, photo_file, tmp_path, arch, layout, capsys):
    params, net = official_nets[arch]
    if layout == "safetensors":
        checkpoint = save_model(tmp_path / "net.safetensors", net, describe(arch, params, name="net", role="gan"))
    else:
        checkpoint = tmp_path / "net.pth"
        torch.save({layout: net.state_dict()}, checkpoint)
    out = tmp_path / "out" / "coffee_x4.png"
    assert main(["sr", "--model", str(checkpoint), "--input", str(photo_file), "--output", str(out)]) == 0
    result = read_image(out)
    assert result.rgb.shape == (64, 96, 3)
    x = torch.from_numpy(read_image(photo_file).rgb.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        source = net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    # the network it was saved from, up to the 8-bit rounding of the PNG
    assert np.abs(result.rgb - source).max() <= 0.5 / 255 + 1e-6
    assert "wrote" in capsys.readouterr().out


def test_sr_folder_reports_failures_and_continues(tiny_srvgg, photo_file, tmp_path, capsys):
    checkpoint = tmp_path / "tiny.pth"
    torch.save({"params": tiny_srvgg.state_dict()}, checkpoint)
    folder = photo_file.parent / "in"
    folder.mkdir()
    photo_file.rename(folder / "coffee.png")
    (folder / "zz-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    code = main(["sr", "--model", str(checkpoint), "--input", str(folder), "--output", str(tmp_path / "out"), "--tile", "16"])
    err = capsys.readouterr().err
    assert code == 2 and "zz-broken.png" in err and "1 of 2 images failed" in err
    assert read_image(tmp_path / "out" / "coffee.png").rgb.shape == (32, 48, 3)


def test_cli_errors_are_one_line(tmp_path, capsys, cache_home):
    # BSRGAN has no ncnn copy in an installed package, so it is missing until pulled (RealESRGAN_x4plus converts).
    assert main(["sr", "--model", "BSRGAN", "--input", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "desra models pull BSRGAN" in err
    assert main(["sr", "--model", str(tmp_path / "none.pth"), "--input", str(tmp_path / "nothing.png"), "--output", "x.png"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_models_list_and_pull(cache_home, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("desra-demo-x4", "RealESRGAN_x4plus", "SwinIR-M_realSR_x4_GAN", "BSRGAN", "RealESRGAN_LDL_x4"):
        assert name in out
    assert str(cache_home) in out
    assert main(["models", "pull", "no-such-thing"]) == 2
    assert "desra-demo-x4" in capsys.readouterr().err


def test_sr_benchmark_is_registered():
    from desra.benchmarks.registry import list_benchmarks

    assert "sr-throughput" in {b.name for b in list_benchmarks()}


@pytest.mark.parametrize("model_id", ["desra-demo-x4-mse", "desra-demo-x4-gan"])
def test_sr_with_the_embedded_models(model_id, photo, tmp_path):
    from desra.models.registry import get_model, is_present

    if not is_present(get_model(model_id)):
        pytest.skip(f"{model_id} is not in weights/ yet (trained by the zoo)")
    source = write_image(tmp_path / "chelsea.png", photo("chelsea")[100:164, 150:214])
    out = tmp_path / "out.png"
    assert main(["sr", "--model", model_id, "--input", str(source), "--output", str(out), "--tile", "32"]) == 0
    result = read_image(out).rgb
    assert result.shape == (256, 256, 3)
    # A trained x4 model stays close to the photo it enlarges (mean over 4x4 blocks vs the input).
    blocks = result.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    assert np.abs(blocks - read_image(source).rgb).mean() < 0.05
