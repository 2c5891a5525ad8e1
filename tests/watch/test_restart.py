"""`kill -9` of the watch service during a detection and during a repair, then a restart: nothing lost, nothing done twice."""

from __future__ import annotations

import json
import os
import signal

import pytest

from desra.core.imageio import write_image
from desra.jobs.store import JobStore
from desra.repair.curated import open_set
from desra.repair.watch_state import WatchSettings, WatchStore
from desra.service.watch_loop import artifacts_dir
from desra.service.watch_rounds import Rounds, round_dir, version_dir
from tests.watch.conftest import (
    FAST,
    start_service,
    wait_for_line,
    watch_cli,
    write_tiles,
)


def _kill(process) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(30)
    process.stdout.close()


@pytest.mark.slow
def test_kill_during_detection_then_restart_redoes_that_image_once(photo, tmp_path, workspace):
    folder = tmp_path / "in"
    write_image(folder / "astronaut.png", photo("astronaut"))  # 512 px: the model load and its detection take seconds
    write_tiles(photo("coffee"), folder, "coffee", side=128, count=2)
    service = start_service(folder, workspace, "--repair-after", "1000")
    seen: list[str] = []
    wait_for_line(service, "astronaut: detecting", seen)
    _kill(service)
    store = WatchStore(workspace)
    assert [image.name for image in store.images("detecting")] == ["astronaut"]

    done = watch_cli("start", str(folder), "--workspace", str(workspace), *FAST, "--repair-after", "1000", "--until-idle")
    assert done.returncode == 0, done.stderr
    assert "astronaut: detection was interrupted; detecting it again" in done.stdout
    report = json.loads(watch_cli("status", "--workspace", str(workspace), "--json").stdout)
    assert (report["images"], report["failed"], report["artifact_images"] + report["clean_images"]) == (3, 0, 3)
    astronaut = next(image for image in store.images() if image.name == "astronaut")
    assert (astronaut.state, astronaut.attempts) == ("artifact", 2)
    items = open_set(artifacts_dir(workspace)).items()
    assert len(items) == report["artifact_images"], "an image was added to the curated set twice"
    assert len({item.provenance["watch"]["sha256"] for item in items}) == len(items)


@pytest.mark.slow
def test_kill_during_repair_then_restart_follows_the_same_job_and_rollback_restores(photo, tmp_path, workspace):
    folder = tmp_path / "in"
    # The top row of tiles, all four with artifacts: the first three make round 1, the fourth is still
    # detected by version 0 while round 1 is in flight.
    write_tiles(photo("astronaut"), folder, "astronaut", side=128, count=4)
    flags = ("--repair-after", "3", "--iters", "30", "--min-removal", "0")
    service = start_service(folder, workspace, *flags)
    seen: list[str] = []
    wait_for_line(service, "fine-tune job", seen)
    _kill(service)
    [job] = JobStore(workspace).list()
    assert WatchStore(workspace).round(1).job_id == job.id

    done = watch_cli("start", str(folder), "--workspace", str(workspace), *FAST, *flags, "--until-idle")
    assert done.returncode == 0, done.stderr
    jobs = JobStore(workspace).list()
    assert [(j.id, j.state, j.attempts) for j in jobs] == [(job.id, "done", 1)], "the repair was submitted or run twice"
    report = json.loads(watch_cli("status", "--workspace", str(workspace), "--json").stdout)
    assert list(report) == ["images", "artifact_images", "clean_images", "failed", "rounds", "current_version"]
    [round_1] = report["rounds"]
    assert list(round_1) == ["version", "state", "removal", "addition", "promoted", "reason"]
    assert (report["images"], round_1["state"], round_1["addition"]) == (4, "done", 0.0)
    assert round_1["promoted"] is True and report["current_version"] == 1, round_1["reason"]
    # After the promotion the image version 0 detected is detected again by version 1, the model the next round repairs.
    store = WatchStore(workspace)
    assert "1 gathered images were detected with an earlier version; detecting them with version 1" in done.stdout
    assert [(i.name, i.round) for i in store.images() if i.version == 1] == [("astronaut_0_384", None)]
    curated = open_set(artifacts_dir(workspace))
    live = {item.provenance["watch"]["sha256"]: item.provenance["watch"]["version"] for item in curated.items()}
    assert live == {i.sha256: i.version for i in store.images("artifact")}, "a stale item was left in the set"
    assert "derived by the fingerprint" in round_1["reason"] or "derived by the lineage" in round_1["reason"]
    kept = json.loads((version_dir(workspace, 1) / "report.json").read_text())
    assert kept["promoted"] is True and (version_dir(workspace, 1) / "model.safetensors").is_file()

    back = watch_cli("rollback", "0", "--workspace", str(workspace))
    assert back.returncode == 0, back.stderr
    assert json.loads(watch_cli("status", "--workspace", str(workspace), "--json").stdout)["current_version"] == 0
    missing = watch_cli("rollback", "7", "--workspace", str(workspace))
    assert missing.returncode == 2 and "no model version 7 is kept" in missing.stderr and "kept versions: 0, 1" in missing.stderr
    assert watch_cli("rollback", "1", "--workspace", str(workspace)).returncode == 0
    assert json.loads(watch_cli("status", "--workspace", str(workspace), "--json").stdout)["current_version"] == 1


def test_a_job_submitted_just_before_a_kill_is_adopted_not_submitted_again(tmp_path, workspace):
    # The state a kill between the runner's submit and the round's update leaves: a queued round
    # without a job id, and a fine-tune job writing into that round's run folder.
    settings = WatchSettings(folder=str(tmp_path), pair="desra-demo-x4", repair_after=2)
    store = WatchStore(workspace)
    store.form_round(1, 0, [])
    orphan = JobStore(workspace).submit("finetune", {"set": str(round_dir(workspace, 1) / "set"), "pair": "desra-demo-x4",
                                                     "iters": 1, "out": str(round_dir(workspace, 1) / "run")})
    notes: list[str] = []
    never = lambda: pytest.fail("no image is detected again while a round is in flight")
    assert Rounds(workspace, store, settings, notes.append, never).advance()
    assert store.round(1).job_id == orphan.id
    assert [job.id for job in JobStore(workspace).list()] == [orphan.id]
    assert notes == [f"round 1: fine-tune job {orphan.id} queued"]
