"""Model-level fingerprint operations shared by the CLI, the dashboard and the benchmarks.

Takes loaded models (``desra.models.checkpoint.SRModel``: ``.module`` and ``.descriptor.scale``), returns
records and verdicts; the registry file is the only I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from desra.core.errors import ConfigError
from desra.fingerprint.attacks import apply_attack
from desra.fingerprint.critical import CriticalConfig, critical_image
from desra.fingerprint.features import fingerprint_features
from desra.fingerprint.verify import (
    P_LEVEL,
    SIGMA,
    FingerprintRecord,
    Verdict,
    compare,
    get_fingerprint,
    make_record,
    verdict_from_distance,
)

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
    """Extract the critical image of an ``SRModel`` and wrap it with its 30-D features (and its weights' sha256) as a record."""
    from desra.models.lineage import weights_sha256

    scale = int(model.descriptor.scale)
    critical = critical_image(model.module, scale, config, device=device, progress=progress)
    return make_record(name, critical, scale, config.to_dict(), source, weights_sha256(model.module))


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
class LineageReport:
    """A suspect's recorded lineage beside its fingerprint verdict; never an input to the verdict."""

    lineage: object
    """The :class:`desra.models.lineage.Lineage` its metadata records, or None."""
    check: object
    """:class:`desra.models.lineage.LineageCheck`: the claim against the verdict."""

    def to_json(self) -> dict:
        """{"lineage": ... | None, "lineage_check": {"status", "message", "note"}}."""
        return {"lineage": self.lineage.to_json() if self.lineage else None, "lineage_check": self.check.to_json()}

    def claim(self) -> str:
        """The recorded lineage in one phrase ('finetune of NAME (...)'), or 'none recorded'."""
        from desra.models.lineage import describe_lineage

        return describe_lineage(self.lineage) if self.lineage else "none recorded"

    def lines(self) -> list[str]:
        """Text lines for the CLI: the claim, the check, the forgery note."""
        from desra.models.lineage import FORGERY_NOTE

        return [f"lineage (metadata): {self.claim()}", f"lineage check: {self.check.status}: {self.check.message}", f"note: {FORGERY_NOTE}"]


def lineage_report(model, result: SuspectResult) -> LineageReport:
    """What the suspect ``SRModel``'s metadata says about its lineage, checked against ``result`` (the verdict stays as it is)."""
    from desra.models.lineage import check_lineage, lineage_of_file, weights_sha256

    lineage = lineage_of_file(model.descriptor.source)
    check = check_lineage(lineage, weights_sha256(model.module), match=result.verdict.match, source_name=result.source.name,
                          source_sha256=result.source.weights_sha256)
    return LineageReport(lineage=lineage, check=check)


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
    scale = int(model.descriptor.scale)
    photos = attack_photos() if "finetune" in attacks else []
    results = []
    for name in attacks:
        report = (lambda done, total, _n=name: progress(_n, done, total)) if progress else None
        attacked = apply_attack(name, model.module, scale, photos, finetune_iterations=finetune_iterations, device=device, progress=report)
        verified = verify_module(attacked, scale, source, device=device, progress=None if name == "finetune" else report)
        results.append(AttackResult(attack=name, module=attacked, result=verified))
    return results


@dataclass(frozen=True)
class CrossCheck:
    """Pairwise verification among several models plus the attack suite on each."""

    names: tuple[str, ...]
    """Model names, in matrix order."""
    features: np.ndarray
    """(M, L) float64 fingerprint features of the models, in matrix order."""
    distances: np.ndarray
    """(M, M) float64 feature distances d between models."""
    eta: float
    """Threshold the distances are compared with."""
    attacks: dict[str, dict[str, Verdict]]
    """model name -> attack name -> verdict of the attacked copy against the model's own fingerprint."""
    seconds: dict[str, dict[str, float]]
    """model name -> 'fingerprint' or attack name -> wall seconds (attack + re-extraction) of that row."""
    devices: dict[str, dict[str, str]] = field(default_factory=dict)
    """model name -> row -> torch device the row was computed on ('' for rows saved before devices were recorded)."""


def cross_check(
    models: Sequence,
    config: CriticalConfig = CriticalConfig(),
    *,
    attacks: Sequence[str] = ("prune", "int8", "finetune"),
    finetune_iterations: int = 500,
    sigma: float = SIGMA,
    p: float = P_LEVEL,
    device: str = "cpu",
    done_rows: Sequence[dict] = (),
    on_row: Callable[[dict], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> CrossCheck:
    """Fingerprint each ``SRModel``, compare every pair, and run the attack suite on each against its own fingerprint.

    Work is done in rows (one fingerprint, or one attack on one model); each finished row is passed
    to ``on_row`` as a JSON-ready dict, and rows in ``done_rows`` (from an interrupted run with the
    same settings) are reused instead of recomputed.
    """
    import time

    from desra.fingerprint.verify import eta_threshold, feature_distance

    step = progress or (lambda stage, done, total: None)
    emit = on_row or (lambda row: None)
    names = [model.descriptor.name for model in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"cross-check needs distinct model names, got {names}; export the models under different names")
    settings = {"critical": config.to_dict(), "finetune_iterations": finetune_iterations}
    previous = {}
    for row in done_rows:
        if row.get("settings") != settings:
            raise ConfigError(
                f"a saved cross-check row was computed with {row.get('settings')}, this run uses {settings}; "
                "pass a new rows file or the same settings"
            )
        previous[(row["name"], row["row"])] = row

    def run_row(name: str, kind: str, compute: Callable[[], dict]) -> dict:
        if (name, kind) in previous:
            return previous[(name, kind)]
        start = time.perf_counter()
        # The device is recorded but not part of the settings: a row computed on a GPU is reused on a CPU.
        row = {"name": name, "row": kind, **compute(), "seconds": time.perf_counter() - start, "device": str(device), "settings": settings}
        emit(row)
        return row

    features, seconds, devices = [], {name: {} for name in names}, {name: {} for name in names}
    for i, model in enumerate(models):
        def extract(model=model) -> dict:
            critical = critical_image(model.module, int(model.descriptor.scale), config, device=device)
            return {"features": [float(v) for v in fingerprint_features(critical)]}

        row = run_row(names[i], "fingerprint", extract)
        features.append(np.asarray(row["features"], np.float64))
        seconds[names[i]]["fingerprint"] = row["seconds"]
        devices[names[i]]["fingerprint"] = row.get("device", "")
        step("fingerprints", i + 1, len(models))
    distances = np.array([[feature_distance(a, b) for b in features] for a in features])
    attacked: dict[str, dict[str, Verdict]] = {}
    photos = attack_photos() if "finetune" in attacks else []
    for i, model in enumerate(models):
        scale = int(model.descriptor.scale)
        for attack in attacks:
            def attack_row(model=model, attack=attack, own=features[i]) -> dict:
                copy = apply_attack(attack, model.module, scale, photos, finetune_iterations=finetune_iterations, device=device)
                verdict = compare(own, fingerprint_features(critical_image(copy, scale, config, device=device)), sigma=sigma, p=p)
                return {"distance": verdict.distance}

            row = run_row(names[i], attack, attack_row)
            # The verdict is recomputed from the stored distance so sigma and p may change on resume.
            attacked.setdefault(names[i], {})[attack] = verdict_from_distance(row["distance"], sigma=sigma, p=p, dims=features[i].size)
            seconds[names[i]][attack] = row["seconds"]
            devices[names[i]][attack] = row.get("device", "")
        step("attacks", i + 1, len(models))
    return CrossCheck(
        names=tuple(names),
        features=np.stack(features) if features else np.zeros((0, 0)),
        distances=distances,
        eta=eta_threshold(sigma, p, features[0].size) if features else float("nan"),
        attacks=attacked,
        seconds=seconds,
        devices=devices,
    )
