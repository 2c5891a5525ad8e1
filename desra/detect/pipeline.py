"""DeSRA-det: find GAN-inference artifacts by comparing a GAN-SR output with its MSE-SR parent.

The pipeline (paper Sec. 3.2): D map (Eq. 3-7) -> semantic adjustment ``clip(D / A_k, 0, 1)``
(Eq. 8-9) -> threshold (< 0.7) -> morphology -> regions ranked by prominence. All on arrays;
files are read and written by the CLI and the dashboard.

Which image is segmented (``segment_on``): the paper segments the MSE-SR result, the authors'
script the GAN-SR result. desra defaults to **'mse'**: the artifacts under test live in the GAN
output, and GAN texture painted on sky or walls can make SegFormer call them trees or rocks,
whose low A_k would then hide exactly the artifact being looked for; the MSE output shows the
same scene without that texture.

When no segmenter is available the pipeline runs with A_k = 1 (the paper's "normalised without
semantics" ablation) and says so in :attr:`Detection.semantics_note` and in ``to_json()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from desra.core.errors import ConfigError, PairMismatchError

if TYPE_CHECKING:  # numpy stays out of `desra --help`, which reads METHODS from here
    import numpy as np

    from desra.detect.regions import Region

METHODS = ("desra", "desra-nosem", "absolute-d", "ldl", "ssim")
SEGMENT_ON = ("mse", "gan")


@dataclass(frozen=True)
class DetectConfig:
    """Every knob of DeSRA-det, defaulting to the paper / the authors' script."""

    window: int = 11
    """Local-statistics window size in px (odd); the valid region loses window // 2 per side."""
    window_kind: str = "gaussian"
    """'gaussian' (the authors' script, default) or 'box' (the paper's text)."""
    sigma: float = 1.5
    """Gaussian window sigma in px."""
    threshold: float = 0.7
    """Artifact where the adjusted D is below this (paper's ablation best: 0.7)."""
    erode_size: int = 5
    """Erosion kernel side (ones)."""
    erode_iters: int = 1
    """Erosion iterations."""
    dilate_size: int = 5
    """Dilation kernel side (ones)."""
    dilate_iters: int = 3
    """Dilation iterations (the authors' script: 3)."""
    fill_size: int = 3
    """Hole-filling structure side (3x3 ones)."""
    min_area: int = 4000
    """Regions with area <= this many px are dropped (the script's default)."""
    scale_min_area: bool = False
    """Rescale min_area by image pixels relative to a 2000x1500 x4 ImageNet output."""
    segment_on: str = "mse"
    """Which SR output SegFormer sees: 'mse' (default, see module docs) or 'gan' (the script)."""
    method: str = "desra"
    """'desra', 'desra-nosem', 'absolute-d', 'ldl' or 'ssim'."""
    abs_threshold: float = 0.03
    """absolute-d: artifact where |sigma_GAN - sigma_MSE| exceeds this (desra's choice; 0.03 = sqrt(C))."""
    ldl_threshold: float = 0.005
    """ldl: artifact where the residual's local variance exceeds this (paper: 0.01 / 0.005 / 0.001)."""
    ssim_threshold: float = 0.3
    """ssim: artifact where 1 - SSIM exceeds this (desra's choice)."""
    device: str = "cpu"
    """Where the D map runs: 'cpu' (OpenCV float32) or a torch device such as 'cuda'."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown detection method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.segment_on not in SEGMENT_ON:
            raise ConfigError(f"segment_on must be 'mse' or 'gan' (got {self.segment_on!r})")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"threshold must be in (0, 1] (got {self.threshold}); the paper uses 0.7")
        if self.window < 3 or self.window % 2 == 0:
            raise ConfigError(f"window must be an odd size >= 3 (got {self.window}); the paper uses 11")
        if self.window_kind not in ("gaussian", "box"):
            raise ConfigError(f"window_kind must be 'gaussian' or 'box' (got {self.window_kind!r})")
        if self.min_area < 0:
            raise ConfigError(f"min_area must be >= 0 px (got {self.min_area})")

    @property
    def border(self) -> int:
        """Pixels per side outside the valid region (5 for the 11x11 window)."""
        return self.window // 2

    def replace(self, **changes: Any) -> DetectConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Detection:
    """What DeSRA-det found in one MSE-SR/GAN-SR pair."""

    mask: np.ndarray
    """(H, W) bool, full SR size; True = artifact; the border outside the valid region is False."""
    d: np.ndarray
    """(H-2r, W-2r) float32 in (0, 1]: D before semantic adjustment (valid region)."""
    adjusted: np.ndarray
    """(H-2r, W-2r) float32 in [0, 1]: clip(D / A_k, 0, 1); equal to d without semantics."""
    labels: np.ndarray | None
    """(H-2r, W-2r) int32 ADE20K labels on the valid region, None when segmentation did not run."""
    candidate: np.ndarray
    """(H-2r, W-2r) bool: thresholded map before morphology."""
    regions: list[Region]
    """Detected regions, most prominent first."""
    semantics_used: bool
    """Whether the semantic adjustment ran."""
    semantics_note: str | None
    """Why semantics did not run (None when they did)."""
    config: DetectConfig
    """The parameters used."""
    min_area_used: int
    """min_area after optional scaling, in px."""
    segmenter: str | None = None
    """Segmenter id/folder when semantics ran."""
    class_weights: str | None = None
    """Source of the A_k table when semantics ran."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Caller-provided facts carried into to_json() (model ids, input files)."""

    @property
    def flagged_fraction(self) -> float:
        """Fraction of valid-region pixels flagged, in [0, 1]."""
        r = self.config.border
        valid = self.mask[r:-r, r:-r]
        return float(valid.mean()) if valid.size else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready report: parameters, semantics status, D statistics and ranked regions."""
        params = asdict(self.config)
        params["min_area_used"] = self.min_area_used
        return {
            **self.extra,
            "method": self.config.method,
            "parameters": params,
            "semantics": {
                "used": self.semantics_used,
                "reason": self.semantics_note,
                "segmenter": self.segmenter,
                "segment_on": self.config.segment_on if self.semantics_used else None,
                "class_weights": self.class_weights,
            },
            "size": {"height": int(self.mask.shape[0]), "width": int(self.mask.shape[1])},
            "valid_border": self.config.border,
            "d_mean": round(float(self.d.mean()), 6),
            "d_min": round(float(self.d.min()), 6),
            "flagged_fraction": round(self.flagged_fraction, 6),
            "regions": [r.to_json() for r in self.regions],
        }


def _as_image(x: np.ndarray, what: str) -> np.ndarray:
    import numpy as np

    x = np.asarray(x)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise PairMismatchError(f"{what} image has shape {x.shape}; expected (H, W, 3) RGB float in [0, 1] or uint8")
    # 8-bit pixels stay as they are: the D map reads them as k / 255 itself.
    if x.dtype == np.uint8:
        return x
    # Unclamped SR outputs make colour patches that would read as texture: clamp first. Images read
    # from files are in range already and are not copied (two 50 MB copies for a 2048x2048 pair).
    if x.dtype == np.float32 and x.size and 0.0 <= x.min() and x.max() <= 1.0:
        return x
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def _as_float(x: np.ndarray) -> np.ndarray:
    """The float32 [0, 1] image the baselines and the segmenter take (8-bit pixels converted as on reading)."""
    import numpy as np

    from desra.core.imageio import unit_float

    return unit_float(x) if x.dtype == np.uint8 else x


def _d_map(mse: np.ndarray, gan: np.ndarray, config: DetectConfig) -> np.ndarray:
    from desra.detect.dmap import d_map, d_map_torch

    kw = {"window": config.window, "sigma": config.sigma, "kind": config.window_kind}
    if config.device == "cpu":
        return d_map(mse, gan, **kw)
    return d_map_torch(mse, gan, device=config.device, **kw)


def _candidate(mse: np.ndarray, gan: np.ndarray, adjusted: np.ndarray, config: DetectConfig) -> np.ndarray:
    from desra.detect import baselines

    kw = {"window": config.window, "sigma": config.sigma, "kind": config.window_kind}
    if config.method in ("desra", "desra-nosem"):
        return adjusted < config.threshold
    mse, gan = _as_float(mse), _as_float(gan)
    if config.method == "absolute-d":
        return baselines.absolute_d_map(mse, gan, **kw) > config.abs_threshold
    if config.method == "ldl":
        return baselines.ldl_map(mse, gan, border=config.border) > config.ldl_threshold
    return baselines.ssim_dissimilarity_map(mse, gan, **kw) > config.ssim_threshold


def semantics_note(config: DetectConfig, segmenter=None, segmenter_note: str | None = None) -> str | None:
    """Why the semantic adjustment (Eq. 8-9) does not run with ``config`` and ``segmenter``; None when it runs."""
    if config.method != "desra":
        return f"method {config.method!r} does not use semantic adjustment"
    if segmenter is None:
        return segmenter_note or "no segmenter given: semantic adjustment skipped (A_k = 1)"
    return None


def detect_artifacts(
    mse: np.ndarray,
    gan: np.ndarray,
    config: DetectConfig | None = None,
    *,
    segmenter=None,
    class_weights=None,
    segmenter_note: str | None = None,
    extra: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Detection:
    """Detect artifacts in a GAN-SR image given its MSE-SR counterpart, both ``(H, W, 3)`` float32 [0, 1] or uint8.

    ``segmenter`` (a :class:`desra.detect.semantic.Segmenter`) turns on Eq. 8-9 for method 'desra';
    ``class_weights`` defaults to the authors' table; ``segmenter_note`` says why there is no
    segmenter (it is reported when semantics do not run).
    """
    import numpy as np

    from desra.detect import semantic
    from desra.detect.morphology import clean_mask, effective_min_area
    from desra.detect.regions import rank_regions

    config = config or DetectConfig()
    mse = _as_image(mse, "MSE-SR")
    gan = _as_image(gan, "GAN-SR")
    if mse.dtype != gan.dtype:  # an 8-bit file beside a 16-bit one
        mse, gan = _as_float(mse), _as_float(gan)
    if mse.shape != gan.shape:
        raise PairMismatchError(
            f"MSE-SR output is {mse.shape[1]}x{mse.shape[0]} but GAN-SR output is {gan.shape[1]}x{gan.shape[0]}; "
            f"they must come from the same LR image through models of the same scale"
        )
    steps = 4
    tick = progress or (lambda done, total: None)
    r = config.border
    d = _d_map(mse, gan, config)
    tick(1, steps)

    labels = None
    adjusted = d
    weights = None
    note = semantics_note(config, segmenter, segmenter_note)
    if note is None:
        weights = class_weights or semantic.default_class_weights()
        seen = mse if config.segment_on == "mse" else gan
        labels = semantic.segment(segmenter, _as_float(seen))[r:-r, r:-r]
        adjusted = semantic.adjust(d, labels, weights)
    tick(2, steps)

    candidate = _candidate(mse, gan, adjusted, config)
    min_area = effective_min_area(config.min_area, d.shape, config.scale_min_area)
    clean = clean_mask(
        candidate,
        erode=config.erode_size,
        erode_iters=config.erode_iters,
        dilate=config.dilate_size,
        dilate_iters=config.dilate_iters,
        fill_structure=config.fill_size,
        min_area=min_area,
    )
    mask = np.zeros(mse.shape[:2], dtype=bool)
    mask[r:-r, r:-r] = clean
    tick(3, steps)

    regions = rank_regions(
        clean,
        d,
        labels,
        weights.weights if weights is not None else None,
        semantic.ADE20K_CLASSES,
        offset=r,
    )
    tick(4, steps)
    return Detection(
        mask=mask,
        d=d,
        adjusted=adjusted,
        labels=labels,
        candidate=candidate,
        regions=regions,
        semantics_used=labels is not None,
        semantics_note=note,
        config=config,
        min_area_used=min_area,
        segmenter=segmenter.name if labels is not None else None,
        class_weights=weights.source if weights is not None else None,
        extra=dict(extra or {}),
    )


def upscale_pair(
    lr: np.ndarray,
    mse_model,
    gan_model,
    *,
    device: str = "cpu",
    tile: int | None = None,
    half: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Both SR outputs of an LR ``(h, w, 3)`` float32 image: -> (MSE-SR, GAN-SR), ``(s*h, s*w, 3)`` float32 [0, 1]."""
    from desra.models.checkpoint import check_same_scale
    from desra.models.inference import upscale

    check_same_scale(mse_model, gan_model)
    tick = progress or (lambda done, total: None)
    mse = upscale(mse_model, lr, tile=tile, device=device, half=half)
    tick(1, 2)
    gan = upscale(gan_model, lr, tile=tile, device=device, half=half)
    tick(2, 2)
    return mse, gan


