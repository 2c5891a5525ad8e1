"""The named API endpoints, driven with gradio_client as a script would: detect, evaluate, submit_job, job_status."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.ui.conftest import pair_args, pair_flags


def test_named_endpoints_are_published(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/detect", "/evaluate", "/submit_job", "/job_status"} <= names


def test_detect_returns_the_views_of_a_real_photo(client, photo_png, model_pair):
    from gradio_client import handle_file

    from desra.core.imageio import read_mask

    banner, slider, heatmap, semantic, overlay, regions, downloads, summary, showing = client.predict(
        images=[handle_file(str(photo_png))], demo_image=None, segmenter="none", threshold=0.7, window=11,
        min_area=200, scale_min_area=False, api_name="/detect", **pair_args(model_pair),
    )
    assert "Semantic adjustment is OFF" in banner
    assert len(slider) == 2 and all(slider)
    assert semantic is None  # no segmenter, no semantic map
    names = sorted(p.rsplit("/", 1)[-1] for p in downloads)
    assert names == ["chelsea_lr.json", "mask.png", "report.json"]
    mask = read_mask(next(p for p in downloads if p.endswith("mask.png")))
    assert mask.shape == (4 * 75, 4 * 112)
    assert summary["data"][0][0] == "chelsea_lr"
    assert int(summary["data"][0][2]) == len(regions["data"])


def test_evaluate_scores_every_method_against_a_label(client, photo_png, tmp_path, model_pair):
    from gradio_client import handle_file

    from desra.core.imageio import write_mask

    label = np.zeros((4 * 75, 4 * 112), bool)
    label[100:200, 150:300] = True
    write_mask(tmp_path / "chelsea_lr_mask.png", label)
    banner, scores, failures, per_image = client.predict(
        images=[handle_file(str(photo_png))], labels=[handle_file(str(tmp_path / "chelsea_lr_mask.png"))],
        methods=["desra", "absolute-d"], segmenter="none", scale_min_area=True, api_name="/evaluate",
        **pair_args(model_pair),
    )
    assert [row[0] for row in scores["data"]] == ["DeSRA-det (full)", "absolute texture difference"]
    assert all(int(row[4]) == 1 for row in scores["data"])
    assert failures == ""


def test_evaluate_gives_the_scores_of_desra_detect_and_eval(client, photo_png, tmp_path, model_pair, capsys):
    # The same LR image, pair and label through the CLI (`desra detect` then `desra eval --json`)
    # and through the dashboard's /evaluate: the score table holds the CLI's numbers, per method.
    import json

    from gradio_client import handle_file

    from desra.cli import main
    from desra.core.imageio import read_mask, write_mask

    models = pair_flags(model_pair)
    methods = ["desra", "ssim"]
    for method in methods:
        assert main(["detect", "--lr", str(photo_png), *models, "--segmenter", "none", "--scale-min-area",
                     "--method", method, "--out", str(tmp_path / method)]) == 0
    # A label that half agrees with the CLI's SSIM mask, so its scores are neither 0 nor 1 (DeSRA-det
    # finds nothing on this photo without semantics: its row is compared as 0 and no precision).
    found = read_mask(tmp_path / "ssim" / "chelsea_lr_mask.png")
    label = np.zeros_like(found)
    label[:, : found.shape[1] // 2] = found[:, : found.shape[1] // 2]
    label[20:60, 20:60] = True
    (tmp_path / "gt").mkdir()
    write_mask(tmp_path / "gt" / "chelsea_lr_mask.png", label)
    capsys.readouterr()
    expected = {}
    for method in methods:
        assert main(["eval", "--pred", str(tmp_path / method), "--gt", str(tmp_path / "gt"), "--json"]) == 0
        expected[method] = json.loads(capsys.readouterr().out)
    assert 0 < expected["ssim"]["iou"] < 1
    _, scores, failures, _ = client.predict(
        images=[handle_file(str(photo_png))], labels=[handle_file(str(tmp_path / "gt" / "chelsea_lr_mask.png"))],
        methods=methods, segmenter="none", scale_min_area=True, api_name="/evaluate", **pair_args(model_pair),
    )
    assert failures == ""
    for row, method in zip(scores["data"], methods, strict=True):
        cli = expected[method]
        assert float(row[1]) == pytest.approx(100 * cli["iou"], abs=0.05), method
        for cell, key in ((row[2], "precision"), (row[3], "recall")):
            assert (cell == "—") if cli[key] is None else float(cell) == pytest.approx(cli[key], abs=5e-5), (method, key)
        assert int(row[4]) == len(cli["images"]) == 1


def test_submit_job_and_follow_it_to_done(client):
    job = client.predict(kind="sleep", params={"steps": 3, "interval": 0.2}, device="cpu", api_name="/submit_job")
    assert job["state"] == "queued" and job["kind"] == "sleep"
    deadline = time.monotonic() + 120
    status = job
    while status["state"] not in ("done", "failed", "cancelled") and time.monotonic() < deadline:
        time.sleep(1)
        status = client.predict(job_id=job["id"], api_name="/job_status")
    assert status["state"] == "done", status
    assert status["progress"] == {**status["progress"], "iter": 3, "iters": 3}
    assert "sleep: done" in status["log_tail"]


def test_submit_job_refuses_paths_outside_the_workspace(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="outside the workspace"):
        client.predict(kind="finetune", params={"set": "/etc", "pair": "desra-demo-x4"}, device="cpu", api_name="/submit_job")
    # The review's two exploits: an argparse prefix after the checked `out`, and detect's unchecked `lr`.
    with pytest.raises(AppError, match="unknown parameter"):
        client.predict(kind="sleep", params={"steps": 1, "out": "o", "ou": "/tmp/desra-escape"}, device="cpu", api_name="/submit_job")
    with pytest.raises(AppError, match="outside the workspace"):
        client.predict(kind="detect", params={"lr": "/etc/hostname", "pair": "desra-demo-x4"}, device="cpu", api_name="/submit_job")
    with pytest.raises(AppError, match="outside the workspace"):
        client.predict(kind="sleep", params={"out": "../escape"}, device="cpu", api_name="/submit_job")


def test_unknown_job_is_an_error_not_a_crash(client):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="no job"):
        client.predict(job_id="nope", api_name="/job_status")
    assert client.predict(kind="sleep", params={"steps": 1, "interval": 0}, device="cpu", api_name="/submit_job")["state"] == "queued"
