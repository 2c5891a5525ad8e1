"""Evaluate a DeSRA repair: detect artifacts with the original and the fine-tuned GAN model on the
val split of the run's curated set and compare (DeSRA Table 3).

Reference masks B: the item's labelled mask where one is stored, otherwise the original model's
detection (then IoU before is 1 by construction and the IoU after says how much of the originally
flagged area is still flagged). Removal rate: labelled/flagged artifact regions the new detection
misses entirely; addition rate: images where the new detection reaches outside B
(:func:`desra.detect.metrics.removal_addition`).

Outputs in ``RUN/evaluation/``: ``report.json``, ``report.md``, ``gallery/<item>.png`` (GAN-SR
before | after, each with its detection outlined in red, and the MSE-SR) and ``after/<item>.png``
(the fine-tuned model's full SR output, for before/after sliders). The report's schema is this
module's: :func:`read_report` reads it back, :func:`summary_rows` is its summary table (the
dashboard's), :func:`markdown_report` its Markdown form.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from desra.core.errors import ConfigError, DatasetError


def quantize(image: np.ndarray) -> np.ndarray:
    """Round an ``(H, W, 3)`` float32 [0, 1] image to 8-bit levels, as the set's stored SR images are."""
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def config_from_provenance(provenance: dict[str, Any]):
    """The ``DetectConfig`` an item's mask was detected with (defaults when it was not detected)."""
    from desra.detect.pipeline import DetectConfig

    stored = provenance.get("detect_config") or {}
    defaults = DetectConfig()
    values = {}
    for field in dataclasses.fields(DetectConfig):
        if field.name in stored:
            value = stored[field.name]
            values[field.name] = tuple(value) if isinstance(getattr(defaults, field.name), tuple) else value
    return dataclasses.replace(defaults, **values)


def outline(image: np.ndarray, mask: np.ndarray, width: int = 2) -> np.ndarray:
    """``image`` (H, W, 3) float32 with the boundary of ``mask`` (H, W) bool drawn in red and its inside tinted."""
    from scipy import ndimage

    out = image.copy()
    edge = mask & ~ndimage.binary_erosion(mask, iterations=width)
    out[mask] = 0.8 * out[mask] + 0.2 * np.array([1.0, 0.0, 0.0], dtype=np.float32)
    out[edge] = (1.0, 0.0, 0.0)
    return out


