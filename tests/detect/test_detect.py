"""The DeSRA-det pipeline on a real photo with GAN-like texture painted into known sky regions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desra.core.errors import ConfigError, PairMismatchError
from desra.detect.metrics import score_image
from desra.detect.pipeline import METHODS, DetectConfig, detect_artifacts


def test_finds_the_painted_regions_and_nothing_else(rocket_pair):
    mse, gan, gt = rocket_pair
    det = detect_artifacts(mse, gan)
    s = score_image(det.mask, gt)
    assert s.iou > 0.7 and s.precision == 1.0 and s.recall == 1.0
    assert det.mask.shape == gt.shape and det.mask.dtype == bool
    assert not det.mask[:5].any() and not det.mask[-5:].any() and not det.mask[:, :5].any() and not det.mask[:, -5:].any()
    assert det.d.shape == (gt.shape[0] - 10, gt.shape[1] - 10) and det.d.dtype == np.float32
    assert det.d[50, 300] < 0.5 < det.d[300, 100]  # inside a painted box vs the untouched foreground
    # Ranked: the larger box (first) comes first; bboxes are in full-image coordinates around the boxes.
    assert len(det.regions) == 2
    ys, xs = np.nonzero(gt[:, :400])  # the first, larger box
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    bx0, by0, bx1, by1 = det.regions[0].bbox
    assert bx0 <= x0 < x1 <= bx1 + 1 and by0 <= y0 < y1 <= by1 + 1
    assert det.regions[0].prominence > det.regions[1].prominence > 0
    assert det.regions[0].id == 1 and det.regions[0].mean_d < 0.7


def test_without_segmenter_it_says_so(rocket_pair):
    mse, gan, _ = rocket_pair
    det = detect_artifacts(mse, gan, segmenter_note="weights offline")
    assert det.semantics_used is False and det.semantics_note == "weights offline" and det.labels is None
    np.testing.assert_array_equal(det.adjusted, det.d)
    report = json.loads(json.dumps(det.to_json()))
    assert report["semantics"]["used"] is False and report["semantics"]["reason"] == "weights offline"
    assert report["parameters"]["threshold"] == 0.7 and report["parameters"]["min_area"] == 4000
    assert len(report["regions"]) == 2 and set(report["regions"][0]) >= {"bbox", "area", "mean_d", "classes", "prominence"}


def test_with_a_segmenter_the_adjustment_runs(rocket_pair, tiny_segformer):
    from desra.detect import semantic

    mse, gan, _ = rocket_pair
    seg = semantic.load_segmenter(str(tiny_segformer))
    det = detect_artifacts(mse, gan, DetectConfig(segment_on="gan"), segmenter=seg)
    assert det.semantics_used and det.semantics_note is None
    assert det.labels.shape == det.d.shape
    weights = semantic.default_class_weights()
    np.testing.assert_allclose(det.adjusted, np.clip(det.d / weights.weights[det.labels], 0, 1), atol=1e-6)
    assert det.to_json()["semantics"] == {
        "used": True, "reason": None, "segmenter": str(tiny_segformer), "segment_on": "gan",
        "class_weights": weights.source,
    }
    assert all(r.classes for r in det.regions)


def test_the_mse_output_is_segmented_by_default(rocket_pair, tiny_segformer):
    # The paper segments the MSE-SR output (desra's default); the authors' script the GAN-SR one.
    # The expectation is built from semantic.segment on each image, not from det.labels.
    from desra.detect import semantic

    mse, gan, _ = rocket_pair
    seg = semantic.load_segmenter(str(tiny_segformer))
    on_mse = semantic.segment(seg, mse)[5:-5, 5:-5]
    on_gan = semantic.segment(seg, gan)[5:-5, 5:-5]
    assert (on_mse != on_gan).mean() > 0.01  # the painted texture changes the labels, so a swap shows
    weights = semantic.default_class_weights()
    det = detect_artifacts(mse, gan, segmenter=seg)
    np.testing.assert_array_equal(det.labels, on_mse)
    np.testing.assert_allclose(det.adjusted, np.clip(det.d / weights.weights[on_mse], 0, 1), atol=1e-6)
    assert det.to_json()["semantics"]["segment_on"] == "mse"
    np.testing.assert_array_equal(detect_artifacts(mse, gan, DetectConfig(segment_on="gan"), segmenter=seg).labels, on_gan)


def test_parameters_change_the_result(rocket_pair):
    mse, gan, gt = rocket_pair
    base = detect_artifacts(mse, gan).mask.sum()
    assert detect_artifacts(mse, gan, DetectConfig(threshold=0.3)).mask.sum() < base
    assert not detect_artifacts(mse, gan, DetectConfig(min_area=20000)).mask.any()  # both boxes are smaller
    scaled = detect_artifacts(mse, gan, DetectConfig(scale_min_area=True))
    assert scaled.min_area_used == round(4000 * 417 * 630 / 3_000_000)
    box = detect_artifacts(mse, gan, DetectConfig(window_kind="box", window=7))
    assert box.d.shape == (gt.shape[0] - 6, gt.shape[1] - 6) and score_image(box.mask, gt).recall == 1.0


def test_identical_and_clamped_inputs(photo):
    img = photo("coffee")
    assert not detect_artifacts(img, img).mask.any()
    det = detect_artifacts(img, img * 1.5 - 0.2)  # out-of-range values are clamped first
    np.testing.assert_array_equal(det.d, detect_artifacts(img, np.clip(img * 1.5 - 0.2, 0, 1)).d)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_and_reports_itself(rocket_pair, method):
    mse, gan, gt = rocket_pair
    det = detect_artifacts(mse, gan, DetectConfig(method=method, ldl_threshold=0.0005))
    assert det.mask.shape == gt.shape and det.to_json()["method"] == method
    assert score_image(det.mask, gt).recall == 1.0  # every method sees texture on flat sky
    if method != "desra":
        assert not det.semantics_used and method in det.semantics_note


@pytest.mark.parametrize("method", METHODS)
def test_8bit_pixels_detect_exactly_as_their_float_image(rocket_pair, tiny_segformer, method):
    # desra detect hands 8-bit files over as uint8; every method, with semantics too, must not notice.
    from desra.core.imageio import unit_float
    from desra.detect import semantic

    mse, gan, _ = rocket_pair
    mse8, gan8 = (np.round(x * 255).astype(np.uint8) for x in (mse, gan))
    config = DetectConfig(method=method, ldl_threshold=0.0005)
    seg = {"segmenter": semantic.load_segmenter(str(tiny_segformer))} if method == "desra" else {}
    as_float = detect_artifacts(unit_float(mse8), unit_float(gan8), config, **seg)
    as_bytes = detect_artifacts(mse8, gan8, config, **seg)
    np.testing.assert_array_equal(as_bytes.mask, as_float.mask)
    np.testing.assert_array_equal(as_bytes.d, as_float.d)
    assert as_bytes.to_json() == as_float.to_json()
    # An 8-bit file beside a 16-bit one: the 8-bit one is converted, not refused.
    mixed = detect_artifacts(mse8, unit_float(gan8), config, **seg)
    np.testing.assert_array_equal(mixed.mask, as_float.mask)


def test_bad_inputs(photo):
    img = photo("astronaut")
    with pytest.raises(PairMismatchError, match="512x512"):
        detect_artifacts(img, img[:-8])
    with pytest.raises(ConfigError):
        DetectConfig(method="niqe")
    with pytest.raises(ConfigError):
        DetectConfig(segment_on="hr")
    with pytest.raises(ConfigError):
        DetectConfig(threshold=1.5)
    progress = []
    detect_artifacts(img, img, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (4, 4)


def test_every_device_finds_what_the_cpu_path_finds(rocket_pair, device):
    mse, gan, gt = rocket_pair
    cpu = detect_artifacts(mse, gan)
    on_device = detect_artifacts(mse, gan, DetectConfig(device=device))
    assert np.abs(on_device.d - cpu.d).max() <= 1e-4
    np.testing.assert_array_equal(on_device.mask, cpu.mask)
    assert score_image(on_device.mask, gt).recall == 1.0
