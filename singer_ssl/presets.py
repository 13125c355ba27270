"""Paper presets: parameter overrides that reproduce each paper's configuration.

A preset is a YAML file ``presets/<name>.yaml`` holding a partial ``params.yaml`` tree, named after
its paper: ``torres2023`` (Torres, Lattner & Richard, ISMIR 2023), ``ge2e-singer`` (the GE2E singer
encoder), ``semisupcon`` (Guinot et al., ISMIR 2024), ``byol-a`` (Niizumi et al., IJCNN 2021),
``fonseca2021`` (Fonseca et al., ICASSP 2021), plus ``byol-laptop`` (BYOL sized for a CPU). It is
used as ``dvc exp run $(singer-ssl preset torres2023)``: :func:`overrides` turns the tree into DVC's
Hydra-style ``-S key=value`` flags (``-S +key=value`` for keys that ``params.yaml`` lacks).
Values must not contain spaces (the flags are split by the shell).

Presets are named after their papers only; an unknown name (an old numbered one included) fails listing the
valid names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from singer_ssl.core.errors import ConfigError, choice_error

PRESET_DIR = Path("presets")

def available(preset_dir: Path = PRESET_DIR) -> list[str]:
    """Names of the presets in ``preset_dir``."""
    return sorted(p.stem for p in preset_dir.glob("*.yaml"))


def summary(name: str, preset_dir: Path = PRESET_DIR) -> str:
    """The first comment line of ``presets/<name>.yaml`` (paper and one-line description), ``""`` if none;
    for ``singer-ssl preset --list``."""
    path = preset_dir / f"{name}.yaml"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def load_preset(name: str, preset_dir: Path = PRESET_DIR) -> dict[str, Any]:
    """Read ``presets/<name>.yaml``; ConfigError listing the presets when unknown."""
    path = preset_dir / f"{name}.yaml"
    if not path.exists():
        raise choice_error("preset", name, available(preset_dir))
    tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping")
    return tree


def _leaves(tree: dict[str, Any], prefix: str = ""):
    for k, v in tree.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _leaves(v, path + ".")
        else:
            yield path, v


def _has(tree: Any, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "{}" if not v else "{" + ",".join(f"{k}:{_fmt(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    s = str(v)
    if any(c.isspace() for c in s):
        raise ConfigError(f"preset value {s!r} contains whitespace; not expressible as a -S flag")
    return s


def overrides(name: str, params_path: str | os.PathLike = "params.yaml", preset_dir: Path = PRESET_DIR) -> list[str]:
    """``-S`` flags (as separate words) that apply preset ``name`` on top of ``params_path``."""
    params = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
    out: list[str] = []
    for path, v in _leaves(load_preset(name, preset_dir)):
        out += ["-S", f"{'' if _has(params, path) else '+'}{path}={_fmt(v)}"]
    return out


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``over`` into a copy of ``base`` (mappings merged, everything else replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and v and isinstance(out.get(k), dict) else v
    return out


def apply_preset(name: str, params_path: str | os.PathLike = "params.yaml", preset_dir: Path = PRESET_DIR) -> None:
    """Merge preset ``name`` into ``params_path`` in place (comments are not preserved)."""
    from singer_ssl.core.io import write_yaml

    params = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
    write_yaml(params_path, merge(params, load_preset(name, preset_dir)))
