"""`desra fingerprint register|verify|attack|list` on tiny SRVGG checkpoints saved by desra."""

from __future__ import annotations

import json

import pytest

from desra.cli import main


def _save_srvgg(path, seed: int, scale: int = 4):
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": scale, "act_type": "prelu"}
    torch.manual_seed(seed)
    module = get_arch("srvgg").build(params)
    save_model(path, module, describe("srvgg", params, name=path.stem))
    return path


@pytest.fixture
def checkpoints(tmp_path):
    return {seed: _save_srvgg(tmp_path / f"tiny-{seed}.safetensors", seed) for seed in (1, 2)}


def test_register_verify_json_and_attack(tmp_path, checkpoints, capsys):
    ws = ["--workspace", str(tmp_path / "ws")]
    assert main(["fingerprint", "register", str(checkpoints[1]), "--name", "mine", "--iterations", "300", "--size", "32", *ws]) == 0
    capsys.readouterr()

    assert main(["fingerprint", "verify", str(checkpoints[1]), "--against", "mine", "--json", *ws]) == 0
    same = json.loads(capsys.readouterr().out)
    assert list(same) == ["match", "distance", "eta", "p_value", "lineage", "lineage_check"]
    assert same["lineage"] is None and same["lineage_check"]["status"] == "none"
    assert same["match"] is True and same["distance"] == 0.0
    assert same["eta"] == pytest.approx(1.387e-4, rel=1e-3)

    assert main(["fingerprint", "verify", str(checkpoints[2]), "--against", "mine", "--json", *ws]) == 0
    other = json.loads(capsys.readouterr().out)
    assert other["match"] is False and other["distance"] > other["eta"]

    out = tmp_path / "attacked"
    code = main(["fingerprint", "attack", str(checkpoints[1]), "--against", "mine", "--attacks", "prune,int8",
                 "--out", str(out), "--json", *ws])
    verdicts = json.loads(capsys.readouterr().out)
    assert code == 0 and set(verdicts) == {"prune", "int8"}
    assert all(v["match"] for v in verdicts.values())
    saved = sorted(p.name for p in out.iterdir())
    assert saved == ["tiny-1-int8.safetensors", "tiny-1-prune.safetensors"]
    # an attacked checkpoint on disk verifies through the ordinary command too
    assert main(["fingerprint", "verify", str(out / saved[1]), "--against", "mine", "--json", *ws]) == 0
    assert json.loads(capsys.readouterr().out)["match"] is True

    assert main(["fingerprint", "list", *ws]) == 0
    assert capsys.readouterr().out.startswith("mine\tx4\t300 it")


def test_unknown_fingerprint_is_a_one_line_error(tmp_path, checkpoints, capsys):
    code = main(["fingerprint", "verify", str(checkpoints[1]), "--against", "nobody", "--workspace", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "no fingerprint named 'nobody'" in err and "desra fingerprint register" in err


def test_bad_attack_list_is_rejected(tmp_path, checkpoints, capsys):
    code = main(["fingerprint", "attack", str(checkpoints[1]), "--against", "x", "--attacks", "prune,melt", "--workspace", str(tmp_path)])
    assert code == 2 and "prune,int8,finetune" in capsys.readouterr().err


def test_crosscheck_writes_rows_and_resumes(tmp_path, capsys):
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model

    paths = []
    # a and b stand for the MSE and GAN stage of one zoo config; c, another scale, is independent
    for seed, name, lineage, scale in ((1, "a", "zoo-1.yaml", 4), (1, "b", "zoo-1.yaml", 4), (2, "c", "zoo-2.yaml", 2)):
        params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": scale, "act_type": "prelu"}
        torch.manual_seed(seed)
        paths.append(save_model(tmp_path / f"{name}.safetensors", get_arch("srvgg").build(params),
                                describe("srvgg", params, name=name), extra_metadata={"config": lineage}))
    rows = tmp_path / "rows.jsonl"
    command = ["fingerprint", "crosscheck", *map(str, paths), "--iterations", "200", "--size", "32",
               "--attacks", "prune,int8", "--rows", str(rows), "--json"]
    assert main(command) == 0
    first = json.loads(capsys.readouterr().out)
    lines = rows.read_text().splitlines()
    assert sorted((json.loads(r)["name"], json.loads(r)["row"]) for r in lines) == sorted(
        (n, k) for n in "abc" for k in ("fingerprint", "prune", "int8"))
    # identical weights in one lineage are a derived pair that matches; a-c and b-c are the independent pairs
    assert first["derived_pairs"] == [{"pair": ["a", "b"], "distance": 0.0, "match": True}]
    assert first["independent_pairs"] == 2 and first["independent_confused"] == []
    assert {r["relation"]: (r["pairs"], r["told_apart"]) for r in first["relations"]} == {"other scale": (2, 2), "derived": (1, 0)}
    assert all(v["match"] for verdicts in first["attacks"].values() for v in verdicts.values())
    assert first["devices"] == {n: {"fingerprint": "cpu", "prune": "cpu", "int8": "cpu"} for n in "abc"}
    assert {json.loads(r)["device"] for r in lines} == {"cpu"}

    # cut short mid-write: four finished rows and half a line; the rerun redoes only what is missing
    rows.write_text("\n".join(lines[:4]) + "\n" + lines[4][:20])
    assert main(command) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["distances"] == first["distances"] and resumed["attacks"] == first["attacks"]
    finished = [json.loads(r) for r in rows.read_text().splitlines()]
    assert len(finished) == 9 and [r["seconds"] for r in finished[:4]] == [json.loads(r)["seconds"] for r in lines[:4]]


def test_crosscheck_refuses_rows_of_other_settings(tmp_path, checkpoints, capsys):
    rows = tmp_path / "rows.jsonl"
    base = ["fingerprint", "crosscheck", str(checkpoints[1]), "--size", "32", "--attacks", "none", "--rows", str(rows)]
    assert main([*base, "--iterations", "50"]) == 0
    capsys.readouterr()
    assert main([*base, "--iterations", "60"]) == 2
    assert "pass a new rows file or the same settings" in capsys.readouterr().err
