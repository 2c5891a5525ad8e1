"""Typed settings of the job kinds: what a background job may be given, checked before it is queued.

A job's parameters arrive as a JSON object (``desra jobs submit --param``, the dashboard's
``/submit_job``). They are never turned into command-line flags as they come: each kind has a
frozen dataclass listing the parameters it takes, with their types and which of them name files.
:func:`parse_settings` refuses unknown names (so no argparse prefix like ``ou`` for ``out`` can
slip in), wrong types and out-of-range numbers; :func:`resolve_paths` makes every path absolute
against the submitter's folder; :func:`check_confined` refuses any path outside the folders a
caller allows (the dashboard: reads inside the workspace and the shipped data, writes inside the
workspace only). The worker builds the command line from the settings with each flag spelled out
in full (``--out=VALUE``), so a value can never be read as another flag.

Path roles: ``read`` (a file or folder the job reads), ``write`` (where it writes), ``model`` (a
registered model id, else a checkpoint file it reads), ``segmenter`` (``b5``/``b0``/``none``, a
hub id, else a folder it reads), ``pair`` (a registered pair name).

The ``finetune`` kind's settings are not a second field list: :data:`FinetuneJob` is made from the
flag fields of :class:`desra.repair.finetune.FinetuneConfig` (:func:`job_settings_of`), the one
fine-tune settings type. :func:`workspace_confinement` is the dashboard's sandbox.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_type_hints

from desra.core.errors import JobError
from desra.core.settings import (
    MODEL,
    PAIR,
    PATH_ROLES,
    READ,
    SEGMENTER,
    WRITE,
    flag_name,
    required,
    setting,
    to_flags,
    value_problem,
)
from desra.repair.finetune import FinetuneConfig

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SEGMENTER_NAMES = ("b5", "b0", "none", "off", "")


def job_settings_of(settings_type: type, name: str) -> type:
    """The settings type of a job kind made from a command's settings type: one field per flag, named as the flag.

    Every field of ``settings_type`` that a flag gives becomes a parameter (``set`` for ``set_dir``,
    the negating ``no_amp`` for ``amp``), except those the runner sets (``device``); a field without
    a default stays required, the others are optional (None, or False for a switch: the command's
    own default applies). Roles, choices and minimums are the same field's.
    """
    hints = get_type_hints(settings_type)
    fields = []
    for f in dataclasses.fields(settings_type):
        flag = flag_name(f)
        if flag is None or f.metadata["runner"]:
            continue
        meta = f.metadata
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            fields.append((flag, hints[f.name], required(role=meta["role"], choices=meta["choices"])))
        elif hints[f.name] is bool:
            fields.append((flag, bool, setting(False)))
        else:
            fields.append((flag, hints[f.name] | None,
                           setting(role=meta["role"], choices=meta["choices"], minimum=meta["minimum"])))
    doc = f"Parameters of a job running the command of :class:`{settings_type.__module__}.{settings_type.__name__}` (one per flag)."
    return dataclasses.make_dataclass(name, fields, frozen=True, namespace={"__doc__": doc})


FinetuneJob = job_settings_of(FinetuneConfig, "FinetuneJob")
"""``desra finetune``: every flag of :class:`~desra.repair.finetune.FinetuneConfig` but ``device`` (and ``--resume``), the runner's."""


@dataclass(frozen=True)
class DetectJob:
    """``desra detect`` on LR images (with a pair or two models) or on precomputed SR outputs."""

    lr: str | None = setting(role=READ)
    mse: str | None = setting(role=READ)
    gan: str | None = setting(role=READ)
    pair: str | None = setting(role=PAIR)
    mse_model: str | None = setting(role=MODEL)
    gan_model: str | None = setting(role=MODEL)
    tile: int | None = setting(minimum=16)
    half: bool = setting(False)
    save_sr: bool = setting(False)
    segmenter: str | None = setting(role=SEGMENTER)
    segment_on: str | None = setting(choices=("mse", "gan"))
    class_weights: str | None = setting(role=READ)
    threshold: float | None = setting(minimum=0)
    window: int | None = setting(minimum=3)
    window_kind: str | None = setting(choices=("gaussian", "box"))
    sigma: float | None = setting(minimum=0)
    min_area: int | None = setting(minimum=0)
    scale_min_area: bool = setting(False)
    method: str | None = setting(choices=("desra", "desra-nosem", "absolute-d", "ldl", "ssim"))
    device: str | None = setting(choices=("cpu", "cuda"))
    save_d: bool = setting(False)
    out: str | None = setting(role=WRITE)


