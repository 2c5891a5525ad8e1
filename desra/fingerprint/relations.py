"""How two models relate, and the cross-check's table by relation (issue 16's definition of "independent").

Quan et al., Sec. 3: "two models with the same architecture but trained independently using
different data are considered as independent models"; models of another architecture or scale are
independent too. Two models that differ only by their initialisation seed, trained on the same data,
are *seed siblings*: reported on their own row, never part of the default verdict.

:func:`relation` is the one rule, a pure function of two :class:`ModelFacts`; :func:`model_facts`
reads the facts from a checkpoint's desra metadata (zoo provenance, lineage) or from
:data:`PUBLISHED_TRAINING` for published models; :func:`relation_table` sums a cross-check by relation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

OTHER_DATA = "other data"
OTHER_ARCHITECTURE = "other architecture"
OTHER_SCALE = "other scale"
SEED_SIBLING = "seed sibling"
OVERLAPPING_DATA = "overlapping data"
OTHER_RECIPE = "other recipe"
UNRECORDED = "unrecorded data"
DERIVED = "derived"

DECIDING = (OTHER_DATA, OTHER_ARCHITECTURE, OTHER_SCALE)
"""Relations whose pairs are independent in the paper's sense and decide the default verdict."""
REPORTED = (SEED_SIBLING, OVERLAPPING_DATA, OTHER_RECIPE, UNRECORDED)
"""Relations shown on their own rows that never decide the verdict."""
RELATIONS = (*DECIDING, *REPORTED, DERIVED)
"""Every label :func:`relation` returns, in table order."""

_SCALE_KEYS = ("scale", "upscale")


@dataclass(frozen=True)
class ModelFacts:
    """What is known of how one model was made, as far as :func:`relation` needs it."""

    name: str
    """Model name (the cross-check's)."""
    architecture: str
    """Architecture id with its scale-free parameters, e.g. 'srvgg {"num_conv": 8, ...}'."""
    scale: int
    """Upscaling factor."""
    hr_data: frozenset[str] | None = None
    """HR training sources ('skimage:data/brick.png', 'dead_leaves[0]@256', 'DF2K', ...); None when not recorded."""
    degradation: str | None = None
    """Canonical text of the LR synthesis (JSON of a DegradationConfig, or a published recipe's name); None when not recorded."""
    seed: int | None = None
    """Initialisation seed; None when not recorded."""
    group: str | None = None
    """Training run both stages of one zoo config share (the config file); None when not recorded."""
    weights_sha256: str = ""
    """sha256 of the weights (desra.models.lineage.weights_sha256); '' when not computed."""
    source_sha256: tuple[str, ...] = ()
    """sha256 of the recorded source(s) the weights were made from (lineage chain)."""
    source_name: str | None = None
    """Name of the recorded source model (lineage, or a published model's parent)."""


def relation(a: ModelFacts, b: ModelFacts) -> str:
    """How models ``a`` and ``b`` differ: one of :data:`RELATIONS` (pure; the rule of issue 16).

    In order: the same weights or a recorded lineage link -> 'derived'; another architecture; another
    scale; an unrecorded side -> 'unrecorded data'; disjoint HR sources or another degradation ->
    'other data'; the same data -> 'seed sibling' (seeds differ) or 'other recipe'; else 'overlapping data'.
    """
    if a.weights_sha256 and a.weights_sha256 == b.weights_sha256:
        return DERIVED
    linked = (
        (a.group is not None and a.group == b.group)
        or (b.weights_sha256 and b.weights_sha256 in a.source_sha256)
        or (a.weights_sha256 and a.weights_sha256 in b.source_sha256)
        or a.source_name == b.name
        or b.source_name == a.name
    )
    if linked:
        return DERIVED
    if a.architecture != b.architecture:
        return OTHER_ARCHITECTURE
    if a.scale != b.scale:
        return OTHER_SCALE
    if a.hr_data is None or b.hr_data is None or a.degradation is None or b.degradation is None:
        return UNRECORDED
    if a.degradation != b.degradation or not (a.hr_data & b.hr_data):
        return OTHER_DATA
    if a.hr_data == b.hr_data:
        if a.seed is not None and b.seed is not None and a.seed != b.seed:
            return SEED_SIBLING
        return OTHER_RECIPE
    return OVERLAPPING_DATA