def pair_facts(mse_model, gan_model) -> dict[str, Any]:
    """What a detection's report says about the models that made its SR outputs: names and scale."""
    return {"models": {"mse": mse_model.descriptor.name, "gan": gan_model.descriptor.name,
                       "scale": mse_model.descriptor.scale}}


def detect_lr(
    lr: np.ndarray,
    mse_model,
    gan_model,
    config: DetectConfig | None = None,
    *,
    segmenter=None,
    class_weights=None,
    segmenter_note: str | None = None,
    tile: int | None = None,
    half: bool = False,
    extra: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Detection, np.ndarray, np.ndarray]:
    """Run both SR models on an LR ``(h, w, 3)`` float32 image, then detect: -> (Detection, MSE-SR, GAN-SR)."""
    config = config or DetectConfig()
    tick = progress or (lambda done, total: None)
    mse, gan = upscale_pair(lr, mse_model, gan_model, device=config.device, tile=tile, half=half,
                            progress=lambda done, total: tick(done, 3))
    detection = detect_artifacts(
        mse,
        gan,
        config,
        segmenter=segmenter,
        class_weights=class_weights,
        segmenter_note=segmenter_note,
        extra={**pair_facts(mse_model, gan_model), **(extra or {})},
    )
    tick(3, 3)
    return detection, mse, gan
