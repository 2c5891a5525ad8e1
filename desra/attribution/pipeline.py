"""The attribution experiment end to end, and single-image attribution for the CLI and dashboard.

``run_experiment`` fits the PRNU fingerprints and trains the classifier on the train photos' SR
outputs, measures both on the test photos (per crop and with soft voting over 10 crops of one
image) and writes the report, the R(A, B) matrix and the t-SNE. ``attribute_image`` ranks the zoo
models for one uploaded SR image.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from desra.attribution.classifier import Classifier, ClassifierConfig, LabelSpace
from desra.core.errors import ConfigError

CLASSIFIER_FILE = "classifier.safetensors"
"""Trained classifier inside the experiment folder."""
PRNU_FILE = "prnu.npz"
"""PRNU fingerprints inside the experiment folder."""
REPORT_FILE = "report.json"
"""Machine-readable results inside the experiment folder."""


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of the attribution experiment."""

    prnu_crop: int = 128
    """Side of the (grid-aligned) crops PRNU fingerprints are averaged over (pixels)."""
    test_tiles: int = 64
    """At most this many classifier tiles per test image."""
    vote: int = 10
    """Crops of one image averaged per vote (the paper votes over 10 images)."""
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    """Classifier architecture and training."""


def grid_tiles(image: np.ndarray, crop: int, limit: int | None = None) -> np.ndarray:
    """Non-overlapping (crop, crop) tiles of an (H, W, 3) image in raster order: (T, crop, crop, 3) float32 (T may be 0)."""
    tiles = [
        image[y : y + crop, x : x + crop]
        for y in range(0, image.shape[0] - crop + 1, crop)
        for x in range(0, image.shape[1] - crop + 1, crop)
    ]
    tiles = tiles[:limit] if limit else tiles
    return np.stack(tiles).astype(np.float32) if tiles else np.zeros((0, crop, crop, 3), np.float32)


