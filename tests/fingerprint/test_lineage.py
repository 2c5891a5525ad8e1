"""Lineage metadata (issue 16): written by zoo training, fine-tuning and the attacks, read back, shown beside the
fingerprint verdict by `desra fingerprint verify`, and never deciding it (a forged claim is flagged, not believed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from desra.cli import main
from desra.models.lineage import (
    FORGERY_NOTE,
    LINEAGE_KEY,
    Lineage,
    check_lineage,
    describe_lineage,
    lineage_from_json,
    lineage_of_file,
    make_lineage,
    read_lineage,
    weights_sha256,
)

SRVGG = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 4, "act_type": "prelu"}


def _srvgg(seed: int):
    import torch

    from desra.models.archs import get_arch

    torch.manual_seed(seed)
    return get_arch("srvgg").build(SRVGG)


def _save(path: Path, module, **extra) -> Path:
    from desra.models.checkpoint import describe, save_model

    return save_model(path, module, describe("srvgg", SRVGG, name=path.stem, role="gan"), extra_metadata=extra)


def test_lineage_round_trips_through_a_checkpoint_with_its_chain(tmp_path):
    from desra.models.checkpoint import load_model

    grandparent, parent, child = _srvgg(1), _srvgg(2), _srvgg(3)
    parent_path = _save(tmp_path / "parent.safetensors", parent, **{LINEAGE_KEY: make_lineage(
        "zoo-train", parent, source=grandparent, source_name="gp", recipe={"config": "zoo.yaml", "iterations": 5})})
    parent_meta = read_lineage({"extra": {LINEAGE_KEY: make_lineage("zoo-train", parent, source=grandparent, source_name="gp")}})
    entry = make_lineage("finetune", child, source=parent, source_name="parent", recipe={"command": "desra finetune --x", "iterations": 7},
                         source_metadata={"extra": {LINEAGE_KEY: parent_meta.to_json()}})
    path = _save(tmp_path / "child.safetensors", child, **{LINEAGE_KEY: entry})

    back = lineage_of_file(path)
    assert back == lineage_from_json(json.loads(json.dumps(entry)))
    assert back.kind == "finetune" and back.source_name == "parent" and back.recipe["iterations"] == 7
    assert back.weights_sha256 == weights_sha256(load_model(path).module), "the entry names the weights it was written for"
    assert back.source_sha256 == weights_sha256(load_model(parent_path).module)
    assert back.ancestors_sha256() == [weights_sha256(parent), weights_sha256(grandparent)]
    text = describe_lineage(back)
    assert text.startswith("finetune of parent (sha256 ") and "7 iterations" in text and "itself a zoo-train of gp" in text
    # the sha256 does not depend on the tensors' file format or dtype, only on keys, shapes and values
    assert weights_sha256({k: v.double() for k, v in child.state_dict().items()}) == weights_sha256(child)
    assert lineage_of_file(tmp_path / "missing.safetensors") is None and lineage_of_file(_save(tmp_path / "bare.safetensors", child)) is None


def test_the_rebuilt_parent_metadata_reads_as_lineage():
    meta = {"extra": {"derived_from": "RealESRGAN_x4plus", "base_sha256": "a" * 64, "sha256": "b" * 64, "recipe": "python scripts/x.py"}}
    lineage = read_lineage(meta)
    assert (lineage.kind, lineage.source_name, lineage.source_sha256, lineage.weights_sha256) == ("parent-delta", "RealESRGAN_x4plus", "a" * 64, "b" * 64)
    assert read_lineage({"extra": {LINEAGE_KEY: {"no": "kind"}}}) is None, "a malformed entry is no claim"


@pytest.mark.parametrize(
    ("claims_source", "match", "weights_ok", "status"),
    [
        (True, True, True, "consistent"),
        (False, False, True, "consistent"),
        (True, False, True, "contradicted"),  # claims to descend from the source, the fingerprint says independent
        (False, True, True, "contradicted"),  # names another source, the fingerprint says derived from this one
        (True, True, False, "weights-differ"),  # metadata copied from other weights
    ],
)
def test_check_lineage_compares_the_claim_with_the_verdict_and_never_changes_it(claims_source, match, weights_ok, status):
    source, other, suspect = "1" * 64, "2" * 64, "3" * 64
    lineage = Lineage(kind="finetune", weights_sha256=suspect if weights_ok else "4" * 64, source_name="x",
                      source_sha256=source if claims_source else other)
    check = check_lineage(lineage, suspect, match=match, source_name="mine", source_sha256=source)
    assert check.status == status
    assert check.to_json()["note"] == FORGERY_NOTE and "can be forged" in FORGERY_NOTE
    assert check_lineage(None, suspect, match=match, source_name="mine", source_sha256=source).status == "none"
    assert check_lineage(lineage, suspect, match=match, source_name="mine", source_sha256="").status in ("unchecked", "weights-differ")


@pytest.fixture
def registered(tmp_path, capsys):
    """A tiny x4 model registered as 'mine' (300 iterations, 32 px) in a workspace; -> (workspace args, its path, its module)."""
    module = _srvgg(1)
    path = _save(tmp_path / "mine.safetensors", module)
    ws = ["--workspace", str(tmp_path / "ws")]
    assert main(["fingerprint", "register", str(path), "--name", "mine", "--iterations", "300", "--size", "32", *ws]) == 0
    capsys.readouterr()
    return ws, path, module


def test_forged_lineage_is_flagged_and_the_verdict_stays_the_fingerprints(tmp_path, registered, capsys):
    ws, _, mine = registered
    stranger = _srvgg(2)
    # A careful forger: the entry names mine as the source (its true sha256) and is written for the stranger's own weights.
    forged = make_lineage("finetune", stranger, source=mine, source_name="mine", recipe={"command": "desra finetune --model mine", "iterations": 1000})
    path = _save(tmp_path / "stranger.safetensors", stranger, **{LINEAGE_KEY: forged})

    assert main(["fingerprint", "verify", str(path), "--against", "mine", "--json", *ws]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["match"] is False and result["distance"] > result["eta"], "metadata must not make a stranger derived"
    assert result["lineage"]["source_name"] == "mine" and result["lineage"]["source_sha256"] == weights_sha256(mine)
    assert result["lineage_check"]["status"] == "contradicted" and "forged" in result["lineage_check"]["message"]
    assert "can be forged" in result["lineage_check"]["note"]

    assert main(["fingerprint", "verify", str(path), "--against", "mine", *ws]) == 0
    text = capsys.readouterr().out
    assert "no match (independent)" in text and "lineage (metadata): finetune of mine" in text
    assert "lineage check: contradicted" in text and "can be forged" in text

    # the same entry copied onto other weights: the sha256 it was written for no longer matches
    copied = _save(tmp_path / "copied.safetensors", _srvgg(3), **{LINEAGE_KEY: forged})
    assert main(["fingerprint", "verify", str(copied), "--against", "mine", "--json", *ws]) == 0
    assert json.loads(capsys.readouterr().out)["lineage_check"]["status"] == "weights-differ"


def test_attacked_checkpoints_carry_their_lineage_and_it_agrees_with_the_verdict(tmp_path, registered, capsys):
    ws, path, mine = registered
    out = tmp_path / "attacked"
    assert main(["fingerprint", "attack", str(path), "--against", "mine", "--attacks", "prune", "--out", str(out), "--json", *ws]) == 0
    capsys.readouterr()
    attacked = out / "mine-prune.safetensors"
    lineage = lineage_of_file(attacked)
    assert (lineage.kind, lineage.source_name, lineage.source_sha256) == ("attack", "mine", weights_sha256(mine))
    assert lineage.recipe["attack"] == "prune" and lineage.recipe["fraction"] == 0.05 and lineage.recipe["command"]
    assert main(["fingerprint", "verify", str(attacked), "--against", "mine", "--json", *ws]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["match"] is True and result["lineage_check"]["status"] == "consistent"


def test_zoo_training_records_lineage_from_init_then_from_the_mse_stage(tmp_path):
    from desra.models.checkpoint import load_model
    from desra.train.zoo import exported_path, train_zoo_model
    from desra.train.zoo_config import load_zoo_config

    raw = {"name": "tiny-zoo", "scale": 4, "seed": 3, "architecture": "srvgg", "arch_params": SRVGG,
           "data": {"photos": ["skimage:data/retina.jpg"], "dead_leaves": 1, "dead_leaves_size": 96, "patch": 64, "batch": 2},
           "mse": {"iters": 2, "save_every": 2, "log_every": 1},
           "gan": {"iters": 2, "save_every": 2, "log_every": 1, "gan_kind": "ragan"},
           "discriminator": {"num_feat": 4, "skip_connection": True}}
    path = tmp_path / "tiny-zoo.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_zoo_config(path)
    out = tmp_path / "zoo"
    train_zoo_model(config, out, "mse", command="desra zoo train --stage mse")
    train_zoo_model(config, out, "gan", command="desra zoo train --stage gan")
    mse, gan = (exported_path(out, config, s) for s in ("mse", "gan"))
    first, second = lineage_of_file(mse), lineage_of_file(gan)
    assert first.kind == "zoo-train" and first.source_sha256 is None and first.recipe["stage"] == "mse"
    assert first.recipe["config"] == str(path) and first.recipe["command"] == "desra zoo train --stage mse"
    assert second.source_name == "tiny-zoo-mse" and second.source_sha256 == weights_sha256(load_model(mse).module)
    assert second.weights_sha256 == weights_sha256(load_model(gan).module) and second.source_lineage == first
    assert describe_lineage(first).startswith("zoo-train from initialisation (2 iterations; config ")


def test_finetune_export_records_its_start_model_and_recipe(tmp_path, photo):
    from desra.models.checkpoint import load_model, save_model
    from desra.repair.finetune import FinetuneConfig, finetune
    from tests.repair.conftest import _tiny_generator, build_set

    module, descriptor = _tiny_generator(1)
    start = save_model(tmp_path / "tiny-gan.safetensors", module, descriptor)
    start_sha = weights_sha256(load_model(start).module)
    curated = build_set(tmp_path / "set", photo)
    config = FinetuneConfig(set_dir=str(curated.root), out=str(tmp_path / "run"), model=str(start), iters=2, patch=64, batch=2,
                            save_every=2, device="cpu", previews=1, ema=0.5)
    with pytest.warns(UserWarning, match="FRESH"):
        result = finetune(config)
    for exported in (result.model, result.out / "generator.safetensors"):
        lineage = lineage_of_file(exported)
        assert (lineage.kind, lineage.source_name, lineage.source_sha256) == ("finetune", "tiny-gan-1", start_sha)
        assert lineage.recipe["iterations"] == 2 and lineage.recipe["config"]["lr"] == config.lr
        assert lineage.weights_sha256 == weights_sha256(load_model(exported).module) != start_sha
