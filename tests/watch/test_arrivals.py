"""Arrivals in a watched folder: good, duplicate (copy and rename), half-written and corrupt files, each decided once."""

from __future__ import annotations

import shutil
import time

from desra.repair.watch_state import WatchSettings, WatchStore
from desra.service import watch
from desra.service.watch_loop import WatchService, content_sha256, is_settled, observe
from tests.watch.conftest import write_tiles


def _service(folder, workspace, notes, settle_s=0.5):
    settings = WatchSettings(folder=str(folder), pair="desra-demo-x4", repair_after=1000, segmenter="none", settle_s=settle_s)
    return WatchService(workspace, settings, note=notes.append)


def _settle_and_step(service, settle_s=0.5):
    service.step()  # first sight of a file starts its settle interval
    time.sleep(settle_s + 0.1)
    service.step()


def test_good_duplicate_half_written_and_corrupt_files_are_each_decided_once(photo, tmp_path, workspace):
    folder = tmp_path / "in"
    good, other = write_tiles(photo("astronaut"), folder, "astronaut", count=2)
    notes: list[str] = []
    service = _service(folder, workspace, notes)
    _settle_and_step(service)
    report = watch.status(workspace)
    assert (report["images"], report["failed"], report["rounds"], report["current_version"]) == (2, 0, [], 0)
    assert report["artifact_images"] + report["clean_images"] == 2
    detections = [n for n in notes if "detecting" in n]
    assert len(detections) == 2

    # A copy in a subfolder and a rename: known bytes, recorded as paths, never detected again.
    (folder / "sub").mkdir()
    shutil.copy(good, folder / "sub" / "copy.png")
    other.rename(folder / "renamed.png")
    _settle_and_step(service)
    assert [n for n in notes if "detecting" in n] == detections
    assert sum("the same bytes as an image already seen" in n for n in notes) == 2
    assert watch.status(workspace)["images"] == 2
    store = WatchStore(workspace)
    assert len(store.paths_of(content_sha256(good.read_bytes()))) == 2

    # A file being written (it grows between scans) is waited for, never read half-written.
    whole = write_tiles(photo("coffee"), tmp_path / "staging", "coffee", count=1)[0].read_bytes()
    growing = folder / "coffee.png"
    third = len(whole) // 3
    with open(growing, "wb") as handle:
        for part in (whole[:third], whole[third:2 * third], whole[2 * third:]):
            handle.write(part)
            handle.flush()
            service.step()
            time.sleep(0.3)  # less than the settle interval: each scan sees a changed file
    assert watch.status(workspace)["images"] == 2, "a file still being written was read"
    _settle_and_step(service)
    report = watch.status(workspace)
    assert (report["images"], report["failed"]) == (3, 0)
    assert store.image(content_sha256(whole)).state in ("clean", "artifact")

    # A corrupt file is recorded failed once: rescans and copies of its bytes add nothing.
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"not really an image" * 20)
    _settle_and_step(service)
    shutil.copy(broken, folder / "sub" / "broken-copy.png")
    _settle_and_step(service)
    report = watch.status(workspace)
    assert (report["images"], report["failed"]) == (3, 1)
    failed = store.images("failed")
    assert len(failed) == 1 and "broken.png" in failed[0].error
    assert sum("failed" in n for n in notes) == 1
    assert service.idle()


def test_settling_restarts_when_size_or_mtime_change():
    first = observe(None, 100, 1, now=10.0)
    assert not is_settled(first, 10.5, settle_s=1.0)
    assert observe(first, 100, 1, now=11.0) is first and is_settled(first, 11.0, settle_s=1.0)
    grown = observe(first, 200, 2, now=11.0)
    assert grown.since == 11.0 and not is_settled(grown, 11.5, settle_s=1.0)
    assert not is_settled(observe(None, 0, 1, now=0.0), 100.0, settle_s=1.0), "an empty file is never read"
