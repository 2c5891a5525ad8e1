"""A derived L1 parent: the cached-trunk head computes the network's own forward, deltas rebuild exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from desra.core.errors import CheckpointError
from desra.models import basicsr_adapter
from desra.models.parent_delta import (
    apply_delta,
    make_delta,
    read_delta,
    rebuild,
    state_sha256,
    write_delta,
)
from desra.train.parent import cache_trunk, head_module, trainable_keys

PARAMS = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 8, "num_block": 3, "num_grow_ch": 4}


@pytest.fixture
def tiny_rrdbnet():
    torch.manual_seed(0)
    return basicsr_adapter.rrdbnet(**PARAMS).eval()


@pytest.mark.parametrize("frozen", [0, 2, 3])
def test_head_on_cached_trunk_equals_the_full_network(tiny_rrdbnet, photo, frozen):
    lr = torch.from_numpy(photo("chelsea")[:24, :20].transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        full = tiny_rrdbnet(lr)
        head = head_module(tiny_rrdbnet, frozen)(cache_trunk(tiny_rrdbnet, lr, frozen))
    assert head.shape == (1, 3, 96, 80)
    torch.testing.assert_close(head, full, rtol=0, atol=1e-6)


def test_the_head_trains_the_networks_own_tail(tiny_rrdbnet):
    head = head_module(tiny_rrdbnet, 2)
    names = {name for name, _ in head.named_parameters()}
    assert "blocks.0.rdb1.conv1.weight" in names and "conv_body.weight" in names
    assert not any(name.startswith("conv_first") for name in names)
    with torch.no_grad():
        head.blocks[0].rdb1.conv1.weight.add_(1.0)
    assert tiny_rrdbnet.body[2].rdb1.conv1.weight.abs().min() > 0.5  # the same tensor


def test_trainable_keys_are_the_last_blocks_and_the_head(tiny_rrdbnet):
    keys = trainable_keys(tiny_rrdbnet.state_dict(), 2)
    assert all(k.startswith(("body.2.", "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last")) for k in keys)
    assert any(k.startswith("body.2.") for k in keys) and not any(k.startswith("body.1.") for k in keys)
    assert {k.split(".")[0] for k in trainable_keys(tiny_rrdbnet.state_dict(), 3)} == {
        "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"}


def test_delta_round_trip_is_bit_identical_and_checked(tiny_rrdbnet, tmp_path):
    base = {k: v.clone() for k, v in tiny_rrdbnet.state_dict().items()}
    tuned = {k: v + 0.01 if k.startswith("conv_last") else v for k, v in base.items()}
    keys = trainable_keys(tuned, 3)
    delta = make_delta(tuned, keys)
    parent = apply_delta(base, delta)
    assert all(v.dtype == np.float16 for v in delta.values())
    np.testing.assert_array_equal(parent["conv_last.weight"], tuned["conv_last.weight"].numpy().astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(parent["conv_first.weight"], base["conv_first.weight"].numpy())
    meta = {"name": "p", "base": "tiny", "base_sha256": state_sha256(base), "sha256": state_sha256(parent)}
    path = write_delta(tmp_path / "p.delta.safetensors", delta, meta)
    rebuilt, info = rebuild(path, base)
    assert info["name"] == "p" and state_sha256(rebuilt) == meta["sha256"]
    assert all(np.array_equal(rebuilt[k], parent[k]) for k in parent)
    # Another base (here: the tuned weights) is refused before anything is built.
    with pytest.raises(CheckpointError, match="was derived from tiny"):
        rebuild(path, tuned)
    # A delta whose tensors do not fit the base says so.
    other = basicsr_adapter.rrdbnet(**{**PARAMS, "num_feat": 4}).state_dict()
    with pytest.raises(CheckpointError, match="does not fit the base"):
        apply_delta(other, delta)


def test_a_damaged_or_foreign_delta_file_is_refused(tiny_rrdbnet, tmp_path):
    from safetensors.numpy import save_file

    base = tiny_rrdbnet.state_dict()
    delta = make_delta(base, trainable_keys(base, 3))
    meta = {"name": "p", "base": "tiny", "base_sha256": state_sha256(base), "sha256": "0" * 64}
    with pytest.raises(CheckpointError, match="does not match its recorded sha256"):
        rebuild(write_delta(tmp_path / "bad.delta.safetensors", delta, meta), base)
    save_file({"w": np.zeros(2, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="no desra_delta metadata"):
        read_delta(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        read_delta(tmp_path / "junk.safetensors")


def test_the_shipped_parent_rebuilds_bit_identically_from_the_published_model(tmp_path, monkeypatch, photo):
    """realesrgan-x4plus-l1-derived: the committed delta + RealESRGAN_x4plus converted offline give the recorded weights."""
    from desra.models.checkpoint import load_model, read_state_dict
    from desra.models.registry import get_model, model_source, rebuilt_path

    monkeypatch.setenv("DESRA_HOME", str(tmp_path / "home"))
    entry = get_model("realesrgan-x4plus-l1-derived")
    assert model_source(entry).status == "rebuildable"
    parent = load_model(entry.id)
    assert parent.descriptor.role == "mse" and parent.descriptor.arch_params["num_block"] == 23
    _, info = read_delta(Path(__file__).resolve().parents[2] / entry.derived_delta)
    state, metadata = read_state_dict(rebuilt_path(entry))
    assert state_sha256(state) == info["sha256"] and metadata["extra"]["derived_from"] == "RealESRGAN_x4plus"
    assert model_source(entry).status == "rebuilt"
    # It is a different network from its base: on a real photo crop the two outputs differ clearly.
    gan = load_model("RealESRGAN_x4plus")
    lr = torch.from_numpy(photo("astronaut")[200:224, 200:224].transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        assert (parent.module(lr) - gan.module(lr)).abs().mean() > 1e-3
