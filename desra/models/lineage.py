"""Lineage of the models desra writes: which weights they came from and by what recipe.

Zoo exports, DeSRA fine-tunes and the fingerprint attacks store a ``lineage`` entry in their desra
metadata (``save_model(..., extra_metadata={"lineage": ...})``): the sha256 of the source model's
weights, the recipe (command, config, iterations) and the sha256 of the weights written. The entry
is plain, unsigned JSON: anyone can write one, strip one or copy one onto other weights. It is shown
*next to* the fingerprint verdict and checked against it, never used in its place.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LINEAGE_KEY = "lineage"
"""Key of the lineage entry inside the ``extra`` part of desra's checkpoint metadata."""

FORGERY_NOTE = (
    "lineage metadata is unsigned and can be forged, copied or stripped: it is shown for information, "
    "the verdict is the fingerprint's alone"
)
"""The sentence every output that shows lineage prints beside it."""


@dataclass(frozen=True)
class Lineage:
    """What a checkpoint's metadata says about where its weights came from."""

    kind: str
    """How the weights were made: 'zoo-train', 'finetune', 'attack' or 'parent-delta' (desra/train/parent.py)."""
    weights_sha256: str
    """sha256 (desra.models.parent_delta.state_sha256) of the weights this entry was written for; '' if not recorded."""
    source_name: str | None = None
    """Name of the model the weights were made from; None when trained from initialisation."""
    source_sha256: str | None = None
    """sha256 of the source model's weights; None when trained from initialisation."""
    recipe: dict[str, Any] = field(default_factory=dict)
    """How: command, config, iterations and the kind's own settings."""
    source_lineage: Lineage | None = None
    """The source's own lineage when it had one (so a chain of derivations reads back)."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; :func:`lineage_from_json` reads it back."""
        return {
            "kind": self.kind, "weights_sha256": self.weights_sha256, "source_name": self.source_name,
            "source_sha256": self.source_sha256, "recipe": dict(self.recipe),
            "source_lineage": self.source_lineage.to_json() if self.source_lineage else None,
        }

    def ancestors_sha256(self) -> list[str]:
        """sha256 of the source, the source's source, ... as far as the chain is recorded."""
        chain, node = [], self
        while node is not None:
            if node.source_sha256:
                chain.append(node.source_sha256)
            node = node.source_lineage
        return chain


def weights_sha256(module_or_state_dict: Any) -> str:
    """sha256 of an ``nn.Module``'s state dict or of a state dict (keys, shapes, float32 bytes; file-format independent)."""
    from desra.models.parent_delta import state_sha256

    # state_sha256 takes tensors and arrays alike.
    return state_sha256(module_or_state_dict.state_dict() if hasattr(module_or_state_dict, "state_dict") else module_or_state_dict)


def current_command() -> str:
    """The command line of this process, shell-quoted (what a recipe records as 'command')."""
    argv = list(sys.argv)
    if argv and (Path(argv[0]).name == "desra" or Path(argv[0]).parts[-2:] == ("desra", "__main__.py")):
        argv[0] = "desra"  # the console script or `python -m desra`: the same command
    return shlex.join(argv)


def make_lineage(
    kind: str,
    weights: Any,
    *,
    source: Any = None,
    source_sha256: str | None = None,
    source_name: str | None = None,
    recipe: Mapping[str, Any] | None = None,
    source_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON lineage entry of ``weights`` (module or state dict) made by ``kind`` from ``source`` (module, state dict or None).

    ``source_sha256`` stands in for ``source`` when its weights were hashed before training changed
    them in place. ``source_metadata`` is the source checkpoint's desra metadata; its lineage, if any, is nested.
    """
    parent = read_lineage(source_metadata or {})
    return Lineage(
        kind=kind,
        weights_sha256=weights_sha256(weights),
        source_name=source_name,
        source_sha256=weights_sha256(source) if source is not None else source_sha256,
        recipe=dict(recipe or {}),
        source_lineage=parent,
    ).to_json()


def lineage_from_json(data: Mapping[str, Any] | None) -> Lineage | None:
    """Inverse of :meth:`Lineage.to_json`; None for None or a malformed entry (a bad entry is no claim)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("kind"), str):
        return None
    recipe = data.get("recipe")
    return Lineage(
        kind=data["kind"],
        weights_sha256=str(data.get("weights_sha256") or ""),
        source_name=data.get("source_name") if isinstance(data.get("source_name"), str) else None,
        source_sha256=data.get("source_sha256") if isinstance(data.get("source_sha256"), str) else None,
        recipe=dict(recipe) if isinstance(recipe, Mapping) else {},
        source_lineage=lineage_from_json(data.get("source_lineage")),
    )


