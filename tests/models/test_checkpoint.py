"""Checkpoints in the official layouts load through desra and reproduce the network they came from."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from desra.core.errors import (
    ArchitectureError,
    CheckpointError,
    DuplicateNameError,
    UnknownNameError,
    UnsafeCheckpointError,
)
from desra.models.archs import detect_architecture, get_arch, list_archs
from desra.models.checkpoint import (
    ModelDescriptor,
    describe,
    load_model,
    read_state_dict,
    save_basicsr,
    save_model,
)


def _same_output(reference, loaded, size: int = 8) -> float:
    torch.manual_seed(1)
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        return (reference(x) - loaded(x)).abs().max().item()


@pytest.mark.parametrize(
    ("arch", "key", "suffix"),
    [("rrdbnet", "params_ema", ".pth"), ("srvgg", "params", ".pth"), ("swinir", "params", ".pth"), ("swinir", "params_ema", ".pt")],
)
def test_official_layout_loads_and_matches(official_nets, tmp_path, arch, key, suffix):
    params, net = official_nets[arch]
    path = tmp_path / f"net{suffix}"
    torch.save({key: net.state_dict()}, path)
    model = load_model(path)
    d = model.descriptor
    assert (d.architecture, d.scale, d.in_channels, d.out_channels) == (arch, 4, 3, 3)
    for name, value in params.items():
        assert d.arch_params[name] == value, name
    assert d.role == "unknown" and d.name == "net" and d.source == str(path)
    assert not model.module.training
    assert _same_output(net, model.module) == 0.0


def test_safetensors_round_trip_keeps_descriptor(official_nets, tmp_path):
    params, net = official_nets["srvgg"]
    descriptor = describe("srvgg", params, name="my-gan", role="gan")
    path = save_model(tmp_path / "m.safetensors", net, descriptor, extra_metadata={"iters": 7})
    state, meta = read_state_dict(path)
    assert meta["architecture"] == "srvgg" and meta["extra"] == {"iters": 7}
    assert set(state) == set(net.state_dict())
    model = load_model(path)
    assert model.descriptor == ModelDescriptor(**{**descriptor.to_dict(), "source": str(path)})
    assert _same_output(net, model.module) == 0.0
    assert not list(tmp_path.glob("*.tmp-*")), "the temporary file of the atomic write was left behind"
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # safetensors alone writes 0600: unreadable to a team


def test_plain_state_dict_with_module_prefix_and_no_metadata(tiny_srvgg, tiny_params, tmp_path):
    from safetensors.torch import save_file

    prefixed = {f"module.{k}": v.clone() for k, v in tiny_srvgg.state_dict().items()}
    torch.save(prefixed, tmp_path / "dp.pth")
    save_file({k: v.contiguous() for k, v in tiny_srvgg.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    for name in ("dp.pth", "bare.safetensors"):
        model = load_model(tmp_path / name)
        assert model.descriptor.arch_params == tiny_params
        assert _same_output(tiny_srvgg, model.module) == 0.0


def test_save_basicsr_layout_loads_back(tiny_srvgg, tmp_path):
    path = save_basicsr(tmp_path / "net_g.pth", tiny_srvgg, key="params")
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["params"]
    assert _same_output(tiny_srvgg, load_model(path).module) == 0.0


def test_training_checkpoint_prefers_ema(tiny_srvgg, tiny_params, tmp_path):
    ema = tiny_srvgg.state_dict()
    raw = {k: torch.zeros_like(v) for k, v in ema.items()}
    torch.save({"iteration": 10, "generator": raw, "ema": ema, "discriminator": None, "opt_g": {}}, tmp_path / "iter_000010.pt")
    state, _ = read_state_dict(tmp_path / "iter_000010.pt")
    assert all(torch.equal(state[k], ema[k]) for k in ema)


def test_kair_rrdb_layout_is_renamed(tmp_path):
    torch.manual_seed(0)
    net = get_arch("rrdbnet").build(dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=8, num_block=2, num_grow_ch=4)).eval()
    renames = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    kair = {}
    for key, value in net.state_dict().items():
        head, _, rest = key.partition(".")
        if head == "body":
            index, rdb, rest2 = rest.split(".", 2)
            key = f"RRDB_trunk.{index}.{rdb.upper()}.{rest2}"
        else:
            key = f"{renames.get(head, head)}.{rest}"
        kair[key] = value
    torch.save(kair, tmp_path / "BSRGAN_like.pth")
    model = load_model(tmp_path / "BSRGAN_like.pth")
    assert model.descriptor.arch_params["num_block"] == 2
    assert _same_output(net, model.module) == 0.0


def test_swinir_trained_at_another_size_loads(tmp_path):
    # The shifted-window mask stored in a checkpoint depends on the training size; desra rebuilds it.
    params = dict(img_size=32, in_chans=3, embed_dim=12, depths=[2], num_heads=[2], window_size=4,
                  mlp_ratio=2.0, upscale=2, img_range=1.0, upsampler="pixelshuffle", resi_connection="1conv")
    torch.manual_seed(0)
    net = get_arch("swinir").build(params).eval()
    torch.save({"params": net.state_dict()}, tmp_path / "s.pth")
    assert load_model(tmp_path / "s.pth").descriptor.arch_params["img_size"] == 32
    model = load_model(tmp_path / "s.pth", architecture="swinir", arch_params={**params, "img_size": 64})
    assert model.descriptor.size_multiple == 4 and not model.descriptor.supports_half
    assert _same_output(net, model.module, size=8) < 1e-6


def test_pickle_that_would_create_a_file_is_refused(tmp_path):
    victim = tmp_path / "pwned.txt"

    class Payload:
        def __reduce__(self):
            return (open, (str(victim), "w"))

    for name, writer in (("evil.pth", lambda p: torch.save({"params": Payload()}, p)),
                         ("legacy.pt", lambda p: p.write_bytes(pickle.dumps({"params": Payload()})))):
        writer(tmp_path / name)
        assert not victim.exists()
        with pytest.raises(UnsafeCheckpointError, match="weights_only"):
            read_state_dict(tmp_path / name)
        assert not victim.exists(), "unpickling ran code"
        with pytest.raises(UnsafeCheckpointError):
            load_model(tmp_path / name)
        assert not victim.exists()


def test_wrong_keys_are_named(tiny_srvgg, tiny_params, tmp_path):
    state = dict(tiny_srvgg.state_dict())
    state.pop("body.2.bias")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ArchitectureError) as info:
        load_model(tmp_path / "bad.pth", architecture="srvgg", arch_params=tiny_params)
    assert "body.2.bias" in str(info.value) and "extra.weight" in str(info.value)
    torch.save(dict(tiny_srvgg.state_dict()), tmp_path / "ok.pth")
    # Wrong parameters are caught against the tensors before the network is built (tests/security).
    with pytest.raises(ArchitectureError, match="num_feat=16 but the tensors say 8"):
        load_model(tmp_path / "ok.pth", architecture="srvgg", arch_params={**tiny_params, "num_feat": 16})
    with pytest.raises(ArchitectureError, match="does not look like a rrdbnet"):
        load_model(tmp_path / "ok.pth", architecture="rrdbnet")


def test_unrecognised_and_broken_files(tmp_path):
    torch.save({"params": {"foo.weight": torch.zeros(2, 2)}}, tmp_path / "odd.pth")
    with pytest.raises(ArchitectureError, match="foo.weight"):
        load_model(tmp_path / "odd.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    torch.save({"params": {"a": 1}}, tmp_path / "notensors.pth")
    for name in ("empty.pth", "junk.safetensors", "notensors.pth", "missing.pth"):
        with pytest.raises(CheckpointError):
            read_state_dict(tmp_path / name)
    with pytest.raises(UnknownNameError, match="RealESRGAN_x4plus"):
        load_model("no-such-model")
    with pytest.raises(UnknownNameError, match="load_pair"):
        load_model("realesrgan-x4")


def test_registered_but_absent_model_says_how_to_get_it(cache_home):
    # RealESRNet_x4plus has no ncnn copy to convert (RealESRGAN_x4plus does: tests/models/test_ncnn_import.py).
    with pytest.raises(CheckpointError, match="desra models pull RealESRNet_x4plus"):
        load_model("RealESRNet_x4plus")


def test_arch_registry_names(tiny_params):
    assert {"rrdbnet", "srvgg", "swinir"} <= set(list_archs())
    with pytest.raises(UnknownNameError, match="rrdbnet"):
        get_arch("nope")
    from desra.models.archs import register_arch

    with pytest.raises(DuplicateNameError):
        register_arch(get_arch("srvgg"))
    name, params, scale = detect_architecture(get_arch("srvgg").build(tiny_params).state_dict())
    assert (name, scale, params["num_conv"]) == ("srvgg", 2, 2)


def test_the_discriminator_is_a_registered_architecture_of_its_own_kind(tmp_path):
    # Registered beside the generators, but listed, detected and loaded as a discriminator only:
    # its weights never pass for an upscaler.
    from desra.models.archs import UNET_DISCRIMINATOR, other_kind
    from desra.models.discriminator import load_discriminator, save_discriminator

    assert list_archs("discriminator") == [UNET_DISCRIMINATOR] == ["unet_discriminator_sn"]
    assert UNET_DISCRIMINATOR not in list_archs()
    torch.manual_seed(0)
    fresh = load_discriminator(params={"num_in_ch": 3, "num_feat": 8, "skip_connection": True})
    state = fresh.module.state_dict()
    assert detect_architecture(state, kind="discriminator")[:2] == (
        UNET_DISCRIMINATOR, {"num_in_ch": 3, "num_feat": 8, "skip_connection": True, "spectral_norm": True})
    with pytest.raises(ArchitectureError, match="known architectures: rrdbnet, srvgg, swinir"):
        detect_architecture(state)
    assert other_kind(None, state).name == UNET_DISCRIMINATOR and other_kind("srvgg", {}) is None
    path = save_discriminator(tmp_path / "d.safetensors", fresh.module, fresh.info["arch_params"], name="d")
    assert read_state_dict(path)[1]["architecture"] == "unet_discriminator_sn"
    with pytest.raises(CheckpointError, match="is a GAN discriminator"):
        load_model(path)
    again = load_discriminator(path)
    assert again.info == {"architecture": "unet_discriminator_sn", "source": str(path),
                          "arch_params": {"num_in_ch": 3, "num_feat": 8, "skip_connection": True, "spectral_norm": True}}
