"""Training checkpoints: what is saved, the run fingerprint, RNG states, resuming the dvclive logs.

A checkpoint (``data/checkpoints/last.pt``, written atomically) holds everything needed to continue
a run bit-for-bit: model, teacher (BYOL), objective and optimiser states, the spectrogram
augmentation's runtime state (e.g. the mixup memory bank), the step/epoch position, every process's
RNG states, the best-so-far model and validation loss, the early-stopping counter, and a
**fingerprint** of what defines the run: the parameters, the training data and the code (the source
of every ``singer_ssl`` module the train stage runs, and the torch version).

Only an *interrupted* run is resumed: a checkpoint whose fingerprint matches and that is not marked
``finished``. A finished run's checkpoint is never used to skip training (``dvc repro -f train``
retrains), and a checkpoint of other parameters, data or code starts a fresh run, saying why.

Safety: a checkpoint holds only tensors and plain types (dict, list, tuple, str, int, float, bool,
None) and is read with ``torch.load(weights_only=True)``, which refuses any other pickled object; a
file that cannot be read that way (crafted, corrupt, truncated, older format) raises
:class:`CheckpointError` with a one-line reason, and the run starts fresh. Nothing in it is executed.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from singer_ssl.core.io import atomic_path
from singer_ssl.training.config import RUNTIME_KEYS, TrainConfig

FORMAT = 3  # 2: optimiser parameter groups (model, objective); 3: plain types only (weights_only load)
CHECKPOINT_NAME = "last.pt"
TRAIN_MODULE = "singer_ssl.training.run"  # the train stage's entry module: the root of the code fingerprint


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read safely (crafted, corrupt, truncated or of another format)."""


def defining_params(cfg: TrainConfig) -> dict[str, Any]:
    """What defines the run's result, from the config: seed, loss and encoder with their parameters,
    head, augmentations and the training parameters except the runtime knobs
    (:data:`~singer_ssl.training.config.RUNTIME_KEYS`: where/how fast it runs, how often it logs/saves).
    Another objective's or encoder's section is not part of it."""
    return {
        "seed": cfg.seed,
        "loss": cfg.loss,
        "loss_params": cfg.loss_section(),
        "encoder": cfg.encoder,
        "encoder_params": cfg.encoder_kwargs,
        "head": {"kind": cfg.head.kind, "dim": cfg.head.dim, "hidden": cfg.head.hidden},
        "augment": cfg.augment_section(),
        "train": {k: v for k, v in cfg.train_section().items() if k not in RUNTIME_KEYS},
    }


# ---------------------------------------------------------------------------------------------- code


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Module name -> file of every ``.py`` file under ``package_dir`` (named after the folder)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = [package_dir.name, *path.relative_to(package_dir).with_suffix("").parts]
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


_IMPORTS: dict[tuple[str, bytes], list[tuple[int, str | None, list[str]]]] = {}  # (module, sha256) -> imports


def _import_statements(source: bytes, module: str) -> list[tuple[int, str | None, list[str]]]:
    """``(level, module, names)`` of the import statements of a file (``level`` -1 = ``import a.b``),
    cached by content: the top package's load-time ones only (its function-level imports are lazy
    wrappers the train stage never calls), every statement for the others (function level included)."""
    key = (module, hashlib.sha256(source).digest())
    if key not in _IMPORTS:
        tree = ast.parse(source)
        nodes = tree.body if "." not in module else ast.walk(tree)
        _IMPORTS[key] = [(-1, None, [a.name for a in n.names]) if isinstance(n, ast.Import)
                         else (n.level, n.module, [a.name for a in n.names])
                         for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom))]
    return _IMPORTS[key]


def imported_modules(path: Path, module: str, modules: set[str]) -> set[str]:
    """The ``modules`` that running ``path`` (module ``module``) may import (see
    :func:`_import_statements`), with the packages that enclose each imported module (Python runs their
    ``__init__`` first); relative imports resolved."""
    found: set[str] = set()
    for level, base, names in _import_statements(path.read_bytes(), module):
        if level > 0:
            package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
            base = ".".join(package[: len(package) - level + 1] + ([base] if base else []))
        full = names if level < 0 else [f"{base or ''}.{n}" for n in names]
        found.update(p for name in full for p in _prefixes(name) if p in modules)
    return found - {module}


def code_files(package_dir: str | os.PathLike | None = None, entry: str = TRAIN_MODULE) -> dict[str, Path]:
    """Module -> file of every module of the package that running ``entry`` may execute: the static
    import closure of ``entry`` (:func:`imported_modules`), so the same whatever this process imported
    before (the rule ``tests/test_layout.py`` uses to check ``dvc.yaml``'s deps)."""
    package_dir = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parents[1]
    files = package_modules(package_dir)
    modules = set(files)
    seen: set[str] = set()
    todo = [m for m in _prefixes(entry) if m in modules]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(imported_modules(files[m], m, modules) - seen)
    return {m: files[m] for m in sorted(seen)}


