"""Training checkpoints: what is saved, the params fingerprint, RNG states, resuming the dvclive logs.

A checkpoint (``data/checkpoints/last.pt``, written atomically) holds everything needed to continue
a run bit-for-bit: model, teacher (BYOL), objective and optimiser states, the spectrogram
augmentation's state (e.g. the mixup memory bank), the step/epoch position, every process's RNG
states, the best-so-far model and validation loss, the early-stopping counter, and a
**fingerprint** of the parameters that define the run. A run resumes only from a checkpoint whose
fingerprint matches; otherwise it starts fresh and says why.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from singer_ssl.core.io import atomic_path
from singer_ssl.training.config import RUNTIME_KEYS, TrainConfig

FORMAT = 2  # 2: optimiser parameter groups (model, objective)
CHECKPOINT_NAME = "last.pt"


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


def fingerprint(cfg: TrainConfig, data_signature: str) -> str:
    """Hash of :func:`defining_params` and the training data (``data_signature``): a checkpoint resumes
    only a run with the same fingerprint. For a ``params.yaml`` that spells out every key (the shipped
    one) the hash equals the one computed from the raw sections before the typed config existed."""
    relevant = {**defining_params(cfg), "data": data_signature, "format": FORMAT}
    blob = json.dumps(relevant, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def data_signature(names: list[str], keys: list[str], attrs: dict[str, Any], mean: float, std: float) -> str:
    """Hash of the training data's identity: dataset names, segment keys, front end and statistics."""
    h = hashlib.sha256()
    h.update(json.dumps([names, {k: str(v) for k, v in sorted(attrs.items())}, round(mean, 6), round(std, 6)],
                        sort_keys=True).encode("utf-8"))
    for k in keys:
        h.update(k.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def rng_state() -> dict[str, Any]:
    """This process's RNG states (python, numpy, torch CPU, torch CUDA if initialised)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Atomically write a checkpoint (temp file + rename)."""
    payload = {"format": FORMAT, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path: str | os.PathLike) -> dict[str, Any] | None:
    """Read a checkpoint (``None`` if absent). Our own files: full unpickling (RNG states, numpy)."""
    path = Path(path)
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


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
