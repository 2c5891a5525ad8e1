"""Repair rounds of a watched folder: a fine-tune job, its evaluation on held-out images, the promotion decision.

One round at a time, each a row of :mod:`desra.repair.watch_state` that moves
``queued -> training -> evaluating -> done`` (or ``failed``). Training is a ``finetune`` job of the
job runner (:mod:`desra.jobs.store`), never in this process: a round records its job id, and a round
whose job is still queued or running when the service restarts is followed, not resubmitted (a
job submitted just before a kill is found again by its output folder).

Files of round ``k`` (model version ``k``) under ``<workspace>/watch/``::

    rounds/vKKK/set/          its curated set: train = its artifact images minus the held-out share, val = that share
    rounds/vKKK/run/          the fine-tune job's run folder
    rounds/vKKK/evaluation/   desra evaluate-run's report on the held-out images
    versions/vKKK/model.safetensors, report.json   the kept version and its report (promoted or not)

Promotion needs removal >= ``min_removal``, addition == 0 and derivation from the original model:
the fingerprint verifier (Quan et al.) decides when it says derived; for desra's own repairs, whose
fingerprint moves beyond eta within ~25 iterations at lr 1e-4 (docs/attribution.md), the lineage
recorded in the model file decides, checked against what this workspace recorded (the parent
version's weights and the original's sha256). The round's ``reason`` says which one decided.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from desra.core.errors import DesraError
from desra.repair.evaluate_run import percent
from desra.repair.watch_state import RoundRecord, WatchSettings, WatchStore

IN_FLIGHT = ("queued", "training", "evaluating")
FINGERPRINT_NAME = "watch-original"
"""Name of the original GAN model's fingerprint in the workspace registry (``fingerprints.sqlite``)."""


def round_dir(workspace: Path, version: int) -> Path:
    """Folder of round ``version``."""
    return Path(workspace) / "watch" / "rounds" / f"v{version:03d}"


def version_dir(workspace: Path, version: int) -> Path:
    """Folder of the kept model version ``version`` (its model and report)."""
    return Path(workspace) / "watch" / "versions" / f"v{version:03d}"


def holdout_shas(shas: list[str], share: float) -> frozenset[str]:
    """The held-out images of a round: the first ``share`` of its content hashes in sorted order (at least one, never all)."""
    ordered = sorted(shas)
    count = min(len(ordered) - 1, max(1, round(share * len(ordered))))
    return frozenset(ordered[:count])


@dataclass(frozen=True)
class Derivation:
    """Whether a repaired model is still derived from the original, and what said so."""

    derived: bool
    """True when the fingerprint or, for desra's own repair, the checked lineage says derived."""
    decided_by: str
    """'fingerprint' or 'lineage'."""
    detail: str
    """One sentence: the distance, or the lineage facts checked."""


def lineage_confirms(lineage: Any, weights_sha256: str, parent_sha256: str, original_sha256: str) -> tuple[bool, str]:
    """Does ``lineage`` (a :class:`desra.models.lineage.Lineage` or None) describe desra's repair of the parent? -> (yes, why)."""
    if lineage is None:
        return False, "the model file records no lineage"
    if lineage.kind != "finetune":
        return False, f"its lineage is a {lineage.kind!r}, not a desra fine-tune"
    if lineage.weights_sha256 != weights_sha256:
        return False, "its lineage was written for other weights (edited file or copied metadata)"
    if lineage.source_sha256 != parent_sha256:
        return False, "its lineage names another source than the version this round fine-tuned"
    if original_sha256 not in (parent_sha256, *lineage.ancestors_sha256()):
        return False, "its lineage chain does not reach the original model"
    return True, f"desra fine-tune of the parent version (sha256 {parent_sha256[:12]}...), chain reaching the original ({original_sha256[:12]}...)"


def needs_derivation(removal: float | None, addition: float | None, min_removal: float) -> bool:
    """True when the metrics pass, so only the derivation check is left to decide."""
    return removal is not None and removal >= min_removal and addition == 0


def promotion_decision(removal: float | None, addition: float | None, min_removal: float, derivation: Derivation | None) -> tuple[bool, str]:
    """(promote?, reason): removal >= ``min_removal``, addition == 0 and derived, else the first reason it fails."""
    if removal is None:
        return False, "not promoted: no held-out artifact was left to score (removal rate undefined)"
    if addition is None or addition > 0:
        return False, f"not promoted: addition rate {percent(addition)} > 0 (the repair adds artifacts on held-out images)"
    if removal < min_removal:
        return False, f"not promoted: removal rate {percent(removal)} < the threshold {percent(min_removal)}"
    if derivation is None or not derivation.derived:
        return False, f"not promoted: not shown to derive from the original ({derivation.detail if derivation else 'not checked'})"
    return True, (f"promoted: removal {percent(removal)} >= {percent(min_removal)}, addition 0 %, derived by the "
                  f"{derivation.decided_by} ({derivation.detail})")


