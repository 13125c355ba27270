"""Load and validate ``params.yaml``: the only module of the library that reads it.

Validation happens before any heavy work: unknown ``loss``/``encoder``/augmentation names or an
inconsistent combination raise :class:`ConfigError` with the list of valid choices.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from singer_ssl.core.errors import ConfigError, choice_error

ROLES = ("train", "test")


def load_params(path: str | os.PathLike = "params.yaml", validate: bool = True) -> dict[str, Any]:
    """Read ``params.yaml`` into a dict, validated unless ``validate=False``."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file not found: {path}")
    with open(path, encoding="utf-8") as f:
        params = yaml.safe_load(f) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    if validate:
        validate_params(params)
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


def validate_params(params: dict[str, Any]) -> None:
    """Check names and structure of the whole params tree; raise ConfigError on the first problem."""
    _validate_datasets(params)
    if "loss" in params:
        from singer_ssl import losses

        if params["loss"] not in losses.NAMES:
            raise choice_error("loss", params["loss"], losses.NAMES)
    if "encoder" in params:
        from singer_ssl import encoders

        if params["encoder"] not in encoders.NAMES:
            raise choice_error("encoder", params["encoder"], encoders.NAMES)
    if "augment" in params:
        from singer_ssl import augment

        augment.validate(params["augment"])


def _validate_datasets(params: dict[str, Any]) -> None:
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
