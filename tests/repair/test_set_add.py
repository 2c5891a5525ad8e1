"""`desra set add --segmenter`: the item's mask is detected with the chosen segmenter (Eq. 8-9, not A_k = 1),
and its provenance records what ran."""

from __future__ import annotations

import numpy as np

from desra.cli import main
from desra.core.imageio import read_image, write_image, write_mask
from desra.detect import semantic
from desra.detect.pipeline import DetectConfig, detect_lr
from desra.models.pairs import load_pair
from desra.repair.curated import open_set


def _added(tmp_path, lr_file, name: str, *segmenter: str):
    """The one item `desra set add` stores for ``lr_file`` in a new set ``name`` (demo pair, 50 px minimum area)."""
    root = tmp_path / name
    assert main(["set", "create", str(root)]) == 0
    assert main(["set", "add", str(root), "--lr", str(lr_file), "--pair", "desra-demo-x4", "--min-area", "50", *segmenter]) == 0
    (item,) = open_set(root).items()
    return open_set(root), item


def test_set_add_detects_with_the_chosen_segmenter_and_records_it(tmp_path, photo, tiny_segformer, capsys):
    # A 32x48 crop of the astronaut photo: with A_k = 1 most of it is flagged, while the tiny SegFormer
    # labels it with classes whose A_k < 1 (0.7 - 0.95), which lift D above the threshold.
    lr_file = tmp_path / "astronaut.png"
    write_image(lr_file, photo("astronaut")[100:132, 100:148])
    with_seg, item = _added(tmp_path, lr_file, "with-segmenter", "--segmenter", str(tiny_segformer))
    _, plain = _added(tmp_path, lr_file, "without", "--segmenter", "none")

    assert item.mask_source == "detected" and plain.mask_source == "detected"
    made = item.provenance
    assert made["segmenter"] == str(tiny_segformer) and made["semantics_used"] is True and made["semantics_note"] is None
    assert made["class_weights"] == str(semantic.default_class_weights_path())
    assert made["pair"] == "desra-demo-x4" and made["detect_config"]["min_area"] == 50
    assert made["lr_file"] == str(lr_file.resolve())
    off = plain.provenance
    assert off["segmenter"] == "none" and off["class_weights"] == "none" and off["semantics_used"] is False
    assert "--segmenter none" in off["semantics_note"]
    assert "semantic adjustment not used" in capsys.readouterr().err  # the A_k = 1 run says so

    # The stored masks are the library's detections of the stored LR image with and without the segmenter,
    # and the segmenter changed what was found.
    lr = read_image(item.path("lr")).rgb
    mse_model, gan_model = load_pair("desra-demo-x4")
    config = DetectConfig(min_area=50)
    seen, _, _ = detect_lr(lr, mse_model, gan_model, config, segmenter=semantic.load_segmenter(str(tiny_segformer)))
    blind, _, _ = detect_lr(lr, mse_model, gan_model, config)
    weights = semantic.default_class_weights().weights
    assert (weights[np.unique(seen.labels)] < 1).any()
    np.testing.assert_array_equal(with_seg.load(item.id).mask, seen.mask)
    assert item.mask_fraction < plain.mask_fraction
    assert plain.mask_fraction == float(blind.mask.mean()) > 0.3


def test_set_add_with_masks_loads_no_segmenter_and_says_the_user_made_the_mask(tmp_path, photo, capsys):
    lr_file = tmp_path / "coffee.png"
    write_image(lr_file, photo("coffee")[100:132, 100:148])
    mask = np.zeros((128, 192), bool)
    mask[10:60, 20:90] = True
    mask_file = tmp_path / "coffee_mask.png"
    write_mask(mask_file, mask)
    # An unloadable segmenter would warn: with a mask given, detection does not run, so nothing is loaded.
    curated, item = _added(tmp_path, lr_file, "masked", "--mask", str(mask_file), "--segmenter", str(tmp_path / "no-such"))
    assert "semantic adjustment" not in capsys.readouterr().err
    assert item.mask_source == "file" and item.provenance["by"] == "user"
    assert item.provenance["mask_file"] == str(mask_file.resolve()) and item.provenance["pair"] == "desra-demo-x4"
    np.testing.assert_array_equal(curated.load(item.id).mask, mask)
