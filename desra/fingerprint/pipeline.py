"""Model-level fingerprint operations shared by the CLI, the dashboard and the benchmarks.

Takes loaded models (``desra.checkpoint.SRModel``: ``.module`` and ``.descriptor.scale``), returns
records and verdicts; the registry file is the only I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from desra.fingerprint.critical import CriticalConfig, critical_image
from desra.fingerprint.features import fingerprint_features
from desra.fingerprint.verify import P_LEVEL, SIGMA, FingerprintRecord, Verdict, compare, get_fingerprint, make_record

ATTACK_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
"""scikit-image photos the fine-tuning attack trains on (real photos shipped with the package)."""


def attack_photos() -> list[np.ndarray]:
    """The :data:`ATTACK_PHOTOS` as (H, W, 3) float32 RGB in [0, 1]."""
    import skimage.data

    photos = []
    for name in ATTACK_PHOTOS:
        image = getattr(skimage.data, name)()
        photos.append(image[..., :3].astype(np.float32) / 255.0)
    return photos


def fingerprint_model(
    name: str,
    model,
    config: CriticalConfig = CriticalConfig(),
    *,
    source: str = "",
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> FingerprintRecord:
    """Extract the critical image of an ``SRModel`` and wrap it with its 30-D features as a record."""
    scale = int(model.descriptor.scale)
    critical = critical_image(model.module, scale, config, device=device, progress=progress)
    return make_record(name, critical, scale, config.to_dict(), source)


@dataclass(frozen=True)
class SuspectResult:
    """Verification of one suspect model against one registered source."""

    verdict: Verdict
    """Distance, threshold, p-value and match."""
    source: FingerprintRecord
    """The registered source fingerprint."""
    critical: np.ndarray
    """(S, S, 3) float32 critical image of the suspect, extracted with the source's settings."""


def verify_module(
    module,
    scale: int,
    source: FingerprintRecord,
    *,
    sigma: float = SIGMA,
    p: float = P_LEVEL,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> SuspectResult:
    """Verify an SR ``nn.Module`` of upscaling ``scale`` against ``source`` (same critical-image settings)."""
    config = CriticalConfig.from_dict(source.config)
    critical = critical_image(module, scale, config, device=device, progress=progress)
    verdict = compare(source.features, fingerprint_features(critical), sigma=sigma, p=p)
    return SuspectResult(verdict=verdict, source=source, critical=critical)


def verify_model(
    model,
    registry: Path,
    against: str,
    *,
    sigma: float = SIGMA,
    p: float = P_LEVEL,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> SuspectResult:
    """Verify a loaded ``SRModel`` against the fingerprint registered as ``against`` in ``registry``."""
    source = get_fingerprint(registry, against)
    return verify_module(model.module, int(model.descriptor.scale), source, sigma=sigma, p=p, device=device, progress=progress)


@dataclass(frozen=True)
class AttackResult:
    """One attacked copy of a model and its verification against the source."""

    attack: str
    """Attack name (prune, int8, finetune)."""
    module: object
    """The attacked ``torch.nn.Module`` (a copy; the input model is untouched)."""
    result: SuspectResult
    """Its verification against the source fingerprint."""


def attack_suite(
    model,
    source: FingerprintRecord,
    *,
    attacks: Sequence[str] = ("prune", "int8", "finetune"),
    finetune_iterations: int = 500,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
) -> list[AttackResult]:
    """Apply each attack to ``model`` (an ``SRModel``) and verify the attacked copy against ``source``."""
    from desra.fingerprint.attacks import apply_attack, finetune

    scale = int(model.descriptor.scale)
    photos = attack_photos() if "finetune" in attacks else []
    results = []
    for name in attacks:
        report = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
        if name == "finetune":
            attacked = finetune(model.module, scale, photos, iterations=finetune_iterations, device=device, progress=report)
        else:
            attacked = apply_attack(name, model.module, scale, photos, device=device)
        verified = verify_module(attacked, scale, source, device=device, progress=None if name == "finetune" else report)
        results.append(AttackResult(attack=name, module=attacked, result=verified))
    return results


@dataclass(frozen=True)
class CrossCheck:
    """Pairwise verification among several models plus the attack suite on each."""

    names: tuple[str, ...]
    """Model names, in matrix order."""
    records: tuple[FingerprintRecord, ...]
    """Each model's fingerprint."""
    distances: np.ndarray
    """(M, M) float64 feature distances d between models."""
    eta: float
    """Threshold the distances are compared with."""
    attacks: dict[str, dict[str, Verdict]]
    """model name -> attack name -> verdict of the attacked copy against the model's own fingerprint."""


def cross_check(
    models: Sequence,
    config: CriticalConfig = CriticalConfig(),
    *,
    attacks: Sequence[str] = ("prune", "int8", "finetune"),
    finetune_iterations: int = 500,
    sigma: float = SIGMA,
    p: float = P_LEVEL,
    device: str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
) -> CrossCheck:
    """Fingerprint each ``SRModel``, compare every pair, and run the attack suite on each against its own fingerprint."""
    from desra.fingerprint.verify import eta_threshold, feature_distance

    step = progress or (lambda stage, done, total: None)
    records = []
    for i, model in enumerate(models):
        records.append(fingerprint_model(model.descriptor.name, model, config, source=model.descriptor.source, device=device))
        step("fingerprints", i + 1, len(models))
    distances = np.array([[feature_distance(a.features, b.features) for b in records] for a in records])
    attacked: dict[str, dict[str, Verdict]] = {}
    for i, (model, record) in enumerate(zip(models, records)):
        if attacks:
            results = attack_suite(model, record, attacks=attacks, finetune_iterations=finetune_iterations, device=device)
            attacked[record.name] = {item.attack: compare(record.features, fingerprint_features(item.result.critical), sigma=sigma, p=p) for item in results}
        step("attacks", i + 1, len(models))
    return CrossCheck(
        names=tuple(r.name for r in records),
        records=tuple(records),
        distances=distances,
        eta=eta_threshold(sigma, p, records[0].features.size) if records else float("nan"),
        attacks=attacked,
    )
