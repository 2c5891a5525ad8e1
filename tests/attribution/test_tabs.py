"""The "Verify a model" and "Attribute an image" tabs, served for real, through gradio_client and chromium."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "attribution"


def _save_srvgg(path: Path, seed: int) -> Path:
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 4, "act_type": "prelu"}
    torch.manual_seed(seed)
    return save_model(path, get_arch("srvgg").build(params), describe("srvgg", params, name=path.stem))


def _with_lineage(root: Path, mine, stranger) -> tuple[Path, Path]:
    """mine pruned 5 % with its true lineage, and the stranger's weights with a lineage forged to claim mine as source."""
    from desra.fingerprint.attacks import attack_recipe, prune_smallest
    from desra.models.checkpoint import save_model
    from desra.models.lineage import LINEAGE_KEY, make_lineage

    pruned = prune_smallest(mine.module, 0.05)
    pruned_path = save_model(root / "pruned.safetensors", pruned, mine.descriptor, extra_metadata={
        LINEAGE_KEY: make_lineage("attack", pruned, source=mine.module, source_name="tiny-1", recipe=attack_recipe("prune"))})
    forged_path = save_model(root / "forged.safetensors", stranger.module, stranger.descriptor, extra_metadata={
        LINEAGE_KEY: make_lineage("finetune", stranger.module, source=mine.module, source_name="tiny-1", recipe={"iterations": 1000})})
    return pruned_path, forged_path


