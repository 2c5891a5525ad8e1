"""The shipped default pair: loads by name, upscales a real photo, and the two sides differ the DeSRA way."""

from __future__ import annotations

import numpy as np
import pytest

from desra.core.paths import datasets_dir, weights_dir
from desra.detect.visualize import showcase_strip, showcase_window
from desra.models.checkpoint import load_model, read_state_dict
from desra.models.pairs import load_pair


@pytest.fixture(scope="module")
def pair():
    return load_pair("desra-demo-x4")


def test_pair_loads_with_descriptors(pair):
    mse, gan = pair
    assert (mse.descriptor.role, gan.descriptor.role) == ("mse", "gan")
    assert mse.descriptor.scale == gan.descriptor.scale == 4
    assert mse.descriptor.architecture == gan.descriptor.architecture == "srvgg"


def test_pair_upscales_a_real_photo_and_the_gan_side_adds_texture(pair, photo):
    import torch

    lr = photo("chelsea")[100:164, 150:214]
    x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None]
    with torch.no_grad():
        mse, gan = (m.module(x).clamp(0, 1)[0].permute(1, 2, 0).numpy() for m in pair)
    assert mse.shape == gan.shape == (256, 256, 3)
    # Both are faithful upscalings of the photo at LR resolution...
    for sr in (mse, gan):
        down = sr.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
        assert np.abs(down - lr).mean() < 0.06
    # ...but the GAN model's output carries more high-frequency energy than its MSE parent's.
    def detail(img):
        return float(np.abs(np.diff(img, axis=0)).mean() + np.abs(np.diff(img, axis=1)).mean())

    assert detail(gan) > 1.1 * detail(mse)
    # Nearest-neighbour upsampling passes both checks above (its 4x4 means are the LR exactly, and
    # its blocky edges carry detail); it has no detail inside a 4x4 block, the models do (0.008 and
    # 0.013 measured on this crop).
    for sr in (mse, gan):
        assert sr.reshape(64, 4, 64, 4, 3).std(axis=(1, 3)).mean() > 0.004


def test_the_mse_model_beats_nearest_upsampling_against_the_hr(pair, photo):
    # Bicubic x4 LR of a held-out crop: the MSE model is nearer the HR than nearest-neighbour
    # upsampling (25.8 vs 25.0 dB measured). The GAN side trades PSNR for texture (25.0 dB), so
    # only the MSE side is held to it.
    import cv2
    import torch

    hr = photo("chelsea")[20:276, 100:356]
    lr = np.clip(cv2.resize(hr, (64, 64), interpolation=cv2.INTER_CUBIC), 0, 1)
    with torch.no_grad():
        sr = pair[0].module(torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None])
    sr = sr.clamp(0, 1)[0].permute(1, 2, 0).numpy()

    def psnr(img):
        return 10 * np.log10(1 / np.mean((img - hr) ** 2))

    assert psnr(sr) > psnr(lr.repeat(4, axis=0).repeat(4, axis=1)) + 0.5


def test_neither_shipped_model_copies_its_input(pair):
    # The first shipped MSE model had collapsed to nearest-neighbour upsampling (69.6 dB from it)
    # while its held-out PSNR looked normal; trained SR models sit about 30 dB from it.
    from desra.train.zoo_eval import COLLAPSED_DB, nearest_upsampling_psnr

    for model in pair:
        assert nearest_upsampling_psnr(model.module, 4, photos=("skimage:data/chelsea.png",)) < COLLAPSED_DB


def test_registry_config_and_weights_describe_the_same_network(pair):
    from desra.core.paths import project_root
    from desra.models.registry import get_model
    from desra.train.zoo_config import load_zoo_config

    config = load_zoo_config(project_root() / "configs" / "zoo" / "desra-demo-x4.yaml")
    for model in pair:
        entry = get_model(model.descriptor.name)
        assert entry.arch_params == config.arch_params == {k: model.descriptor.arch_params[k] for k in entry.arch_params}


def test_weights_carry_provenance_and_discriminator_ships():
    for role in ("mse", "gan", "disc"):
        state, meta = read_state_dict(weights_dir() / f"desra-demo-x4-{role}.safetensors")
        assert state and meta["extra"]["seed"] == 0 and meta["extra"]["iterations"] > 0
        assert (weights_dir() / f"desra-demo-x4-{role if role != 'disc' else 'gan'}.md").is_file()
    gan = load_model(weights_dir() / "desra-demo-x4-gan.safetensors")
    assert gan.descriptor.arch_params["num_feat"] == 48


def test_demo_set_is_there_with_licences():
    photos = sorted(p for p in (datasets_dir() / "demo").iterdir() if p.suffix in {".png", ".jpg"})
    assert len(photos) >= 4
    licences = (datasets_dir() / "demo" / "LICENSES.md").read_text()
    assert all(p.name in licences for p in photos)


def test_showcase_strip_layout():
    mse = np.zeros((300, 400, 3), np.float32)
    gan = np.ones((300, 400, 3), np.float32) * 0.5
    mask = np.zeros((300, 400), bool)
    mask[140:160, 380:400] = True
    strip = showcase_strip(mse, gan, mask, (380, 140, 400, 160), size=128)
    assert strip.shape == (128, 3 * 128 + 8, 3)
    assert strip[:, :128].max() == 0 and np.allclose(strip[:, 132:260], 0.5)
    overlay = strip[:, 264:]
    assert (overlay[..., 0] > overlay[..., 1]).sum() == 20 * 20  # the window is clamped inside the image


def test_showcase_window_shows_the_region_boundary():
    mask = np.zeros((400, 400), bool)
    mask[:, :300] = True  # one region covering three quarters of the photo
    y0, x0 = showcase_window(mask, (0, 0, 300, 400), 100)
    flagged = mask[y0:y0 + 100, x0:x0 + 100].mean()
    assert 0.3 <= flagged <= 0.7  # not a crop wholly inside the region


def test_showcase_writes_a_readme_crop_from_a_real_detection(tmp_path):
    # `desra zoo showcase` on one demo photo: the shipped pair flags a region there (docs/images
    # holds its crop), and the crop is MSE | GAN | overlay around it.
    import shutil

    from desra.core.imageio import read_image
    from desra.service.showcase import showcase

    lr = tmp_path / "lr"
    lr.mkdir()
    shutil.copy(datasets_dir() / "demo" / "astronaut.png", lr / "astronaut.png")
    (path,) = showcase(tmp_path / "out", lr_dir=lr, count=1)
    assert path.name == "showcase_astronaut.png"
    assert read_image(path).rgb.shape == (256, 3 * 256 + 8, 3)
