"""Issue 16's "independent": the crosscheck's relation labels on a hand-built zoo record, the data-disjoint configs,
and the default zoo of `desra attribute build-zoo`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from desra.core.paths import project_root
from desra.fingerprint.relations import (
    DERIVED,
    OTHER_ARCHITECTURE,
    OTHER_DATA,
    OTHER_RECIPE,
    OTHER_SCALE,
    OVERLAPPING_DATA,
    SEED_SIBLING,
    UNRECORDED,
    facts_from_metadata,
    format_table,
    relation,
    relation_table,
)
from desra.train.zoo_config import load_zoo_config
from desra.train.zoo_data import training_facts, training_sources

LARGE = project_root() / "configs" / "attribution-large"
SRVGG_X4 = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 32, "num_conv": 8, "upscale": 4, "act_type": "prelu"}


def _zoo_facts(config_name: str, stage: str, sha: str, **extra):
    """Facts of a zoo export as `desra zoo train` records them (provenance config, seed, training) for a shipped config."""
    config = load_zoo_config(LARGE / f"{config_name}.yaml")
    metadata = {"extra": {"config": config.source, "stage": stage, "seed": config.seed, "training": training_facts(config), **extra}}
    return facts_from_metadata(f"{config.name}-{stage}", config.architecture, config.arch_params, config.scale, metadata, sha)


@pytest.fixture(scope="module")
def zoo():
    """A hand-built zoo record: shipped large-zoo configs, each export with a made-up weights sha256."""
    names = [("attr-srvgg-x4-s1", "mse"), ("attr-srvgg-x4-s1", "gan"), ("attr-srvgg-x4-s2", "mse"), ("attr-srvgg-x2-s1", "mse"),
             ("attr-rrdbnet-x4-s1", "mse"), ("attr-srvgg-x4-s1-halfa", "mse"), ("attr-srvgg-x4-s1-halfb", "mse")]
    return {f"{c}-{s}": _zoo_facts(c, s, f"{i:064x}") for i, (c, s) in enumerate(names)}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("attr-srvgg-x4-s1-mse", "attr-srvgg-x4-s1-gan", DERIVED),  # two stages of one config
        ("attr-srvgg-x4-s1-mse", "attr-srvgg-x4-s2-mse", SEED_SIBLING),  # same data and recipe, another seed
        ("attr-srvgg-x4-s1-gan", "attr-srvgg-x4-s2-mse", SEED_SIBLING),
        ("attr-srvgg-x4-s1-mse", "attr-srvgg-x2-s1-mse", OTHER_SCALE),
        ("attr-srvgg-x4-s1-mse", "attr-rrdbnet-x4-s1-mse", OTHER_ARCHITECTURE),
        ("attr-srvgg-x4-s1-halfa-mse", "attr-srvgg-x4-s1-halfb-mse", OTHER_DATA),  # disjoint halves, same seed and recipe
        ("attr-srvgg-x4-s1-halfa-mse", "attr-srvgg-x4-s1-mse", OVERLAPPING_DATA),  # a half of the other's data
        ("attr-srvgg-x4-s1-halfb-mse", "attr-srvgg-x4-s2-mse", OVERLAPPING_DATA),
        ("attr-rrdbnet-x4-s1-mse", "attr-srvgg-x2-s1-mse", OTHER_ARCHITECTURE),  # architecture is checked before scale
    ],
)
def test_relation_labels_on_a_hand_built_zoo_record(zoo, a, b, expected):
    assert relation(zoo[a], zoo[b]) == expected
    assert relation(zoo[b], zoo[a]) == expected, "the rule must be symmetric"


def test_relation_of_lineage_published_and_unrecorded_models(zoo):
    from dataclasses import replace

    mine = zoo["attr-srvgg-x4-s1-mse"]
    # a fine-tune elsewhere that records mine as its source (sha256 chain), under another name and config
    tuned = replace(zoo["attr-srvgg-x4-s2-mse"], name="tuned", group="elsewhere.yaml", source_sha256=("f" * 64, mine.weights_sha256))
    assert relation(mine, tuned) == DERIVED
    assert relation(mine, replace(zoo["attr-srvgg-x4-s2-mse"], weights_sha256=mine.weights_sha256)) == DERIVED  # the same weights
    # same data and seed under another config: only the recipe differs, which is not independence either
    assert relation(mine, replace(mine, name="other", group="other.yaml", weights_sha256="e" * 64)) == OTHER_RECIPE
    # a checkpoint without data records, same architecture and scale: cannot be called independent
    bare = facts_from_metadata("stranger", "srvgg", SRVGG_X4, 4, {}, "d" * 64)
    assert bare.hr_data is None and relation(mine, bare) == UNRECORDED

    rrdb = {"num_in_ch": 3, "num_out_ch": 3, "scale": 4, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}
    published = {n: facts_from_metadata(n, "rrdbnet", rrdb, 4, {}, f"{i:064x}")
                 for i, n in enumerate(("RealESRGAN_x4plus", "RealESRNet_x4plus", "RealSR-DF2K-x4", "RealSR-DF2K_JPEG-x4"))}
    assert relation(published["RealESRGAN_x4plus"], published["RealESRNet_x4plus"]) == DERIVED  # its authors fine-tuned it from there
    assert relation(published["RealSR-DF2K-x4"], published["RealSR-DF2K_JPEG-x4"]) == OTHER_DATA  # same HR set, other degradation
    assert relation(published["RealSR-DF2K-x4"], published["RealESRGAN_x4plus"]) == OTHER_DATA
    # the derived L1 parent desra rebuilds (desra/train/parent.py metadata) is derived from RealESRGAN_x4plus
    parent = facts_from_metadata("realesrgan-x4plus-l1-derived", "rrdbnet", rrdb, 4,
                                 {"extra": {"derived_from": "RealESRGAN_x4plus", "base_sha256": "9" * 64, "sha256": "8" * 64}}, "8" * 64)
    assert relation(parent, published["RealESRGAN_x4plus"]) == DERIVED
    assert relation(parent, published["RealSR-DF2K-x4"]) == OTHER_DATA  # it inherits its base's data and adds its own recipe


def test_relation_table_counts_pairs_and_attacks_per_relation(zoo):
    names = ["attr-srvgg-x4-s1-mse", "attr-srvgg-x4-s2-mse", "attr-srvgg-x2-s1-mse", "attr-srvgg-x4-s1-halfa-mse", "attr-srvgg-x4-s1-halfb-mse"]
    facts = [zoo[n] for n in names]
    eta = 1.387e-4
    d = np.full((5, 5), 1e-3)
    d[0, 1] = d[1, 0] = 5e-5  # seed siblings confused
    d[3, 4] = d[4, 3] = 2e-4  # halves told apart, just
    d[0, 2] = d[2, 0] = 1e-4  # one other-scale pair confused
    attacked = {"attr-srvgg-x4-s1-mse": {"prune": 1e-6, "finetune": 3e-4}, "attr-srvgg-x4-s1-halfa-mse": {"finetune": 1.5e-4},
                "attr-srvgg-x4-s1-halfb-mse": {"finetune": 1e-5}}
    rows = {r.relation: r for r in relation_table(facts, d, eta, attacked)}
    assert list(rows) == [OTHER_DATA, OTHER_SCALE, SEED_SIBLING, OVERLAPPING_DATA]
    data = rows[OTHER_DATA]
    assert (len(data.pairs), data.told_apart, data.closest) == (1, 1, ("attr-srvgg-x4-s1-halfa-mse", "attr-srvgg-x4-s1-halfb-mse", 2e-4))
    assert (data.attacks, data.attacks_verified, data.attacks_below_closest, data.deciding) == (2, 1, 2, True)
    scale = rows[OTHER_SCALE]  # x2 against each of the four x4 models
    assert (len(scale.pairs), scale.told_apart, scale.closest[2], scale.attacks, scale.attacks_verified) == (4, 3, 1e-4, 4, 2)
    sibling = rows[SEED_SIBLING]
    assert (len(sibling.pairs), sibling.told_apart, sibling.deciding) == (1, 0, False)
    assert (sibling.attacks, sibling.attacks_verified, sibling.attacks_below_closest) == (2, 1, 1)
    text = "\n".join(format_table(list(rows.values()), eta))
    assert "seed sibling" in text and "(reported, not part of the verdict)" in text.split("seed sibling", 1)[1].splitlines()[0]
    assert json.loads(json.dumps(data.to_json()))["told_apart"] == 1


def test_data_disjoint_halves_load_are_disjoint_and_cover_their_set():
    for base in ("attr-srvgg-x2-s1", "attr-srvgg-x4-s1", "attr-rrdbnet-x4-s1"):
        full = load_zoo_config(LARGE / f"{base}.yaml")
        a, b = (load_zoo_config(LARGE / f"{base}-half{h}.yaml") for h in "ab")
        sa, sb = set(training_sources(a.data)), set(training_sources(b.data))
        assert sa and sb and not (sa & sb), f"{base} halves share {sorted(sa & sb)}"
        assert sa | sb == set(training_sources(full.data)), f"{base} halves do not cover the full set"
        assert len(sa) == len(sb)
        # the same recipe apart from the data: architecture, scale, seed, degradation, both stages
        for half in (a, b):
            assert (half.architecture, half.arch_params, half.scale, half.seed) == (full.architecture, full.arch_params, full.scale, full.seed)
            assert half.degradation == full.degradation and half.stages == full.stages and half.discriminator == full.discriminator
            assert (half.data.patch, half.data.batch, half.data.dead_leaves_size) == (full.data.patch, full.data.batch, full.data.dead_leaves_size)


def test_halves_train_on_different_dead_leaves_images():
    from desra.train.zoo_data import training_images

    a, b = (load_zoo_config(LARGE / f"attr-srvgg-x4-s1-half{h}.yaml") for h in "ab")
    full = load_zoo_config(LARGE / "attr-srvgg-x4-s1.yaml")
    leaves = {name: training_images(c.data, c.seed)[-c.data.dead_leaves:] for name, c in (("a", a), ("b", b), ("full", full))}
    assert np.array_equal(np.stack(leaves["a"]), np.stack(leaves["full"][:2]))
    assert np.array_equal(np.stack(leaves["b"]), np.stack(leaves["full"][2:]))
    assert not np.array_equal(leaves["a"][0], leaves["b"][0])


def test_negative_dead_leaves_offset_is_refused(tmp_path):
    import yaml

    from desra.core.errors import ConfigError

    raw = yaml.safe_load((LARGE / "attr-srvgg-x4-s1-halfa.yaml").read_text())
    raw["data"]["dead_leaves_offset"] = -1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="dead_leaves_offset"):
        load_zoo_config(path)


def test_build_zoo_defaults_to_the_large_zoo_and_keeps_the_tiny_one():
    from desra.cli import build_parser
    from desra.cli.cmd_attribute import zoo_paths

    parser = build_parser()
    args = parser.parse_args(["attribute", "build-zoo"])
    assert zoo_paths(args) == (Path("configs/attribution-large"), Path("runs/attribution-large"))
    assert zoo_paths(parser.parse_args(["attribute", "build-zoo", "--zoo", "tiny"])) == (Path("configs/attribution"), Path("runs/attribution"))
    assert zoo_paths(parser.parse_args(["attribute", "build-zoo", "--zoo", "tiny", "--root", "elsewhere"])) == (Path("configs/attribution"), Path("elsewhere"))
    assert parser.parse_args(["attribute", "train"]).zoo == "large"
    predict = parser.parse_args(["attribute", "predict", "x.png"])
    assert zoo_paths(predict)[1] / "experiment" == Path("runs/attribution-large/experiment")


def test_attribute_tab_looks_for_the_large_zoo_experiment_before_the_tiny_one(tmp_path):
    from ui.context import AppContext
    from ui.tabs.attribute_image import experiment_dirs

    dirs = experiment_dirs(AppContext(workspace=tmp_path))
    assert dirs[0] == tmp_path / "attribution" / "experiment"
    assert [d.relative_to(project_root()).as_posix() for d in dirs[1:]] == ["runs/attribution-large/experiment", "runs/attribution/experiment"]


def _tiny_model(path: Path, init: int, *, noise: float = 0.0, base=None, **extra):
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 4, "act_type": "prelu"}
    torch.manual_seed(init)
    module = get_arch("srvgg").build(params)
    if base is not None:
        module.load_state_dict(base.state_dict())
        with torch.no_grad():
            for p in module.parameters():
                p.add_(noise * torch.randn_like(p))
    save_model(path, module, describe("srvgg", params, name=path.stem), extra_metadata=extra)
    return module


def test_confused_seed_siblings_are_reported_but_do_not_fail_the_crosscheck(tmp_path, capsys):
    from desra.cli import main

    training = {"hr": ["skimage:data/brick.png"], "degradation": {"resize_range": [0.5, 1.5]}}
    # b differs from a by 1e-6 noise on every weight: a seed sibling whose fingerprint lands on a's
    base = _tiny_model(tmp_path / "a.safetensors", 1, config="a.yaml", seed=1, training=training)
    _tiny_model(tmp_path / "b.safetensors", 2, noise=1e-6, base=base, config="b.yaml", seed=2, training=training)
    command = ["fingerprint", "crosscheck", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
               "--iterations", "60", "--size", "32", "--attacks", "none"]
    assert main([*command, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"][0]["relation"] == SEED_SIBLING and result["pairs"][0]["match"] is True
    assert result["independent_pairs"] == 0 and result["independent_confused"] == []
    assert [(r["relation"], r["pairs"], r["told_apart"], r["deciding"]) for r in result["relations"]] == [(SEED_SIBLING, 1, 0, False)]
    assert main(command) == 0
    text = capsys.readouterr().out
    assert "independent pairs judged derived: 0/0" in text
    assert "seed sibling" in text and "(reported, not part of the verdict)" in text


def test_attribution_seed_triplets_of_the_large_zoo_hold_only_seed_siblings(tmp_path):
    from collections import defaultdict

    from desra.attribution.dataset import zoo_members

    members = zoo_members(sorted(LARGE.glob("*.yaml")), tmp_path)
    triplets = defaultdict(list)
    for m in members:
        triplets[m.triplet].append(m)
    shared = {k: v for k, v in triplets.items() if len(v) >= 2}
    assert set(shared) == {"srvgg-x2-l1", "srvgg-x2-gan", "srvgg-x4-l1", "srvgg-x4-gan"}
    for key, group in shared.items():
        data = {tuple(sorted(training_sources(load_zoo_config(m.config).data))) for m in group}
        assert len(data) == 1 and len({m.seed for m in group}) == len(group), f"{key} mixes other data or repeats a seed"
    halves = [m for m in members if "-half" in m.name]
    assert len(halves) == 12 and all(m.data and len(triplets[m.triplet]) == 1 for m in halves)
