"""The dashboard's Evaluate action as a library call: every method on one SR pair, scored against labels."""

from __future__ import annotations

import pytest

from desra.core.errors import ConfigError


@pytest.fixture(scope="module")
def embedded():
    from desra.models.pairs import choose_pair

    return choose_pair("desra-demo-x4")


def test_each_method_is_scored_on_the_same_sr_pair(embedded, photo, tmp_path):
    from desra.core.imageio import write_image, write_mask
    from desra.detect.pipeline import DetectConfig, detect_lr
    from desra.service.detection import resolve_semantics
    from desra.service.evaluation import compare_methods

    lr = photo("astronaut")[::4, ::4][:96, :96].copy()
    write_image(tmp_path / "in" / "astro.png", lr)
    base = DetectConfig(min_area=50)
    semantics = resolve_semantics("none")
    # The label is DeSRA-det's own detection of this image, so DeSRA-det must score IoU 1 against it.
    detection, _, _ = detect_lr(lr, embedded.mse, embedded.gan, base, **semantics.detect_kwargs())
    assert detection.mask.any()
    write_mask(tmp_path / "labels" / "astro_mask.png", detection.mask)
    steps = []
    comparison = compare_methods(
        [tmp_path / "in" / "astro.png"], [tmp_path / "labels" / "astro_mask.png"], embedded, ["desra", "absolute-d"],
        semantics, base, tmp_path / "run", progress=lambda done, total: steps.append((done, total)),
    )
    assert comparison.methods == ("desra", "absolute-d")
    assert comparison.summaries["desra"].iou == pytest.approx(1.0)
    assert comparison.summaries["absolute-d"].iou < 1.0
    assert comparison.semantics_off  # no segmenter: the reason is reported, not hidden
    assert steps == [(1, 2), (2, 2)]
    assert (tmp_path / "run" / "gan" / "astro.png").is_file()
    assert (tmp_path / "run" / "absolute-d" / "astro_mask.png").is_file()


def test_nothing_to_compare_is_refused(embedded, tmp_path):
    from desra.detect.pipeline import DetectConfig
    from desra.service.detection import resolve_semantics
    from desra.service.evaluation import compare_methods

    with pytest.raises(ConfigError, match="no method chosen"):
        compare_methods([tmp_path / "a.png"], [tmp_path / "a.json"], embedded, [], resolve_semantics("none"), DetectConfig(), tmp_path / "r")
    with pytest.raises(ConfigError, match="LR images and their labelled masks"):
        compare_methods([], [], embedded, ["desra"], resolve_semantics("none"), DetectConfig(), tmp_path / "r")
