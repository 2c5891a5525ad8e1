"""The model registry: every entry is consistent with its architecture; bad data files are refused."""

from __future__ import annotations

import json

import pytest

from desra.core.errors import ConfigError, DuplicateNameError, UnknownNameError
from desra.models.archs import detect_architecture, get_arch
from desra.models.checkpoint import describe
from desra.models.registry import (
    get_model,
    get_pair,
    is_present,
    list_models,
    list_pairs,
    model_path,
    parse_registry,
)


def test_embedded_pair_comes_first_and_ships_in_weights():
    pair = list_pairs()[0]
    assert (pair.name, pair.mse, pair.gan) == ("desra-demo-x4", "desra-demo-x4-mse", "desra-demo-x4-gan")
    for model_id in (pair.mse, pair.gan):
        entry = get_model(model_id)
        assert model_path(entry).parent.name == "weights" and entry.license == "Apache-2.0"


def test_every_pair_is_mse_plus_gan_of_one_scale():
    for pair in list_pairs():
        mse, gan = get_model(pair.mse), get_model(pair.gan)
        assert (mse.role, gan.role) == ("mse", "gan"), pair.name
        assert mse.scale == gan.scale, pair.name
    assert {p.name for p in list_pairs()} >= {"realesrgan-x4", "swinir-m-realsr-x4", "bsrgan-x4", "ldl-realworld-x4"}


def test_every_entry_builds_and_is_recognised_with_its_own_parameters(official_nets):
    built = {json.dumps(params, sort_keys=True): net for params, net in official_nets.values()}
    for entry in list_models():
        key = json.dumps(entry.arch_params, sort_keys=True)
        if key not in built:
            built[key] = get_arch(entry.architecture).build(dict(entry.arch_params))
        name, params, scale = detect_architecture(built[key].state_dict())
        assert (name, scale) == (entry.architecture, entry.scale), entry.id
        assert {k: params[k] for k in entry.arch_params} == entry.arch_params, entry.id
        assert describe(entry.architecture, entry.arch_params).scale == entry.scale
        assert entry.url.startswith("https://") or entry.local_path or entry.derived_delta, entry.id
        assert entry.sha256 == "" or len(entry.sha256) == 64


def test_cache_location_follows_desra_home(cache_home):
    entry = get_model("RealESRGAN_x4plus")
    assert model_path(entry) == cache_home / "models" / "RealESRGAN_x4plus.pth"
    assert not is_present(entry)
    model_path(entry).parent.mkdir(parents=True)
    model_path(entry).write_bytes(b"x")
    assert is_present(entry)
    with pytest.raises(UnknownNameError, match="desra-demo-x4"):
        get_pair("nope")


GOOD = """
[models.a]
architecture = "srvgg"
arch_params = {}
scale = 4
role = "mse"
url = ""
filename = "a.pth"
license = "MIT"
"""


def test_bad_data_files_are_refused():
    models, pairs = parse_registry(GOOD)
    assert models["a"].sha256 == "" and not pairs
    with pytest.raises(ConfigError, match="role"):
        parse_registry(GOOD.replace('"mse"', '"teacher"'))
    with pytest.raises(ConfigError, match="unknown keys"):
        parse_registry(GOOD + 'colour = "red"\n')
    with pytest.raises(UnknownNameError, match="'b'"):
        parse_registry(GOOD + '[pairs.p]\nmse = "a"\ngan = "b"\n')
    with pytest.raises(DuplicateNameError):
        parse_registry(GOOD + '[pairs.a]\nmse = "a"\ngan = "a"\n')
    with pytest.raises(DuplicateNameError, match=r"\[models.a\] is defined twice"):
        parse_registry(GOOD + GOOD)
    with pytest.raises(ConfigError, match="TOML"):
        parse_registry(GOOD + "scale = = 4\n")