# --- facts from metadata ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublishedTraining:
    """Training data of a published model, from its authors' paper or README (not recorded in its file)."""

    hr_data: tuple[str, ...]
    """HR image sets."""
    degradation: str
    """LR synthesis, named."""
    source_name: str | None = None
    """The published model it was fine-tuned from, if its authors say so."""


PUBLISHED_TRAINING: dict[str, PublishedTraining] = {
    # Wang et al., Real-ESRGAN (ICCVW 2021) and its README: DF2K + OST, second-order degradation;
    # the GAN model is fine-tuned from the L1 RealESRNet.
    "RealESRNet_x4plus": PublishedTraining(("DF2K", "OST"), "Real-ESRGAN second-order"),
    "RealESRGAN_x4plus": PublishedTraining(("DF2K", "OST"), "Real-ESRGAN second-order", source_name="RealESRNet_x4plus"),
    "RealESRGAN_x4plus_anime_6B": PublishedTraining(("Real-ESRGAN anime images",), "Real-ESRGAN second-order"),
    "realesr-animevideov3": PublishedTraining(("Real-ESRGAN anime video frames",), "Real-ESRGAN second-order (video)"),
    # Ji et al., RealSR (CVPRW 2020), NTIRE 2020 track 1 and track 2 models: both on DF2K HR images,
    # with blur kernels and noise collected from each track's own source-domain images.
    "RealSR-DF2K-x4": PublishedTraining(("DF2K",), "RealSR kernels + noise of the NTIRE 2020 track 1 source images"),
    "RealSR-DF2K_JPEG-x4": PublishedTraining(("DF2K",), "RealSR kernels + noise of the NTIRE 2020 track 2 (JPEG) source images"),
    # desra's own derived L1 parent (desra/train/parent.py): RealESRGAN_x4plus, then an L1 fine-tune of its last blocks
    # on packaged photos (configs/parent/realesrgan-x4-derived.yaml); its metadata names the base as source.
    "realesrgan-x4plus-l1-derived": PublishedTraining(
        ("DF2K", "OST", "configs/parent/realesrgan-x4-derived.yaml photos"), "Real-ESRGAN second-order, then desra/train/parent.py's L1 fine-tune",
        source_name="RealESRGAN_x4plus"),
}
"""Registry ids (and `desra models import-ncnn` names, docs/foundation.md) -> their published training data."""


def architecture_key(architecture: str, arch_params: Mapping[str, Any]) -> str:
    """'arch {params without scale}' : two models of one architecture key differ at most in scale."""
    params = {k: v for k, v in arch_params.items() if k not in _SCALE_KEYS}
    return f"{architecture} {json.dumps(params, sort_keys=True)}"


def facts_from_metadata(
    name: str,
    architecture: str,
    arch_params: Mapping[str, Any],
    scale: int,
    metadata: Mapping[str, Any],
    weights_sha256: str = "",
) -> ModelFacts:
    """:class:`ModelFacts` of one model from its descriptor fields and desra metadata (pure).

    Training data come from the zoo provenance's ``training`` entry (``desra.train.zoo_data.training_facts``),
    else from :data:`PUBLISHED_TRAINING`; the source from the ``lineage`` entry (desra.models.lineage).
    """
    from desra.models.lineage import read_lineage

    extra = metadata.get("extra") if isinstance(metadata.get("extra"), Mapping) else {}
    training = extra.get("training") if isinstance(extra.get("training"), Mapping) else None
    published = PUBLISHED_TRAINING.get(name)
    hr, degradation, source_name = None, None, None
    if training is not None and "hr" in training and "degradation" in training:
        hr, degradation = frozenset(training["hr"]), json.dumps(training["degradation"], sort_keys=True)
    elif published is not None:
        hr, degradation, source_name = frozenset(published.hr_data), published.degradation, published.source_name
    lineage = read_lineage(metadata)
    seed = extra.get("seed")
    return ModelFacts(
        name=name,
        architecture=architecture_key(architecture, arch_params),
        scale=int(scale),
        hr_data=hr,
        degradation=degradation,
        seed=int(seed) if isinstance(seed, int) else None,
        group=extra.get("config") if isinstance(extra.get("config"), str) else None,
        weights_sha256=weights_sha256,
        source_sha256=tuple(lineage.ancestors_sha256()) if lineage else (),
        source_name=(lineage.source_name if lineage else None) or source_name,
    )


