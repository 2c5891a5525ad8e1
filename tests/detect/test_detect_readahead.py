"""desra detect on folders reads the next pair while it works on this one: same files, failures in place."""

from __future__ import annotations

import json

import numpy as np

from desra.cli import main
from desra.core.imageio import read_mask, write_image
from desra.service import detection


def _folders(tmp_path, photo, pair_maker):
    mse_dir, gan_dir = tmp_path / "mse", tmp_path / "gan"
    mse_dir.mkdir()
    gan_dir.mkdir()
    for i, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        img = photo(name)
        h, w = img.shape[:2]
        mse, gan, _ = pair_maker(img, [(h // 4, h // 2, w // 4, w // 2)], amplitude=0.1, seed=i)
        write_image(mse_dir / f"{i}_{name}.png", mse)
        write_image(gan_dir / f"{i}_{name}.png", gan)
    (gan_dir / "1_coffee.png").write_bytes((gan_dir / "1_coffee.png").read_bytes()[:5000])  # truncated, in the middle
    return mse_dir, gan_dir


def test_folder_run_matches_one_pair_at_a_time_and_reports_the_bad_file(tmp_path, photo, pair_maker, monkeypatch, capsys):
    mse_dir, gan_dir = _folders(tmp_path, photo, pair_maker)
    assert main(["detect", "--mse", str(mse_dir), "--gan", str(gan_dir), "--segmenter", "none", "--out", str(tmp_path / "all")]) == 1
    report = json.loads((tmp_path / "all" / "report.json").read_text())
    assert [f["name"] for f in report["failures"]] == ["1_coffee"] and "corrupt or truncated" in report["failures"][0]["error"]
    assert [i["name"] for i in report["images"]] == ["0_astronaut", "2_chelsea", "3_rocket"]
    # Read-ahead off (no pair fits under the limit): the same masks, overlays and regions.
    monkeypatch.setattr(detection, "PREFETCH_MAX_PIXELS", 0)
    assert main(["detect", "--mse", str(mse_dir), "--gan", str(gan_dir), "--segmenter", "none", "--out", str(tmp_path / "seq")]) == 1
    found = []
    for entry in report["images"]:
        stem = entry["name"]
        np.testing.assert_array_equal(read_mask(tmp_path / "all" / f"{stem}_mask.png"), read_mask(tmp_path / "seq" / f"{stem}_mask.png"))
        assert (tmp_path / "all" / f"{stem}_overlay.png").read_bytes() == (tmp_path / "seq" / f"{stem}_overlay.png").read_bytes()
        ours, theirs = (json.loads((tmp_path / d / f"{stem}.json").read_text()) for d in ("all", "seq"))
        assert ours["regions"] == theirs["regions"]
        found.append(len(ours["regions"]))
    assert sum(found) >= 2  # the textured boxes are found
    assert "failed: 1_coffee" in capsys.readouterr().err
