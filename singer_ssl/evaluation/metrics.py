"""Verification metrics for singer embeddings: cosine scoring, ROC/DET, EER, minDCF, bootstrap, MNR.

Conventions (chosen where implementations disagree: SUPERB s3prl for EER, NIST SRE for minDCF):

- A *trial* is a pair of embedding rows with a label, 1 = same singer (target), 0 = different singers.
- A score is the cosine similarity of the two embeddings; a trial is *accepted* (declared same singer)
  when ``score >= threshold``.
- EER follows SUPERB / s3prl ``EER`` and Torres et al. 2023 (``eval.py::EER``): the ROC curve is linearly
  interpolated and the EER is the root of ``1 - x = tpr(x)``. Here the root is found in closed form on the
  crossing segment (identical to ``brentq`` on ``interp1d(fpr, tpr)`` up to its tolerance).
- minDCF is normalised by ``C_def = min(C_miss * P_target, C_fa * (1 - P_target))`` (NIST SRE, Kaldi
  ``ComputeMinDcf``, wespeaker ``compute_c_norm``). SpeechBrain's ``minDCF`` returns the *unnormalised*
  C_det (its recipe logs ``100 * C_det``, equal to the normalised value only for P_target = 0.01, C = 1).
- MNR follows Torres et al. 2023 (``eval.py::compute_rank``) with its pitfalls fixed: exact singer-label match (not a
  path substring test), seeded sampling, ties counted half (expected rank under a random tie-break, so a collapsed
  model scores chance, not 0), and graceful use of fewer queries/negatives when data are short.
- Confidence intervals: a percentile bootstrap over trials (:func:`bootstrap_eer_ci`) and one over singers
  (:func:`singer_bootstrap_ci`, EER, minDCF and MNR), which accounts for trials of one singer being correlated.

All functions take numpy arrays, never modify them, and raise ``ValueError`` naming the culprit on bad input
(single-class trial lists, NaN/inf scores or embeddings, out-of-range indices).
"""

from __future__ import annotations

import warnings

import numpy as np

from singer_ssl.core.errors import NonFiniteError

__all__ = [
    "bootstrap_eer_ci",
    "bootstrap_eer_samples",
    "cosine_scores",
    "det_curve",
    "eer",
    "mean_normalized_rank",
    "min_dcf",
    "mnr_ranks",
    "paired_singer_eer_difference",
    "paired_singer_eer_differences",
    "roc",
    "sample_other_singer_negatives",
    "singer_bootstrap_ci",
    "singer_bootstrap_samples",
    "thin_curve",
]

NORM_EPS = 1e-8  # lower bound on an embedding's L2 norm (torch.nn.CosineSimilarity's eps, as Torres et al. 2023 uses)


# --------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------


def _check_embeddings(emb: np.ndarray, name: str = "embeddings") -> np.ndarray:
    emb = np.asarray(emb)
    if emb.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, D); got shape {emb.shape}")
    if emb.shape[0] == 0 or emb.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {emb.shape}")
    if not np.issubdtype(emb.dtype, np.floating):
        emb = emb.astype(np.float64)
    finite = np.isfinite(emb)
    if not finite.all():
        bad_rows = np.flatnonzero(~finite.all(axis=1))
        raise ValueError(
            f"{name} contain {int((~finite).sum())} NaN/inf values in {bad_rows.size} rows "
            f"(first rows: {bad_rows[:10].tolist()})"
        )
    return emb


def _check_indices(idx: np.ndarray, n: int, name: str) -> np.ndarray:
    idx = np.asarray(idx)
    if idx.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name} must hold integer row indices; got dtype {idx.dtype}")
    idx = idx.astype(np.int64, copy=False)
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        raise ValueError(
            f"{name} has {int(bad.sum())} indices outside [0, {n}) (e.g. {idx[bad][:5].tolist()})"
        )
    return idx