def _tiny_experiment(folder: Path) -> Path:
    """A real (barely trained) classifier + PRNU fingerprints for two labels, written as `desra attribute train` would."""
    import skimage.data

    from desra.attribution.classifier import (
        ClassifierConfig,
        LabelSpace,
        build_classifier,
        save_classifier,
        train_classifier,
    )
    from desra.attribution.pipeline import PRNU_FILE, grid_tiles, residuals_of
    from desra.attribution.prnu import fit_fingerprints

    folder.mkdir(parents=True)
    images = [(getattr(skimage.data, n)()[:128, :128] / 255.0).astype(np.float32) for n in ("astronaut", "coffee")]
    labels = LabelSpace(models=("zoo-a", "zoo-b"), scales=("x2", "x4"), losses=("gan", "l1"))
    classifier = build_classifier(labels, ClassifierConfig(crop=32, dims=(8, 16, 32), depths=(1, 1, 1), batch=4, iterations=3))
    train_classifier(classifier, images, np.array([[0, 0, 1], [1, 1, 0]]))
    save_classifier(folder / "classifier.safetensors", classifier)
    tiles = np.concatenate([grid_tiles(im, 64) for im in images])
    prints = fit_fingerprints(residuals_of(tiles), np.repeat([0, 1], len(tiles) // 2), labels.models)
    np.savez_compressed(folder / PRNU_FILE, fingerprints=prints.fingerprints, labels=np.asarray(labels.models))
    (folder / "report.md").write_text("| group | CNN crop |\n|---|---|\n| all | 50.0 % |\n")
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A Blocks app holding the two attribution tabs as the dashboard lays them out, on a free loopback port."""
    import gradio as gr

    from desra.fingerprint.critical import CriticalConfig
    from desra.fingerprint.pipeline import fingerprint_model
    from desra.fingerprint.verify import register_fingerprint, registry_path
    from desra.models.checkpoint import load_model
    from ui.context import AppContext
    from ui.tabs import attribute_image, verify_model

    root = tmp_path_factory.mktemp("tabs")
    workspace = root / "workspace"
    workspace.mkdir()
    checkpoints = {seed: _save_srvgg(root / f"tiny-{seed}.safetensors", seed) for seed in (1, 2)}
    mine = load_model(checkpoints[1])
    record = fingerprint_model("mine", mine, CriticalConfig(size=32, iterations=300))
    pruned, forged = _with_lineage(root, mine, load_model(checkpoints[2]))
    register_fingerprint(registry_path(workspace), record)
    experiment = _tiny_experiment(workspace / "attribution" / "experiment")
    ctx = AppContext(workspace=workspace)
    with gr.Blocks() as app:
        with gr.Tabs():
            with gr.Tab("Verify a model") as tab:
                on_open = verify_model.build(ctx)
            tab.select(*on_open, api_visibility="private")
            with gr.Tab("Attribute an image"):
                attribute_image.build(ctx)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, ssr_mode=False, quiet=True)
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "checkpoints": checkpoints, "experiment": experiment, "root": root,
               "pruned": pruned, "forged": forged}
    finally:
        app.close()


def test_verify_endpoint_tells_copy_from_stranger(served):
    from gradio_client import Client, handle_file

    client = Client(served["url"], verbose=False)
    _, lineage, _, source_img, suspect_img, same = client.predict(handle_file(str(served["checkpoints"][1])), "mine", 0.015, 0.05, api_name="/verify_model")
    assert same["match"] is True and same["distance"] == 0.0
    assert "none recorded" in lineage and same["lineage"] is None
    assert Path(source_img).is_file() and Path(suspect_img).is_file()
    banner, _, _, _, _, other = client.predict(handle_file(str(served["checkpoints"][2])), "mine", 0.015, 0.05, api_name="/verify_model")
    assert other["match"] is False and "NOT derived" in banner


def test_verify_tab_shows_lineage_beside_the_verdict(served):
    """An attacked copy's lineage agrees with the verdict; a stranger claiming mine as its source is flagged, not believed."""
    from gradio_client import Client, handle_file

    client = Client(served["url"], verbose=False)
    banner, lineage, _, _, _, details = client.predict(handle_file(str(served["pruned"])), "mine", 0.015, 0.05, api_name="/verify_model")
    assert "is DERIVED from mine" in banner and details["lineage_check"]["status"] == "consistent"
    assert "Lineage (from the suspect's metadata):** attack of tiny-1" in lineage and "can be forged" in lineage
    banner, lineage, _, _, _, details = client.predict(handle_file(str(served["forged"])), "mine", 0.015, 0.05, api_name="/verify_model")
    assert "NOT derived" in banner and details["match"] is False
    assert "contradicts the fingerprint" in lineage and "finetune of tiny-1" in lineage and "can be forged" in lineage


def test_unknown_source_is_reported_not_crashed(served):
    from gradio_client import Client, handle_file

    client = Client(served["url"], verbose=False)
    with pytest.raises(Exception, match="no fingerprint named .*ghost"):
        client.predict(handle_file(str(served["checkpoints"][1])), "ghost", 0.015, 0.05, api_name="/verify_model")


def test_attribute_endpoint_ranks_and_parses(served, photo):
    from gradio_client import Client, handle_file

    from desra.core.imageio import write_image

    path = write_image(served["root"] / "sr.png", photo("chelsea")[:128, :128])
    client = Client(served["url"], verbose=False)
    ranking, scale, loss = client.predict(handle_file(str(path)), str(served["experiment"]), api_name="/attribute_image")
    rows = ranking["data"]
    assert [r[1] for r in rows] and sorted(r[1] for r in rows) == ["zoo-a", "zoo-b"]
    assert {c["label"] for c in scale["confidences"]} == {"x2", "x4"}
    assert {c["label"] for c in loss["confidences"]} == {"gan", "l1"}


@pytest.mark.browser
def test_verify_tab_in_chromium(served, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(served["url"])
        page.get_by_role("tab", name="Verify a model").click()
        page.locator("#verify-suspect input[type=file]").set_input_files(str(served["checkpoints"][1]))
        page.get_by_role("combobox", name="Registered source model").click()
        page.get_by_role("option", name="mine", exact=True).click()
        page.locator("#verify-run").click()
        page.get_by_text("is DERIVED from mine").wait_for()
        lineage = page.locator("#verify-lineage").inner_text()
        assert "Lineage (from the suspect's metadata): none recorded" in lineage and "can be forged" in lineage
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "verify-tab.png"), full_page=True)
        page.get_by_role("tab", name="Attribute an image").click()
        page.locator("#attribute-run").wait_for()
        assert page.locator("#attribute-experiment textarea").input_value() == str(served["experiment"])
    finally:
        context.close()