def gallery_panel(gan_before: np.ndarray, before: np.ndarray, gan_after: np.ndarray, after: np.ndarray, mse: np.ndarray, max_side: int = 384) -> np.ndarray:
    """Side-by-side (H', 3W'+16, 3) float32: before (outlined) | after (outlined) | MSE-SR, each scaled to at most ``max_side``."""
    import cv2

    panels = [outline(gan_before, before), outline(gan_after, after), mse]
    h, w = mse.shape[:2]
    factor = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    panels = [cv2.resize(p, size, interpolation=cv2.INTER_AREA) if factor < 1 else p for p in panels]
    gap = np.ones((size[1], 8, 3), dtype=np.float32)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def evaluate_run(
    run: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    set_dir: str | os.PathLike | None = None,
    split: str = "val",
    device: str = "cpu",
    tile: int | None = None,
    report_dir: str | os.PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Compare detections before/after the fine-tune of ``run`` on ``split``; writes ``report_dir`` (RUN/evaluation/) and returns the report dict."""
    from desra.core.atomic import atomic_write_text
    from desra.core.imageio import write_image
    from desra.detect.metrics import (
        crop_border,
        has_addition,
        iou,
        removal_addition,
        repair_selectivity,
    )
    from desra.detect.pipeline import detect_artifacts
    from desra.models.checkpoint import load_model
    from desra.models.inference import upscale
    from desra.repair.curated import open_set

    run = Path(run).expanduser().resolve()
    info_path = run / "run.json"
    if not info_path.is_file() and (set_dir is None or model is None):
        raise ConfigError(f"{run} has no run.json; is it a `desra finetune --out` folder? (or pass --set and --model)")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    model_path = Path(model) if model else run / "model.safetensors"
    if not model_path.is_file():
        raise ConfigError(f"{model_path} does not exist; the fine-tune has not finished (resume it with --resume)")
    curated = open_set(set_dir or info["set"])
    items = curated.items(split)
    if not items:
        raise DatasetError(f"the set {curated.root} has no {split} items; split it with `desra set split {curated.root} --val 0.75`")
    tuned = load_model(model_path, role="gan", device=device)
    out = Path(report_dir).expanduser().resolve() if report_dir else evaluation_dir(run)
    (out / "gallery").mkdir(parents=True, exist_ok=True)
    (out / "after").mkdir(parents=True, exist_ok=True)
    befores, afters, refs, names, rows = [], [], [], [], []
    for index, item in enumerate(items):
        arrays = curated.load(item.id)
        config = config_from_provenance(item.provenance)
        before = detect_artifacts(arrays.mse, arrays.gan, config).mask
        gan_after = quantize(upscale(tuned, arrays.lr, tile=tile, device=device))
        after = detect_artifacts(arrays.mse, gan_after, config).mask
        reference = arrays.label if arrays.label is not None else before
        gallery = out / "gallery" / f"{item.id}.png"
        write_image(gallery, gallery_panel(arrays.gan, before, gan_after, after, arrays.mse))
        write_image(after_image(out, item.id), gan_after)
        befores.append(before)
        afters.append(after)
        refs.append(reference)
        names.append(item.id)
        rows.append({
            "id": item.id, "reference": "label" if arrays.label is not None else "original detection",
            "flagged_before": float(before.mean()), "flagged_after": float(after.mean()),
            "iou_before": iou(before, reference), "iou_after": iou(after, reference),
            "selectivity": repair_selectivity(gan_after, arrays.mse, arrays.gan, arrays.mask),
            "gallery": str(gallery.relative_to(out)),
        })
        if progress is not None:
            progress(index + 1, len(items))
    # Images whose reference is empty (nothing labelled, nothing flagged before) would score IoU 1
    # whatever happens; like the paper's val set, IoU and removal count images with artifacts only,
    # while additions count on every image.
    scored = [i for i, ref in enumerate(refs) if crop_border(ref).any()]
    summary = removal_addition([afters[i] for i in scored], [refs[i] for i in scored],
                               [befores[i] for i in scored], [names[i] for i in scored])
    additions = [has_addition(after, ref) for after, ref in zip(afters, refs, strict=True)]
    per_metric = {row["name"]: row for row in summary.images}
    report = {
        "run": str(run),
        "model": str(model_path),
        "set": str(curated.root),
        "split": split,
        "items": len(items),
        "labelled_items": sum(r["reference"] == "label" for r in rows),
        "iou_before": summary.iou_before,
        "iou_after": summary.iou_after,
        "iou_drop": (summary.iou_before - summary.iou_after) if summary.iou_before is not None else None,
        "flagged_before": float(np.mean([r["flagged_before"] for r in rows])),
        "flagged_after": float(np.mean([r["flagged_after"] for r in rows])),
        "items_with_artifacts": len(scored),
        "removal_rate": summary.removal_rate,
        "addition_rate": float(np.mean(additions)),
        "removed": summary.removed,
        "artifacts": summary.labelled,
        "images_with_additions": int(np.sum(additions)),
        "iterations": info.get("config", {}).get("iters"),
        "per_item": [
            {**row, "added": added, "removed": per_metric.get(row["id"], {}).get("removed", 0),
             "labelled": per_metric.get(row["id"], {}).get("labelled", 0)}
            for row, added in zip(rows, additions, strict=True)
        ],
    }
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", markdown_report(report))
    return report


def evaluation_dir(run: str | os.PathLike) -> Path:
    """Where :func:`evaluate_run` writes by default: ``RUN/evaluation``."""
    return Path(run) / "evaluation"


def after_image(evaluation: str | os.PathLike, item_id: str) -> Path:
    """The fine-tuned model's SR output of an item in an evaluation folder: ``<evaluation>/after/<item>.png``."""
    return Path(evaluation) / "after" / f"{item_id}.png"


def read_report(run: str | os.PathLike) -> dict[str, Any] | None:
    """The report :func:`evaluate_run` wrote for ``run`` (``RUN/evaluation/report.json``), None before it ran."""
    path = evaluation_dir(run) / "report.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def percent(value: float | None) -> str:
    """A rate in [0, 1] as ``"12.3 %"`` ("n/a" when undefined)."""
    return "n/a" if value is None else f"{100 * value:.1f} %"


def summary_rows(report: dict[str, Any]) -> list[list[str]]:
    """``[metric, value]`` rows of a report's summary: items, IoU before/after and drop, flagged area, removal and addition rates."""
    return [
        ["val items (with artifacts)", f"{report['items']} ({report['items_with_artifacts']})"],
        ["IoU before → after", f"{percent(report['iou_before'])} → {percent(report['iou_after'])}"],
        ["IoU drop", percent(report["iou_drop"])],
        ["flagged area before → after", f"{percent(report['flagged_before'])} → {percent(report['flagged_after'])}"],
        ["removal rate", f"{percent(report['removal_rate'])} ({report['removed']} of {report['artifacts']} artifacts)"],
        ["addition rate", f"{percent(report['addition_rate'])} ({report['images_with_additions']} of {report['items']} images)"],
    ]


def _db(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def markdown_report(report: dict[str, Any]) -> str:
    """The Markdown form of an :func:`evaluate_run` report (summary table, per-item table, gallery)."""
    lines = [
        f"# DeSRA repair evaluation: {Path(report['run']).name}",
        "",
        (f"Fine-tuned model `{report['model']}` on the {report['split']} split of `{report['set']}` "
         f"({report['items']} items, {report['labelled_items']} with labelled masks; the others are compared "
         f"with the original model's detection). IoU and removal count the {report['items_with_artifacts']} items "
         "with artifacts; additions count every item."),
        "",
        "| metric | value |",
        "|---|---|",
        f"| IoU before | {percent(report['iou_before'])} |",
        f"| IoU after | {percent(report['iou_after'])} |",
        f"| IoU drop | {percent(report['iou_drop'])} |",
        f"| flagged area before / after | {percent(report['flagged_before'])} / {percent(report['flagged_after'])} |",
        f"| removal rate | {percent(report['removal_rate'])} ({report['removed']} of {report['artifacts']} artifacts) |",
        f"| addition rate | {percent(report['addition_rate'])} ({report['images_with_additions']} of {report['items']} images) |",
        "",
        "| item | reference | flagged before | flagged after | IoU before | IoU after | removed | added |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["per_item"]:
        lines.append(
            f"| {row['id']} | {row['reference']} | {percent(row['flagged_before'])} | {percent(row['flagged_after'])} | "
            f"{percent(row['iou_before'])} | {percent(row['iou_after'])} | {row.get('removed', 0)}/{row.get('labelled', 0)} | "
            f"{'yes' if row.get('added') else 'no'} |"
        )
    lines += [
        "",
        "## Selectivity (PSNR in dB between SR outputs, inside / outside the pseudo-GT mask)",
        "",
        ("The pseudo-GT (DeSRA Eq. 10) is the MSE-SR output inside the mask and the GAN-SR output outside, so a "
         "selective repair is close to MSE inside and close to GAN outside."),
        "",
        "| item | inside: repaired-MSE / repaired-GAN / GAN-MSE | outside: repaired-MSE / repaired-GAN / GAN-MSE |",
        "|---|---|---|",
    ]
    for row in report["per_item"]:
        sel = row["selectivity"]
        lines.append(
            f"| {row['id']} | {_db(sel['repaired_to_mse_inside'])} / {_db(sel['repaired_to_gan_inside'])} / "
            f"{_db(sel['gan_to_mse_inside'])} | {_db(sel['repaired_to_mse_outside'])} / "
            f"{_db(sel['repaired_to_gan_outside'])} / {_db(sel['gan_to_mse_outside'])} |"
        )
    lines += ["", "## Gallery (GAN-SR before | after, detections in red | MSE-SR)", ""]
    lines += [f"![{row['id']}]({row['gallery']})" for row in report["per_item"]]
    return "\n".join(lines) + "\n"
