"""DeSRA's evaluation (Sec. 4.1, Table 3): IoU, region precision/recall, removal and addition rates.

The functions on arrays are pure (``(H, W)`` bool in, numbers out). Conventions, following the
authors' scripts:

- Masks are compared on the valid region: ``border`` (5 px) is cropped from both, because the D map
  cannot see the outermost 5 px (detections there are always 0).
- Regions are 8-connected components. A detected region A_i is correct when
  ``|A_i ∩ B| / |A_i| >= p``; a labelled region B_j is found when ``|A ∩ B_j| / |B_j| >= p``
  (p = 0.5; the paper writes ``>``, the script ``>=``; desra follows the script).
- Over a set of images IoU is the mean of per-image IoUs; precision and recall pool the region
  counts (sum N_T / sum N_S, sum N_R / sum N_G), so images with no detections do not divide by 0.
- After fine-tuning, a labelled artifact B_j is REMOVED when the new detection misses it entirely
  (``|A ∩ B_j| = 0``); an image has an ADDED artifact when ``|A ∪ B| > |B|`` (something detected
  outside the labels).

:func:`evaluate_folders` and :func:`evaluate_removal_folders` are the file-reading edge.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from desra.core.errors import DesraError, PairMismatchError

BORDER = 5


def crop_border(mask: np.ndarray, border: int = BORDER) -> np.ndarray:
    """The valid region of a full-size mask: ``(H, W)`` -> ``(H - 2b, W - 2b)``."""
    return mask[border:-border, border:-border] if border > 0 else mask


def _pair(pred: np.ndarray, gt: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    if pred.shape != gt.shape:
        raise PairMismatchError(
            f"detected mask is {pred.shape[1]}x{pred.shape[0]} but labelled mask is "
            f"{gt.shape[1]}x{gt.shape[0]}; label the SR image the detection ran on"
        )
    return crop_border(np.asarray(pred, bool), border), crop_border(np.asarray(gt, bool), border)


def components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """8-connected components: ``(H, W)`` bool -> (count, int32 labels with 0 = background)."""
    import cv2

    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return n - 1, labels


def iou(pred: np.ndarray, gt: np.ndarray, border: int = BORDER) -> float:
    """|A ∩ B| / |A ∪ B| on the valid region; 1.0 when both masks are empty (perfect agreement)."""
    a, b = _pair(pred, gt, border)
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _covered(regions_of: np.ndarray, other: np.ndarray, p: float) -> tuple[int, int]:
    """(regions of ``regions_of`` with >= p of their pixels inside ``other``, regions in all)."""
    n, labels = components(regions_of)
    if n == 0:
        return 0, 0
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    inside = np.bincount(labels.ravel(), weights=other.ravel().astype(np.float64), minlength=n + 1)[1:]
    return int(np.count_nonzero(inside / area >= p)), n


def region_precision_counts(pred: np.ndarray, gt: np.ndarray, p: float = 0.5, border: int = BORDER) -> tuple[int, int]:
    """(N_T, N_S): detected regions with ``|A_i ∩ B| / |A_i| >= p``, and all detected regions."""
    a, b = _pair(pred, gt, border)
    return _covered(a, b, p)


def region_recall_counts(pred: np.ndarray, gt: np.ndarray, p: float = 0.5, border: int = BORDER) -> tuple[int, int]:
    """(N_R, N_G): labelled regions with ``|A ∩ B_j| / |B_j| >= p``, and all labelled regions."""
    a, b = _pair(pred, gt, border)
    return _covered(b, a, p)


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


@dataclass(frozen=True)
class ImageScore:
    """Scores of one detected mask against its labels."""

    name: str
    """Image stem."""
    iou: float
    """Per-image IoU in [0, 1]."""
    precision: float | None
    """N_T / N_S, None without detected regions."""
    recall: float | None
    """N_R / N_G, None without labelled regions."""
    n_true: int
    """N_T: detected regions that are mostly artifact."""
    n_detected: int
    """N_S: detected regions."""
    n_found: int
    """N_R: labelled regions mostly covered by the detection."""
    n_labelled: int
    """N_G: labelled regions."""


def score_image(pred: np.ndarray, gt: np.ndarray, p: float = 0.5, *, name: str = "", border: int = BORDER) -> ImageScore:
    """IoU and region counts of one ``(H, W)`` bool detection against ``(H, W)`` bool labels."""
    n_true, n_detected = region_precision_counts(pred, gt, p, border)
    n_found, n_labelled = region_recall_counts(pred, gt, p, border)
    return ImageScore(
        name=name,
        iou=iou(pred, gt, border),
        precision=_ratio(n_true, n_detected),
        recall=_ratio(n_found, n_labelled),
        n_true=n_true,
        n_detected=n_detected,
        n_found=n_found,
        n_labelled=n_labelled,
    )


@dataclass(frozen=True)
class EvalSummary:
    """Scores over a set of images (IoU averaged, region counts pooled)."""

    iou: float | None
    """Mean per-image IoU, None for no images."""
    precision: float | None
    """sum N_T / sum N_S, None without any detected region."""
    recall: float | None
    """sum N_R / sum N_G, None without any labelled region."""
    images: tuple[ImageScore, ...]
    """Per-image scores."""
    failures: tuple[tuple[str, str], ...] = field(default=())
    """(name, error message) of images that could not be scored."""

    def to_json(self) -> dict:
        """``{"iou", "precision", "recall", "images": [...]}`` exactly (failures are reported apart)."""
        return {
            "iou": self.iou,
            "precision": self.precision,
            "recall": self.recall,
            "images": [asdict(s) for s in self.images],
        }


def summarize(scores: Sequence[ImageScore], failures: Sequence[tuple[str, str]] = ()) -> EvalSummary:
    """Pool per-image scores: mean IoU, pooled region precision and recall."""
    return EvalSummary(
        iou=float(np.mean([s.iou for s in scores])) if scores else None,
        precision=_ratio(sum(s.n_true for s in scores), sum(s.n_detected for s in scores)),
        recall=_ratio(sum(s.n_found for s in scores), sum(s.n_labelled for s in scores)),
        images=tuple(scores),
        failures=tuple(failures),
    )


def removed_counts(after: np.ndarray, gt: np.ndarray, border: int = BORDER) -> tuple[int, int]:
    """(labelled artifacts the new detection misses entirely, labelled artifacts): Table 3's removal."""
    a, b = _pair(after, gt, border)
    n, labels = components(b)
    if n == 0:
        return 0, 0
    hit = np.bincount(labels.ravel(), weights=a.ravel().astype(np.float64), minlength=n + 1)[1:]
    return int(np.count_nonzero(hit == 0)), n


