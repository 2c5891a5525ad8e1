"""Foundation fixtures: networks in the official layouts, built with basicsr and random weights."""

from __future__ import annotations

import pytest

# The official hyperparameters of the published checkpoints desra registers.
RRDB_OFFICIAL = dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=64, num_block=23, num_grow_ch=32)
SRVGG_OFFICIAL = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
SWINIR_M_REALSR = dict(
    img_size=64, in_chans=3, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8,
    mlp_ratio=2.0, upscale=4, img_range=1.0, upsampler="nearest+conv", resi_connection="1conv",
)
SRVGG_TINY = dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=2, act_type="prelu")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Foundation tests run networks on tiny inputs, where a second OpenMP thread gains nothing and, on a
    shared 2-core machine, spin-waits (measured here: RRDBNet 23x64 on 16x24 px took 8-15 s with two
    threads under load, 1.1 s with one). Restored afterwards so other areas' tests are unaffected."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build(name: str, params: dict):
    import torch

    from desra.models.archs import get_arch

    torch.manual_seed(0)
    return get_arch(name).build(dict(params)).eval()


@pytest.fixture(scope="session")
def official_nets():
    """{"rrdbnet" | "srvgg" | "swinir": (params, module)} with the published hyperparameters."""
    return {
        "rrdbnet": (RRDB_OFFICIAL, _build("rrdbnet", RRDB_OFFICIAL)),
        "srvgg": (SRVGG_OFFICIAL, _build("srvgg", SRVGG_OFFICIAL)),
        "swinir": (SWINIR_M_REALSR, _build("swinir", SWINIR_M_REALSR)),
    }


@pytest.fixture(scope="session")
def tiny_params():
    """Hyperparameters of :func:`tiny_srvgg`."""
    return dict(SRVGG_TINY)


@pytest.fixture(scope="session")
def tiny_srvgg():
    """A 2x SRVGGNetCompact with 8 features (fast), random weights, eval mode."""
    return _build("srvgg", SRVGG_TINY)


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """An empty DESRA_HOME so registry lookups never see a real download cache."""
    monkeypatch.setenv("DESRA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"
