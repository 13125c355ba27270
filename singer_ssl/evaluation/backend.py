"""The verification back-end after cosine scoring: score normalisation, calibration, calibrated metrics.

Pure numpy functions (no files), shared by the evaluate stage, the train stage's model-folder export and
``singer-ssl verify``:

- **Cohort** (:func:`singer_cohort`): the per-singer mean embeddings of *training* data and the training
  mean, which is subtracted from every embedding before normalised scoring (wespeaker
  ``bin/score_norm.py``, its ``--cal_mean`` option).
- **S-norm / AS-norm** (:func:`normalize_scores`), the symmetric score normalisation of wespeaker's
  ``bin/score_norm.py`` (Matejka et al. 2017, "Analysis of score normalization in multilingual speaker
  recognition"; Cumani et al. 2011): with ``s`` the cosine of the mean-subtracted enrol/test embeddings
  and ``mu_e, sigma_e`` (``mu_t, sigma_t``) the mean and standard deviation (``ddof=1``, as ``torch.std``)
  of the enrol (test) side's cosine scores against the cohort,

      s' = 1/2 [(s - mu_e) / sigma_e + (s - mu_t) / sigma_t];

  S-norm uses every cohort score, AS-norm (adaptive) only the ``top_n`` highest of each side.
- **Calibration** (:func:`fit_calibration`): linear logistic regression ``llr = a * s + b`` with the two
  classes weighted equally (BOSARIS ``train_binary_classifier`` at prior 0.5), so the fitted log-odds are
  log-likelihood ratios (natural log); Newton's method on the convex 2-parameter problem.
- **Calibrated metrics**: :func:`act_dcf` (the normalised detection cost of deciding at the Bayes threshold
  ``-log(p c_miss / ((1 - p) c_fa))`` on the LLRs; NIST SRE), :func:`cllr` (Brümmer & du Preez 2006, bits)
  and :func:`min_cllr` (Cllr after the optimal monotone recalibration, the pool-adjacent-violators
  algorithm: BOSARIS ``min_cllr``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``method`` values of :func:`normalize_scores`
NORM_METHODS = ("none", "snorm", "asnorm")
_EPS = 1e-8


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


def singer_cohort(embeddings: np.ndarray, singers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(cohort (C, D), mean (D,))``: per-singer mean embeddings (singers in sorted order) and the mean of
    all ``embeddings`` (N, D), the training data's (never test singers')."""
    x = np.asarray(embeddings, dtype=np.float64)
    singers = np.asarray(singers)
    if x.ndim != 2 or len(x) != len(singers) or len(x) == 0:
        raise ValueError(f"cohort: embeddings {x.shape} and singers {singers.shape} must be (N, D) and (N,), N > 0")
    names, codes = np.unique(singers, return_inverse=True)
    sums = np.zeros((len(names), x.shape[1]))
    np.add.at(sums, codes.reshape(-1), x)
    return sums / np.bincount(codes.reshape(-1))[:, None], x.mean(axis=0)


