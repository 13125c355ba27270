"""Singer verification on stored embeddings: map a trial list to embedding rows, score it, report it.

The one scoring path shared by the evaluate stage (:mod:`singer_ssl.evaluation.run`) and
``singer-ssl score`` (:mod:`singer_ssl.cli`):

- :func:`load_trials` reads a trial list (Torres et al. 2023 csv or Kaldi format), checks that it has
  both classes and maps its keys to embedding rows (:class:`TrialKeyError` naming unknown keys);
- :func:`score_trials` gives the cosine scores, the EER (%) (SUPERB / Torres et al. 2023 convention)
  with its threshold, and minDCF (p_target 0.01, C_miss = C_fa = 1 by default, normalised by C_def;
  see :mod:`singer_ssl.evaluation.metrics`);
- :func:`verification` adds the MNR (%) (Torres et al.'s mean normalised rank, exact-label negatives, ties
  counted half, seeded) and percentile-bootstrap 95 % intervals: over trials for the EER, and over singers
  (cluster bootstrap, :func:`singer_ssl.evaluation.metrics.singer_bootstrap_ci`) for EER, minDCF and MNR: one
  metrics block.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from singer_ssl.evaluation import metrics
from singer_ssl.evaluation.store import EmbeddingSet


class TrialKeyError(ValueError):
    """The trial list names keys absent from the embeddings."""


@dataclass(frozen=True)
class Trials:
    """A trial list resolved against an embedding set: ``labels`` (M,) int (1 = same singer), rows (M,)."""

    labels: np.ndarray
    idx1: np.ndarray
    idx2: np.ndarray


@dataclass(frozen=True)
class TrialScores:
    """Cosine ``scores`` (M,) of a trial list, its ``eer`` (%) with ``threshold``, and ``min_dcf``."""

    scores: np.ndarray
    eer: float
    threshold: float
    min_dcf: float


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


def load_trials(es: EmbeddingSet, trials_path: str | os.PathLike) -> Trials:
    """Read ``trials_path`` and resolve it against ``es`` (both classes present, every key known)."""
    from singer_ssl.trials import read_trials

    labels, key1, key2 = read_trials(trials_path)
    labels = np.asarray(labels, dtype=int)
    check_labels(labels)
    idx1, idx2 = trial_indices(es, key1, key2)
    return Trials(labels, idx1, idx2)


def score_trials(vectors: np.ndarray, trials: Trials, p_target: float = 0.01, c_miss: float = 1.0,
                 c_fa: float = 1.0) -> TrialScores:
    """Cosine-score ``trials`` on ``vectors`` (N, D): EER (%), its threshold and normalised minDCF."""
    scores = metrics.cosine_scores(vectors, trials.idx1, trials.idx2)
    eer, thr = metrics.eer(trials.labels, scores)
    dcf, _ = metrics.min_dcf(trials.labels, scores, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
    return TrialScores(scores, float(eer), float(thr), float(dcf))


def verification(
    vectors: np.ndarray, singers: np.ndarray, trials: Trials, *, p_target: float = 0.01, c_miss: float = 1.0,
    c_fa: float = 1.0, bootstrap: int = 1000, mnr_queries: int = 1000, mnr_negatives: int = 512, seed: int = 0,
) -> tuple[dict[str, Any], np.ndarray, tuple[int, int]]:
    """One representation's metrics block, its scores and the MNR counts ``(queries, negatives)`` used.

    Block: ``eer`` (%), ``eer_ci95`` (percentile bootstrap over ``bootstrap`` resamples of the trials,
    seeded), ``eer_threshold``, ``min_dcf``, ``mnr`` (%, over the first ``mnr_queries`` target trials,
    ``mnr_negatives`` other-singer segments each, seeded), and ``eer_ci95_singer``, ``min_dcf_ci95_singer``,
    ``mnr_ci95_singer`` (percentile bootstrap over ``bootstrap`` resamples of the singers, same seed; wider than
    ``eer_ci95`` when a singer's trials are correlated). ``singers`` (N,) labels the rows of ``vectors``.
    """
    scored = score_trials(vectors, trials, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
    labels, singers = trials.labels, np.asarray(singers)
    lo, hi = metrics.bootstrap_eer_ci(labels, scored.scores, n_boot=bootstrap, seed=seed)
    pos = labels == 1
    q1, q2 = trials.idx1[pos], trials.idx2[pos]
    ranks, nneg = metrics.mnr_ranks(vectors, singers, (q1, q2), n_queries=mnr_queries, n_negatives=mnr_negatives,
                                    seed=seed)
    by_singer = metrics.singer_bootstrap_ci(
        labels, scored.scores, singers[trials.idx1], singers[trials.idx2], query_singers=singers[q1[:ranks.size]],
        query_ranks=ranks, n_boot=bootstrap, seed=seed, p_target=p_target, c_miss=c_miss, c_fa=c_fa)
    block = {"eer": scored.eer, "eer_ci95": [float(lo), float(hi)], "eer_threshold": scored.threshold,
             "min_dcf": scored.min_dcf, "mnr": float(100.0 * np.mean(ranks))}
    block.update({f"{name}_ci95_singer": [float(v) for v in by_singer[name]] for name in ("eer", "min_dcf", "mnr")})
    return block, scored.scores, (int(ranks.size), int(nneg))
