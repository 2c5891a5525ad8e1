"""A repair round end to end in the service (fine-tune job, evaluation on held-out images, decision): one that adds artifacts is not promoted."""

from __future__ import annotations

import json

import pytest

from desra.repair.watch_state import WatchSettings
from desra.service import watch
from desra.service.watch_loop import WatchService
from desra.service.watch_rounds import version_dir
from tests.watch.conftest import write_tiles


@pytest.mark.slow
def test_a_repair_that_adds_artifacts_is_kept_but_not_promoted(photo, tmp_path, workspace):
    folder = tmp_path / "in"
    write_tiles(photo("astronaut"), folder, "astronaut", side=128, count=3)
    # lr 0.05 is 500x the paper's: five steps wreck the model, which then paints texture everywhere.
    settings = WatchSettings(folder=str(folder), pair="desra-demo-x4", repair_after=3, iters=5, lr=0.05, segmenter="none",
                             settle_s=0.2, fingerprint_iters=20)
    notes: list[str] = []
    WatchService(workspace, settings, note=notes.append).run(poll_s=0.2, until_idle=True)

    report = watch.status(workspace)
    [decided] = report["rounds"]
    assert (decided["state"], decided["promoted"], report["current_version"]) == ("done", False, 0)
    assert decided["addition"] > 0
    assert decided["reason"].startswith(f"not promoted: addition rate {100 * decided['addition']:.1f} % > 0")
    kept = json.loads((version_dir(workspace, 1) / "report.json").read_text())
    assert kept["promoted"] is False and kept["evaluation"]["images_with_additions"] >= 1
    assert kept["derivation"] is None, "a repair that fails on its metrics is not fingerprinted"
    assert [r["version"] for r in watch.round_reports(workspace)] == [1]
    with pytest.raises(Exception, match="version 1 was never promoted"):
        watch.rollback(workspace, 1)
    assert watch.promote(workspace, 1)["current_version"] == 1, "a user may still promote it by hand"
    assert watch.status(workspace)["rounds"][0]["reason"].endswith("; promoted by hand")