def _tiles_of(data, crop: int, limit: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    tiles, labels, keys = [], [], []
    for image, k, photo in zip(data.images, data.member_index, data.photo):
        t = grid_tiles(image, crop, limit)
        tiles.append(t)
        labels += [int(k)] * len(t)
        keys += [f"{k}:{photo}"] * len(t)
    return np.concatenate(tiles), np.asarray(labels), keys


def residuals_of(tiles: np.ndarray) -> np.ndarray:
    """Noise residuals of (T, c, c, 3) float32 tiles: (T, c, c, 3) float32."""
    from desra.attribution.prnu import noise_residual

    return np.stack([noise_residual(t) for t in tiles]) if len(tiles) else tiles


def label_space(members) -> LabelSpace:
    """Class names of the three heads for a list of zoo members."""
    return LabelSpace(
        models=tuple(m.name for m in members),
        scales=tuple(sorted({f"x{m.scale}" for m in members})),
        losses=tuple(sorted({m.loss for m in members})),
    )


def _parsing_accuracy(probs: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(probs.argmax(axis=1) == truth))


def run_experiment(
    dataset_dir: Path,
    out_dir: Path,
    config: ExperimentConfig = ExperimentConfig(),
    *,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Fit PRNU + train the classifier on the train split, evaluate on the test split, write report/plots/weights into ``out_dir``; returns the report."""
    from desra.attribution import reports
    from desra.attribution.classifier import (
        build_classifier,
        predict,
        save_classifier,
        train_classifier,
    )
    from desra.attribution.dataset import load_split
    from desra.attribution.prnu import fingerprint_distances, fit_fingerprints

    report_step = progress or (lambda stage, done, total: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = load_split(dataset_dir, "train"), load_split(dataset_dir, "test")
    members = train.members
    labels = label_space(members)
    names = [m.name for m in members]

    # (a) PRNU-style baseline
    report_step("prnu", 0, 2)
    prnu_train, prnu_train_labels, _ = _tiles_of(train, config.prnu_crop, None)
    prints = fit_fingerprints(residuals_of(prnu_train), prnu_train_labels, tuple(names))
    np.savez_compressed(out_dir / PRNU_FILE, fingerprints=prints.fingerprints, labels=np.asarray(names))
    report_step("prnu", 1, 2)
    prnu_test, prnu_truth, prnu_keys = _tiles_of(test, config.prnu_crop, None)
    prnu_scores = -fingerprint_distances(prints, residuals_of(prnu_test))
    report_step("prnu", 2, 2)

    # (b) the classifier: attribution + parsing of scale and loss
    targets = np.array(
        [[k, labels.scales.index(f"x{members[k].scale}"), labels.losses.index(members[k].loss)] for k in train.member_index]
    )
    classifier = build_classifier(labels, config.classifier)
    train_classifier(classifier, train.images, targets, device=device, progress=lambda d, t, loss: report_step("classifier", d, t))
    save_classifier(out_dir / CLASSIFIER_FILE, classifier)
    cnn_tiles, cnn_truth, cnn_keys = _tiles_of(test, config.classifier.crop, config.test_tiles)
    prediction = predict(classifier, cnn_tiles, device=device)

    scale_truth = np.array([labels.scales.index(f"x{members[k].scale}") for k in cnn_truth])
    loss_truth = np.array([labels.losses.index(members[k].loss) for k in cnn_truth])
    result: dict = {"members": names, "config": {"prnu_crop": config.prnu_crop, "test_tiles": config.test_tiles, "vote": config.vote, "classifier": config.classifier.to_dict()}}
    for method, scores, truth, keys in (("prnu", prnu_scores, prnu_truth, prnu_keys), ("cnn", prediction.model, cnn_truth, cnn_keys)):
        voted, voted_keys = reports.vote_groups(scores, keys, config.vote)
        voted_truth = np.array([int(k.split(":")[0]) for k in voted_keys])
        result[method] = {
            "crop": reports.accuracy_by_group(scores, truth, members),
            "vote": reports.accuracy_by_group(voted, voted_truth, members),
            "triplets_crop": reports.triplet_accuracy(scores, truth, members),
            "triplets_vote": reports.triplet_accuracy(voted, voted_truth, members),
        }
    voted_scale, _ = reports.vote_groups(prediction.scale, cnn_keys, config.vote)
    voted_loss, vk = reports.vote_groups(prediction.loss, cnn_keys, config.vote)
    vk_truth = np.array([int(k.split(":")[0]) for k in vk])
    result["parsing"] = {
        "scale_crop": _parsing_accuracy(prediction.scale, scale_truth),
        "loss_crop": _parsing_accuracy(prediction.loss, loss_truth),
        "scale_vote": _parsing_accuracy(voted_scale, np.array([labels.scales.index(f"x{members[k].scale}") for k in vk_truth])),
        "loss_vote": _parsing_accuracy(voted_loss, np.array([labels.losses.index(members[k].loss) for k in vk_truth])),
    }
    r = reports.r_matrix(prediction.embedding, cnn_truth, len(members))
    result["r_matrix"] = r.tolist()
    result["mean_r"] = {g: reports.mean_r(r, members, g) for g in ("x2", "x4", "l1", "gan")}
    result["finding"] = distinctiveness_finding(result)
    reports.plot_r_matrix(r, names, out_dir / "attribution-r-matrix.png")
    reports.plot_tsne(prediction.embedding, cnn_truth, members, out_dir / "attribution-tsne.png")
    from desra.core.atomic import atomic_write_text

    atomic_write_text(out_dir / REPORT_FILE, json.dumps(result, indent=1))
    atomic_write_text(out_dir / "report.md", report_markdown(result))
    return result


def distinctiveness_finding(result: dict) -> dict:
    """Does the paper's finding (GAN and x4 more distinctive) hold? Compares classifier crop accuracy and mean R per group."""
    acc = result["cnn"]["crop"]
    r = result["mean_r"]

    def holds(better: str, worse: str) -> dict:
        # A group of one model has no R within it (NaN): that is "not measurable", not "does not hold".
        measurable = better in acc and worse in acc and all(np.isfinite(r.get(g, float("nan"))) for g in (better, worse))
        return {
            "accuracy": [acc.get(better, {}).get("accuracy"), acc.get(worse, {}).get("accuracy")],
            "mean_r": [r.get(better), r.get(worse)],
            "holds": bool(acc[better]["accuracy"] > acc[worse]["accuracy"] and r[better] < r[worse]) if measurable else None,
        }

    return {"gan_vs_l1": holds("gan", "l1"), "x4_vs_x2": holds("x4", "x2")}


def _figure(value: float | None) -> str:
    """A report number to 3 decimals; 'n/a' for a group the zoo does not have."""
    return "n/a" if value is None else f"{value:.3f}"


def report_markdown(result: dict) -> str:
    """The report's tables as Markdown (accuracy by group, seed triplets, parsing, mean R, finding)."""
    lines = ["| group | PRNU crop | PRNU vote | CNN crop | CNN vote | crops |", "|---|---|---|---|---|---|"]
    for group, row in result["cnn"]["crop"].items():
        cells = [result[m][s].get(group, {}).get("accuracy", float("nan")) for m in ("prnu", "cnn") for s in ("crop", "vote")]
        lines.append(f"| {group} | " + " | ".join(f"{100 * c:.1f} %" for c in cells) + f" | {row['n']} |")
    lines += ["", "| seed triplet (chance) | PRNU crop | PRNU vote | CNN crop | CNN vote |", "|---|---|---|---|---|"]
    for key, row in result["cnn"]["triplets_crop"].items():
        cells = [result[m][s].get(key, {}).get("accuracy", float("nan")) for m in ("prnu", "cnn") for s in ("triplets_crop", "triplets_vote")]
        lines.append(f"| {key} ({100 * row['chance']:.0f} %) | " + " | ".join(f"{100 * c:.1f} %" for c in cells) + " |")
    p = result["parsing"]
    lines += [
        "",
        f"Parsing (CNN): scale {100 * p['scale_crop']:.1f} % per crop / {100 * p['scale_vote']:.1f} % voted; "
        f"loss {100 * p['loss_crop']:.1f} % / {100 * p['loss_vote']:.1f} %.",
        "",
        "Mean R(A, B) within group (lower = more distinctive): " + ", ".join(f"{g} {v:.3f}" for g, v in result["mean_r"].items()) + ".",
    ]
    for key, label in (("gan_vs_l1", "GAN more distinctive than L1"), ("x4_vs_x2", "x4 more distinctive than x2")):
        f = result["finding"][key]
        verdict = {True: "holds", False: "does not hold", None: "not measurable"}[f["holds"]]
        a, m = [_figure(v) for v in f["accuracy"]], [_figure(v) for v in f["mean_r"]]
        lines.append(f"- {label}: {verdict} (CNN crop accuracy {a[0]} vs {a[1]}; mean R {m[0]} vs {m[1]}).")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ImageAttribution:
    """Ranked models and parsed attributes for one SR image."""

    ranking: list[tuple[str, float]]
    """(model name, classifier probability after voting), best first."""
    scale: dict[str, float]
    """Probability of each scale class."""
    loss: dict[str, float]
    """Probability of each loss class."""
    prnu_ranking: list[tuple[str, float]]
    """(model name, mean squared distance to its PRNU fingerprint), nearest first; empty if the image is smaller than the PRNU crop."""
    crops: int
    """Number of classifier crops voted over."""


def attribute_image(image: np.ndarray, experiment_dir: Path, *, max_crops: int = 32, device: str = "cpu") -> ImageAttribution:
    """Attribute an (H, W, 3) float32 SR image with the classifier (and PRNU fingerprints) saved in ``experiment_dir``."""
    from desra.attribution.classifier import load_classifier, predict, vote
    from desra.attribution.prnu import PrnuFingerprints, fingerprint_distances

    classifier: Classifier = load_classifier(Path(experiment_dir) / CLASSIFIER_FILE)
    crop = classifier.config.crop
    tiles = grid_tiles(np.asarray(image, np.float32), crop, max_crops)
    if len(tiles) == 0:
        raise ConfigError(f"image of {image.shape[1]}x{image.shape[0]} px is smaller than the classifier's {crop} px crop; use a larger SR image")
    prediction = predict(classifier, tiles, device=device)
    model_p, scale_p, loss_p = vote(prediction.model), vote(prediction.scale), vote(prediction.loss)
    ranking = sorted(zip(classifier.labels.models, map(float, model_p)), key=lambda item: -item[1])
    prnu_ranking: list[tuple[str, float]] = []
    prnu_path = Path(experiment_dir) / PRNU_FILE
    if prnu_path.is_file():
        with np.load(prnu_path) as data:
            prints = PrnuFingerprints(labels=tuple(str(n) for n in data["labels"]), fingerprints=data["fingerprints"])
        prnu_tiles = grid_tiles(np.asarray(image, np.float32), prints.fingerprints.shape[1], 8)
        if len(prnu_tiles):
            distances = fingerprint_distances(prints, residuals_of(prnu_tiles)).mean(axis=0)
            prnu_ranking = sorted(zip(prints.labels, map(float, distances)), key=lambda item: item[1])
    return ImageAttribution(
        ranking=ranking,
        scale=dict(zip(classifier.labels.scales, map(float, scale_p))),
        loss=dict(zip(classifier.labels.losses, map(float, loss_p))),
        prnu_ranking=prnu_ranking,
        crops=len(tiles),
    )
