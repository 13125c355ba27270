"""Read ``params.yaml`` and look up datasets: the shared part of every stage's configuration.

Each stage owns the validation of its own sections (``<Stage>Config.from_params``); this module
knows no registry, so it sits in :mod:`singer_ssl.core` below everything else.
"""

from __future__ import annotations

import os
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
