"""The dashboard's Detect writes what `desra detect` writes (one writer, desra.service.detection): for the same
LR photo, pair and segmenter, the same mask, overlay and semantic map (padded to SR size) and the same report."""

from __future__ import annotations

import json

from tests.ui.conftest import pair_args, pair_flags

# The per-image report's keys that name inputs or files, which differ between the two shells by design.
WHERE_KEYS = {"inputs", "files", "image", "pair", "provenance"}


def test_dashboard_detect_writes_the_files_of_desra_detect(client, workspace, photo_png, tmp_path, model_pair, tiny_segformer):
    from gradio_client import handle_file

    from desra.cli import main

    models = pair_flags(model_pair)
    cli = tmp_path / "cli"
    assert main(["detect", "--lr", str(photo_png), *models, "--segmenter", str(tiny_segformer), "--min-area", "200",
                 "--out", str(cli)]) == 0
    before = set(workspace.glob("detections/*/*-chelsea_lr"))
    client.predict(
        images=[handle_file(str(photo_png))], demo_image=None, segmenter=str(tiny_segformer), threshold=0.7, window=11,
        min_area=200, scale_min_area=False, api_name="/detect", **pair_args(model_pair),
    )
    (folder,) = set(workspace.glob("detections/*/*-chelsea_lr")) - before

    for cli_name, dashboard_name in (("chelsea_lr_mask.png", "mask.png"), ("chelsea_lr_overlay.png", "overlay.png"),
                                     ("chelsea_lr_semantic.png", "semantic.png")):
        assert (cli / cli_name).read_bytes() == (folder / dashboard_name).read_bytes(), dashboard_name
    by_cli = json.loads((cli / "chelsea_lr.json").read_text())
    by_dashboard = json.loads((folder / "report.json").read_text())
    assert by_cli["semantics"]["used"] is True and by_cli["semantics"]["segmenter"] == str(tiny_segformer)
    assert {k: v for k, v in by_cli.items() if k not in WHERE_KEYS} == {
        k: v for k, v in by_dashboard.items() if k not in WHERE_KEYS
    }
    assert by_dashboard["provenance"]["segmenter"] == str(tiny_segformer)