def cohort_stats(vectors: np.ndarray, cohort: np.ndarray, mean: np.ndarray, method: str,
                 top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``(mu, sigma)`` (N,) of the cosine scores of ``vectors - mean`` against ``cohort - mean``:
    all C cohort scores (``snorm``) or the ``min(top_n, C)`` highest (``asnorm``); ``ddof=1``."""
    if method not in ("snorm", "asnorm"):
        raise ValueError(f"score normalisation: expected snorm or asnorm, got {method!r}")
    c = np.asarray(cohort, dtype=np.float64)
    if c.ndim != 2 or len(c) < 2:
        raise ValueError(f"score normalisation needs a cohort of >= 2 training singers, got shape {c.shape}")
    sims = _unit_rows(np.asarray(vectors, dtype=np.float64) - mean) @ _unit_rows(c - mean).T
    if method == "asnorm":
        n = min(int(top_n), len(c))
        if n < 2:
            raise ValueError(f"score_norm.top_n must be >= 2, got {top_n}")
        sims = -np.partition(-sims, n - 1, axis=1)[:, :n]
    return sims.mean(axis=1), np.maximum(sims.std(axis=1, ddof=1), _EPS)


def normalize_scores(vectors: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, cohort: np.ndarray,
                     mean: np.ndarray, method: str = "asnorm", top_n: int = 100) -> np.ndarray:
    """Normalised scores (M,) of trials ``(idx1[k], idx2[k])`` on ``vectors`` (N, D) (module docstring).

    ``method``: ``none`` (the cosine of the mean-subtracted rows), ``snorm`` or ``asnorm``; ``top_n`` is capped
    at the cohort size C. Each row's cohort statistics are computed once, so the cost is O(N C D + M).
    """
    if method not in NORM_METHODS:
        raise ValueError(f"score normalisation: expected one of {', '.join(NORM_METHODS)}, got {method!r}")
    u = _unit_rows(np.asarray(vectors, dtype=np.float64) - mean)
    i, j = np.asarray(idx1), np.asarray(idx2)
    s = np.einsum("md,md->m", u[i], u[j])
    if method == "none":
        return s
    mu, sd = cohort_stats(vectors, cohort, mean, method, top_n)
    return 0.5 * ((s - mu[i]) / sd[i] + (s - mu[j]) / sd[j])


def normalize_pair(a: np.ndarray, b: np.ndarray, cohort: np.ndarray, mean: np.ndarray, method: str,
                   top_n: int) -> float:
    """The normalised score of two embeddings (D,) (what ``singer-ssl verify`` prints)."""
    return float(normalize_scores(np.stack([a, b]), np.array([0]), np.array([1]), cohort, mean, method, top_n)[0])


# ------------------------------------------------------------------------------------------------
# calibration


@dataclass(frozen=True)
class Calibration:
    """``llr = scale * score + offset`` (natural log), fitted by :func:`fit_calibration`."""

    scale: float
    offset: float

    def llr(self, scores: np.ndarray | float) -> np.ndarray | float:
        """Log-likelihood ratios (natural log) of cosine (or normalised) scores."""
        return self.scale * np.asarray(scores, dtype=np.float64) + self.offset

    def to_dict(self) -> dict[str, Any]:
        return {"scale": float(self.scale), "offset": float(self.offset)}


def fit_calibration(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> Calibration:
    """Linear logistic-regression calibration of ``scores`` (M,) with ``labels`` (M,) 1 = target.

    Minimises ``sum_k w_k log(1 + exp(-y_k (a s_k + b)))`` (``y = +-1``) with each class's weights summing to
    1/2 (the balanced prior: the log-odds are then LLRs), by Newton's method from ``a = b = 0``; equal to
    scikit-learn's ``LogisticRegression(penalty=None, class_weight="balanced")``. ValueError when a class is
    missing.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.where(np.asarray(labels) == 1, 1.0, -1.0)
    n_tar, n_non = int((y > 0).sum()), int((y < 0).sum())
    if n_tar == 0 or n_non == 0:
        raise ValueError(f"calibration needs target and non-target trials (got {n_tar} and {n_non})")
    w = np.where(y > 0, 0.5 / n_tar, 0.5 / n_non)
    x = np.stack([s, np.ones_like(s)], axis=1)
    theta = np.zeros(2)
    for _ in range(iterations):
        z = y * (x @ theta)
        p = 0.5 * (1.0 + np.tanh(-0.5 * z))  # sigmoid(-z), stable
        grad = -(x * (w * y * p)[:, None]).sum(axis=0)
        hess = (x * (w * p * (1.0 - p))[:, None]).T @ x + 1e-12 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta = theta - step
        if np.abs(step).max() < 1e-10:
            break
    return Calibration(float(theta[0]), float(theta[1]))


def bayes_threshold(p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The LLR above which accepting costs less than rejecting: ``-log(p c_miss / ((1 - p) c_fa))``."""
    return -math.log(p_target * c_miss / ((1.0 - p_target) * c_fa))


def act_dcf(llr: np.ndarray, labels: np.ndarray, p_target: float = 0.01, c_miss: float = 1.0,
            c_fa: float = 1.0) -> float:
    """Actual normalised DCF: decide ``llr >= bayes_threshold`` and cost the decisions (NIST SRE), divided by
    ``min(c_miss p, c_fa (1 - p))`` as :func:`singer_ssl.evaluation.metrics.min_dcf` (so actDCF >= minDCF)."""
    llr = np.asarray(llr, dtype=np.float64)
    tar = np.asarray(labels) == 1
    accept = llr >= bayes_threshold(p_target, c_miss, c_fa)
    p_miss = float((~accept[tar]).mean())
    p_fa = float(accept[~tar].mean())
    return (c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa) / min(c_miss * p_target,
                                                                               c_fa * (1.0 - p_target))


def cllr(llr: np.ndarray, labels: np.ndarray) -> float:
    """Log-likelihood-ratio cost (bits): ``1/2 [mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr)]``.
    1 for an uninformative system (llr = 0), 0 for a perfect one."""
    llr = np.asarray(llr, dtype=np.float64)
    tar = np.asarray(labels) == 1
    return float(0.5 * (np.logaddexp(0.0, -llr[tar]).mean() + np.logaddexp(0.0, llr[~tar]).mean()) / math.log(2))


def min_cllr(scores: np.ndarray, labels: np.ndarray) -> float:
    """Cllr after the best monotone (non-decreasing) score-to-LLR map, found by pool-adjacent-violators on the
    target indicator of the sorted scores (tied scores pooled first): the posterior of each pool, as LLR
    ``logit(p) - logit(P_emp)`` (BOSARIS ``min_cllr``). Lower than or equal to the Cllr of any monotone
    calibration of the same scores."""
    from sklearn.isotonic import isotonic_regression

    s = np.asarray(scores, dtype=np.float64)
    tar = (np.asarray(labels) == 1).astype(np.float64)
    uniq, inv = np.unique(s, return_inverse=True)
    counts = np.bincount(inv.reshape(-1))
    frac = np.bincount(inv.reshape(-1), weights=tar) / counts
    post = isotonic_regression(frac, sample_weight=counts, increasing=True)[inv.reshape(-1)]
    prior = tar.mean()
    with np.errstate(divide="ignore"):
        llr = np.log(post) - np.log1p(-post) - math.log(prior / (1.0 - prior))
    t = tar > 0
    # a target's pool has post > 0 and a non-target's post < 1, so only harmless infinities occur
    return float(0.5 * (np.logaddexp(0.0, -llr[t]).mean() + np.logaddexp(0.0, llr[~t]).mean()) / math.log(2))