def has_addition(after: np.ndarray, gt: np.ndarray, border: int = BORDER) -> bool:
    """Whether ``|A ∪ B| > |B|``: the new detection flags pixels outside the labels (Table 3's addition)."""
    a, b = _pair(after, gt, border)
    return bool(np.any(a & ~b))


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR in dB between (H, W, 3) [0, 1] images over the (H, W) bool ``mask``; None for an empty mask.

    Capped at 100 dB (equal images), so reports stay valid JSON."""
    if a.shape != b.shape or a.shape[:2] != mask.shape:
        raise PairMismatchError(f"masked_psnr needs equal shapes, got {a.shape}, {b.shape} and mask {mask.shape}")
    if not mask.any():
        return None
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean(axis=-1)[mask].mean())
    return min(100.0, float(10 * np.log10(1.0 / max(mse, 1e-10))))


def repair_selectivity(repaired: np.ndarray, mse: np.ndarray, gan: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    """Where a repair moved the GAN output: PSNR (dB) of ``repaired`` to the MSE-SR and GAN-SR outputs, and of GAN to MSE,
    inside and outside the pseudo-GT ``mask``. A selective repair (what Eq. 10's pseudo-GT asks for) is near MSE
    inside and near GAN outside."""
    outside = ~mask
    return {
        "repaired_to_mse_inside": masked_psnr(repaired, mse, mask),
        "repaired_to_gan_inside": masked_psnr(repaired, gan, mask),
        "gan_to_mse_inside": masked_psnr(gan, mse, mask),
        "repaired_to_mse_outside": masked_psnr(repaired, mse, outside),
        "repaired_to_gan_outside": masked_psnr(repaired, gan, outside),
        "gan_to_mse_outside": masked_psnr(gan, mse, outside),
    }


@dataclass(frozen=True)
class RemovalSummary:
    """Before/after fine-tuning comparison on labelled images (DeSRA Table 3)."""

    removal_rate: float | None
    """Removed labelled artifacts / labelled artifacts, None without labels."""
    addition_rate: float | None
    """Images with an added artifact / images, None for no images."""
    removed: int
    """Labelled artifacts no longer detected at all."""
    labelled: int
    """Labelled artifacts (8-connected regions of the labels)."""
    images_with_additions: int
    """Images where the new detection reaches outside the labels."""
    iou_before: float | None
    """Mean IoU of the detections before fine-tuning (None when not given)."""
    iou_after: float | None
    """Mean IoU of the detections after fine-tuning."""
    images: tuple[dict, ...]
    """Per image: name, removed, labelled, added, iou_before, iou_after."""
    failures: tuple[tuple[str, str], ...] = ()
    """(name, error message) of images that could not be compared."""

    def to_json(self) -> dict:
        """Plain-JSON form (failures included)."""
        out = asdict(self)
        out["failures"] = [{"name": n, "error": e} for n, e in self.failures]
        return out


def removal_addition(
    after: Sequence[np.ndarray],
    gt: Sequence[np.ndarray],
    before: Sequence[np.ndarray] | None = None,
    names: Sequence[str] | None = None,
    *,
    border: int = BORDER,
    failures: Sequence[tuple[str, str]] = (),
) -> RemovalSummary:
    """Removal and addition rates of after-fine-tuning masks against labels (all ``(H, W)`` bool)."""
    names = list(names) if names is not None else [str(i) for i in range(len(after))]
    rows = []
    for i, (a, b) in enumerate(zip(after, gt, strict=True)):
        removed, labelled = removed_counts(a, b, border)
        rows.append(
            {
                "name": names[i],
                "removed": removed,
                "labelled": labelled,
                "added": has_addition(a, b, border),
                "iou_before": iou(before[i], b, border) if before is not None else None,
                "iou_after": iou(a, b, border),
            }
        )
    removed = sum(r["removed"] for r in rows)
    labelled = sum(r["labelled"] for r in rows)
    added = sum(r["added"] for r in rows)
    return RemovalSummary(
        removal_rate=_ratio(removed, labelled),
        addition_rate=_ratio(added, len(rows)),
        removed=removed,
        labelled=labelled,
        images_with_additions=added,
        iou_before=float(np.mean([r["iou_before"] for r in rows])) if rows and before is not None else None,
        iou_after=float(np.mean([r["iou_after"] for r in rows])) if rows else None,
        images=tuple(rows),
        failures=tuple(failures),
    )


# ---- folders (the I/O edge) ----------------------------------------------------------------

MASK_SUFFIX = "_mask"
GT_EXTENSIONS = (".json", ".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")


def mask_stem(path: Path) -> str:
    """Image stem a mask file belongs to: ``photo_mask.png`` and ``photo.png`` -> ``photo``."""
    stem = path.stem
    return stem[: -len(MASK_SUFFIX)] if stem.endswith(MASK_SUFFIX) else stem


def _index(folder: Path, what: str) -> dict[str, Path]:
    """Stem -> mask file. Detection folders also hold overlays and reports, so when any
    ``*_mask.*`` file is present only those count; in a label folder with labelme .json files only
    those (and ``*_mask.*`` images) count, since labelme keeps the photos beside them."""
    if not folder.is_dir():
        raise DesraError(f"{what} folder {folder} does not exist or is not a folder")
    files = [
        p for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in GT_EXTENSIONS and not p.name.startswith(".")
        and (what == "labels" or p.suffix.lower() != ".json")
    ]
    if any(p.stem.endswith(MASK_SUFFIX) for p in files) and what != "labels":
        files = [p for p in files if p.stem.endswith(MASK_SUFFIX)]
    if what == "labels" and any(p.suffix.lower() == ".json" for p in files):
        # labelme keeps photos beside their .json files: those photos are not masks.
        files = [p for p in files if p.suffix.lower() == ".json" or p.stem.endswith(MASK_SUFFIX)]
    found: dict[str, Path] = {}
    for path in files:
        key = mask_stem(path)
        if key not in found or path.suffix.lower() == ".json":
            found[key] = path
    if not found:
        raise DesraError(
            f"no masks found in {what} folder {folder}; expected PNG masks (<stem>_mask.png or "
            f"<stem>.png){' or labelme .json files' if what == 'labels' else ''}"
        )
    return found


def _read_pred(path: Path) -> np.ndarray:
    from desra.core.imageio import read_mask

    return read_mask(path)


def _matched(dirs: dict[str, Path]) -> tuple[list[str], dict[str, dict[str, Path]], list[tuple[str, str]]]:
    """Stems present in every folder, the per-folder index, and failures for the rest."""
    index = {what: _index(Path(d), what) for what, d in dirs.items()}
    stems = set().union(*(set(i) for i in index.values()))
    common, failures = [], []
    for stem in sorted(stems):
        missing = [what for what, i in index.items() if stem not in i]
        if missing:
            failures.append((stem, f"no {' / '.join(missing)} file for {stem!r}"))
        else:
            common.append(stem)
    return common, index, failures


def evaluate_folders(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    p: float = 0.5,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> EvalSummary:
    """Score every detected mask in ``pred_dir`` against the labels (PNG or labelme) of the same stem in ``gt_dir``."""
    from desra.detect.labelme_io import read_gt_mask

    stems, index, failures = _matched({"predictions": Path(pred_dir), "labels": Path(gt_dir)})
    scores = []
    for i, stem in enumerate(stems):
        try:
            pred = _read_pred(index["predictions"][stem])
            gt = read_gt_mask(index["labels"][stem])
            scores.append(score_image(pred, gt, p, name=stem))
        except DesraError as error:
            failures.append((stem, str(error)))
        if progress:
            progress(i + 1, len(stems))
    return summarize(scores, failures)


def evaluate_removal_folders(
    before_dir: str | os.PathLike | None,
    after_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> RemovalSummary:
    """Removal/addition rates (and IoU before/after) from folders of masks matched by stem."""
    from desra.detect.labelme_io import read_gt_mask

    dirs = {"after": Path(after_dir), "labels": Path(gt_dir)}
    if before_dir is not None:
        dirs["before"] = Path(before_dir)
    stems, index, failures = _matched(dirs)
    after, gt, before, names = [], [], [], []
    for i, stem in enumerate(stems):
        try:
            a = _read_pred(index["after"][stem])
            b = read_gt_mask(index["labels"][stem])
            c = _read_pred(index["before"][stem]) if before_dir is not None else None
            for other in (a, c):
                if other is not None:
                    _pair(other, b, BORDER)
        except DesraError as error:
            failures.append((stem, str(error)))
        else:
            after.append(a)
            gt.append(b)
            before.append(c)
            names.append(stem)
        if progress:
            progress(i + 1, len(stems))
    return removal_addition(after, gt, before if before_dir is not None else None, names, failures=failures)