def _check_trials(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a trial list: 1-D, same length, labels in {0, 1} with both present, finite scores."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D; got shapes {labels.shape} and {scores.shape}")
    if labels.shape != scores.shape:
        raise ValueError(f"labels ({labels.size}) and scores ({scores.size}) differ in length")
    if labels.dtype != bool:
        valid = (labels == 0) | (labels == 1)
        if not valid.all():
            raise ValueError(
                f"labels must be 0/1 (1 = same singer); {int((~valid).sum())} other values "
                f"(e.g. {np.unique(labels[~valid])[:5].tolist()})"
            )
        labels = labels == 1
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        only = "target (label 1)" if n_pos else "non-target (label 0)"
        raise ValueError(
            f"trial list has only {only} trials ({labels.size} trials); "
            "EER/minDCF/ROC need both target and non-target trials"
        )
    bad = ~np.isfinite(scores)
    if bad.any():
        raise NonFiniteError(
            f"scores contain {int(bad.sum())} NaN/inf values (first trials: {np.flatnonzero(bad)[:10].tolist()})"
        )
    return labels, scores


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def _sampled_dot_torch(emb: np.ndarray, idx1: np.ndarray, idx2: np.ndarray) -> np.ndarray:
    """Row-wise dots ``emb[idx1[k]] . emb[idx2[k]]`` as one sparse-sampled matmul (SDDMM), no gathered copy."""
    import torch

    n = emb.shape[0]
    order = np.argsort(idx1, kind="stable")  # CSR needs trials grouped by their first row
    crow = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(idx1, minlength=n), out=crow[1:])
    mat = torch.from_numpy(emb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta state"
        pattern = torch.sparse_csr_tensor(
            torch.from_numpy(crow), torch.from_numpy(idx2[order]), torch.zeros(idx1.size, dtype=mat.dtype),
            size=(n, n), check_invariants=False,
        )
        sampled = torch.sparse.sampled_addmm(pattern, mat, mat.T, beta=0.0, alpha=1.0)
    out = np.empty(idx1.size, dtype=emb.dtype)
    out[order] = sampled.values().numpy()
    return out


def _sampled_dot_numpy(emb: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, batch: int) -> np.ndarray:
    out = np.empty(idx1.size, dtype=emb.dtype)
    for start in range(0, idx1.size, batch):
        sl = slice(start, start + batch)
        np.einsum("ij,ij->i", np.take(emb, idx1[sl], axis=0), np.take(emb, idx2[sl], axis=0), out=out[sl])
    return out


def cosine_scores(
    emb: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, batch: int = 16384, backend: str = "auto"
) -> np.ndarray:
    """Cosine similarity of embedding-row pairs: ``cos(emb[idx1[k]], emb[idx2[k]])`` for every trial k.

    Args:
        emb: (N, D) embeddings, any float dtype (float16 is computed in float32; float32 stays float32,
            float64 stays float64).
        idx1, idx2: (M,) integer row indices into ``emb``.
        batch: trials per chunk for the numpy backend (bounds the temporary memory to 2 x batch x D).
        backend: ``"torch"`` (one sparse-sampled matrix product, ``torch.sparse.sampled_addmm``: no
            gathered (M, D) copy, several times faster for 10^6 trials), ``"numpy"`` (chunked gather + row-wise
            dot), or ``"auto"`` (torch when importable).

    Returns:
        (M,) float64 scores in [-1, 1]. The norm of each row is clamped below at ``NORM_EPS`` (as
        ``torch.nn.CosineSimilarity(eps=1e-8)`` in Torres et al. 2023), so an all-zero embedding scores 0.

    Computed as ``dot / (|a| |b|)`` with the norms computed once per row, which equals the dot product of the
    L2-normalised rows.
    """
    if backend not in ("auto", "torch", "numpy"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'numpy'; got {backend!r}")
    emb = _check_embeddings(emb)
    idx1 = _check_indices(idx1, emb.shape[0], "idx1")
    idx2 = _check_indices(idx2, emb.shape[0], "idx2")
    if idx1.shape != idx2.shape:
        raise ValueError(f"idx1 ({idx1.size}) and idx2 ({idx2.size}) differ in length")
    if emb.dtype != np.float64:
        emb = emb.astype(np.float32, copy=False)
    emb = np.ascontiguousarray(emb)
    norms = np.sqrt(np.einsum("ij,ij->i", emb, emb, dtype=np.float64))
    np.maximum(norms, NORM_EPS, out=norms)
    if idx1.size == 0:
        return np.empty(0, dtype=np.float64)
    dots = None
    if backend in ("auto", "torch"):
        try:
            dots = _sampled_dot_torch(emb, idx1, idx2)
        except (ImportError, RuntimeError, AttributeError, NotImplementedError, TypeError):
            if backend == "torch":
                raise
    if dots is None:
        dots = _sampled_dot_numpy(emb, idx1, idx2, max(1, int(batch)))
    scores = dots.astype(np.float64) / (norms[idx1] * norms[idx2])
    return np.clip(scores, -1.0, 1.0, out=scores)


# --------------------------------------------------------------------------------------------------
# ROC, EER, minDCF, DET
# --------------------------------------------------------------------------------------------------


def _counts_at_thresholds(labels: np.ndarray, scores: np.ndarray):
    """Cumulative (false positives, true positives) when accepting scores >= each distinct score.

    Returns ``fps, tps, thresholds`` over distinct scores in decreasing order (sklearn's
    ``_binary_clf_curve`` / ``confusion_matrix_at_thresholds``). The order within tied scores does not matter
    (each tied group is read at its end), so the faster unstable sort is used.
    """
    order = np.argsort(-scores)
    sorted_scores = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), scores.size - 1]
    tps = np.cumsum(labels[order], dtype=np.int64)[ends]
    fps = 1 + ends - tps
    return fps, tps, sorted_scores[ends]


