"""The evaluate stage's back-end blocks: S-norm / AS-norm scores and calibrated LLRs of one representation.

Reference data (:func:`load_reference`): the embed-train stage's files ``data/embeddings/train/<dataset>.h5``
(every training segment embedded by the trained encoder and by the same baselines as the test sets, so each
representation gets its own cohort) and the validation singers the train stage held out
(``val_singers`` of the model folder's ``threshold.json``). The *cohort* is the per-singer mean embeddings of
the training singers that were trained on (validation singers left out), the *calibration trials* every pair
of the validation singers' segments (at most :data:`CALIBRATION_MAX_SEGMENTS`, seeded): singers the encoder
never trained on, as test singers are. Test singers never enter either.

Block of a representation (:func:`backend_block`, formulas in :mod:`singer_ssl.evaluation.backend`)::

    score_norm: {cohort_singers, top_n, snorm: {eer, min_dcf, mnr}, asnorm: {eer, min_dcf, mnr}}
    calibration: {score, scale, offset, act_dcf, min_dcf, cllr, min_cllr, trials, singers}   (only with
        >= 2 validation singers; ``score`` = the calibrated score: cosine, or evaluate.score_norm.method's)

The MNR of a normalised score ranks the same candidates (:func:`singer_ssl.evaluation.metrics.mnr_ranks`'s
seeded other-singer negatives) by that score.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from singer_ssl.evaluation import backend, metrics

#: most validation-singer segments whose pairs are the calibration trials (a seeded subset beyond it)
CALIBRATION_MAX_SEGMENTS = 600


@dataclass(frozen=True)
class Reference:
    """Training-data embeddings: ``vectors`` name -> (N, D), ``singers`` (N,) ``"<dataset>/<singer>"``,
    ``is_val`` (N,) whether the row's singer was held out for validation (None: unknown, no calibration)."""

    vectors: dict[str, np.ndarray]
    singers: np.ndarray
    is_val: np.ndarray | None
    files: tuple[str, ...]


def load_reference(train_dir: str | os.PathLike, model_dir: str | os.PathLike | None = None) -> Reference:
    """Read every ``*.h5`` of ``train_dir`` (embed-train files) and the validation singers of ``model_dir``.

    ValueError naming the folder when it holds no embedding file or the files disagree on the matrices.
    """
    from singer_ssl.evaluation.store import read_embeddings

    files = sorted(Path(train_dir).glob("*.h5"))
    if not files:
        raise ValueError(f"{train_dir}: no training-data embedding files (*.h5 of the embed-train stage)")
    sets = [read_embeddings(f) for f in files]
    for es in sets:
        es.check()
    names = [n for n in sets[0].vectors if all(n in es.vectors for es in sets)]
    if not names:
        raise ValueError(f"{train_dir}: the files share no embedding matrix")
    vectors = {n: np.concatenate([es.vectors[n] for es in sets]) for n in names}
    singers = np.concatenate([[f"{f.stem}/{s}" for s in es.singers] for f, es in zip(files, sets)])
    val = validation_singers(model_dir) if model_dir is not None else None
    is_val = None if not val else np.isin(singers, np.asarray(val, dtype=str))
    return Reference(vectors, singers, is_val, tuple(str(f) for f in files))


def validation_singers(model_dir: str | os.PathLike) -> list[str] | None:
    """``val_singers`` (``"<dataset>/<singer>"``) of the model folder's ``threshold.json`` (the train stage's
    record, :data:`singer_ssl.model.folder.THRESHOLD_FILE`; read here without the model code); None when the
    file or the key is absent (a model trained without validation singers). ValueError naming the file when
    it is malformed."""
    import json

    path = Path(model_dir) / "threshold.json"
    if not path.is_file():
        return None
    try:
        val = json.loads(path.read_text(encoding="utf-8")).get("val_singers")
    except (ValueError, AttributeError) as e:
        raise ValueError(f"{path}: not a JSON object ({e})") from None
    if val is not None and not (isinstance(val, list) and all(isinstance(v, str) for v in val)):
        raise ValueError(f"{path}: val_singers must be a list of singer names, got {val!r}")
    return val