@dataclass(frozen=True)
class CalibrateJob:
    """``desra calibrate``: per-class weights A_k for a pair; ``out`` is the TSV it writes."""

    images: str = required(role=READ)
    pair: str | None = setting(role=PAIR)
    mse_model: str | None = setting(role=MODEL)
    gan_model: str | None = setting(role=MODEL)
    degrade: str | None = setting(choices=("realesrgan", "bicubic"))
    segmenter: str | None = setting(role=SEGMENTER)
    segment_on: str | None = setting(choices=("mse", "gan"))
    min_pixels: int | None = setting(minimum=1)
    seed: int | None = setting(minimum=0)
    tile: int | None = setting(minimum=16)
    device: str | None = setting(choices=("cpu", "cuda"))
    out: str | None = setting(role=WRITE)


@dataclass(frozen=True)
class ZooTrainJob:
    """``desra zoo train``: one stage of a zoo model from a config file."""

    stage: str = required(choices=("mse", "gan"))
    config: str = required(role=READ)
    out: str | None = setting(role=WRITE)


@dataclass(frozen=True)
class SleepJob:
    """The diagnostic ``sleep`` kind: counts steps with a pause (checks the runner)."""

    steps: int | None = setting(minimum=0)
    interval: float | None = setting(minimum=0)
    fail_at: int | None = setting(minimum=1)
    out: str | None = setting(role=WRITE)


SETTINGS: dict[str, type] = {
    "finetune": FinetuneJob,
    "detect": DetectJob,
    "calibrate": CalibrateJob,
    "zoo-train": ZooTrainJob,
    "sleep": SleepJob,
}
"""Settings type of each job kind (the keys are ``desra.jobs.store.JOB_KINDS``'s)."""


@dataclass(frozen=True)
class Confinement:
    """Folders a job's paths must stay in: everything it reads under ``read``, everything it writes under ``write``."""

    read: tuple[Path, ...]
    """Roots a read path may lie under (resolved, symlinks followed)."""
    write: tuple[Path, ...]
    """Roots a written path may lie under."""
    description: str = "its workspace"
    """How errors name the roots (never the server's absolute paths)."""


def parse_settings(kind: str, params: Mapping[str, Any]) -> Any:
    """The typed settings of a ``kind`` job from its JSON parameters; ``JobError`` names what is wrong."""
    settings_type = SETTINGS[kind]
    if not isinstance(params, Mapping):
        raise JobError(f"job parameters must be a JSON object of flag values, got {type(params).__name__}")
    fields = {f.name: f for f in dataclasses.fields(settings_type)}
    hints = get_type_hints(settings_type)
    unknown = [name for name in params if name not in fields]
    if unknown:
        raise JobError(
            f"unknown parameter(s) {', '.join(map(repr, unknown))} for a {kind} job; it takes: {', '.join(fields)} "
            "(names must be spelled out in full)"
        )
    values = {}
    for name, value in params.items():
        values[name] = _coerce(kind, name, value, hints[name], fields[name].metadata)
    missing = [f.name for f in fields.values() if f.default is dataclasses.MISSING and values.get(f.name) is None]
    if missing:
        raise JobError(f"a {kind} job needs the parameter(s) {', '.join(missing)}")
    return settings_type(**values)