def read_lineage(metadata: Mapping[str, Any]) -> Lineage | None:
    """The lineage recorded in a checkpoint's desra metadata (``read_state_dict(path)[1]``), or None.

    Every writer stores the :data:`LINEAGE_KEY` entry. Parents rebuilt by desra/models/parent_delta.py
    before it did carry only their provenance keys (``derived_from``, ``base_sha256``, ``sha256``);
    such files sit in users' model caches and are read as the same ``parent-delta`` lineage.
    """
    extra = metadata.get("extra") if isinstance(metadata, Mapping) else None
    if not isinstance(extra, Mapping):
        return None
    if LINEAGE_KEY in extra:
        return lineage_from_json(extra[LINEAGE_KEY])
    return _rebuilt_parent_lineage(extra)


def _rebuilt_parent_lineage(extra: Mapping[str, Any]) -> Lineage | None:
    """The ``parent-delta`` lineage of a rebuilt parent's provenance keys, or None when they are not there."""
    if not (isinstance(extra.get("derived_from"), str) and isinstance(extra.get("base_sha256"), str)):
        return None
    return Lineage(
        kind="parent-delta", weights_sha256=str(extra.get("sha256") or ""), source_name=extra["derived_from"],
        source_sha256=extra["base_sha256"], recipe={"command": str(extra.get("recipe") or ""), "delta": str(extra.get("delta") or "")},
    )


def metadata_of_file(path: str | Path | None) -> dict[str, Any]:
    """desra metadata of a .safetensors checkpoint ({} for other files, missing files or None)."""
    from desra.models.checkpoint import read_state_dict

    if not path or not Path(path).is_file() or Path(path).suffix.lower() != ".safetensors":
        return {}
    return read_state_dict(Path(path))[1]


def lineage_of_file(path: str | Path | None) -> Lineage | None:
    """The lineage in the desra metadata of a checkpoint file (None for files without one, or that are not files)."""
    return read_lineage(metadata_of_file(path))


@dataclass(frozen=True)
class LineageCheck:
    """How a suspect's recorded lineage compares with the fingerprint verdict against one registered source."""

    status: str
    """'none' (nothing recorded), 'consistent', 'contradicted', 'weights-differ' or 'unchecked' (source weights unknown)."""
    message: str
    """One sentence saying what the metadata claims and how it compares with the verdict."""

    def to_json(self) -> dict[str, str]:
        """{"status", "message", "note"}: the note is :data:`FORGERY_NOTE`."""
        return {"status": self.status, "message": self.message, "note": FORGERY_NOTE}


def check_lineage(lineage: Lineage | None, suspect_sha256: str, *, match: bool, source_name: str, source_sha256: str = "") -> LineageCheck:
    """Compare what ``lineage`` claims with the fingerprint verdict ``match`` of the suspect against ``source_name``.

    Pure: the verdict is an input and is never changed here. ``source_sha256`` is the registered
    source's weights sha256 ('' for fingerprints registered before it was stored).
    """
    if lineage is None:
        return LineageCheck("none", "the suspect's metadata records no lineage")
    if lineage.weights_sha256 and lineage.weights_sha256 != suspect_sha256:
        return LineageCheck(
            "weights-differ",
            f"the lineage was written for other weights (sha256 {lineage.weights_sha256[:12]}..., these are "
            f"{suspect_sha256[:12]}...): the file was edited or its metadata copied",
        )
    if not source_sha256:
        return LineageCheck("unchecked", f"{source_name!r} was registered without its weights' sha256, so the claim cannot be compared with it")
    named = lineage.source_name or "an unnamed model"
    if source_sha256 in lineage.ancestors_sha256():
        if match:
            return LineageCheck("consistent", f"the metadata names {source_name!r} as an ancestor and the fingerprint agrees")
        return LineageCheck(
            "contradicted",
            f"the metadata names {source_name!r} as an ancestor but the fingerprint says NOT derived: the metadata may be "
            "forged, or the model changed beyond eta (a long repair does)",
        )
    if not match:
        return LineageCheck("consistent", f"the metadata names another source ({named}) and the fingerprint agrees that it is not derived from {source_name!r}")
    return LineageCheck(
        "contradicted",
        f"the metadata names another source ({named}) but the fingerprint says DERIVED from {source_name!r}: the metadata may be forged or stale",
    )


def describe_lineage(lineage: Lineage) -> str:
    """One phrase: 'finetune of NAME (sha256 abc...; 1000 iterations; `command`)' or 'zoo-train from initialisation (...)'."""
    head = f"{lineage.kind} of {lineage.source_name or 'an unnamed model'}" if lineage.source_sha256 else f"{lineage.kind} from initialisation"
    details = [f"sha256 {lineage.source_sha256[:12]}..."] if lineage.source_sha256 else []
    if lineage.recipe.get("iterations") is not None:
        details.append(f"{lineage.recipe['iterations']} iterations")
    if lineage.recipe.get("attack"):
        details.append(f"attack {lineage.recipe['attack']}")
    if lineage.recipe.get("config"):
        details.append(f"config {lineage.recipe['config']}")
    if lineage.recipe.get("command"):
        details.append(f"`{lineage.recipe['command']}`")
    text = head + (f" ({'; '.join(details)})" if details else "")
    if lineage.source_lineage is not None:
        text += ", itself a " + describe_lineage(lineage.source_lineage)
    return text
