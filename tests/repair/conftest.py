"""Fixtures of the fine-tuning tests: a tiny x4 GAN-SR model and discriminator made here, and a
curated set built from real packaged photos."""

from __future__ import annotations

import numpy as np
import pytest

SCALE = 4


def _tiny_generator(seed: int):
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": SCALE, "act_type": "prelu"}
    torch.manual_seed(seed)
    module = get_arch("srvgg").build(params)
    return module, describe("srvgg", params, name=f"tiny-gan-{seed}", role="gan")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(GAN generator .safetensors with desra metadata, tiny U-Net SN discriminator .safetensors)."""
    import torch
    from safetensors.torch import save_file

    from desra.models import basicsr_adapter
    from desra.models.checkpoint import save_model

    folder = tmp_path_factory.mktemp("models")
    module, descriptor = _tiny_generator(1)
    gan = save_model(folder / "tiny-gan.safetensors", module, descriptor)
    torch.manual_seed(2)
    disc = basicsr_adapter.unet_discriminator_sn(num_in_ch=3, num_feat=8, skip_connection=True)
    disc_path = folder / "tiny-disc.safetensors"
    save_file({k: v.contiguous().clone() for k, v in disc.state_dict().items()}, str(disc_path))
    return gan, disc_path


def make_item(hr: np.ndarray, size: int = 128, seed: int = 0):
    """(lr, mse, gan, mask) from a real photo: MSE = the HR crop, GAN = it plus noise texture in a box, mask = the box."""
    rng = np.random.default_rng(seed)
    hr = hr[:size, :size].astype(np.float32)
    lr = hr.reshape(size // SCALE, SCALE, size // SCALE, SCALE, 3).mean(axis=(1, 3)).astype(np.float32)
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 4: size // 2, size // 4: 3 * size // 4] = True
    gan = hr.copy()
    gan[mask] = np.clip(gan[mask] + rng.normal(0, 0.2, gan[mask].shape), 0, 1)
    return lr, hr, gan.astype(np.float32), mask


def build_set(root, load_photo):
    """A curated x4 set of 4 real-photo items (2 train, 2 val, the last one labelled) with hand-made masks."""
    from desra.repair.curated import create_set

    curated = create_set(root)
    for i, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        lr, mse, gan, mask = make_item(load_photo(name), seed=i)
        curated.add(name, lr, mse, gan, mask, mask_source="file", provenance={"by": "test"},
                    split="train" if i < 2 else "val", label=mask if i == 3 else None)
    return curated


@pytest.fixture
def curated_set(tmp_path, photo):
    """A fresh set of :func:`build_set` for tests that change it."""
    return build_set(tmp_path / "set", photo)


@pytest.fixture(scope="session")
def shared_set(tmp_path_factory):
    """One set of :func:`build_set` for tests that only read it."""
    import skimage.data

    def load(name):
        image = getattr(skimage.data, name)()
        image = np.stack([image] * 3, axis=-1) if image.ndim == 2 else image[..., :3]
        return image.astype(np.float32) / 255.0

    return build_set(tmp_path_factory.mktemp("shared") / "set", load)


@pytest.fixture
def item_maker():
    """The :func:`make_item` factory, for tests that build items themselves."""
    return make_item
