"""Typed settings: what one field list carries so that flags, job parameters and the dashboard build one type.

A settings type is a frozen dataclass whose fields are made with :func:`setting` (or
:func:`required`): besides the default, each field records its ``role`` (a plain value, or a
path the job reads or writes, a model, a segmenter, a registered pair: see
:mod:`desra.jobs.job_settings`), the values it allows (``choices``, ``minimum``) and, for a
command's settings, the command-line ``flag`` it is given by (``set`` for ``set_dir``; ``negated``
when the flag is the field's opposite, ``--no-amp`` for ``amp``; ``runner`` when the job runner,
not the submitter, sets it). :func:`value_problem` is the one check of a value against its field;
:func:`check_values` runs it over a whole settings object, :func:`from_flags` builds one from
parsed flags and :func:`to_flags` gives its flag values back.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

VALUE, READ, WRITE, MODEL, SEGMENTER, PAIR = "value", "read", "write", "model", "segmenter", "pair"
PATH_ROLES = (READ, WRITE, MODEL, SEGMENTER)
"""Roles whose value may name a file or folder."""


def setting(
    default: Any = None,
    *,
    role: str = VALUE,
    choices: tuple = (),
    minimum: float | None = None,
    flag: str | bool = False,
    negated: bool = False,
    runner: bool = False,
) -> Any:
    """A settings field with a default; ``flag`` is True (the field's own name) or the flag's name when a command takes it."""
    return dataclasses.field(default=default, metadata=_metadata(role, choices, minimum, flag, negated, runner))


def required(*, role: str = VALUE, choices: tuple = (), flag: str | bool = False) -> Any:
    """A settings field without a default (it must be given)."""
    return dataclasses.field(metadata=_metadata(role, choices, None, flag, False, False))


def _metadata(role: str, choices: tuple, minimum: float | None, flag: str | bool, negated: bool, runner: bool) -> dict[str, Any]:
    return {"role": role, "choices": choices, "minimum": minimum, "flag": flag, "negated": negated, "runner": runner}


def flag_name(field: dataclasses.Field) -> str | None:
    """The command-line name (argparse ``dest``, ``_`` not ``-``) of a settings field, None when no flag gives it."""
    flag = field.metadata.get("flag", False)
    if flag is True:
        return field.name
    return flag or None


def value_problem(value: Any, meta: Mapping[str, Any]) -> str | None:
    """What is wrong with ``value`` for a field with ``meta`` ("must be at least 1", ...), None when it is allowed."""
    if value is None:
        return None
    if meta.get("choices") and value not in meta["choices"]:
        return f"must be one of {', '.join(meta['choices'])}"
    if meta.get("minimum") is not None and value < meta["minimum"]:
        return f"must be at least {meta['minimum']}"
    return None


def check_values(settings: Any, error: type[Exception], what: str) -> None:
    """Raise ``error`` naming the first field of ``settings`` whose value its field does not allow (``what`` names the settings)."""
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        problem = value_problem(value, field.metadata)
        if problem:
            flag = flag_name(field)
            name = f"--{flag.replace('_', '-')}" if flag else field.name
            raise error(f"{what} setting {name} {value!r} {problem}")


def from_flags(settings_type: type, values: Mapping[str, Any]) -> Any:
    """Build ``settings_type`` from parsed flags (``vars(args)``): flags left unset (None) keep the type's defaults."""
    given = {}
    for field in dataclasses.fields(settings_type):
        flag = flag_name(field)
        if flag is None or values.get(flag) is None:
            continue
        value = values[flag]
        if field.metadata["negated"]:
            if not value:
                continue  # a negating flag left off: the default stands
            value = False
        given[field.name] = os.fspath(value) if isinstance(value, os.PathLike) else value
    return settings_type(**given)


def to_flags(settings: Any, *, runner: bool = False) -> dict[str, Any]:
    """The flag values of ``settings`` by flag name (negated ones turned back: ``amp=False`` -> ``no_amp=True``); runner-set flags only with ``runner``."""
    flags = {}
    for field in dataclasses.fields(settings):
        flag = flag_name(field)
        if flag is None or (field.metadata["runner"] and not runner):
            continue
        value = getattr(settings, field.name)
        flags[flag] = (not value) if field.metadata["negated"] else value
    return flags


def field_default(settings_type: type, name: str) -> Any:
    """The default of field ``name`` of ``settings_type`` (what a form shows before the user changes it)."""
    return next(f.default for f in dataclasses.fields(settings_type) if f.name == name)


def field_minimum(settings_type: type, name: str) -> float | None:
    """The smallest value field ``name`` allows, None when unbounded."""
    return next(f.metadata.get("minimum") for f in dataclasses.fields(settings_type) if f.name == name)