def roc(
    labels: np.ndarray, scores: np.ndarray, drop_intermediate: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve, equal to ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=...)`` (sklearn >= 1.3).

    Args:
        labels: (M,) 0/1 or bool, 1 = same singer. scores: (M,) finite floats, higher = more similar.
        drop_intermediate: drop collinear points that do not change the piecewise-linear curve (sklearn's default).

    Returns:
        ``fpr, tpr, thresholds``: (K,) arrays by decreasing threshold; the first point is (0, 0) at
        threshold +inf, the last (1, 1) at the lowest score. A trial is accepted when score >= threshold.
    """
    labels, scores = _check_trials(labels, scores)
    fps, tps, thresholds = _counts_at_thresholds(labels, scores)
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
        fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]
    fpr = np.r_[0.0, fps / fps[-1]]
    tpr = np.r_[0.0, tps / tps[-1]]
    return fpr, tpr, np.r_[np.inf, thresholds]


def _eer_point(fpr: np.ndarray, tpr: np.ndarray) -> tuple[int, float, float]:
    """Segment index j and fraction lam where the polyline (fpr, tpr) crosses fpr + tpr = 1; returns (j, lam, eer).

    ``g = 1 - fpr - tpr`` is non-increasing along a ROC polyline, from 1 at (0, 0) to -1 at (1, 1); the crossing
    lies on the first segment (j-1, j) with g[j] <= 0, at ``lam = g[j-1] / (g[j-1] - g[j])``. On a vertical
    segment (fpr[j-1] == fpr[j]) the crossing x is that fpr, exactly where brentq's sign change lies.
    """
    g = 1.0 - fpr - tpr
    j = int(np.argmax(g <= 0.0))
    lam = g[j - 1] / (g[j - 1] - g[j])
    return j, float(lam), float(fpr[j - 1] + lam * (fpr[j] - fpr[j - 1]))


def eer(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Equal error rate (percent) and its threshold, SUPERB / Torres et al. 2023 convention.

    Method (s3prl ``EER``, Torres et al. ``eval.py::EER``): ``fpr, tpr, thr = roc_curve(labels, scores)``; the EER is
    the root x of ``1 - x = interp(fpr, tpr)(x)`` on [0, 1] (false-acceptance rate = false-rejection rate on the
    linearly interpolated ROC). SUPERB finds it with ``scipy.optimize.brentq``; here it is solved exactly on the
    crossing segment (same root, no iteration tolerance). The threshold is the linear interpolation of the
    thresholds at the same point of the segment, i.e. ``interp(fpr, thr)(eer)`` wherever fpr is not repeated;
    on a vertical ROC segment (where ``interp1d`` is ill-defined) it interpolates along tpr instead, and the
    +inf threshold of the (0, 0) point is replaced by the highest score.

    Args:
        labels: (M,) 0/1 or bool, 1 = same singer. scores: (M,) finite, higher = more similar.

    Returns:
        ``(eer_percent, threshold)``: e.g. perfect separation gives 0.0, identical scores give 50.0.

    Raises:
        ValueError: single-class labels, NaN/inf scores, mismatched lengths.
    """
    fpr, tpr, thr = roc(labels, scores, drop_intermediate=True)
    j, lam, x = _eer_point(fpr, tpr)
    t = thr.copy()
    t[0] = t[1]
    return 100.0 * x, float(t[j - 1] + lam * (t[j] - t[j - 1]))


def min_dcf(
    labels: np.ndarray, scores: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Normalised minimum detection cost (NIST SRE; Kaldi ``ComputeMinDcf``; wespeaker convention).

    ``C_det(t) = c_miss * P_miss(t) * p_target + c_fa * P_fa(t) * (1 - p_target)`` with
    ``P_miss(t)`` = fraction of target trials scoring < t and ``P_fa(t)`` = fraction of non-target trials scoring
    >= t; minimised over every distinct score and t = +inf (reject all), then divided by
    ``C_def = min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the better trivial system, so the
    value lies in [0, 1]. (SpeechBrain's ``minDCF`` returns the unnormalised C_det.)

    Returns:
        ``(min_dcf, threshold)``: the threshold attaining the minimum (+inf when rejecting every trial is optimal;
        the highest such threshold on ties).
    """
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1); got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive; got {c_miss}, {c_fa}")
    fpr, tpr, thr = roc(labels, scores, drop_intermediate=False)
    c_det = c_miss * (1.0 - tpr) * p_target + c_fa * fpr * (1.0 - p_target)
    c_def = min(c_miss * p_target, c_fa * (1.0 - p_target))
    i = int(np.argmin(c_det))
    return float(c_det[i] / c_def), float(thr[i])


def det_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Detection error trade-off: every operating point, by increasing threshold.

    Returns:
        ``fpr, fnr, thresholds`` (K,) with ``fpr`` = fraction of non-target trials scoring >= threshold (false
        acceptance) and ``fnr`` = fraction of target trials scoring < threshold (false rejection), one point per
        distinct score plus the reject-all point at +inf (last). Plot on normal-deviate axes
        (``scipy.stats.norm.ppf``) for the usual DET look; use :func:`thin_curve` to keep plots light.
    """
    fpr, tpr, thr = roc(labels, scores, drop_intermediate=False)
    return fpr[::-1].copy(), (1.0 - tpr)[::-1].copy(), thr[::-1].copy()


def thin_curve(*arrays: np.ndarray, max_points: int = 1000, probit: bool = False) -> tuple[np.ndarray, ...]:
    """Thin a plotted curve to at most ``max_points`` points, evenly spaced along its length.

    The first two arrays are the x and y coordinates (e.g. fpr, tpr); any further arrays (e.g. thresholds) are
    thinned with the same indices. Points are picked at equal arc-length steps in (x, y) — or in normal-deviate
    coordinates when ``probit`` is set (for DET plots) — and the first and last points are always kept.
    """
    if len(arrays) < 2:
        raise ValueError("thin_curve needs at least the x and y arrays")
    arrays = tuple(np.asarray(a) for a in arrays)
    n = arrays[0].size
    if any(a.shape != (n,) for a in arrays):
        raise ValueError(f"curve arrays must be 1-D of equal length; got shapes {[a.shape for a in arrays]}")
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2; got {max_points}")
    if n <= max_points:
        return tuple(a.copy() for a in arrays)
    x, y = arrays[0].astype(np.float64), arrays[1].astype(np.float64)
    if probit:
        from scipy.stats import norm

        x, y = (norm.ppf(np.clip(v, 1e-6, 1 - 1e-6)) for v in (x, y))
    step = np.hypot(np.diff(x), np.diff(y))
    step[~np.isfinite(step)] = 0.0
    arc = np.r_[0.0, np.cumsum(step)]
    if arc[-1] == 0.0:
        keep = np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))
    else:
        keep = np.unique(np.r_[0, np.searchsorted(arc, np.linspace(0.0, arc[-1], max_points - 1)), n - 1])
        keep = keep[keep < n]
    return tuple(a[keep] for a in arrays)


# --------------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------------


def _eer_rows(fps: np.ndarray, tps: np.ndarray) -> np.ndarray:
    """EER (percent) of each row of cumulative (weighted) counts read at the ends of tied-score groups.

    ``fps``, ``tps``: (B, K) false/true positives when accepting the K distinct scores by decreasing score; the last
    column holds each row's non-target/target totals. The (0, 0) point is prepended and the crossing of
    ``1 - fpr - tpr`` found as in :func:`_eer_point`. Rows lacking one class give NaN.
    """
    b = fps.shape[0]
    n_pos = tps[:, -1:].astype(np.float64)
    n_neg = fps[:, -1:].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.hstack([np.zeros((b, 1)), tps / n_pos])
        fpr = np.hstack([np.zeros((b, 1)), fps / n_neg])
    g = 1.0 - fpr - tpr
    j = np.argmax(g <= 0.0, axis=1)
    rows = np.arange(b)
    g0, g1 = g[rows, j - 1], g[rows, j]
    with np.errstate(invalid="ignore", divide="ignore"):
        lam = g0 / (g0 - g1)
    x0, x1 = fpr[rows, j - 1], fpr[rows, j]
    result = 100.0 * (x0 + lam * (x1 - x0))
    result[(n_pos[:, 0] == 0) | (n_neg[:, 0] == 0)] = np.nan
    return result


def _min_dcf_rows(fps: np.ndarray, tps: np.ndarray, p_target: float, c_miss: float, c_fa: float) -> np.ndarray:
    """Normalised minDCF (as :func:`min_dcf`) of each row of cumulative counts (see :func:`_eer_rows`); NaN rows
    lack one class. The reject-all point (P_miss = 1, P_fa = 0) is included."""
    n_pos = tps[:, -1:].astype(np.float64)
    n_neg = fps[:, -1:].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        c_det = c_miss * (1.0 - tps / n_pos) * p_target + c_fa * (fps / n_neg) * (1.0 - p_target)
    best = np.minimum(c_det.min(axis=1), c_miss * p_target)
    best /= min(c_miss * p_target, c_fa * (1.0 - p_target))
    best[(n_pos[:, 0] == 0) | (n_neg[:, 0] == 0)] = np.nan
    return best


def _percentile_ci(samples: np.ndarray, alpha: float, what: str) -> tuple[float, float]:
    """Efron's percentile interval (numpy linear interpolation) of the finite ``samples``."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        raise ValueError(f"every bootstrap resample of the {what} was undefined (a class or query set was empty)")
    lo, hi = np.percentile(samples, [50.0 * alpha, 100.0 - 50.0 * alpha])
    return float(lo), float(hi)


def bootstrap_eer_samples(
    labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0, block_elements: int = 4_000_000
) -> np.ndarray:
    """EER (percent) of ``n_boot`` bootstrap resamples of the trial list (resampling trials with replacement).

    Method: the trials are sorted once by decreasing score (stable sort of ``-scores``). Resample r draws
    ``idx = rng.integers(0, M, M)`` positions in that sorted order (``rng = np.random.default_rng(seed)``, resamples
    drawn in order; drawing positions of the sorted list is the same distribution as drawing trials). Each
    resample is held as per-trial multiplicities (``np.bincount``), so its ROC is two cumulative sums over the
    pre-sorted trials, read at the ends of tied-score groups: O(M) per resample, no re-sorting. Its EER is the
    same interpolated-ROC root as :func:`eer`, i.e. resample r's value equals
    ``eer(labels[order][idx], scores[order][idx])``. Resamples are processed in blocks of about
    ``block_elements`` multiplicities.

    Returns:
        (n_boot,) EER percentages; NaN for a resample that happens to lack one class (only for tiny lists).
    """
    labels, scores = _check_trials(labels, scores)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    m = scores.size
    order = np.argsort(-scores, kind="stable")
    is_target = labels[order]
    sorted_scores = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), m - 1]  # last position of each tied group
    rng = np.random.default_rng(seed)
    cum_dtype = np.int32 if m < 2**31 else np.int64
    block = max(1, min(n_boot, block_elements // m))
    out = np.empty(n_boot)
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        draws = rng.integers(0, m, size=(b, m))
        draws += (np.arange(b, dtype=np.int64) * m)[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * m).astype(cum_dtype).reshape(b, m)
        fps = np.cumsum(counts, axis=1, dtype=cum_dtype)[:, ends]
        counts *= is_target
        tps = np.cumsum(counts, axis=1, dtype=cum_dtype)[:, ends]
        fps -= tps
        out[start : start + b] = _eer_rows(fps, tps)
    return out


def bootstrap_eer_ci(
    labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile-bootstrap ``(1 - alpha)`` confidence interval of the EER (percent).

    Resamples trials with replacement (:func:`bootstrap_eer_samples`, seeded) and returns the ``alpha/2`` and
    ``1 - alpha/2`` percentiles (numpy's linear interpolation) of the resampled EERs (Efron's percentile interval).
    Trials sharing a segment are treated as independent, so the interval is optimistic when segments recur in many
    trials. Resamples lacking one class (possible only for tiny trial lists) are left out.
    About 1 s for 1000 resamples of 20,000 trials on 2 CPU cores; cost grows as ``n_boot * M``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha}")
    samples = bootstrap_eer_samples(labels, scores, n_boot=n_boot, seed=seed)
    if not np.isfinite(samples).any():
        raise ValueError("every bootstrap resample lacked target or non-target trials; the trial list is too small")
    return _percentile_ci(samples, alpha, "EER")


def singer_bootstrap_samples(
    labels: np.ndarray,
    scores: np.ndarray,
    singer1: np.ndarray,
    singer2: np.ndarray,
    *,
    query_singers: np.ndarray | None = None,
    query_ranks: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
    block_elements: int = 4_000_000,
) -> dict[str, np.ndarray]:
    """EER (%), minDCF and MNR (%) of ``n_boot`` singer-level (cluster) bootstrap resamples of a trial list.

    Trials sharing a singer are correlated (one singer's voice sets the level of all its scores), so resampling
    trials as if independent understates the spread; the singer is the sampling unit. Resampling the top level of a
    hierarchy only (Davison & Hinkley 1997, *Bootstrap Methods and their Application*, sec. 3.8) is the "subsets
    bootstrap" of Bolle, Ratha & Pankanti 2004 (CVIU 93) and the user-level stage of Poh, Martin & Bengio 2007 (IEEE
    TPAMI 29(3)); segments within a singer are *not* resampled again (a second stage inflates the variance).

    Method: the S distinct singers of the trials (``singer1``, ``singer2``, ``query_singers``) are drawn S times with
    replacement, ``rng.integers(0, S, S)`` per resample in order (``rng = np.random.default_rng(seed)``), giving
    multiplicities ``c_s``. Each draw is a distinct pseudo-singer, so a trial gets weight

    - ``c_s`` when both segments are singer s (its target trials, one copy per draw of s);
    - ``c_s * c_t`` when they are singers s != t (one copy per pair of drawn copies: the vertex bootstrap of
      dyadic data, Snijders & Borgatti 1999, *Connections* 22(2)); two copies of one singer form no non-target pair,
      since no such trial exists, and a trial with an undrawn singer gets weight 0.

    The weighted ROC of each resample is two cumulative sums over the trials sorted once by score (as in
    :func:`bootstrap_eer_samples`), so resample r equals the metrics of the trial list with trial i repeated
    ``w_ri`` times. MNR: query q (normalised rank ``query_ranks[q]`` in [0, 1), singer ``query_singers[q]``) gets
    weight ``c_s`` of its singer; its negatives are kept as drawn (they are a random reference set).

    Args:
        labels, scores: (M,) trial labels (1 = same singer) and scores. singer1, singer2: (M,) singer labels of each
            trial's two segments. query_singers, query_ranks: (Q,) for MNR (both or neither).
        p_target, c_miss, c_fa: minDCF cost model (:func:`min_dcf`).

    Returns:
        ``{"eer": (B,), "min_dcf": (B,)}`` plus ``"mnr": (B,)`` when queries are given; NaN where a resample lacks
        target or non-target trials (or queries).
    """
    labels, scores = _check_trials(labels, scores)
    singer1, singer2 = np.asarray(singer1), np.asarray(singer2)
    if singer1.shape != scores.shape or singer2.shape != scores.shape:
        raise ValueError(
            f"singer1 {singer1.shape} and singer2 {singer2.shape} must match the {scores.size} trials"
        )
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    if (query_singers is None) != (query_ranks is None):
        raise ValueError("give both query_singers and query_ranks for the MNR bootstrap, or neither")
    m = scores.size
    qs = np.asarray(query_singers) if query_singers is not None else singer1[:0]
    ranks = np.asarray(query_ranks, dtype=np.float64) if query_ranks is not None else np.empty(0)
    if qs.shape != ranks.shape or qs.ndim != 1:
        raise ValueError(f"query_singers {qs.shape} and query_ranks {ranks.shape} must be 1-D of equal length")
    _, codes = np.unique(np.concatenate([singer1, singer2, qs]), return_inverse=True)
    codes = codes.reshape(-1)
    n_singers = int(codes.max()) + 1
    order = np.argsort(-scores, kind="stable")
    code1, code2 = codes[:m][order], codes[m : 2 * m][order]
    code2 = np.where(code1 == code2, n_singers, code2)  # column n_singers of the counts is 1: weight c_s
    is_target = labels[order]
    sorted_scores = scores[order]
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), m - 1]
    rng = np.random.default_rng(seed)
    # weighted totals are about M (at most M * S^2): int32 unless that could overflow
    cum_dtype = np.int32 if m * n_singers**2 < 2**31 else np.int64
    block = max(1, min(n_boot, block_elements // m))
    out = {"eer": np.empty(n_boot), "min_dcf": np.empty(n_boot)}
    if query_ranks is not None:
        out["mnr"] = np.empty(n_boot)
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        draws = rng.integers(0, n_singers, size=(b, n_singers))
        draws += (np.arange(b, dtype=np.int64) * (n_singers + 1))[:, None]
        counts = np.bincount(draws.ravel(), minlength=b * (n_singers + 1)).reshape(b, n_singers + 1)
        counts[:, n_singers] = 1
        weights = counts.astype(cum_dtype)[:, code1]
        weights *= counts.astype(cum_dtype)[:, code2]
        fps = np.cumsum(weights, axis=1, dtype=cum_dtype)[:, ends]
        weights *= is_target
        tps = np.cumsum(weights, axis=1, dtype=cum_dtype)[:, ends]
        fps -= tps
        sl = slice(start, start + b)
        out["eer"][sl] = _eer_rows(fps, tps)
        out["min_dcf"][sl] = _min_dcf_rows(fps, tps, p_target, c_miss, c_fa)
        if query_ranks is not None:
            wq = counts[:, codes[2 * m :]].astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                out["mnr"][sl] = 100.0 * (wq @ ranks) / wq.sum(axis=1)
    return out


def singer_bootstrap_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    singer1: np.ndarray,
    singer2: np.ndarray,
    *,
    query_singers: np.ndarray | None = None,
    query_ranks: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    p_target: float = 0.01,
    c_miss: float = 1.0,
    c_fa: float = 1.0,
) -> dict[str, tuple[float, float]]:
    """Percentile ``(1 - alpha)`` intervals of EER (%), minDCF (and MNR (%)) from :func:`singer_bootstrap_samples`.

    Returns ``{"eer": (lo, hi), "min_dcf": (lo, hi)[, "mnr": (lo, hi)]}``; undefined resamples (a class missing,
    possible only with very few singers) are left out. About 1 s for 1000 resamples of 10,000 trials on 2 cores.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha}")
    samples = singer_bootstrap_samples(
        labels, scores, singer1, singer2, query_singers=query_singers, query_ranks=query_ranks, n_boot=n_boot,
        seed=seed, p_target=p_target, c_miss=c_miss, c_fa=c_fa,
    )
    return {name: _percentile_ci(values, alpha, name) for name, values in samples.items()}