def model_facts(model, metadata: Mapping[str, Any] | None = None) -> ModelFacts:
    """:class:`ModelFacts` of a loaded ``SRModel``; metadata is read from its source file when not given.

    Zoo exports trained before the ``training`` entry existed are completed from the zoo config
    their provenance names, when that file is still there.
    """
    from desra.models.lineage import metadata_of_file, weights_sha256

    d = model.descriptor
    if metadata is None:
        metadata = metadata_of_file(d.source)
    extra = dict(metadata.get("extra") or {})
    config = extra.get("config")
    if "training" not in extra and isinstance(config, str) and config.endswith(".yaml") and Path(config).is_file():
        from desra.train.zoo_config import load_zoo_config
        from desra.train.zoo_data import training_facts

        extra["training"] = training_facts(load_zoo_config(config))
    return facts_from_metadata(d.name, d.architecture, d.arch_params, int(d.scale), {**metadata, "extra": extra}, weights_sha256(model.module))


# --- the table -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RelationRow:
    """The pairs of one relation in a cross-check."""

    relation: str
    """One of :data:`RELATIONS`."""
    pairs: tuple[tuple[str, str, float], ...]
    """(name a, name b, distance d) of every pair of this relation."""
    told_apart: int
    """Pairs with d >= eta (judged not derived)."""
    closest: tuple[str, str, float] | None
    """The pair of smallest d, or None without pairs."""
    attacks: int
    """Attacks run on the models that appear in this relation's pairs."""
    attacks_verified: int
    """Of those, attacked copies with d < eta (still judged derived from their source)."""
    attacks_below_closest: int
    """Of those, attacked copies closer to their source than :attr:`closest` is apart: some eta could separate them."""
    deciding: bool
    """True when this relation decides the default verdict (:data:`DECIDING`)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict of the row."""
        return {
            "relation": self.relation, "pairs": len(self.pairs), "told_apart": self.told_apart,
            "closest": list(self.closest) if self.closest else None, "attacks": self.attacks,
            "attacks_verified": self.attacks_verified, "attacks_below_closest": self.attacks_below_closest,
            "deciding": self.deciding, "pair_list": [list(p) for p in self.pairs],
        }


def relation_table(
    facts: Sequence[ModelFacts],
    distances: np.ndarray,
    eta: float,
    attacked: Mapping[str, Mapping[str, float]] | None = None,
) -> list[RelationRow]:
    """One :class:`RelationRow` per relation present, in :data:`RELATIONS` order (pure).

    ``distances`` is the (M, M) feature-distance matrix in ``facts`` order; ``attacked`` maps model
    name -> attack -> distance of the attacked copy to the model's own fingerprint.
    """
    attacked = attacked or {}
    grouped: dict[str, list[tuple[str, str, float]]] = {}
    for i, a in enumerate(facts):
        for j in range(i + 1, len(facts)):
            grouped.setdefault(relation(a, facts[j]), []).append((a.name, facts[j].name, float(distances[i, j])))
    rows = []
    for kind in RELATIONS:
        pairs = grouped.get(kind)
        if not pairs:
            continue
        closest = min(pairs, key=lambda p: p[2])
        models = sorted({n for a, b, _ in pairs for n in (a, b)})
        attack_d = [d for m in models for d in attacked.get(m, {}).values()]
        rows.append(RelationRow(
            relation=kind, pairs=tuple(pairs), told_apart=sum(d >= eta for _, _, d in pairs), closest=closest,
            attacks=len(attack_d), attacks_verified=sum(d < eta for d in attack_d),
            attacks_below_closest=sum(d < closest[2] for d in attack_d), deciding=kind in DECIDING,
        ))
    return rows


def format_table(rows: Sequence[RelationRow], eta: float) -> list[str]:
    """The table as text lines, one per relation, with a header; seed siblings and the like marked as not deciding."""
    lines = [f"{'relation':18s} {'pairs':>5s} {'told apart':>10s} {'closest d':>9s} {'attacks verified':>16s} {'below closest':>13s}  closest pair"]
    for r in rows:
        a, b, d = r.closest
        note = "" if r.deciding else ("  (lineage: should match)" if r.relation == DERIVED else "  (reported, not part of the verdict)")
        told, verified, below = f"{r.told_apart}/{len(r.pairs)}", f"{r.attacks_verified}/{r.attacks}", f"{r.attacks_below_closest}/{r.attacks}"
        lines.append(f"{r.relation:18s} {len(r.pairs):5d} {told:>10s} {d:9.2e} {verified:>16s} {below:>13s}  {a} ~ {b}{note}")
    lines.append(f"eta = {eta:.3e}; the default verdict counts only {', '.join(DECIDING)}")
    return lines
