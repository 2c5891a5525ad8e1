"""`desra fingerprint register|verify|attack|list` on tiny SRVGG checkpoints saved by desra."""

from __future__ import annotations

import json

import pytest

from desra.cli import main


def _save_srvgg(path, seed: int, scale: int = 4):
    import torch

    from desra.archs import get_arch
    from desra.checkpoint import describe, save_model

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
    assert list(same) == ["match", "distance", "eta", "p_value"]
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
