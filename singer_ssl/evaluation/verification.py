"""Evaluate stored embeddings of one test dataset: verification metrics, probe, plot data.

For each representation (the encoder's embedding, its projection, each baseline) on the same
trials and the same probe splits:
- EER (%) SUPERB/seed-000 convention with its threshold and a percentile-bootstrap 95 % interval,
- minDCF (p_target 0.01, C_miss = C_fa = 1, normalised by C_def; see singer_ssl.evaluation.metrics),
- MNR (%) (Torres et al.'s mean normalised rank, exact-label negatives, seeded),
- linear-probe singer identification (accuracy, balanced accuracy; split by source recording).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from singer_ssl.evaluation import metrics
from singer_ssl.evaluation.store import EmbeddingSet


class TrialKeyError(ValueError):
    """The trial list names keys absent from the embeddings."""


def trial_indices(es: EmbeddingSet, key1: list[str], key2: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Map trial keys to embedding rows; TrialKeyError naming the unknown keys (before any output)."""
    index = {k: i for i, k in enumerate(es.keys)}
    missing = sorted({k for k in (*key1, *key2) if k not in index})
    if missing:
        ex = ", ".join(missing[:5])
        raise TrialKeyError(f"{len(missing)} trial keys are not in the embeddings (e.g. {ex})")
    return np.fromiter((index[k] for k in key1), int, len(key1)), np.fromiter((index[k] for k in key2), int, len(key2))


def check_labels(labels: np.ndarray) -> None:
    """Both classes must be present for EER/minDCF."""
    n_pos = int((labels == 1).sum())
    if n_pos == 0 or n_pos == len(labels):
        kind = "target (1)" if n_pos else "non-target (0)"
        raise ValueError(f"trial list has only {kind} trials ({len(labels)} trials); EER needs both classes")


def verification(
    vectors: np.ndarray, singers: np.ndarray, labels: np.ndarray, idx1: np.ndarray, idx2: np.ndarray,
    cfg: dict[str, Any],
) -> tuple[dict[str, Any], np.ndarray, tuple[int, int]]:
    """EER, CI, threshold, minDCF and MNR for one representation; also the scores and MNR counts."""
    seed = int(cfg.get("seed", 0))
    scores = metrics.cosine_scores(vectors, idx1, idx2)
    eer, thr = metrics.eer(labels, scores)
    lo, hi = metrics.bootstrap_eer_ci(labels, scores, n_boot=int(cfg.get("bootstrap", 1000)), seed=seed)
    dcf, _ = metrics.min_dcf(labels, scores, p_target=float(cfg.get("p_target", 0.01)),
                             c_miss=float(cfg.get("c_miss", 1.0)), c_fa=float(cfg.get("c_fa", 1.0)))
    pos = labels == 1
    mnr, nq, nneg = metrics.mean_normalized_rank(
        vectors, singers, (idx1[pos], idx2[pos]), n_queries=int(cfg.get("mnr_queries", 1000)),
        n_negatives=int(cfg.get("mnr_negatives", 512)), seed=seed)
    block = {"eer": float(eer), "eer_ci95": [float(lo), float(hi)], "eer_threshold": float(thr),
             "min_dcf": float(dcf), "mnr": float(mnr)}
    return block, scores, (int(nq), int(nneg))


def probe(vectors: np.ndarray, singers: np.ndarray, sources: np.ndarray, cfg: dict[str, Any]) -> dict[str, Any]:
    """Linear-probe singer identification on frozen vectors (split by source recording)."""
    from singer_ssl.evaluation.probe import probe_singer_id

    return probe_singer_id(vectors, singers, sources, seed=int(cfg.get("seed", 0)), **cfg.get("probe", {}))


def singer_means(vectors: np.ndarray, singers: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-singer mean embedding (the GE2E singer encoder's lookup table): sorted singer names, (S, D)."""
    names = sorted(set(singers.tolist()))
    inv = {s: i for i, s in enumerate(names)}
    codes = np.fromiter((inv[s] for s in singers), int, len(singers))
    sums = np.zeros((len(names), vectors.shape[1]))
    np.add.at(sums, codes, vectors)
    return names, sums / np.bincount(codes, minlength=len(names))[:, None]
