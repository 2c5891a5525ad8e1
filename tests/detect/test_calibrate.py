"""Calibration of A_k = P85(D_k) (DeSRA Eq. 8): hand-made histograms and a run through the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from desra.cli import main
from desra.detect import semantic
from desra.detect.calibrate import (
    accumulate,
    class_percentile,
    empty_histogram,
    weight_bin,
    weights_from_histogram,
    write_class_weights,
)


def test_percentile_and_bins_by_hand(tmp_path):
    # Class 2 (sky): D = 0.001, 0.002, ..., 1.000 -> P85 = 0.850 -> bin 3 -> A = 0.85.
    # Class 4 (tree): 5 pixels only -> keeps the default 0.75 and is flagged.
    d = np.concatenate([np.arange(1, 1001) / 1000 - 1e-4, np.full(5, 0.2)]).astype(np.float32)[None]
    labels = np.concatenate([np.full(1000, 2), np.full(5, 4)])[None]
    hist = accumulate(empty_histogram(), d, labels)
    p = class_percentile(hist)
    assert p[2] == pytest.approx(0.85) and np.isnan(p[0])
    assert [weight_bin(a) for a in (1.0, 0.85, 0.74, 0.01)] == [0, 3, 5, 19]
    default = semantic.default_class_weights()
    cal = weights_from_histogram(hist, default, min_pixels=100, images=1)
    assert cal.weights.weights[2] == pytest.approx(0.85) and cal.weights.bins[2] == 3
    assert cal.weights.weights[4] == pytest.approx(0.75) and cal.weights.flagged[4] and not cal.weights.flagged[2]
    back = semantic.load_class_weights(write_class_weights(tmp_path / "w.tsv", cal))
    np.testing.assert_allclose(back.weights, cal.weights.weights, atol=1e-6)
    assert back.flagged[4] and not back.flagged[2]


@pytest.mark.parametrize("degrade", ["bicubic", "realesrgan"])
def test_calibrate_cli_writes_a_table_detect_can_use(tmp_path, photo, tiny_segformer, degrade, capsys):
    import torch

    from desra.core.imageio import write_image
    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 2, "act_type": "prelu"}
    models = []
    for seed, role in ((0, "mse"), (1, "gan")):
        torch.manual_seed(seed)
        net = get_arch("srvgg").build(params)
        models.append(str(save_model(tmp_path / f"{role}.safetensors", net, describe("srvgg", params, name=role, role=role))))
    hr = tmp_path / "hr"
    hr.mkdir()
    write_image(hr / "a.png", photo("astronaut")[:96, :96])
    write_image(hr / "b.png", photo("coffee")[:96, :128])
    out = tmp_path / "weights.tsv"
    code = main(["calibrate", "--mse-model", models[0], "--gan-model", models[1], "--images", str(hr),
                 "--degrade", degrade, "--segmenter", str(tiny_segformer), "--min-pixels", "200", "--out", str(out)])
    assert code == 0 and "wrote" in capsys.readouterr().out
    table = semantic.load_class_weights(out)
    calibrated = [k for k in range(150) if not table.flagged[k]]
    # Worked out here from the same images: degrade, both models, the float64 D map, SegFormer on
    # the MSE output; a class is calibrated exactly when it covers >= 200 valid pixels, and its A is
    # the bin of its exact 85th percentile of D (the CLI bins a histogram: one bin of slack).
    from desra.core.imageio import read_image
    from desra.detect.calibrate import degrade_image, weight_bin
    from desra.detect.dmap import d_map_reference
    from desra.models.checkpoint import load_model
    from desra.models.inference import upscale

    seg = semantic.load_segmenter(str(tiny_segformer))
    mse_model, gan_model = load_model(models[0]), load_model(models[1])
    d_by_class: dict[int, list] = {}
    for i, name in enumerate(("a.png", "b.png")):
        lr = degrade_image(read_image(hr / name).rgb, 2, degrade, i)
        mse_sr, gan_sr = upscale(mse_model, lr), upscale(gan_model, lr)
        d = d_map_reference(mse_sr, gan_sr)
        labels = semantic.segment(seg, mse_sr)[5:-5, 5:-5]
        for k in np.unique(labels):
            d_by_class.setdefault(int(k), []).append(d[labels == k])
    expected = sorted(k for k, parts in d_by_class.items() if sum(p.size for p in parts) >= 200)
    assert calibrated == expected and 0 < len(expected) < 150
    for k in expected:
        p85 = np.percentile(np.concatenate(d_by_class[k]), 85)
        assert abs(table.weights[k] - (20 - weight_bin(p85)) / 20) <= 0.05 + 1e-6, semantic.ADE20K_CLASSES[k]
    default = semantic.default_class_weights()
    assert all(table.weights[k] == default.weights[k] for k in range(150) if k not in expected)
    lines = out.read_text().splitlines()
    assert lines[0].split("\t")[:4] == ["index", "class", "bin", "adjustment_weight_A"]

    mse = photo("rocket")
    write_image(tmp_path / "m.png", mse)
    write_image(tmp_path / "g.png", mse)
    code = main(["detect", "--mse", str(tmp_path / "m.png"), "--gan", str(tmp_path / "g.png"),
                 "--segmenter", str(tiny_segformer), "--class-weights", str(out), "--out", str(tmp_path / "det")])
    assert code == 0
    import json

    assert json.loads((tmp_path / "det" / "g.json").read_text())["semantics"]["class_weights"] == str(out)


def test_calibrate_without_segmenter_explains(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    (tmp_path / "hr").mkdir()
    code = main(["calibrate", "--mse-model", "x.safetensors", "--gan-model", "y.safetensors",
                 "--images", str(tmp_path / "hr"), "--out", str(tmp_path / "w.tsv")])
    assert code == 2 and "cannot be reached" in capsys.readouterr().err
