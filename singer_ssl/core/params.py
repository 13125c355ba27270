"""Read ``params.yaml`` and look up datasets: the shared part of every stage's configuration.

Each stage owns the validation of its own sections (``<Stage>Config.from_params``); this module
knows no registry, so it sits in :mod:`singer_ssl.core` below everything else.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from singer_ssl.core.errors import ConfigError, choice_error

ROLES = ("train", "test")


def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """Read ``params.yaml`` into a dict and check the ``datasets`` structure (shared by every stage).

    Each stage validates its own sections in its ``<Stage>Config.from_params``; nothing here knows the
    registries, so one stage never fails because of another stage's section. A missing file or a YAML
    syntax error is a :class:`ConfigError` of one line.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            params = yaml.safe_load(f) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        where = getattr(e, "problem_mark", None)
        at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    check_datasets(params)
    return params


def dataset_items(params: dict[str, Any], role: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """List ``(name, role, spec)`` for the configured datasets, optionally of one role."""
    out = []
    for r in ROLES if role is None else (role,):
        for name, spec in (params.get("datasets", {}).get(r) or {}).items():
            out.append((name, r, spec))
    return out


def dataset_spec(params: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """Return ``(role, spec)`` of dataset ``name``; ConfigError listing the known names otherwise."""
    items = {n: (r, s) for n, r, s in dataset_items(params)}
    if name not in items:
        raise choice_error("dataset", name, items)
    return items[name]


def test_dataset(params: dict[str, Any], name: str, stage: str) -> dict[str, Any]:
    """Spec of test dataset ``name``; ConfigError when it is unknown or a training dataset."""
    role, spec = dataset_spec(params, name)
    if role != "test":
        raise ConfigError(f"dataset {name!r} is a {role} dataset; {stage} runs on test datasets")
    return spec


def check_datasets(params: dict[str, Any]) -> None:
    """``datasets``: a mapping of roles (train/test) to ``{name: spec with path}``, names unique."""
    ds = params.get("datasets")
    if ds is None:
        return
    if not isinstance(ds, dict) or set(ds) - set(ROLES):
        raise ConfigError("datasets: expected a mapping with keys 'train' and/or 'test', each {name: spec}")
    seen: dict[str, str] = {}
    for role in ROLES:
        group = ds.get(role) or {}
        if not isinstance(group, dict):
            raise ConfigError(f"datasets.{role}: expected a mapping {{name: spec}}")
        for name, spec in group.items():
            if name in seen:
                raise ConfigError(f"dataset name {name!r} appears under both {seen[name]} and {role}")
            seen[name] = role
            if not isinstance(spec, dict) or "path" not in spec:
                raise ConfigError(f"datasets.{role}.{name}: needs at least 'path'")


#: every top-level key of params.yaml (each owned by one or more stage configs; singer_ssl.validate walks them all)
TOP_LEVEL_KEYS: tuple[str, ...] = ("seed", "loss", "encoder", "datasets", "corpus", "audio", "segment", "features",
                                   "trials", "losses", "encoders", "head", "augment", "train", "embed", "evaluate")


def check_top_level(params: dict[str, Any]) -> None:
    """ConfigError ``"<key>: unknown top-level parameter; valid top-level keys: ..."`` for a key outside
    :data:`TOP_LEVEL_KEYS` (a typo no stage would read, e.g. ``trian``)."""
    for key in params:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{key}: unknown top-level parameter; valid top-level keys: "
                              f"{', '.join(sorted(TOP_LEVEL_KEYS))}")


def check_roles(params: dict[str, Any], base: str | os.PathLike = ".") -> None:
    """``datasets.train`` and ``datasets.test`` each name at least one dataset, and no dataset is in both: not
    by name (:func:`check_datasets`) and not by folder (paths resolved against ``base``, the repository root),
    since a training singer in a test set leaks into the evaluation."""
    check_datasets(params)
    ds = params.get("datasets") or {}
    for role in ROLES:
        if not ds.get(role):
            raise ConfigError(f"datasets.{role}: no {role} dataset; add one (name: {{path: ..., layout: ...}}), "
                              f"e.g. builtin-{role}: {{path: data/raw/builtin-{role}, layout: builtin}}")
    folders: dict[Path, str] = {}
    for name, role, spec in dataset_items(params):
        path = spec.get("path")
        if not isinstance(path, (str, os.PathLike)) or not str(path):
            raise ConfigError(f"datasets.{role}.{name}.path: expected a folder path, got {path!r}")
        folder = (Path(base) / os.path.expanduser(str(path))).resolve()
        other = folders.setdefault(folder, f"datasets.{role}.{name}")
        if other != f"datasets.{role}.{name}" and other.split(".")[1] != role:
            raise ConfigError(f"datasets.{role}.{name}: the same folder ({path}) as {other}; a dataset cannot be "
                              f"both a training and a test set (its singers would leak into the evaluation)")


# --------------------------------------------------------------------------------------------------
# Typed checkers shared by every ``<Stage>Config.from_params``. ``where`` is the parameter's dotted
# path (``embed.batch_size``); every failure is a one-line ConfigError that starts with it.
# --------------------------------------------------------------------------------------------------


def mapping_param(value: Any, where: str, keys: Sequence[str]) -> dict[str, Any]:
    """``value`` as a dict whose keys are all in ``keys`` (``None`` -> ``{}``).

    ConfigError ``"<where>.<key>: unknown parameter; valid keys of <where>: ..."`` for a typo.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(keys)}, got {value!r}")
    for key in value:
        if key not in keys:
            raise ConfigError(f"{where}.{key}: unknown parameter; valid keys of {where}: {', '.join(sorted(keys))}")
    return dict(value)


def section(params: dict[str, Any], name: str, keys: Sequence[str]) -> dict[str, Any]:
    """The top-level section ``params[name]`` checked by :func:`mapping_param` (absent -> ``{}``)."""
    return mapping_param(params.get(name), name, keys)


def int_param(value: Any, where: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (a bool is not an int; ``1000.0`` is accepted)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    bounds = _bounds_text(minimum, maximum, "integer")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an {bounds}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ConfigError(f"{where}: expected an {bounds}, got {value!r}")
    return value


def number_param(value: Any, where: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval ``low``..``high`` (open ends when ``*_open``).

    A numeric string is accepted: PyYAML (YAML 1.1) reads ``1e-3`` (no dot) as the string ``'1e-3'``.
    """
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
    hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
    want = "a number" + (f" {lo}" if lo else "") + (" and" if lo and hi else "") + (f" {hi}" if hi else "")
    if number is None or not math.isfinite(number):
        raise ConfigError(f"{where}: expected {want}, got {value!r}")
    if low is not None and (number < low or (low_open and number == low)):
        raise ConfigError(f"{where}: expected {want}, got {value!r}")
    if high is not None and (number > high or (high_open and number == high)):
        raise ConfigError(f"{where}: expected {want}, got {value!r}")
    return number


def bool_param(value: Any, where: str) -> bool:
    """``value`` as a bool (YAML ``true``/``false`` only; ``0``/``'yes'`` strings are rejected)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def choice_param(value: Any, where: str, choices: Sequence[str]) -> str:
    """``value`` as one of ``choices`` (a string)."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _bounds_text(minimum: int | None, maximum: int | None, kind: str) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}"
    return kind


_DEVICE_RE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")


def device_param(value: Any, where: str) -> str:
    """A torch device name: ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Only the spelling is checked here; whether CUDA is available is checked when the device is used
    (:func:`singer_ssl.core.device.resolve_device`).
    """
    if not isinstance(value, str) or not _DEVICE_RE.fullmatch(value):
        raise ConfigError(f"{where}: expected auto, cpu, cuda, cuda:N or mps, got {value!r}")
    return value
