"""Semantic adjustment (DeSRA Eq. 8-9): ADE20K order, class weights, SegFormer loading, offline fallback."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from desra.core.errors import ConfigError, PairMismatchError, SegmenterError
from desra.detect import semantic


def test_label_indices_follow_ade20k_order_of_the_authors_table():
    rows = list(csv.DictReader(open(semantic.default_class_weights_path()), delimiter="\t"))
    assert len(semantic.ADE20K_CLASSES) == 150 == len(rows)
    for row in rows:
        k = int(row["index"])
        assert semantic.normalise_class_name(row["class"]) == semantic.normalise_class_name(semantic.ADE20K_CLASSES[k])
        assert float(row["adjustment_weight_A"]) == pytest.approx((20 - int(row["bin"])) / 20)
    w = semantic.default_class_weights()
    names = semantic.ADE20K_CLASSES
    assert w.weights[names.index("sky")] == 1.0
    assert w.weights[names.index("building")] == pytest.approx(0.80)
    assert w.weights[names.index("tree")] == pytest.approx(0.75)


def test_adjust_by_hand():
    w = semantic.default_class_weights()
    d = np.array([[0.6, 0.6], [0.9, 0.3]], np.float32)
    labels = np.array([[2, 4], [4, 2]])  # sky (A = 1), tree (A = 0.75)
    np.testing.assert_allclose(semantic.adjust(d, labels, w), [[0.6, 0.8], [1.0, 0.3]], atol=1e-6)
    with pytest.raises(PairMismatchError, match=r"D map \(2, 2\) and label map \(2, 1\)"):
        semantic.adjust(d, labels[:, :1], w)


def test_class_weight_table_errors(tmp_path):
    good = semantic.default_class_weights_path().read_text().splitlines()
    swapped = tmp_path / "swapped.tsv"  # wall and building exchanged
    swapped.write_text("\n".join([good[0]] + [r for r in good[1:] if not r.startswith(("0\t", "1\t"))]
                                 + ["0\tbuilding\t4\t0.80", "1\twall\t1\t0.95"]))
    with pytest.raises(ConfigError, match="ADE20K index 0"):
        semantic.load_class_weights(swapped)
    short = tmp_path / "short.tsv"
    short.write_text("\n".join(good[:10]))
    with pytest.raises(ConfigError, match="no weight"):
        semantic.load_class_weights(short)
    with pytest.raises(ConfigError, match="cannot read class-weight table"):
        semantic.load_class_weights(tmp_path / "missing.tsv")


def test_hub_id_offline_fails_fast_with_a_useful_message(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(SegmenterError, match="cannot be reached"):
        semantic.load_segmenter("desra-test/segformer-not-cached")
    seg, note = semantic.resolve_segmenter("desra-test/segformer-not-cached")
    assert seg is None and "without semantic adjustment" in note
    for off in ("none", "None", " NONE ", None):
        seg, note = semantic.resolve_segmenter(off)
        assert seg is None and "turned off" in note and "A_k = 1" in note
    with pytest.raises(SegmenterError, match="does not exist"):
        semantic.load_segmenter("./no/such/folder")


def test_tiny_segformer_loads_from_folder_and_labels_every_pixel(tiny_segformer, photo):
    import torch

    seg = semantic.load_segmenter(str(tiny_segformer))
    assert seg.name == str(tiny_segformer) and seg.short_side == 512
    img = photo("chelsea")[:97, :131]  # odd size: resizing must land exactly on it
    labels = semantic.segment(seg, img)
    assert labels.shape == (97, 131) and labels.dtype == np.int32
    assert 0 <= labels.min() and labels.max() < 150
    # Same result as SegFormer's own preprocessing, built here without desra's helper: the short
    # side resized to 512 with the aspect kept, both sides rounded to multiples of 32
    # (97x131 -> 512x691.4 -> 512x704), then transformers' ImageNet normalisation; and all 150
    # logit planes upsampled at once (the grouped running argmax is exact).
    import cv2
    from transformers import SegformerImageProcessor

    resized = cv2.resize(img, (704, 512), interpolation=cv2.INTER_LINEAR)
    processor = SegformerImageProcessor(do_resize=False, do_rescale=False)
    x = torch.from_numpy(processor(images=resized, return_tensors="np", input_data_format="channels_last")["pixel_values"])
    with torch.no_grad():
        logits = seg.model(pixel_values=x).logits
        full = torch.nn.functional.interpolate(logits, size=(97, 131), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(labels, full[0].argmax(0).numpy())


def test_grouped_upsampling_matches(tiny_segformer, photo, monkeypatch):
    seg = semantic.load_segmenter(str(tiny_segformer))
    img = photo("astronaut")[:120, :90]
    whole = semantic.segment(seg, img)
    monkeypatch.setattr(semantic, "UPSAMPLE_BUDGET", 120 * 90 * 7)  # 7 planes at a time
    steps = []
    grouped = semantic.segment(seg, img, progress=lambda done, total: steps.append(done))
    np.testing.assert_array_equal(grouped, whole)
    assert len(steps) == 22 and steps[-1] == 150


def test_non_ade20k_segformer_is_refused(tmp_path, segformer_saver):
    generic = segformer_saver(tmp_path / "generic", {i: f"LABEL_{i}" for i in range(150)})
    with pytest.raises(SegmenterError, match="not the ADE20K classes in order"):
        semantic.load_segmenter(str(generic))
    few = segformer_saver(tmp_path / "few", {0: "background", 1: "artifact"})
    with pytest.raises(SegmenterError, match="predicts 2 classes"):
        semantic.load_segmenter(str(few))
    seg, note = semantic.resolve_segmenter(str(few))
    assert seg is None and "predicts 2 classes" in note