def code_signature(package_dir: str | os.PathLike | None = None, entry: str = TRAIN_MODULE) -> str:
    """Hash of the code a training runs: name and bytes of every file of :func:`code_files` (sorted by
    module name) and the torch and numpy versions (their kernels and random streams define the numbers).
    About 40 files, a few milliseconds."""
    h = hashlib.sha256(f"torch {torch.__version__} numpy {np.__version__}\0".encode())
    for module, path in code_files(package_dir, entry).items():
        h.update(module.encode("utf-8") + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()[:16]


def fingerprint(cfg: TrainConfig, data_signature: str, code: str | None = None) -> str:
    """Hash of :func:`defining_params`, the training data (``data_signature``) and the code
    (``code``, default :func:`code_signature`): a checkpoint resumes only a run with the same
    fingerprint."""
    code = code_signature() if code is None else code
    relevant = {**defining_params(cfg), "data": data_signature, "code": code, "format": FORMAT}
    blob = json.dumps(relevant, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def what_differs(state: dict[str, Any], cfg: TrainConfig, signatures: dict[str, str]) -> str:
    """Which of parameters, data and code differ between a checkpoint and this run (for the message
    when the fingerprints differ); ``signatures`` = ``{"data": ..., "code": ...}`` of this run."""
    def canonical(value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    theirs = state.get("signatures") or {}
    differ = ["parameters"] if canonical(state.get("params")) != canonical(defining_params(cfg)) else []
    differ += [k for k in ("data", "code") if theirs.get(k) != signatures[k]]
    return ", ".join(differ) or "checkpoint format"


def data_signature(names: list[str], keys: list[str], attrs: dict[str, Any], mean: float, std: float) -> str:
    """Hash of the training data's identity: dataset names, segment keys, front end and statistics."""
    h = hashlib.sha256()
    h.update(json.dumps([names, {k: str(v) for k, v in sorted(attrs.items())}, round(mean, 6), round(std, 6)],
                        sort_keys=True).encode("utf-8"))
    for k in keys:
        h.update(k.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- state


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU, torch CUDA if initialised), as tensors and
    plain types: python ``[version, [625 ints], gauss_next]``; numpy's MT19937 key as an int64 tensor."""
    version, internal, gauss_next = random.getstate()
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss_next],
        "numpy": {"name": str(name), "key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def module_state(module: nn.Module) -> dict[str, dict[str, Any]]:
    """The runtime state of a module tree that ``state_dict`` misses: for every submodule (by name),
    all its buffers (non-persistent ones too, e.g. the mixup memory bank) and its public ``bool``/
    ``int``/``float`` attributes (e.g. the bank's fill counters). Tensors are copied to the CPU."""
    out = {}
    for name, sub in module.named_modules():
        buffers = {k: v.detach().cpu().clone() for k, v in sub.named_buffers(recurse=False)}
        scalars = {k: v for k, v in vars(sub).items()
                   if not k.startswith("_") and k != "training" and type(v) in (bool, int, float)}
        out[name] = {"buffers": buffers, "attributes": scalars}
    return out


def load_module_state(module: nn.Module, state: dict[str, dict[str, Any]], device: torch.device) -> None:
    """Restore what :func:`module_state` captured (buffers moved to ``device``)."""
    subs = dict(module.named_modules())
    for name, entry in state.items():
        sub = subs[name]
        for k, v in entry["buffers"].items():
            setattr(sub, k, v.to(device))
        for k, v in entry["attributes"].items():
            setattr(sub, k, v)


_PLAIN = (str, int, float, bool, type(None), torch.Tensor)


def plain_state(value: Any, where: str = "checkpoint") -> Any:
    """``value`` with numpy scalars turned into Python numbers; ``TypeError`` naming the key for any
    object that ``torch.load(weights_only=True)`` would refuse (only tensors and plain types pass)."""
    if isinstance(value, dict):
        return type(value)((k, plain_state(v, f"{where}[{k!r}]")) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(plain_state(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, _PLAIN):
        return value
    raise TypeError(f"{where} is a {type(value).__name__}: a checkpoint holds only tensors and plain types")


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write a checkpoint (temp file + rename); tensors and plain types only."""
    payload = plain_state({"format": FORMAT, **payload})
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _reason(err: Exception) -> str:
    """One line about why ``torch.load(weights_only=True)`` failed: the refused Python object when it
    names one, else the first sentence of the error."""
    text = " ".join(str(err).split())
    refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if refused:
        return f"it holds a call of {refused.group(1)}, which no checkpoint contains"
    return f"{type(err).__name__}: {text.split('. ')[0]}"


def load(path: str | os.PathLike) -> dict[str, Any] | None:
    """Read a checkpoint (``None`` if absent) with ``torch.load(weights_only=True)``: tensors and plain
    types only, nothing executed. :class:`CheckpointError` (one line) when the file cannot be read that
    way or is not a checkpoint of this :data:`FORMAT`."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means: not a checkpoint we can trust
        raise CheckpointError(f"{path} cannot be read safely ({_reason(err)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a format-{FORMAT} checkpoint (found {found})")
    return state


def truncate_live_logs(live_dir: str | os.PathLike, last_step: int) -> None:
    """Drop rows with ``step > last_step`` from dvclive's step logs (``<dir>/plots/metrics/**.tsv``).

    A run killed after logging step 7 but checkpointed at step 6 would otherwise log step 7 twice
    when it resumes.
    """
    root = Path(live_dir) / "plots" / "metrics"
    if not root.is_dir():
        return
    for tsv in root.rglob("*.tsv"):
        with open(tsv, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t"))
        if not rows or "step" not in rows[0]:
            continue
        col = rows[0].index("step")
        kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[col])) <= last_step]
        if len(kept) != len(rows):
            with atomic_path(tsv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
                csv.writer(f, delimiter="\t", lineterminator="\n").writerows(kept)
