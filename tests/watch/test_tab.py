"""The Watch tab in a real browser (one `desra serve`, headless chromium) and its named endpoints."""

from __future__ import annotations

import pytest

from desra.repair.watch_state import WatchSettings
from desra.service import watch
from desra.service.watch_loop import WatchService
from tests.conftest import load_photo
from tests.watch.conftest import write_tiles

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """The served workspace, holding a watch that has seen two real photo crops."""
    path = tmp_path_factory.mktemp("watch-ui-workspace")
    folder = tmp_path_factory.mktemp("watched")
    write_tiles(load_photo("astronaut"), folder, "astronaut", side=96, count=2)
    settings = WatchSettings(folder=str(folder), pair="desra-demo-x4", repair_after=1000, segmenter="none", settle_s=0.0)
    WatchService(path, settings).run(poll_s=0.1, until_idle=True)
    return path


def test_watch_tab_shows_arrivals_and_rolls_back_through_the_page_and_the_api(page, client, workspace, save_screenshot):
    page.get_by_role("tab", name="Watch").click()
    summary = page.locator("#watch-summary")
    summary.get_by_text("Current model version: 0").wait_for()
    assert "2 images" in summary.inner_text()
    captions = page.locator("#watch-timeline").get_by_text("astronaut_0_")
    captions.first.wait_for()
    assert "% flagged" in captions.first.inner_text()

    page.locator("#watch-version input").fill("0")
    page.locator("#watch-rollback").click()
    page.locator("#watch-answer").get_by_text("current_version").wait_for()
    page.locator("#watch-promote").click()
    toast = page.locator("[data-testid=toast-body]").filter(has_text="there is no repair round 0")
    toast.wait_for()
    save_screenshot(page, "watch-timeline", publish=False)

    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/watch_status", "/watch_promote", "/watch_rollback"} <= names
    assert client.predict(api_name="/watch_status") == watch.status(workspace)
    assert client.predict(version=0, api_name="/watch_rollback")["current_version"] == 0
