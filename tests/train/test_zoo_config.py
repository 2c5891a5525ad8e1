"""Zoo YAML configs: the shipped ones load, bad ones say what is wrong; batches are reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from desra.core.errors import ConfigError, DatasetError
from desra.core.paths import project_root
from desra.train.zoo_config import load_zoo_config
from desra.train.zoo_data import dead_leaves, zoo_batch_fn

CONFIGS = sorted(p for p in (project_root() / "configs").glob("*/*.yaml") if p.parent.name != "parent")
PARENT_CONFIGS = sorted((project_root() / "configs" / "parent").glob("*.yaml"))


@pytest.mark.parametrize("path", PARENT_CONFIGS, ids=lambda p: p.stem)
def test_shipped_parent_configs_load_and_name_a_registered_pair(path):
    from desra.models.registry import get_model, list_pairs
    from desra.train.parent import load_parent_config

    config = load_parent_config(path)
    assert get_model(config.name).role == "mse" and get_model(config.base).role == "gan"
    assert any(p.mse == config.name and p.gan == config.base and p.name == path.stem for p in list_pairs())
    assert not set(config.photos) & set(config.heldout)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_load(path):
    config = load_zoo_config(path)
    assert "mse" in config.stages and config.scale in (2, 4)
    assert config.name == path.stem, "build-zoo names the output folder after config.name; the file must carry the same name"


def _write(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load((project_root() / "configs" / "zoo" / "desra-demo-x4.yaml").read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key)
        else:
            raw[key] = value
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scale": 3, "data": {"photos": ["skimage:data/retina.jpg"], "patch": 128}}, "not a multiple"),
        ({"mse": {"iters": 10, "lr_gen": 1e-3}}, "lr_gen"),
        ({"colour": "red"}, "colour"),
        ({"name": None}, "name"),
        ({"data": {"photos": ["skimage:data/astronaut.png"]}}, "held out"),
        ({"data": {"photos": []}}, "no photos"),
        ({"degradation": {"kernel_prob": [1.0]}}, "kernel_prob"),
        ({"discriminator": None}, "discriminator"),
    ],
)
def test_bad_configs_are_refused(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        load_zoo_config(_write(tmp_path, **changes))


def test_missing_file_and_missing_package_photo(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_zoo_config(tmp_path / "nope.yaml")
    config = load_zoo_config(_write(tmp_path, data={"photos": ["skimage:data/no-such-photo.png"], "patch": 64}))
    with pytest.raises(DatasetError, match="no-such-photo"):
        zoo_batch_fn(config)


def test_batches_depend_only_on_seed_and_iteration(tmp_path):
    path = _write(tmp_path, data={"photos": ["skimage:data/retina.jpg", "skimage:data/brick.png"], "dead_leaves": 1,
                                  "dead_leaves_size": 96, "patch": 64, "batch": 2})
    config = load_zoo_config(path)
    first = zoo_batch_fn(config)
    lr, hr = first(7)
    assert lr.shape == (2, 3, 16, 16) and hr.shape == (2, 3, 64, 64)
    again_lr, again_hr = zoo_batch_fn(load_zoo_config(path))(7)
    assert torch.equal(lr, again_lr) and torch.equal(hr, again_hr)
    assert not torch.equal(first(8)[1], hr)


def test_dead_leaves_is_seeded_and_covers_range():
    image = dead_leaves(64, seed=1)
    assert image.shape == (64, 64, 3) and image.dtype.name == "float32"
    assert (dead_leaves(64, seed=1) == image).all() and not (dead_leaves(64, seed=2) == image).all()
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.1


def test_heldout_psnr_handles_pixel_unshuffle_architectures():
    from desra.models.archs import get_arch
    from desra.train.zoo_eval import heldout_psnr

    params = {"num_in_ch": 3, "num_out_ch": 3, "scale": 2, "num_feat": 4, "num_block": 1, "num_grow_ch": 4}
    psnr = heldout_psnr(get_arch("rrdbnet").build(params), 2, photos=("skimage:data/chelsea.png",), size_multiple=2)
    assert np.isfinite(psnr["chelsea"]) and psnr["mean"] == psnr["chelsea"]
    # A network whose output is known: pixel-unshuffle (odd sizes fail), shuffle back, nearest x2.
    # Its table value is the PSNR of nearest upsampling on the photo cropped to 300x448 (a multiple
    # of scale x size multiple = 4), worked out here on 8-bit values with the 4 px border cropped.
    import torch

    from desra.train.degradations import bicubic_lr
    from desra.train.zoo_data import package_file, read_rgb

    copy = torch.nn.Sequential(torch.nn.PixelUnshuffle(2), torch.nn.PixelShuffle(2), torch.nn.Upsample(scale_factor=2))
    got = heldout_psnr(copy, 2, photos=("skimage:data/chelsea.png",), size_multiple=2)["chelsea"]
    hr = read_rgb(package_file("skimage:data/chelsea.png"))[:300, :448]
    hr_t = torch.from_numpy(np.ascontiguousarray(hr.transpose(2, 0, 1)))[None]
    sr = torch.nn.functional.interpolate(bicubic_lr(hr_t, 2), scale_factor=2, mode="nearest").clamp(0, 1)
    diff = ((sr * 255).round() - (hr_t * 255).round())[..., 4:-4, 4:-4].double()
    assert got == pytest.approx(10 * np.log10(255.0**2 / (diff**2).mean().item()), abs=1e-6)
    assert 20 < got < 40  # nearest upsampling of a x2 photo, a plausible figure


def test_nearest_upsampling_psnr_flags_a_network_that_copies_its_input():
    import torch

    from desra.models.archs import get_arch
    from desra.train.zoo_eval import COLLAPSED_DB, nearest_upsampling_psnr

    photos = ("skimage:data/chelsea.png",)
    copier = get_arch("srvgg").build({"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 4, "act_type": "prelu"})
    with torch.no_grad():
        for p in copier.body[-1].parameters():  # SRVGG adds nearest upsampling to its body's output
            p.zero_()
    assert nearest_upsampling_psnr(copier, 4, photos=photos) > COLLAPSED_DB
