"""`desra detect` and `desra eval` end to end on folders of real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desra.cli import main
from desra.core.imageio import read_image, read_mask, write_image, write_mask


@pytest.fixture(autouse=True)
def offline_hub(monkeypatch):
    """Make the hub unreachable whatever the network: the default B5 id must fall back, visibly."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")


@pytest.fixture
def sr_folders(tmp_path, photo, pair_maker):
    """mse/ and gan/ folders: rocket and coffee with painted texture, a size-mismatched pair; gt/ labels."""
    dirs = {name: tmp_path / name for name in ("mse", "gan", "gt")}
    for d in dirs.values():
        d.mkdir()
    cases = {
        "rocket": (photo("rocket"), [(30, 140, 240, 380), (40, 110, 450, 560)]),
        "coffee": (photo("coffee"), [(250, 360, 240, 330)]),
    }
    for name, (img, boxes) in cases.items():
        mse, gan, gt = pair_maker(img, boxes, blur=0)  # only the boxes differ
        write_image(dirs["mse"] / f"{name}.png", mse)
        write_image(dirs["gan"] / f"{name}.png", gan)
        write_mask(dirs["gt"] / f"{name}.png", gt)
    small = photo("chelsea")
    write_image(dirs["mse"] / "chelsea.png", small)
    write_image(dirs["gan"] / "chelsea.png", small[:-4])  # wrong size: fails alone
    write_mask(dirs["gt"] / "chelsea.png", np.zeros(small.shape[:2], bool))
    return dirs


def test_detect_folder_outputs_report_and_offline_warning(sr_folders, tmp_path, capsys):
    out = tmp_path / "det"
    code = main(["detect", "--mse", str(sr_folders["mse"]), "--gan", str(sr_folders["gan"]),
                 "--out", str(out), "--save-d", "--scale-min-area"])
    captured = capsys.readouterr()
    assert code == 1  # one image failed, the others went on
    assert "warning: semantic adjustment not used" in captured.err and "cannot be reached" in captured.err
    assert "failed: chelsea" in captured.err and "300" in captured.err
    for stem in ("rocket", "coffee"):
        gan = read_image(sr_folders["gan"] / f"{stem}.png").rgb
        mask = read_mask(out / f"{stem}_mask.png")
        assert mask.shape == gan.shape[:2] and mask.any()
        assert not mask[:5].any() and not mask[:, -5:].any()
        d = np.load(out / f"{stem}_D.npy")
        assert d.dtype == np.float32 and d.shape == (gan.shape[0] - 10, gan.shape[1] - 10)
        assert read_image(out / f"{stem}_overlay.png").rgb.shape == gan.shape
        assert not (out / f"{stem}_semantic.png").exists()
        per_image = json.loads((out / f"{stem}.json").read_text())
        assert per_image["semantics"]["used"] is False and "cannot be reached" in per_image["semantics"]["reason"]
        assert per_image["regions"] and per_image["parameters"]["scale_min_area"] is True
    report = json.loads((out / "report.json").read_text())
    assert report["semantics"]["used"] is False and report["semantics"]["reason"]
    assert [i["name"] for i in report["images"]] == ["coffee", "rocket"]
    assert report["failures"][0]["name"] == "chelsea"

    # Evaluate the detections against the painted boxes: PNG labels and the --json contract.
    code = main(["eval", "--pred", str(out), "--gt", str(sr_folders["gt"]), "--json"])
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert list(result) == ["iou", "precision", "recall", "images"]
    assert result["iou"] > 0.6 and result["precision"] == 1.0 and result["recall"] == 1.0
    assert sorted(i["name"] for i in result["images"]) == ["coffee", "rocket"]
    assert code == 1 and "chelsea" in captured.err  # a label without a detection is reported


