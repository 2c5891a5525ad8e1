"""The dashboard in a real browser: detect -> correct -> curate -> repair -> evaluate on a real photo.

Each test drives headless chromium against the one `desra serve` of the session, checks what the
page shows and what landed in the workspace, and keeps a screenshot of its tab.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.browser

PAIR_LABEL = "Model pair (MSE parent + GAN model)"


def _use_pair(page, model_pair, choose) -> None:
    """Select the test pair in Detect (the embedded default needs nothing)."""
    if model_pair["choice"] != "desra-demo-x4":
        choose(page, PAIR_LABEL, model_pair["choice"])
        page.locator("#detect-mse input[type=file]").set_input_files(str(model_pair["mse"]))
        page.locator("#detect-gan input[type=file]").set_input_files(str(model_pair["gan"]))
        page.locator("#detect-gan").get_by_text(model_pair["gan"].name[:3]).wait_for()


def _listed(page, component: str, name: str):
    """The row of file ``name`` in the file list of ``component``. Gradio renders the name as stem and
    extension spans, sometimes with a space between them, so match its aria-label, not its text."""
    return page.locator(f"#{component}").get_by_label(name, exact=True)


def _detect(page, photo_png, model_pair, choose, *, pair_chosen: bool = False) -> None:
    """Upload ``photo_png`` in Detect, run detection with the test pair and wait for the mask overlay."""
    if not pair_chosen:
        _use_pair(page, model_pair, choose)
    page.locator("#detect-images input[type=file]").set_input_files(str(photo_png))
    _listed(page, "detect-images", photo_png.name).wait_for()
    page.locator("#detect-run").click()
    page.locator("#detect-overlay img").wait_for(state="visible", timeout=120_000)


def test_corrupt_upload_shows_an_error_and_the_page_keeps_working(page, photo_png, corrupt_png, model_pair, choose, workspace, save_screenshot):
    _use_pair(page, model_pair, choose)
    page.locator("#detect-images input[type=file]").set_input_files(str(corrupt_png))
    _listed(page, "detect-images", corrupt_png.name).wait_for()
    page.locator("#detect-run").click()
    toast = page.locator("[data-testid=toast-body]").filter(has_text="broken.png")
    toast.wait_for(timeout=60_000)
    assert "broken.png is not a readable image" in toast.inner_text()
    page.locator("#detect-images button[aria-label='Clear']").first.click()

    _detect(page, photo_png, model_pair, choose, pair_chosen=True)

    assert "Semantic adjustment is OFF" in page.locator("#detect-banner").inner_text()
    runs = sorted((workspace / "detections").glob("*/*-chelsea_lr"))
    assert runs, "the detection was not written into the workspace"
    report = json.loads((runs[-1] / "report.json").read_text())
    assert report["size"] == {"height": 4 * 75, "width": 4 * 112}
    assert {p.name for p in runs[-1].iterdir()} >= {"mask.png", "chelsea_lr.json", "report.json", "mse.png", "gan.png"}
    page.locator("#detect-slider img").first.wait_for(state="visible")
    save_screenshot(page, "detect")


def test_brushed_correction_is_saved_to_the_curated_set(page, photo_png, model_pair, choose, workspace, save_screenshot):
    from desra.core.imageio import read_mask
    from desra.repair.curated import open_set

    _detect(page, photo_png, model_pair, choose)
    page.get_by_role("tab", name="Correct").click()
    page.locator("#correct-item").get_by_text("chelsea_lr").wait_for()
    page.locator("#correct-editor button[aria-label=Brush]").click()
    canvas = page.locator("#correct-editor canvas").last
    page.wait_for_timeout(2000)  # the background image is drawn asynchronously
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 60, y)
    page.mouse.down()
    for step in range(1, 5):  # few events: every one redraws the canvas, slowly in software rendering
        page.mouse.move(x - 60 + 30 * step, y)
    page.mouse.up()
    page.locator("#correct-save").click()
    page.locator("#correct-saved").get_by_text("Saved: item").wait_for(timeout=60_000)
    save_screenshot(page, "correct")

    items = open_set(workspace / "curated").items()
    assert len(items) == 1
    item = items[0]
    assert item.mask_source == "edited"
    mask = read_mask(item.path("mask"))
    detected = read_mask(sorted((workspace / "detections").glob("*/*-chelsea_lr"))[-1] / "mask.png")
    added = mask & ~detected
    # a horizontal stroke through the middle of the image: painted pixels around the centre row
    ys, xs = np.nonzero(added)
    assert added.sum() > 500
    assert abs(ys.mean() - mask.shape[0] / 2) < mask.shape[0] * 0.15
    assert abs(xs.mean() - mask.shape[1] / 2) < mask.shape[1] * 0.15

    page.get_by_role("tab", name="Curate").click()
    page.locator("#curate-summary").get_by_text("1 items").wait_for()
    page.locator("#curate-gallery img").first.click()
    page.locator("#curate-compare img").first.wait_for()
    save_screenshot(page, "curate")


def test_short_finetune_reaches_done(page, photo, model_pair, choose, workspace, save_screenshot):
    from desra.models.pairs import choose_pair
    from desra.repair.curated import create_set
    from desra.service.sets import add_image

    if model_pair["choice"] == "desra-demo-x4":
        models = choose_pair("desra-demo-x4")
    else:
        models = choose_pair(mse_model=str(model_pair["mse"]), gan_model=str(model_pair["gan"]))
    curated = create_set(workspace / "sets" / "finetune-test")
    for name, split in (("coffee", "train"), ("astronaut", "val")):
        lr = photo(name)[::8, ::8].copy()
        mask = np.zeros((lr.shape[0] * 4, lr.shape[1] * 4), bool)
        mask[40:120, 40:160] = True
        add_image(curated, name, lr, models, mask=mask, split=split)

    page.get_by_role("tab", name="Repair").click()
    page.get_by_label("Curated set folder (inside the workspace)").fill(str(curated.root))
    if model_pair["choice"] != "desra-demo-x4":
        choose(page, "Model to repair", model_pair["choice"])
        page.locator("#repair-gan input[type=file]").set_input_files(str(model_pair["gan"]))
        page.locator("#repair-gan").get_by_text(model_pair["gan"].name[:3]).wait_for()
    page.get_by_label("Iterations").fill("3")
    page.get_by_text("Advanced").click()
    page.get_by_label("Checkpoint and preview every N iterations").fill("3")
    page.get_by_label("HR crop size (px)").fill("64")
    page.get_by_label("Crops per iteration").fill("2")
    page.get_by_role("button", name="Launch fine-tune").click()
    page.locator("#repair-status").get_by_text("done").wait_for(timeout=240_000)
    status = page.locator("#repair-status").inner_text()
    assert "iteration 3 / 3" in status
    assert "model\n.safetensors" in page.locator("#repair-model").inner_text()  # name and extension are two spans

    page.get_by_role("button", name="Evaluate the repair on the val items").click()
    page.locator("#repair-metrics").get_by_text("removal rate").wait_for(timeout=120_000)
    page.locator("#repair-before-after img").first.wait_for(timeout=60_000)
    save_screenshot(page, "repair")


def test_evaluate_scores_methods_against_a_labelled_mask(page, photo_png, tmp_path, model_pair, choose, save_screenshot):
    from desra.core.imageio import write_mask

    label = np.zeros((4 * 75, 4 * 112), bool)
    label[100:200, 150:300] = True
    write_mask(tmp_path / "chelsea_lr_mask.png", label)
    page.get_by_role("tab", name="Evaluate").click()
    if model_pair["choice"] != "desra-demo-x4":
        choose(page, "Model pair", model_pair["choice"])
        page.locator("#evaluate-mse input[type=file]").set_input_files(str(model_pair["mse"]))
        page.locator("#evaluate-gan input[type=file]").set_input_files(str(model_pair["gan"]))
    page.locator("#evaluate-images input[type=file]").set_input_files(str(photo_png))
    page.locator("#evaluate-labels input[type=file]").set_input_files(str(tmp_path / "chelsea_lr_mask.png"))
    page.locator("#evaluate-labels").get_by_text("chelsea_lr_mask.png").wait_for()
    page.get_by_role("button", name="Evaluate", exact=True).click()
    # the per-image view: the labelled mask and one overlay per method (5 methods)
    page.locator("#evaluate-gallery img").nth(5).wait_for(timeout=120_000)
    assert page.get_by_text("DeSRA-det (full)").count() >= 2  # both the scores and the per-image table
    save_screenshot(page, "evaluate")
