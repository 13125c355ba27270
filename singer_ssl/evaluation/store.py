"""Embedding store: one HDF5 file per test dataset, written once by the embed stage.

Layout (all datasets have N rows in the same order):
    key (N,) utf-8, singer (N,) utf-8, source (N,) utf-8
    embedding (N, D_emb) float32, projection (N, D_proj) float32
    baseline/random_init/embedding, baseline/random_init/projection  (same encoder, random weights)
    baseline/random_init/init<k>/embedding, .../projection  (k = 1 .. embed.random_inits - 1: more seeds)
    baseline/mfcc/embedding   (handcrafted: mean+std over time of 20 MFCCs)
    degraded_16k/embedding, degraded_16k/projection   (only with embed.degrade_16k)
    invariance/rows (K,) int64, invariance/t<i>/embedding (K, D_emb)   (only with embed.invariance: the
        trained embedding of rows ``rows`` after controlled transform i; the group's attribute ``transforms``
        lists the transform specs in that order, ``training_chain`` the model's training waveform
        augmentations; see :mod:`singer_ssl.evaluation.invariance`)
The baselines are computed by :mod:`singer_ssl.evaluation.baselines`. Scoring reads these
matrices; no metric re-embeds audio.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from singer_ssl.core.errors import NonFiniteError
from singer_ssl.core.io import atomic_path, open_h5

STR = h5py.string_dtype("utf-8")
INVARIANCE = "invariance"  # the group of the invariance report's transformed embeddings


@dataclass
class EmbeddingSet:
    """Keys, labels and named embedding matrices of one dataset (all rows aligned)."""

    keys: list[str]
    singers: list[str]
    sources: list[str]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (N, D)
    invariance_rows: np.ndarray | None = None  # (K,) rows transformed for the invariance report
    invariance: dict[str, np.ndarray] = field(default_factory=dict)  # transform spec -> (K, D_emb)
    training_chain: tuple[str, ...] = ()  # the model's training waveform augmentations (seen vs held-out)

    def check(self, path: str | os.PathLike | None = None) -> None:
        """Raise ValueError naming the file (``path``, when given), the matrix and rows when a vector is
        NaN/inf or misaligned."""
        try:
            self._check()
        except ValueError as e:
            if path is None:
                raise
            raise type(e)(f"{path}: {e}") from None

    def _check(self) -> None:
        n = len(self.keys)
        if n == 0:
            raise ValueError("embedding set is empty (0 segments)")
        if not (len(self.singers) == len(self.sources) == n):
            raise ValueError("key/singer/source lengths differ")
        for name, v in self.vectors.items():
            if v.shape[0] != n:
                raise ValueError(f"{name}: {v.shape[0]} rows for {n} keys")
            bad = ~np.isfinite(v).all(axis=1)
            if bad.any():
                rows = np.flatnonzero(bad)
                ex = ", ".join(self.keys[i] for i in rows[:3])
                raise NonFiniteError(f"{name}: {bad.sum()} embeddings contain NaN/inf (e.g. {ex})")
        if self.invariance:
            rows = np.asarray(self.invariance_rows if self.invariance_rows is not None else [], dtype=np.int64)
            if rows.size == 0 or rows.min() < 0 or rows.max() >= n:
                raise ValueError(f"invariance/rows: expected row numbers in [0, {n}), got {rows.size} rows")
            for spec, v in self.invariance.items():
                if v.ndim != 2 or v.shape[0] != rows.size or not np.isfinite(v).all():
                    raise ValueError(f"invariance/{spec}/embedding: expected {rows.size} finite rows, "
                                     f"got shape {v.shape}")


def write_embeddings(path: str | os.PathLike, es: EmbeddingSet, attrs: dict | None = None) -> None:
    """Write ``es`` atomically to ``path`` (temp file + rename); nothing is written when :meth:`EmbeddingSet.check`
    fails (NaN/inf embeddings: :class:`~singer_ssl.core.errors.NonFiniteError` naming ``path``)."""
    es.check(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("key", data=np.array(es.keys, dtype=object), dtype=STR)
        f.create_dataset("singer", data=np.array(es.singers, dtype=object), dtype=STR)
        f.create_dataset("source", data=np.array(es.sources, dtype=object), dtype=STR)
        for name, v in es.vectors.items():
            f.create_dataset(name, data=np.asarray(v, dtype=np.float32))
        if es.invariance:
            group = f.create_group(INVARIANCE)
            group.create_dataset("rows", data=np.asarray(es.invariance_rows, dtype=np.int64))
            group.attrs.create("transforms", data=np.array(list(es.invariance), dtype=object), dtype=STR)
            group.attrs.create("training_chain", data=np.array(list(es.training_chain), dtype=object), dtype=STR)
            for i, v in enumerate(es.invariance.values()):
                group.create_dataset(f"t{i}/embedding", data=np.asarray(v, dtype=np.float32))
        for k, v in (attrs or {}).items():
            f.attrs[k] = v


def read_embeddings(path: str | os.PathLike) -> EmbeddingSet:
    """Read every matrix of an embedding file (see module docstring for names)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embedding file not found: {path}")
    vectors: dict[str, np.ndarray] = {}
    with open_h5(path, "embedding file") as f:
        missing = [name for name in ("key", "singer", "source") if name not in f]
        if missing:
            raise ValueError(f"{path}: no {', '.join(missing)} dataset; not a singer-ssl embedding file")
        keys = [s.decode() if isinstance(s, bytes) else s for s in f["key"][()]]
        singers = [s.decode() if isinstance(s, bytes) else s for s in f["singer"][()]]
        sources = [s.decode() if isinstance(s, bytes) else s for s in f["source"][()]]

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset) and obj.ndim == 2 and not name.startswith(f"{INVARIANCE}/"):
                vectors[name] = obj[()].astype(np.float32)

        f.visititems(visit)
        rows, invariance, chain = None, {}, ()
        if INVARIANCE in f:
            group = f[INVARIANCE]
            rows = group["rows"][()].astype(np.int64)
            specs = [s.decode() if isinstance(s, bytes) else str(s) for s in group.attrs["transforms"]]
            invariance = {spec: group[f"t{i}/embedding"][()].astype(np.float32) for i, spec in enumerate(specs)}
            chain = tuple(s.decode() if isinstance(s, bytes) else str(s) for s in group.attrs.get("training_chain", []))
    return EmbeddingSet(keys, singers, sources, vectors, rows, invariance, chain)