def _calibration_pairs(ref: Reference, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """All pairs ``i < j`` of (a seeded subset of) the validation rows and their labels; None when fewer than two
    validation singers or no target pair."""
    if ref.is_val is None:
        return None
    rows = np.flatnonzero(ref.is_val)
    if len(rows) > CALIBRATION_MAX_SEGMENTS:
        rows = np.sort(np.random.default_rng([int(seed), 0xCA1]).choice(rows, CALIBRATION_MAX_SEGMENTS,
                                                                        replace=False))
    a, b = np.triu_indices(len(rows), k=1)
    i, j = rows[a], rows[b]
    labels = (ref.singers[i] == ref.singers[j]).astype(int)
    if len(np.unique(ref.singers[rows])) < 2 or not labels.any():
        return None
    return i, j, labels


def normalised_mnr(vectors: np.ndarray, singers: np.ndarray, q1: np.ndarray, q2: np.ndarray, cohort: np.ndarray,
                   mean: np.ndarray, method: str, top_n: int, n_queries: int, n_negatives: int, seed: int) -> float:
    """MNR (%) with ``method``'s normalised scores: :func:`singer_ssl.evaluation.metrics.mnr_ranks` on the same
    queries and seeded negatives, candidates ranked by the normalised score (ties counted half)."""
    q1, q2 = q1[:n_queries], q2[:n_queries]
    negatives = metrics.sample_other_singer_negatives(singers, q1, n_negatives=n_negatives, seed=seed)
    q, k = negatives.shape
    candidates = np.hstack([q2[:, None], negatives])
    sims = backend.normalize_scores(vectors, np.repeat(q1, k + 1), candidates.ravel(), cohort, mean, method,
                                    top_n).reshape(q, k + 1)
    higher = (sims[:, 1:] > sims[:, :1]).sum(axis=1)
    tied = (sims[:, 1:] == sims[:, :1]).sum(axis=1)
    return float(100.0 * np.mean((higher + 0.5 * tied) / (k + 1)))


def backend_block(name: str, vectors: np.ndarray, singers: np.ndarray, labels: np.ndarray, idx1: np.ndarray,
                  idx2: np.ndarray, raw_scores: np.ndarray, ref: Reference, method: str, top_n: int, *,
                  p_target: float, c_miss: float, c_fa: float, mnr_queries: int, mnr_negatives: int,
                  seed: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The block of representation ``name`` (module docstring) and its normalised trial scores by method.

    ``vectors`` (N, D) and ``singers`` (N,) are the test set's, ``labels``/``idx1``/``idx2``/``raw_scores`` (M,)
    its trial list and cosine scores; the cohort and calibration come from ``ref.vectors[name]``.
    """
    train = ref.vectors[name]
    keep = ~ref.is_val if ref.is_val is not None else np.ones(len(train), bool)
    cohort, mean = backend.singer_cohort(train[keep], ref.singers[keep])
    pos = labels == 1
    q1, q2 = idx1[pos], idx2[pos]
    block: dict[str, Any] = {"cohort_singers": int(len(cohort)), "top_n": int(min(top_n, len(cohort)))}
    scores: dict[str, np.ndarray] = {}
    for m in ("snorm", "asnorm"):
        s = scores[m] = backend.normalize_scores(vectors, idx1, idx2, cohort, mean, m, top_n)
        block[m] = {"eer": metrics.eer(labels, s)[0],
                    "min_dcf": metrics.min_dcf(labels, s, p_target=p_target, c_miss=c_miss, c_fa=c_fa)[0],
                    "mnr": normalised_mnr(vectors, singers, q1, q2, cohort, mean, m, top_n, mnr_queries,
                                          mnr_negatives, seed)}
    out: dict[str, Any] = {"score_norm": block}
    pairs = _calibration_pairs(ref, seed)
    if pairs is not None:
        i, j, lab = pairs
        if method == "none":
            fit_scores, test_scores = metrics.cosine_scores(train, i, j), raw_scores
        else:
            fit_scores = backend.normalize_scores(train, i, j, cohort, mean, method, top_n)
            test_scores = scores[method]
        cal = backend.fit_calibration(fit_scores, lab)
        llr = cal.llr(test_scores)
        out["calibration"] = {
            "score": "cosine" if method == "none" else method, **cal.to_dict(),
            "act_dcf": backend.act_dcf(llr, labels, p_target, c_miss, c_fa),
            "min_dcf": metrics.min_dcf(labels, test_scores, p_target=p_target, c_miss=c_miss, c_fa=c_fa)[0],
            "cllr": backend.cllr(llr, labels), "min_cllr": backend.min_cllr(test_scores, labels),
            "trials": int(len(lab)), "singers": int(len(np.unique(ref.singers[np.r_[i, j]])))}
    return out, scores


def mean_blocks(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The random-init baseline's back-end block: floats averaged over initialisations, other leaves (counts,
    names) taken from the first; keys missing from any block left out."""
    first = blocks[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if not all(key in b for b in blocks):
            continue
        if isinstance(value, dict):
            out[key] = mean_blocks([b[key] for b in blocks])
        elif isinstance(value, float):
            out[key] = float(np.mean([b[key] for b in blocks]))
        else:
            out[key] = value
    return out