def test_single_pair_named_after_gan_file_with_segmenter_folder(tmp_path, photo, pair_maker, tiny_segformer, capsys):
    mse, gan, _ = pair_maker(photo("rocket"), [(30, 140, 240, 380)])
    write_image(tmp_path / "a_mse.png", mse)
    write_image(tmp_path / "a_gan.png", gan)
    out = tmp_path / "det"
    code = main(["detect", "--mse", str(tmp_path / "a_mse.png"), "--gan", str(tmp_path / "a_gan.png"),
                 "--segmenter", str(tiny_segformer), "--segment-on", "gan", "--threshold", "0.6",
                 "--min-area", "500", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and "warning" not in captured.err
    per_image = json.loads((out / "a_gan.json").read_text())
    assert per_image["semantics"] == {"used": True, "reason": None, "segmenter": str(tiny_segformer),
                                      "segment_on": "gan", "class_weights": per_image["semantics"]["class_weights"]}
    assert per_image["parameters"]["threshold"] == 0.6 and per_image["parameters"]["min_area"] == 500
    legend = read_image(out / "a_gan_semantic.png").rgb
    assert legend.shape[0] == gan.shape[0] and legend.shape[1] > gan.shape[1]  # map plus legend panel
    assert (out / "a_gan_mask.png").exists() and not (out / "a_gan_D.npy").exists()


def test_lr_with_two_model_files(tmp_path, photo, capsys):
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": 2, "act_type": "prelu"}
    paths = []
    for seed, role in ((0, "mse"), (1, "gan")):
        torch.manual_seed(seed)
        net = get_arch("srvgg").build(params)
        paths.append(save_model(tmp_path / f"{role}.safetensors", net, describe("srvgg", params, name=role, role=role)))
    write_image(tmp_path / "lr.png", photo("coffee")[:48, :64])
    out = tmp_path / "det"
    code = main(["detect", "--lr", str(tmp_path / "lr.png"), "--mse-model", str(paths[0]), "--gan-model",
                 str(paths[1]), "--segmenter", "none", "--save-sr", "--out", str(out), "--min-area", "0"])
    captured = capsys.readouterr()
    assert code == 0 and "turned off" in captured.err
    assert read_mask(out / "lr_mask.png").shape == (96, 128)
    assert read_image(out / "lr_gan.png").rgb.shape == (96, 128, 3)
    report = json.loads((out / "lr.json").read_text())
    assert report["models"] == {"mse": "mse", "gan": "gan", "scale": 2}

    params4 = {**params, "upscale": 4}
    net4 = get_arch("srvgg").build(params4)
    x4 = save_model(tmp_path / "x4.safetensors", net4, describe("srvgg", params4, name="x4", role="gan"))
    code = main(["detect", "--lr", str(tmp_path / "lr.png"), "--mse-model", str(paths[0]), "--gan-model",
                 str(x4), "--segmenter", "none", "--out", str(tmp_path / "bad")])
    assert code == 2 and "x2" in capsys.readouterr().err


def test_eval_labelme_and_removal_rates(tmp_path, capsys):
    gt_dir, before, after, pred = (tmp_path / n for n in ("gt", "before", "after", "pred"))
    for d in (gt_dir, before, after, pred):
        d.mkdir()
    labels = np.zeros((60, 80), bool)
    labels[10:30, 10:30] = True
    labels[40:50, 50:70] = True
    shapes = [{"label": "artifact", "points": [[10, 10], [29, 29]], "shape_type": "rectangle", "flags": {},
               "group_id": None, "description": "", "mask": None},
              {"label": "artifact", "points": [[50, 40], [69, 49]], "shape_type": "rectangle", "flags": {},
               "group_id": None, "description": "", "mask": None}]
    (gt_dir / "img.json").write_text(json.dumps({"version": "6.3.1", "flags": {}, "shapes": shapes,
                                                 "imagePath": "img.png", "imageData": None,
                                                 "imageHeight": 60, "imageWidth": 80}))
    write_image(gt_dir / "img.png", np.full((60, 80, 3), 0.9, np.float32))  # the photo labelme keeps beside it
    write_image(gt_dir / "unlabelled.png", np.full((60, 80, 3), 0.9, np.float32))  # not a mask either
    write_mask(before / "img_mask.png", labels)
    fixed = np.zeros_like(labels)
    fixed[15:20, 15:20] = True  # first artifact partly remains, second removed, nothing added
    write_mask(after / "img_mask.png", fixed)
    write_mask(pred / "img_mask.png", labels)
    assert main(["eval", "--pred", str(pred), "--gt", str(gt_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["iou"] == 1.0
    assert main(["eval", "--before", str(before), "--after", str(after), "--gt", str(gt_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["removal_rate"] == 0.5 and result["addition_rate"] == 0.0
    assert result["iou_before"] == 1.0 and result["iou_after"] == pytest.approx(25 / 600)
    assert main(["eval", "--before", str(before), "--after", str(after), "--gt", str(gt_dir)]) == 0
    assert "removal rate        0.5000" in capsys.readouterr().out
    assert main(["eval", "--gt", str(gt_dir)]) == 2
