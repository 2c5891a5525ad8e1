"""Compare detection methods against labelled masks (the dashboard's Evaluate action, DeSRA Table 1).

Each LR image goes through both models once; every chosen method then detects on that same
MSE-SR/GAN-SR pair, and its masks are scored by :func:`desra.detect.metrics.evaluate_folders`
(mean IoU, region precision and recall with p = 0.5). The run folder keeps everything:
``labels/`` (copies of the labels), ``gan/<stem>.png``, ``<method>/<stem>_mask.png``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from desra.core.errors import ConfigError

if TYPE_CHECKING:
    from desra.detect.metrics import EvalSummary
    from desra.detect.pipeline import DetectConfig
    from desra.models.pairs import ModelPair
    from desra.service.detection import Semantics


@dataclass(frozen=True)
class MethodComparison:
    """The scores of each method on one set of labelled images."""

    run_dir: Path
    """Folder holding the labels, the GAN-SR outputs and each method's masks."""
    summaries: dict[str, EvalSummary]
    """Method name -> its scores, in the order the methods were given."""
    semantics_off: str | None
    """Why DeSRA-det ran without semantic adjustment, or None when it used it (or did not run)."""

    @property
    def methods(self) -> tuple[str, ...]:
        """The compared methods, in order."""
        return tuple(self.summaries)


def compare_methods(
    lr_paths: Sequence[str | Path],
    label_files: Sequence[str | Path],
    models: ModelPair,
    methods: Sequence[str],
    semantics: Semantics,
    base: DetectConfig,
    run_dir: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> MethodComparison:
    """Detect each LR image with every method in ``methods`` and score the masks against ``label_files``.

    ``progress(done, total)`` counts (image, method) steps.
    """
    from desra.core.imageio import read_image, write_image, write_mask
    from desra.detect.metrics import evaluate_folders
    from desra.detect.pipeline import detect_artifacts, detect_lr

    paths = [Path(p) for p in lr_paths]
    if not paths or not label_files:
        raise ConfigError("evaluation needs LR images and their labelled masks (same names); give both")
    if not methods:
        raise ConfigError("no method chosen; choose DeSRA-det and the baselines to compare")
    label_dir = run_dir / "labels"
    label_dir.mkdir(parents=True)
    for label in label_files:
        shutil.copy(label, label_dir / Path(label).name)
    (run_dir / "gan").mkdir()
    for method in methods:
        (run_dir / method).mkdir()
    total, done = len(paths) * len(methods), 0
    semantics_off = None
    for path in paths:
        lr = read_image(path).rgb
        detection, mse, gan = detect_lr(lr, models.mse, models.gan, base.replace(method=methods[0]), **semantics.detect_kwargs())
        write_image(run_dir / "gan" / f"{path.stem}.png", gan)
        for method in methods:
            if method != methods[0]:
                detection = detect_artifacts(mse, gan, base.replace(method=method), **semantics.detect_kwargs())
            if method == "desra" and not detection.semantics_used:
                semantics_off = detection.semantics_note
            write_mask(run_dir / method / f"{path.stem}_mask.png", detection.mask)
            done += 1
            if progress is not None:
                progress(done, total)
    summaries = {method: evaluate_folders(run_dir / method, label_dir) for method in methods}
    return MethodComparison(run_dir=run_dir, summaries=summaries, semantics_off=semantics_off)

