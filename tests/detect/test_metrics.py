"""Metrics (DeSRA Sec. 4.1, Table 3) against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from desra.core.errors import PairMismatchError
from desra.detect.metrics import (
    crop_border,
    has_addition,
    iou,
    masked_psnr,
    region_precision_counts,
    region_recall_counts,
    removal_addition,
    removed_counts,
    repair_selectivity,
    score_image,
    summarize,
)


def _case():
    """GT: B1 4x4 (16 px) and B2 3x3 (9 px). Detection: A1 4x5 over B1 (+4 px), A2 2x2 elsewhere."""
    gt = np.zeros((20, 20), bool)
    gt[2:6, 2:6] = True  # B1
    gt[12:15, 12:15] = True  # B2
    pred = np.zeros((20, 20), bool)
    pred[2:6, 2:7] = True  # A1: 20 px, 16 of them on B1
    pred[16:18, 2:4] = True  # A2: 4 px, none on labels
    return pred, gt


def test_hand_worked_iou_precision_recall():
    pred, gt = _case()
    # |A ∩ B| = 16, |A ∪ B| = 20 + 4 + 9 = 33.
    assert iou(pred, gt, border=0) == pytest.approx(16 / 33)
    # A1: 16/20 = 0.8 >= 0.5 correct; A2: 0/4 wrong -> precision 1/2.
    assert region_precision_counts(pred, gt, border=0) == (1, 2)
    # B1: 16/16 found; B2: 0/9 missed -> recall 1/2.
    assert region_recall_counts(pred, gt, border=0) == (1, 2)
    s = score_image(pred, gt, border=0, name="x")
    assert (s.precision, s.recall, s.n_detected, s.n_labelled) == (0.5, 0.5, 2, 2)
    # At p = 0.85 A1 (0.8) no longer counts; B1 (1.0) still does.
    assert region_precision_counts(pred, gt, p=0.85, border=0) == (0, 2)
    assert region_recall_counts(pred, gt, p=0.85, border=0) == (1, 2)


def test_overlap_of_exactly_p_counts_like_the_authors_script():
    gt = np.zeros((10, 10), bool)
    gt[0:2, 0:4] = True  # 8 px
    pred = np.zeros((10, 10), bool)
    pred[0:2, 2:6] = True  # 8 px, 4 on the label: exactly 0.5 both ways
    assert region_precision_counts(pred, gt, border=0) == (1, 1)
    assert region_recall_counts(pred, gt, border=0) == (1, 1)


def test_regions_are_8_connected():
    pred = np.zeros((10, 10), bool)
    pred[2, 2] = pred[3, 3] = pred[4, 4] = True  # one diagonal region of 3 px
    gt = np.zeros((10, 10), bool)
    gt[2, 2] = gt[3, 3] = True
    assert region_precision_counts(pred, gt, border=0) == (1, 1)  # 2/3 >= 0.5
    assert region_recall_counts(pred, gt, border=0) == (1, 1)


def test_border_is_cropped_before_scoring():
    gt = np.zeros((30, 30), bool)
    gt[0:5, :] = True  # only inside the 5 px border the D map cannot see
    gt[10:20, 10:20] = True
    pred = np.zeros((30, 30), bool)
    pred[10:20, 10:20] = True
    assert crop_border(gt).shape == (20, 20)
    assert iou(pred, gt) == 1.0
    assert region_recall_counts(pred, gt) == (1, 1)
    assert iou(pred, gt, border=0) == pytest.approx(100 / 250)


def test_empty_masks_and_mismatched_sizes():
    empty = np.zeros((12, 12), bool)
    assert iou(empty, empty) == 1.0
    s = score_image(empty, empty)
    assert s.precision is None and s.recall is None
    with pytest.raises(PairMismatchError):
        iou(empty, np.zeros((12, 13), bool))


def test_pooled_summary():
    pred, gt = _case()
    a = score_image(pred, gt, border=0, name="a")  # IoU 16/33, 1/2 regions, 1/2 labels
    b = score_image(gt, gt, border=0, name="b")  # IoU 1, 2/2, 2/2
    summary = summarize([a, b])
    assert summary.iou == pytest.approx((16 / 33 + 1) / 2)
    assert summary.precision == pytest.approx(3 / 4)
    assert summary.recall == pytest.approx(3 / 4)
    assert list(summary.to_json()) == ["iou", "precision", "recall", "images"]


def test_removal_and_addition_by_hand():
    pred, gt = _case()
    after = np.zeros_like(gt)
    after[3:5, 3:5] = True  # still touches B1; B2 fully gone
    assert removed_counts(after, gt, border=0) == (1, 2)
    assert not has_addition(after, gt, border=0)  # inside the labels: A ∪ B = B
    after2 = after.copy()
    after2[18, 18] = True  # one new pixel outside
    assert has_addition(after2, gt, border=0)
    result = removal_addition([after, after2], [gt, gt], [pred, pred], ["i1", "i2"], border=0)
    # 2 of 4 labelled artifacts removed; 1 of 2 images has an addition.
    assert (result.removal_rate, result.addition_rate) == (0.5, 0.5)
    assert result.iou_before == pytest.approx(16 / 33)
    assert result.iou_after == pytest.approx((4 / 25 + 4 / 26) / 2)


def test_masked_psnr_and_repair_selectivity_by_hand():
    mse = np.zeros((4, 4, 3), np.float32)
    gan = np.full((4, 4, 3), 0.1, np.float32)  # differs from MSE by 0.1 everywhere: 20 dB
    mask = np.zeros((4, 4), bool)
    mask[:, :2] = True
    # A perfectly selective repair: the MSE output inside the mask, the GAN output outside.
    repaired = np.where(mask[..., None], mse, gan)
    assert masked_psnr(gan, mse, mask) == pytest.approx(20.0)
    assert masked_psnr(gan, gan, mask) == 100.0  # equal images: capped, still valid JSON
    assert masked_psnr(gan, mse, np.zeros((4, 4), bool)) is None
    sel = repair_selectivity(repaired, mse, gan, mask)
    assert sel["repaired_to_mse_inside"] == 100.0 and sel["repaired_to_gan_inside"] == pytest.approx(20.0)
    assert sel["repaired_to_gan_outside"] == 100.0 and sel["repaired_to_mse_outside"] == pytest.approx(20.0)
    assert sel["gan_to_mse_inside"] == pytest.approx(20.0) == sel["gan_to_mse_outside"]
    with pytest.raises(PairMismatchError):
        masked_psnr(gan[:2], mse, mask)
