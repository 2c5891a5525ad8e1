"""Register a model's fingerprint and verify a suspect against one: the implementation ``desra fingerprint
register|verify`` and the dashboard's "Verify a model" tab share (Quan et al., ICCV 2023).

The registry is the workspace's ``fingerprints.sqlite``. A verification returns the fingerprint
verdict and, beside it, the suspect's recorded lineage checked against that verdict: the verdict is
computed first and from the weights alone; the metadata never changes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desra.core.errors import ConfigError, FingerprintError

if TYPE_CHECKING:  # torch stays out of import time
    from desra.fingerprint.critical import CriticalConfig
    from desra.fingerprint.pipeline import LineageReport, SuspectResult
    from desra.fingerprint.verify import FingerprintRecord
    from desra.models.checkpoint import SRModel


def registry_file(workspace: str | Path | None = None) -> Path:
    """The fingerprint registry of ``workspace`` (None: ``$DESRA_WORKSPACE`` or ./desra-workspace)."""
    from desra.core.paths import default_workspace
    from desra.fingerprint.verify import registry_path

    return registry_path(Path(workspace) if workspace is not None else default_workspace())


def register_model(
    model: str | Path,
    name: str,
    registry: Path,
    config: CriticalConfig,
    *,
    source: str | None = None,
    replace: bool = False,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> FingerprintRecord:
    """Extract the critical image of ``model`` (registry id or checkpoint file) and store its fingerprint as ``name``.

    ``source`` is what the registry records as the model's origin (default: ``model`` as given).
    ConfigError for an empty name; DuplicateNameError for a taken one unless ``replace``.
    """
    from desra.fingerprint.pipeline import fingerprint_model
    from desra.fingerprint.verify import register_fingerprint
    from desra.models.checkpoint import load_model

    name = (name or "").strip()
    if not name:
        raise ConfigError("no name given; type the name to register the source model under")
    loaded = load_model(model, device=device)
    record = fingerprint_model(name, loaded, config, source=str(model) if source is None else source, device=device, progress=progress)
    register_fingerprint(registry, record, replace=replace)
    return record


@dataclass(frozen=True)
class Verification:
    """One suspect verified against one registered source, with its lineage shown beside the verdict."""

    suspect: SRModel
    """The loaded suspect model."""
    result: SuspectResult
    """The fingerprint verdict, the source's record and the suspect's critical image."""
    lineage: LineageReport
    """What the suspect's metadata claims about its lineage, checked against the verdict (never deciding it)."""

    def to_json(self) -> dict[str, Any]:
        """{"match", "distance", "eta", "p_value", ..., "lineage", "lineage_check"}: the CLI's ``--json`` and the dashboard's JSON."""
        return {**self.result.verdict.to_json(), **self.lineage.to_json()}


def verify_suspect(
    suspect: str | Path,
    registry: Path,
    against: str,
    *,
    sigma: float | None = None,
    p: float | None = None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> Verification:
    """Is ``suspect`` (registry id or checkpoint file) derived from the model registered as ``against``?

    ``sigma`` and ``p`` default to the paper's (0.015, 0.05). FingerprintError when no source is named.
    """
    from desra.fingerprint.pipeline import lineage_report, verify_model
    from desra.fingerprint.verify import P_LEVEL, SIGMA
    from desra.models.checkpoint import load_model

    if not against:
        raise FingerprintError(
            "no registered source model named; pick one of the registered fingerprints, or register the source first "
            "(`desra fingerprint register`, or the tab's Register section)"
        )
    model = load_model(suspect, device=device)
    result = verify_model(model, registry, against, sigma=SIGMA if sigma is None else float(sigma), p=P_LEVEL if p is None else float(p),
                          device=device, progress=progress)
    # The verdict is computed before, and without, the metadata; the lineage is only shown beside it.
    return Verification(suspect=model, result=result, lineage=lineage_report(model, result))


def save_attacked(results, model, out: str | Path, *, finetune_iterations: int) -> list[Path]:
    """Write each attacked copy of ``attack_suite`` to ``out/<model>-<attack>.safetensors`` with its lineage.

    The lineage names ``model`` (its weights' sha256, as loaded) as the source and the attack's
    recipe, so ``desra fingerprint verify`` can show it beside the verdict.
    """
    from desra.fingerprint.attacks import attack_recipe
    from desra.fingerprint.pipeline import ATTACK_PHOTOS
    from desra.models.checkpoint import save_model
    from desra.models.lineage import (
        LINEAGE_KEY,
        current_command,
        make_lineage,
        metadata_of_file,
        weights_sha256,
    )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source_metadata = metadata_of_file(model.descriptor.source)
    source_sha256 = weights_sha256(model.module)  # every attack copies the source, which stays as loaded
    photos = [f"skimage:{p}" for p in ATTACK_PHOTOS]
    written = []
    for item in results:
        recipe = {"command": current_command(), **attack_recipe(item.attack, finetune_iterations=finetune_iterations, photos=photos)}
        lineage = make_lineage("attack", item.module, source_sha256=source_sha256, source_name=model.descriptor.name, recipe=recipe,
                               source_metadata=source_metadata)
        written.append(save_model(out / f"{model.descriptor.name}-{item.attack}.safetensors", item.module, model.descriptor,
                                  extra_metadata={"attack": item.attack, LINEAGE_KEY: lineage}))
    return written
