"""The dashboard shell: `desra serve` answers on loopback, every tab renders, screenshots are kept."""

from __future__ import annotations

import pytest

from ui.app import TABS

pytestmark = pytest.mark.browser


def test_every_tab_renders_and_is_screenshotted(page, save_screenshot):
    for label, module_name in TABS:
        page.get_by_role("tab", name=label).click()
        panel = page.locator(f"#tab-{module_name}")
        panel.wait_for(state="visible")
        assert panel.inner_text().strip(), f"tab {label!r} rendered nothing"
        # The workflow tabs are screenshotted with results by the workflow tests.
        path = save_screenshot(page, module_name.replace("_", "-"), publish=module_name in ("verify_model", "attribute_image"))
        assert path.stat().st_size > 10_000