class Rounds:
    """Forms, follows and decides the rounds of one workspace's watch.

    ``refresh_stale()`` detects the gathered images again with the current version when they were
    detected with another (:meth:`desra.service.watch_loop.WatchService.refresh_stale`): a round counts and
    trains on the artifacts of the model it repairs, its pseudo-GT made from that model's output.
    """

    def __init__(self, workspace: Path, store: WatchStore, settings: WatchSettings, note: Callable[[str], None],
                 refresh_stale: Callable[[], None]):
        self.workspace = workspace
        self.store = store
        self.settings = settings
        self.note = note
        self.refresh_stale = refresh_stale

    def in_flight(self) -> RoundRecord | None:
        """The round not yet done or failed, if any (there is at most one)."""
        return next((r for r in self.store.rounds() if r.state in IN_FLIGHT), None)

    def idle(self) -> bool:
        """True when no round is in flight and not enough artifact images have gathered for one."""
        return self.in_flight() is None and len(self.store.gathering()) < self.settings.repair_after

    def advance(self) -> bool:
        """Move the round in flight one step, or open the next when enough artifacts gathered; True when something changed."""
        current = self.in_flight()
        if current is None:
            self.refresh_stale()
            gathered = self.store.gathering()
            if len(gathered) < self.settings.repair_after:
                return False
            version = max([r.version for r in self.store.rounds()], default=0) + 1
            current = self.store.form_round(version, self.store.current_version() or 0, [i.sha256 for i in gathered])
            self.note(f"round {version}: {len(gathered)} artifact images gathered; repairing version {current.parent}")
        if current.job_id is None:
            return self._fail_on_error(current, "submission", self._submit)
        if current.state == "evaluating":
            return self._fail_on_error(current, "evaluation", self._evaluate)
        return self._follow(current)

    def _fail_on_error(self, current: RoundRecord, what: str, step: Callable[[RoundRecord], object]) -> bool:
        """Run ``step(current)``; a ``DesraError`` (a refused job, a run without its model) fails the round, not the watch."""
        try:
            step(current)
        except DesraError as error:
            self.store.update_round(current.version, state="failed", reason=f"its {what} failed: {error}")
            self.note(f"round {current.version}: {what} failed: {error}")
        return True

    # -- training ---------------------------------------------------------------------------------

    def _submit(self, current: RoundRecord) -> bool:
        """Queue the round's fine-tune job (or adopt the one a killed service submitted but did not record)."""
        from desra.service.jobs import list_jobs
        from desra.service.repair import start_finetune

        folder = round_dir(self.workspace, current.version)
        run = folder / "run"
        adopted = next((j.id for j in list_jobs(self.workspace, kind="finetune") if Path(j.params.get("out", "")) == run), None)
        if adopted is None:
            self._build_set(current, folder / "set")
            adopted = start_finetune(self.workspace, self._finetune_config(current, folder / "set", run))["id"]
        self.store.update_round(current.version, job_id=adopted)
        self.note(f"round {current.version}: fine-tune job {adopted} queued")
        return True

    def _build_set(self, current: RoundRecord, root: Path) -> None:
        """The round's curated set from the watch's artifact set: held-out images in val, the others in train
        (every image was detected by the version this round repairs: see ``refresh_stale``)."""
        from desra.repair.curated import create_set, open_set
        from desra.service.watch_loop import artifacts_dir

        shutil.rmtree(root, ignore_errors=True)  # a set a kill left half built (the job was not submitted yet)
        images = self.store.round_images(current.version)
        held = holdout_shas([i.sha256 for i in images], self.settings.holdout)
        source = open_set(artifacts_dir(self.workspace))
        target = create_set(root, description=f"watch round {current.version}")
        for image in images:
            item = source.item(image.item_id)
            arrays = source.load(item.id)
            target.add(item.name, arrays.lr, arrays.mse, arrays.gan, arrays.mask, mask_source=item.mask_source,
                       provenance=item.provenance, split="val" if image.sha256 in held else "train")

    def _finetune_config(self, current: RoundRecord, set_dir: Path, run: Path):
        """The round's :class:`desra.repair.finetune.FinetuneConfig`: the pair's GAN model (version 0) or a kept
        version, with the discriminator its own round trained."""
        from desra.repair.finetune import FinetuneConfig

        s = self.settings
        common = {"set_dir": str(set_dir), "out": str(run), "iters": s.iters, "lr": s.lr, "patch": s.patch, "batch": s.batch,
                  "save_every": max(1, min(s.iters, 100)), "seed": current.version}
        if current.parent == 0:
            return FinetuneConfig(pair=s.pair, **common)
        discriminator = round_dir(self.workspace, current.parent) / "run" / "discriminator_basicsr.pth"
        return FinetuneConfig(model=self.store.version(current.parent).path,
                              disc=str(discriminator) if discriminator.is_file() else None, **common)

    def _follow(self, current: RoundRecord) -> bool:
        """Mirror the job's state into the round; a finished job moves the round to evaluating."""
        from desra.core.errors import JobError
        from desra.jobs.store import JobStore
        from desra.service.jobs import job_status

        try:
            job = job_status(self.workspace, current.job_id)
        except JobError as error:
            self.store.update_round(current.version, state="failed", reason=f"its fine-tune job is gone: {error}")
            return True
        if job.state in ("failed", "cancelled"):
            self.store.update_round(current.version, state="failed", reason=f"fine-tune job {job.id} {job.state}: {job.reason}")
            self.note(f"round {current.version}: fine-tune job {job.id} {job.state}")
            return True
        state = {"queued": "queued", "running": "training", "done": "evaluating"}[job.state]
        if state != current.state:
            self.store.update_round(current.version, state=state)
            self.note(f"round {current.version}: {state}")
            return True
        JobStore(self.workspace).ensure_workers()  # a worker killed with the service is replaced; its job resumes
        return False

    # -- evaluation and decision ------------------------------------------------------------------

    def _evaluate(self, current: RoundRecord) -> None:
        """Evaluate the repaired model on the held-out images, keep it as a version, decide, write its report."""
        from desra.core.atomic import atomic_path, atomic_write_text
        from desra.models.checkpoint import load_model
        from desra.models.lineage import weights_sha256
        from desra.repair.evaluate_run import evaluate_run

        folder = round_dir(self.workspace, current.version)
        report = evaluate_run(folder / "run", set_dir=folder / "set", split="val", report_dir=folder / "evaluation")
        kept = version_dir(self.workspace, current.version)
        kept.mkdir(parents=True, exist_ok=True)
        model_path = kept / "model.safetensors"
        with atomic_path(model_path) as temp:
            shutil.copyfile(folder / "run" / "model.safetensors", temp)
        model = load_model(model_path, role="gan")
        sha = weights_sha256(model.module)
        self.store.add_version(current.version, str(model_path), sha, current.parent)
        removal, addition = report["removal_rate"], report["addition_rate"]
        derivation = None
        if needs_derivation(removal, addition, self.settings.min_removal):
            derivation = self.check_derivation(model_path, sha, current.parent)
        promoted, reason = promotion_decision(removal, addition, self.settings.min_removal, derivation)
        summary = {
            "version": current.version, "parent": current.parent, "job_id": current.job_id,
            "images": [i.name for i in self.store.round_images(current.version)],
            "evaluation": {key: report[key] for key in ("items", "items_with_artifacts", "flagged_before", "flagged_after",
                                                        "removal_rate", "addition_rate", "removed", "artifacts",
                                                        "images_with_additions")},
            "selectivity": {row["id"]: row["selectivity"] for row in report["per_item"]},
            "derivation": asdict(derivation) if derivation else None,
            "promoted": promoted, "reason": reason,
            "evaluation_report": str(folder / "evaluation" / "report.md"),
        }
        atomic_write_text(kept / "report.json", json.dumps(summary, indent=2))
        self.store.decide_round(current.version, removal=removal, addition=addition, promoted=promoted, reason=reason)
        self.note(f"round {current.version}: {reason}")

    def check_derivation(self, model_path: Path, weights_sha256: str, parent: int) -> Derivation:
        """The fingerprint verifier against the original; when it says not derived, desra's recorded lineage."""
        from desra.service.fingerprints import verify_suspect

        verification = verify_suspect(model_path, self._original_fingerprint(), FINGERPRINT_NAME)
        verdict = verification.result.verdict
        distance = f"fingerprint d = {verdict.distance:.3g} ({verdict.distance / verdict.eta:.2f} eta)"
        if verdict.match:
            return Derivation(True, "fingerprint", f"{distance} < eta {verdict.eta:.3g}")
        confirmed, why = lineage_confirms(verification.lineage.lineage, weights_sha256,
                                          self.store.version(parent).sha256, self.store.version(0).sha256)
        if confirmed:
            return Derivation(True, "lineage", f"{why}; the {distance} alone says not derived, as any repair at lr 1e-4 does")
        return Derivation(False, "fingerprint", f"{distance} >= eta and {why}")

    def _original_fingerprint(self) -> Path:
        """The registry holding the original GAN model's fingerprint, extracted once (Quan's settings, ``fingerprint_iters`` steps)."""
        from desra.fingerprint.critical import CriticalConfig
        from desra.fingerprint.verify import list_fingerprints
        from desra.service.fingerprints import register_model, registry_file

        registry = registry_file(self.workspace)
        if FINGERPRINT_NAME not in list_fingerprints(registry):
            self.note(f"fingerprinting the original model ({self.settings.fingerprint_iters} steps)")
            register_model(self.store.version(0).path, FINGERPRINT_NAME, registry,
                           CriticalConfig(iterations=self.settings.fingerprint_iters), replace=True)
        return registry
