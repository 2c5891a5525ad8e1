"""Checkpoint files are untrusted input (review 2026-12-01, defects 2, 5 and 7).

Metadata of the wrong shape or types, parameters that disagree with the tensors, random bytes and
non-finite weights must each fail in one line naming what is wrong, and every hint may name only
flags that exist on the command that was run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from desra.core.errors import ArchitectureError, CheckpointError
from desra.models.archs import get_arch
from desra.models.checkpoint import describe, load_model, read_state_dict, save_model

SRVGG = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 2, "act_type": "prelu"}


@pytest.fixture
def tiny(tmp_path):
    """A tiny srvgg saved by desra: (path, state dict, metadata)."""
    torch.manual_seed(0)
    net = get_arch("srvgg").build(SRVGG)
    path = save_model(tmp_path / "tiny.safetensors", net, describe("srvgg", SRVGG, name="tiny"))
    state, meta = read_state_dict(path)
    return path, state, meta


def _save(path, state, meta_text):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"desra": meta_text})
    return path


def test_metadata_that_is_a_list_is_refused(tiny, tmp_path):
    _, state, meta = tiny
    path = _save(tmp_path / "list.safetensors", state, json.dumps([meta]))
    with pytest.raises(CheckpointError, match="metadata entry is a JSON list, expected an object"):
        load_model(path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("arch_params", [1, 2], "'arch_params' is a list"),
        ("architecture", 7, "'architecture' is a int"),
        ("role", ["gan"], "'role' is a list"),
        ("name", {"x": 1}, "'name' is a dict"),
    ],
)
def test_metadata_fields_of_the_wrong_type_are_refused(tiny, tmp_path, field, value, message):
    _, state, meta = tiny
    path = _save(tmp_path / "bad.safetensors", state, json.dumps({**meta, field: value}))
    with pytest.raises(CheckpointError, match=message):
        load_model(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"num_feat": "8"}, "num_feat='8' but the tensors say 8"),  # a string is not a channel count
        ({"num_conv": 2.0}, "num_conv=2.0 but the tensors say 2"),
        ({"upscale": True}, "upscale=True but the tensors say 2"),
        ({"num_feat": 4096}, "num_feat=4096 but the tensors say 8 .output channels of body.0.weight"),
        ({"num_conv": 10000}, "num_conv=10000 but the tensors say 2"),
        ({"act_type": "relu"}, "act_type='relu' but the tensors say 'prelu'"),
        ({"width_multiplier": 3}, r"has no parameter.s. \['width_multiplier'\]"),
    ],
)
def test_metadata_params_are_checked_against_the_tensors(tiny, tmp_path, change, message):
    _, state, meta = tiny
    meta = {**meta, "arch_params": {**meta["arch_params"], **change}}
    path = _save(tmp_path / "claim.safetensors", state, json.dumps(meta))
    with pytest.raises(ArchitectureError, match=message):
        load_model(path)


def test_swinir_training_size_claim_is_bounded():
    from desra.models.archs import check_params

    # img_size is free (the shifted-window mask is rebuilt) but allocates (img_size / window)^2 windows per block.
    params = {"img_size": 32, "in_chans": 3, "embed_dim": 12, "depths": [2], "num_heads": [2], "window_size": 4,
              "mlp_ratio": 2.0, "upscale": 2, "img_range": 1.0, "upsampler": "pixelshuffle", "resi_connection": "1conv"}
    state = get_arch("swinir").build(params).state_dict()
    assert check_params("swinir", {**params, "img_size": 64}, state) == {**params, "img_size": 64}
    with pytest.raises(ArchitectureError, match="img_size=100000 but the tensors say 32"):
        check_params("swinir", {**params, "img_size": 100000}, state)
    with pytest.raises(ArchitectureError, match=r"depths=\[2, 2, 2\] but the tensors say \[2\]"):
        check_params("swinir", {**params, "depths": [2, 2, 2]}, state)


def test_registered_and_round_trip_models_still_pass_the_check():
    from desra.models import registry
    from desra.models.archs import check_params

    for model_id in ("desra-demo-x4-mse", "desra-demo-x4-gan"):
        entry = registry.get_model(model_id)
        state, _ = read_state_dict(registry.model_path(entry))
        assert check_params(entry.architecture, dict(entry.arch_params), state) == dict(entry.arch_params)
    rrdb = {"num_in_ch": 3, "num_out_ch": 3, "scale": 2, "num_feat": 16, "num_block": 2, "num_grow_ch": 8}
    assert check_params("rrdbnet", rrdb, get_arch("rrdbnet").build(rrdb).state_dict()) == rrdb


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_non_finite_weights_are_refused_naming_the_tensor(tiny, tmp_path, bad, suffix):
    _, state, meta = tiny
    state = {k: v.clone() for k, v in state.items()}
    state["body.2.weight"][0, 0, 1, 1] = bad
    if suffix == ".pth":
        path = tmp_path / "bad.pth"
        torch.save({"params_ema": state}, path)
    else:
        path = _save(tmp_path / "bad.safetensors", state, json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"tensor 'body.2.weight' \(8, 8, 3, 3\) holds 1 NaN or infinite"):
        load_model(path)


def _sr_flags() -> set[str]:
    help_text = subprocess.run([sys.executable, "-m", "desra", "sr", "--help"], capture_output=True, text=True,
                               check=True).stdout
    return set(re.findall(r"--[a-z][a-z0-9-]*", help_text))


def _hostile_checkpoints(tmp_path, state, meta) -> list:
    from safetensors.torch import save_file

    rng = np.random.default_rng(20261201)
    files = []
    for index in range(4):  # random bytes: reach the unpickler as IndexError, UnicodeDecodeError, UnpicklingError, ...
        path = tmp_path / f"random{index}.pth"
        path.write_bytes(rng.bytes(int(rng.integers(16, 4096))))
        files.append(path)
    (tmp_path / "random.safetensors").write_bytes(rng.bytes(2048))
    files.append(tmp_path / "random.safetensors")
    noise = {f"layer{i}.weight": torch.from_numpy(rng.standard_normal((4, 4)).astype(np.float32)) for i in range(3)}
    save_file(noise, str(tmp_path / "unknown.safetensors"))  # valid file, no architecture recognisable
    files.append(tmp_path / "unknown.safetensors")
    files.append(_save(tmp_path / "list.safetensors", state, json.dumps([meta])))
    return files


def test_hostile_checkpoints_fail_in_one_line_naming_only_real_flags(tiny, tmp_path, desra_cli, cli_error):
    # The review: random bytes gave a hint naming --arch, which `desra sr` does not have.
    _, state, meta = tiny
    flags = _sr_flags()
    assert {"--model", "--device", "--tile"} <= flags
    image = tmp_path / "in.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    for path in _hostile_checkpoints(tmp_path, state, meta):
        line = cli_error(desra_cli("sr", "--model", path, "--input", image, "--output", tmp_path / "o.png"))
        named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line))
        assert named <= flags, f"{path.name}: {line}"


def test_random_bytes_are_a_checkpoint_error_not_an_internal_one(tmp_path):
    rng = np.random.default_rng(7)
    for index in range(40):
        path = tmp_path / f"r{index}.pth"
        path.write_bytes(rng.bytes(int(rng.integers(8, 2048))))
        with pytest.raises(CheckpointError):
            read_state_dict(path)


def test_bytes_that_are_no_pickle_are_not_called_unsafe(tmp_path):
    # 0xF0 is no pickle opcode: the file is corrupt, not a pickle that "would run code".
    from desra.core.errors import UnsafeCheckpointError

    path = tmp_path / "noise.pth"
    path.write_bytes(b"\xf0" * 256)
    with pytest.raises(CheckpointError, match="corrupt pickle stream: Unsupported operand 240") as info:
        read_state_dict(path)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_a_huge_claim_gives_a_short_message(tiny, tmp_path):
    # A claim of a million-entry list must not turn the one-line error into megabytes of repr.
    _, state, meta = tiny
    meta = {**meta, "arch_params": {**meta["arch_params"], "num_conv": list(range(1_000_000))}}
    path = _save(tmp_path / "long.safetensors", state, json.dumps(meta))
    with pytest.raises(ArchitectureError, match="num_conv=") as info:
        load_model(path)
    assert len(str(info.value)) < 600 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "state",
    [
        {1: torch.zeros(1)},  # keys that are not parameter names
        {"params": {1: torch.zeros(1), "a": torch.zeros(1)}},
        {"body.0.rdb1.conv1.weight": torch.tensor(1.0), "conv_first.weight": torch.tensor(1.0),
         "conv_last.weight": torch.tensor(1.0)},  # rrdbnet names on 0-d tensors
        {"body.0.weight": torch.tensor(1.0), "body.1.weight": torch.tensor(1.0)},  # srvgg names on 0-d tensors
        {"layers.0.residual_group.blocks.0.attn.relative_position_bias_table": torch.tensor(1.0),
         "conv_first.weight": torch.tensor(1.0)},  # swinir names on 0-d tensors
    ],
    ids=["int-keys", "nested-int-keys", "rrdbnet-0d", "srvgg-0d", "swinir-0d"],
)
def test_state_dicts_of_the_wrong_shape_are_checkpoint_errors(tmp_path, state):
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError):
        load_model(path)
