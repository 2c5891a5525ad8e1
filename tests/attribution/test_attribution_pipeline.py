"""The attribution experiment end to end on a toy zoo of four tiny SRVGG checkpoints and real photos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from desra.attribution.classifier import ClassifierConfig, load_classifier
from desra.attribution.dataset import ZooMember, load_split, render_dataset
from desra.attribution.pipeline import ExperimentConfig, attribute_image, run_experiment
from desra.attribution.reports import r_matrix, triplet_accuracy, vote_groups
from desra.cli import main

TRAIN = ("skimage:data/astronaut.png", "skimage:data/coffee.png")
TEST = ("skimage:data/chelsea.png",)


def _member(tmp_path, name, seed, scale, loss):
    import torch

    from desra.models.archs import get_arch
    from desra.models.checkpoint import describe, save_model

    params = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_conv": 2, "upscale": scale, "act_type": "prelu"}
    torch.manual_seed(seed)
    path = save_model(tmp_path / f"{name}.safetensors", get_arch("srvgg").build(params), describe("srvgg", params, name=name))
    return ZooMember(name=name, checkpoint=str(path), architecture="srvgg", scale=scale, loss=loss, seed=seed, config="toy")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("attribution")
    members = [
        _member(root, "toy-x2-l1-s1", 1, 2, "l1"),
        _member(root, "toy-x2-l1-s2", 2, 2, "l1"),
        _member(root, "toy-x4-gan-s1", 3, 4, "gan"),
        _member(root, "toy-x4-gan-s2", 4, 4, "gan"),
    ]
    render_dataset(members, root / "dataset", train_photos=TRAIN, test_photos=TEST)
    config = ExperimentConfig(
        prnu_crop=64,
        test_tiles=12,
        vote=4,
        classifier=ClassifierConfig(crop=32, dims=(8, 16, 32), depths=(1, 1, 1), batch=16, iterations=60),
    )
    result = run_experiment(root / "dataset", root / "experiment", config)
    return root, members, result


def test_dataset_holds_every_model_on_every_photo(experiment):
    root, members, _ = experiment
    train, test = load_split(root / "dataset", "train"), load_split(root / "dataset", "test")
    assert len(train.images) == 4 * len(TRAIN) and len(test.images) == 4 * len(TEST)
    # x2 and x4 models see the same content at the photo's size (chelsea is 451x300, cropped to a multiple of the scale)
    assert {im.shape for im in test.images} == {(300, 450, 3), (300, 448, 3)}
    assert test.members == tuple(members)


def test_report_tables_plots_and_weights(experiment):
    root, members, result = experiment
    out = root / "experiment"
    for name in ("report.json", "report.md", "attribution-r-matrix.png", "attribution-tsne.png", "classifier.safetensors", "prnu.npz"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "report.json").read_text())
    assert set(saved["cnn"]["crop"]) >= {"all", "x2", "x4", "l1", "gan", "srvgg"}
    assert set(saved["prnu"]["triplets_crop"]) == {"srvgg-x2-l1", "srvgg-x4-gan"}
    # four independently initialised random networks leave strong fingerprints: PRNU separates them
    assert saved["prnu"]["crop"]["all"]["accuracy"] >= 0.9
    r = np.array(saved["r_matrix"])
    assert r.shape == (4, 4) and np.allclose(np.diag(r), 1.0)
    assert "GAN more distinctive than L1" in (out / "report.md").read_text()
    assert load_classifier(out / "classifier.safetensors").labels.models == tuple(m.name for m in members)


def test_attribute_image_ranks_every_model(experiment, photo):
    root, members, _ = experiment
    from desra.core.imageio import read_image

    image = read_image(root / "dataset" / "toy-x4-gan-s1" / "chelsea.png").rgb
    result = attribute_image(image, root / "experiment")
    assert sorted(name for name, _ in result.ranking) == sorted(m.name for m in members)
    assert sum(p for _, p in result.ranking) == pytest.approx(1.0, abs=1e-4)
    assert set(result.scale) == {"x2", "x4"} and set(result.loss) == {"gan", "l1"}
    assert result.prnu_ranking[0][0] == "toy-x4-gan-s1"


def test_predict_cli_json(experiment, capsys):
    root, _, _ = experiment
    code = main(["attribute", "predict", str(root / "dataset" / "toy-x2-l1-s2" / "chelsea.png"), "--experiment", str(root / "experiment"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["ranking"]) == 4 and out["crops"] > 1


def test_classifier_learns_two_models_from_their_residuals(tmp_path):
    # The from-scratch CNN once stayed at chance; on two models' SR outputs of the same photos it must
    # separate held-out crops (a photo it never saw), which only the upsampler's fingerprint allows.
    from desra.attribution.classifier import (
        LabelSpace,
        build_classifier,
        predict,
        train_classifier,
    )
    from desra.attribution.pipeline import grid_tiles

    members = [_member(tmp_path, "a", 1, 4, "gan"), _member(tmp_path, "b", 2, 4, "gan")]
    render_dataset(members, tmp_path / "dataset", train_photos=TRAIN, test_photos=TEST)
    train, test = load_split(tmp_path / "dataset", "train"), load_split(tmp_path / "dataset", "test")
    classifier = build_classifier(LabelSpace(("a", "b"), ("x4",), ("gan",)), ClassifierConfig(crop=32, dims=(8, 16, 32), depths=(1, 1, 1), batch=16, iterations=100))
    train_classifier(classifier, train.images, np.array([[k, 0, 0] for k in train.member_index]))
    tiles = [grid_tiles(image, 32, 40) for image in test.images]
    truth = np.concatenate([[k] * len(t) for k, t in zip(test.member_index, tiles)])
    accuracy = np.mean(predict(classifier, np.concatenate(tiles)).model.argmax(axis=1) == truth)
    assert accuracy >= 0.95


def test_highpass_input_removes_flat_content():
    import torch

    from desra.attribution.classifier import highpass_residual

    flat = torch.full((1, 3, 16, 16), 0.7)
    ramp = torch.linspace(0, 1, 16).repeat(1, 3, 16, 1)
    assert highpass_residual(flat, 5).abs().max() < 1e-5
    # a linear ramp is reproduced by the box blur away from the border, so only the border survives
    assert highpass_residual(ramp, 5)[..., 2:-2].abs().max() < 1e-5
    assert highpass_residual(flat, 0).abs().max() < 1e-6


def test_r_matrix_on_hand_made_clusters():
    # two tight clusters 10 apart: intra ~0, inter 10 -> R ~0; identical clusters -> R = 1
    a = np.array([[0.0, 0.0], [0.0, 0.1]])
    b = a + [10.0, 0.0]
    r = r_matrix(np.concatenate([a, b]), np.array([0, 0, 1, 1]), 2)
    assert r[0, 1] == pytest.approx(0.1 / 10.0, rel=0.01)
    assert r[0, 0] == pytest.approx(1.0)


def test_triplet_accuracy_restricts_to_seed_siblings():
    members = [
        ZooMember("a-s1", "", "srvgg", 4, "gan", 1, ""),
        ZooMember("a-s2", "", "srvgg", 4, "gan", 2, ""),
        ZooMember("b-s1", "", "srvgg", 2, "l1", 1, ""),
    ]
    # the top score is the non-sibling b-s1, but among siblings a-s1 wins
    scores = np.array([[0.3, 0.1, 0.6]])
    table = triplet_accuracy(scores, np.array([0]), members)
    assert table == {"srvgg-x4-gan": {"accuracy": 1.0, "n": 1, "chance": 0.5}}


def test_vote_groups_chunks_by_key():
    scores = np.arange(10, dtype=float).reshape(5, 2)
    voted, keys = vote_groups(scores, ["a", "a", "a", "b", "b"], size=2)
    assert keys == ["a", "a", "b"]
    np.testing.assert_allclose(voted[0], [1.0, 2.0])


def _finding_input(acc_gan, acc_l1, r_gan, r_l1):
    """The parts of an experiment result distinctiveness_finding reads, with x4 / x2 tied."""
    crop = {"gan": {"accuracy": acc_gan, "n": 8}, "l1": {"accuracy": acc_l1, "n": 8},
            "x4": {"accuracy": 0.5, "n": 8}, "x2": {"accuracy": 0.5, "n": 8}}
    return {"cnn": {"crop": crop}, "mean_r": {"gan": r_gan, "l1": r_l1, "x4": 0.5, "x2": 0.5}}


@pytest.mark.parametrize(
    ("acc_gan", "acc_l1", "r_gan", "r_l1", "holds"),
    [
        (0.9, 0.6, 0.2, 0.7, True),  # more accurate and tighter: the paper's finding
        (0.6, 0.9, 0.2, 0.7, False),  # tighter but less accurate
        (0.9, 0.6, 0.7, 0.2, False),  # more accurate but less distinct
        (0.9, 0.9, 0.2, 0.7, False),  # a tie in accuracy is no evidence
        (0.9, 0.6, float("nan"), 0.7, None),  # one GAN model: R within the group is not defined
    ],
)
def test_distinctiveness_finding_by_hand(acc_gan, acc_l1, r_gan, r_l1, holds):
    from desra.attribution.pipeline import distinctiveness_finding

    finding = distinctiveness_finding(_finding_input(acc_gan, acc_l1, r_gan, r_l1))
    assert finding["gan_vs_l1"]["holds"] is holds
    assert finding["gan_vs_l1"]["accuracy"] == [acc_gan, acc_l1]
    assert finding["x4_vs_x2"]["holds"] is False  # tied
    missing = _finding_input(acc_gan, acc_l1, r_gan, r_l1)
    del missing["cnn"]["crop"]["l1"]
    assert distinctiveness_finding(missing)["gan_vs_l1"]["holds"] is None


def test_report_prints_the_verdict_it_computed(experiment):
    # The report's "GAN more distinctive" line states the verdict of the finding, whichever it is.
    from desra.attribution.pipeline import distinctiveness_finding, report_markdown

    _, _, result = experiment
    verdicts = {True: "holds", False: "does not hold", None: "not measurable"}
    for acc_gan, acc_l1, r_gan, r_l1, holds in [(0.9, 0.6, 0.2, 0.7, True), (0.6, 0.9, 0.2, 0.7, False),
                                                (0.9, 0.6, float("nan"), 0.7, None)]:
        changed = json.loads(json.dumps(result))
        changed["cnn"]["crop"].update(_finding_input(acc_gan, acc_l1, r_gan, r_l1)["cnn"]["crop"])
        changed["mean_r"].update({"gan": r_gan, "l1": r_l1})
        changed["finding"] = distinctiveness_finding(changed)
        line = next(x for x in report_markdown(changed).splitlines() if x.startswith("- GAN more distinctive than L1"))
        assert line.startswith(f"- GAN more distinctive than L1: {verdicts[holds]} ("), line
        assert f"CNN crop accuracy {acc_gan:.3f} vs {acc_l1:.3f}" in line
    # A zoo without L1 models: not measurable, and the report still renders.
    changed = json.loads(json.dumps(result))
    del changed["cnn"]["crop"]["l1"]
    changed["finding"] = distinctiveness_finding(changed)
    assert "- GAN more distinctive than L1: not measurable (CNN crop accuracy" in report_markdown(changed)
    # And the report written by the experiment says what its report.json found.
    out = experiment[0] / "experiment"
    holds = json.loads((out / "report.json").read_text())["finding"]["gan_vs_l1"]["holds"]
    assert f"- GAN more distinctive than L1: {verdicts[holds]} (" in (out / "report.md").read_text()


def test_a_published_model_joins_the_classes_with_its_own_facts(tmp_path):
    # Vonderfecht & Liu attribute published models too: a registered model becomes one more class.
    from desra.attribution.dataset import PUBLISHED, published_member
    from desra.attribution.reports import accuracy_by_group

    member = published_member("desra-demo-x4-gan")
    assert (member.name, member.architecture, member.scale, member.loss) == ("desra-demo-x4-gan", "srvgg", 4, "gan")
    assert member.published and member.config == PUBLISHED + "desra-demo-x4-gan" and member.checkpoint.endswith(".safetensors")
    zoo = _member(tmp_path, "toy-x4-gan-s1", 3, 4, "gan")
    assert member.triplet != zoo.triplet  # not a seed sibling of any zoo member
    render_dataset([zoo, member], tmp_path / "dataset", train_photos=TRAIN, test_photos=TEST)
    test = load_split(tmp_path / "dataset", "test")
    assert test.members == (zoo, member) and test.images[1].shape == (300, 448, 3)
    scores = np.eye(2)[[0, 0]]  # both test images attributed to the zoo model
    table = accuracy_by_group(scores, test.member_index, test.members)
    assert table["published"] == {"accuracy": 0.0, "n": 1} and table["all"]["accuracy"] == 0.5
    from desra.core.errors import DatasetError

    with pytest.raises(DatasetError, match=r"two classes share a name \(\['desra-demo-x4-gan'\]\)"):
        render_dataset([zoo, member, member], tmp_path / "twice", train_photos=TRAIN, test_photos=TEST)


def test_build_zoo_adds_the_large_zoos_published_models_unless_told_otherwise():
    from desra.attribution.dataset import PUBLISHED_CLASSES
    from desra.cli import build_parser
    from desra.cli.cmd_attribute import published_models

    parse = build_parser(("attribute",)).parse_args
    assert published_models(parse(["attribute", "build-zoo"])) == list(PUBLISHED_CLASSES)
    assert published_models(parse(["attribute", "build-zoo", "--zoo", "tiny"])) == []
    assert published_models(parse(["attribute", "build-zoo", "--published", "none"])) == []
    assert published_models(parse(["attribute", "build-zoo", "--zoo", "tiny", "--published", "a.safetensors, RealESRGAN_x4plus"])) == [
        "a.safetensors", "RealESRGAN_x4plus"]