def paired_singer_eer_differences(
    labels: np.ndarray,
    systems: dict[str, np.ndarray],
    reference_scores: list[np.ndarray],
    singer1: np.ndarray,
    singer2: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, tuple[float, tuple[float, float]]]:
    """:func:`paired_singer_eer_difference` of several systems against one reference, the reference's resamples
    drawn once (the invariance report: every transform against the untransformed embedding).

    Args:
        labels: (M,) trial labels (1 = same singer).
        systems: name -> (M,) scores of that system on the same trials.
        reference_scores: K >= 1 arrays (M,), the reference system's scores (averaged over the K).
        singer1, singer2: (M,) singer labels of each trial's two segments.

    Returns:
        name -> ``(difference, (lo, hi))`` in EER percentage points, as :func:`paired_singer_eer_difference`.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha}")
    if not reference_scores:
        raise ValueError("reference_scores is empty: give at least one reference score vector")

    def samples(s: np.ndarray) -> np.ndarray:
        return singer_bootstrap_samples(labels, s, singer1, singer2, n_boot=n_boot, seed=seed)["eer"]

    ref_point = float(np.mean([eer(labels, r)[0] for r in reference_scores]))
    ref_samples = np.mean([samples(r) for r in reference_scores], axis=0)
    return {name: (float(eer(labels, s)[0] - ref_point),
                   _percentile_ci(samples(s) - ref_samples, alpha, f"{name} EER difference"))
            for name, s in systems.items()}


def paired_singer_eer_difference(
    labels: np.ndarray,
    scores: np.ndarray,
    reference_scores: list[np.ndarray],
    singer1: np.ndarray,
    singer2: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, tuple[float, float]]:
    """EER difference (percentage points) of ``scores`` minus ``reference_scores`` on the same trials, with its
    paired singer-level bootstrap ``(1 - alpha)`` percentile interval.

    The reference is the mean EER over the score vectors in ``reference_scores`` (e.g. several random
    initialisations of one encoder: one vector each, all on the same trials). Each resample draws the singers once
    (:func:`singer_bootstrap_samples`, same ``seed``: the draws depend on the seed and the singer set only) and every
    system is scored on that same resample, so the singers' shared difficulty cancels in the difference: the
    question "is system A better than system B on this population of singers" rather than "how precisely is A's
    EER known" (whose interval, ``eer_ci95_singer``, is much wider). A negative difference means ``scores`` has the
    lower EER; the difference is *significant at level alpha* when the interval's upper end is below 0. The
    interval is conservative where the two systems differ only by trial-level noise (the vertex bootstrap counts a
    non-target pair's own noise through both singers' draws): in simulation (tests/test_metrics.py) it covers a
    true difference of 0 in 99 % of populations at nominal 95 %, about 1.4x wider than the spread of the point
    difference, so "significant" errs towards "not shown". Several systems against one reference:
    :func:`paired_singer_eer_differences`.

    Args:
        labels, scores: (M,) trial labels (1 = same singer) and the system's scores.
        reference_scores: K >= 1 arrays (M,), the reference system's scores (averaged over the K).
        singer1, singer2: (M,) singer labels of each trial's two segments.

    Returns:
        ``(difference, (lo, hi))``: the point difference ``eer(scores) - mean_k eer(reference_k)`` and the interval.
    """
    return paired_singer_eer_differences(labels, {"system": scores}, reference_scores, singer1, singer2,
                                         n_boot=n_boot, seed=seed, alpha=alpha)["system"]


# --------------------------------------------------------------------------------------------------
# Mean normalised rank
# --------------------------------------------------------------------------------------------------


def sample_other_singer_negatives(
    singers: np.ndarray, query_idx: np.ndarray, n_negatives: int = 512, seed: int = 0
) -> np.ndarray:
    """Random negative candidates for each MNR query: segments whose singer label differs from the query's.

    Singer labels are compared for exact equality (Torres et al. used a path-substring test, so ``male1`` also excluded
    ``female1`` and ``male10``). With ``rng = np.random.default_rng(seed)``, query q (in order) gets
    ``rng.choice(pool_q, size=k, replace=False)`` where ``pool_q`` are the ascending row indices of other singers'
    segments and ``k = min(n_negatives, min_q |pool_q|)`` (the same k for every query, so all ranks share one
    normaliser).

    Returns:
        (Q, k) int64 row indices; k is ``n_negatives`` unless some query singer has fewer other-singer segments.
    """
    singers = np.asarray(singers)
    query_idx = _check_indices(query_idx, singers.size, "query_idx")
    if n_negatives < 1:
        raise ValueError(f"n_negatives must be >= 1; got {n_negatives}")
    names, codes = np.unique(singers, return_inverse=True)
    codes = codes.reshape(-1)
    per_singer = np.bincount(codes, minlength=names.size)
    query_codes = codes[query_idx]
    pool_sizes = singers.size - per_singer[query_codes]
    k = int(min(n_negatives, pool_sizes.min())) if query_idx.size else n_negatives
    if k < 1:
        raise ValueError(
            f"no segments of other singers to rank against (all {singers.size} segments are singer "
            f"{names[query_codes[np.argmin(pool_sizes)]]!r})"
        )
    pools: dict[int, np.ndarray] = {}
    rng = np.random.default_rng(seed)
    out = np.empty((query_idx.size, k), dtype=np.int64)
    for q, code in enumerate(query_codes.tolist()):
        pool = pools.get(code)
        if pool is None:
            pool = pools[code] = np.flatnonzero(codes != code)
        out[q] = rng.choice(pool, size=k, replace=False)
    return out


def mnr_ranks(
    emb: np.ndarray,
    singers: np.ndarray,
    query_pairs: tuple[np.ndarray, np.ndarray],
    n_queries: int = 1000,
    n_negatives: int = 512,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Normalised rank of the true partner for each MNR query (see :func:`mean_normalized_rank`).

    Returns:
        ``(ranks, k)``: (Q,) ranks in [0, k / (k + 1)] of the first Q = min(n_queries, len(pairs)) query pairs, and
        the number k of negatives each was ranked against.
    """
    emb = _check_embeddings(emb)
    singers = np.asarray(singers)
    if singers.shape != (emb.shape[0],):
        raise ValueError(f"singers must have shape ({emb.shape[0]},) to match embeddings; got {singers.shape}")
    idx1 = _check_indices(query_pairs[0], emb.shape[0], "query_pairs[0]")
    idx2 = _check_indices(query_pairs[1], emb.shape[0], "query_pairs[1]")
    if idx1.shape != idx2.shape:
        raise ValueError(f"query_pairs differ in length ({idx1.size} vs {idx2.size})")
    if n_queries < 1:
        raise ValueError(f"n_queries must be >= 1; got {n_queries}")
    if idx1.size == 0:
        raise ValueError("no same-singer query pairs for MNR")
    idx1, idx2 = idx1[:n_queries], idx2[:n_queries]
    mismatched = singers[idx1] != singers[idx2]
    if mismatched.any():
        raise ValueError(
            f"{int(mismatched.sum())} of the MNR query pairs are not same-singer pairs "
            f"(first at position {int(np.argmax(mismatched))})"
        )
    negatives = sample_other_singer_negatives(singers, idx1, n_negatives=n_negatives, seed=seed)
    q, k = negatives.shape
    candidates = np.hstack([idx2[:, None], negatives])
    sims = cosine_scores(emb, np.repeat(idx1, k + 1), candidates.ravel()).reshape(q, k + 1)
    higher = (sims[:, 1:] > sims[:, :1]).sum(axis=1)
    tied = (sims[:, 1:] == sims[:, :1]).sum(axis=1)
    return (higher + 0.5 * tied) / (k + 1), int(k)