def _coerce(kind: str, name: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    base = _base_type(hint)
    where = f"job parameter {name}={value!r} ({kind})"
    if value is None:
        if base is bool:
            return False
        return None
    if base is bool:
        if not isinstance(value, bool):
            raise JobError(f"{where} must be true or false")
        return value
    if base is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise JobError(f"{where} must be a whole number")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise JobError(f"{where} must be a finite number")
        value = float(value)
    else:
        if not isinstance(value, str):
            raise JobError(f"{where} must be a string")
        if "\x00" in value or "\n" in value:
            raise JobError(f"{where} holds a NUL or newline character")
    problem = value_problem(value, meta)
    if problem:
        raise JobError(f"{where} {problem}")
    if meta["role"] == PAIR:
        from desra.models.registry import get_pair

        get_pair(value)  # UnknownNameError lists the registered pairs
    return value


def _base_type(hint: Any) -> type:
    for candidate in (bool, int, float, str):
        if hint is candidate or candidate in getattr(hint, "__args__", ()):
            return candidate
    raise TypeError(f"unsupported settings field type {hint!r}")


def params_of(settings: Any) -> dict[str, Any]:
    """The JSON parameters of ``settings`` (unset values and false flags left out), as stored with the job."""
    return {
        f.name: getattr(settings, f.name)
        for f in dataclasses.fields(settings)
        if getattr(settings, f.name) is not None and getattr(settings, f.name) is not False
    }


def to_argv(settings: Any) -> list[str]:
    """The command-line flags of ``settings``, each spelled out in full and joined to its value (``--out=VALUE``)."""
    argv = []
    for name, value in params_of(settings).items():
        flag = "--" + name.replace("_", "-")
        argv.append(flag if value is True else f"{flag}={value}")
    return argv


def _names_a_path(role: str, value: str) -> bool:
    if role in (READ, WRITE):
        return True
    if role == MODEL:
        from desra.models.registry import list_models

        return value not in {m.id for m in list_models()}
    if role == SEGMENTER:
        return not (value.strip().lower() in _SEGMENTER_NAMES or (_HUB_ID.match(value) and ".." not in value))
    return False


def path_values(settings: Any) -> Iterable[tuple[str, str, str]]:
    """``(name, role, value)`` of every parameter of ``settings`` that names a file or folder."""
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        role = f.metadata["role"]
        if role in PATH_ROLES and isinstance(value, str) and _names_a_path(role, value):
            yield f.name, role, value


def resolve_paths(settings: Any, base: str | os.PathLike) -> Any:
    """``settings`` with every path made absolute against ``base`` (the submitter's folder), ``~`` expanded."""
    changes = {}
    for name, _, value in path_values(settings):
        path = Path(value).expanduser()
        changes[name] = str(path if path.is_absolute() else Path(base).resolve() / path)
    return dataclasses.replace(settings, **changes)


def check_confined(settings: Any, confinement: Confinement) -> None:
    """Refuse (``JobError``) any path of ``settings`` that resolves outside the roots ``confinement`` allows."""
    for name, role, value in path_values(settings):
        roots = confinement.write if role == WRITE else confinement.read
        path = Path(value).resolve()
        if not any(path == root or root in path.parents for root in roots):
            raise JobError(
                f"job parameter {name}={value!r} points outside the workspace: {confinement.description}"
            )


def workspace_confinement(workspace: str | os.PathLike) -> Confinement:
    """The dashboard's sandbox: reads inside ``workspace`` and the shipped weights, datasets and configs; writes inside ``workspace`` only."""
    from desra.core.paths import configs_dir, datasets_dir, weights_dir

    root = Path(workspace).resolve()
    return Confinement(
        read=(root, datasets_dir().resolve(), weights_dir().resolve(), configs_dir().resolve()),
        write=(root,),
        description="the dashboard reads only inside its workspace and the shipped weights, datasets and configs, "
                    "and writes only inside its workspace",
    )


def job_params(settings: Any) -> dict[str, Any]:
    """The job parameters that run a command's ``settings`` (e.g. a ``FinetuneConfig``): its flag values by flag name, unset ones and switches left off omitted; runner-set flags (``device``) are not parameters."""
    return {name: value for name, value in to_flags(settings).items() if value is not None and value is not False}