def mean_normalized_rank(
    emb: np.ndarray,
    singers: np.ndarray,
    query_pairs: tuple[np.ndarray, np.ndarray],
    n_queries: int = 1000,
    n_negatives: int = 512,
    seed: int = 0,
) -> tuple[float, int, int]:
    """Mean normalised rank (percent) of the true partner among other singers' segments (Torres et al.'s MNR, fixed).

    For each of the first ``n_queries`` same-singer pairs (q1, q2) in ``query_pairs``, the candidates are q2 plus
    k random segments of *other* singers (:func:`sample_other_singer_negatives`, seeded, exact label match), scored
    by cosine similarity with q1 (:func:`cosine_scores`; an all-zero embedding scores exactly 0 against anything,
    by the ``NORM_EPS`` clamp, never NaN). The rank of q2 is its expected 0-based position under a random
    tie-break::

        rank = #{negatives with sim > sim(q1, q2)} + 0.5 * #{negatives with sim == sim(q1, q2)}

    divided by ``k + 1``; MNR = 100 x the mean over queries. 0 is perfect; chance, and also any constant embedding
    (every candidate tied), is ``100 k / (2 (k + 1))`` (49.90 % for k = 512). Without ties this is exactly Torres et
    al. 2023's ``compute_rank`` (position of q2 in ``argsort(sims)[::-1]``, divided by ``k + 1``); with ties their
    value depends on the sort's tie order, and counting ties in q2's favour would give a collapsed model a perfect 0.

    Args:
        emb: (N, D) embeddings. singers: (N,) singer labels.
        query_pairs: ``(idx1, idx2)`` row indices of target trials (same singer), e.g. the label-1 trials in order.
        n_queries, n_negatives, seed: Torres et al. 2023 uses 1000 and 512 (``MAX_RANK_EVALS``).

    Returns:
        ``(mnr_percent, n_queries_used, n_negatives_used)``: fewer than requested when there are fewer pairs or
        fewer other-singer segments than asked for.
    """
    ranks, k = mnr_ranks(emb, singers, query_pairs, n_queries=n_queries, n_negatives=n_negatives, seed=seed)
    return float(100.0 * np.mean(ranks)), int(ranks.size), int(k)
