"""Score normalisation, calibration and calibrated metrics (singer_ssl.evaluation.backend) against independent
computations: a brute-force loop over the cohort, scikit-learn's LogisticRegression, the closed-form Cllr of
Gaussian scores with a known LLR, and a direct count of the actDCF decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from singer_ssl.evaluation import backend


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _brute_norm(vectors, i1, i2, cohort, mean, method, top_n):
    """One trial at a time, one cohort member at a time (wespeaker bin/score_norm.py written out)."""
    out = []
    for a, b in zip(i1, i2):
        e, t = vectors[a] - mean, vectors[b] - mean
        s = _cos(e, t)
        sides = []
        for x in (e, t):
            sims = sorted((_cos(x, c - mean) for c in cohort), reverse=True)
            if method == "asnorm":
                sims = sims[:min(top_n, len(cohort))]
            sides.append((float(np.mean(sims)), float(np.std(sims, ddof=1))))
        (me, se), (mt, st) = sides
        out.append(0.5 * ((s - me) / se + (s - mt) / st))
    return np.array(out)


@pytest.mark.parametrize("method,top_n", [("asnorm", 5), ("asnorm", 100), ("snorm", 5)])
def test_score_norm_equals_a_brute_force_loop_over_the_cohort(method, top_n):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8)) + 0.5
    train = rng.normal(size=(60, 8)) + 0.5
    cohort, mean = backend.singer_cohort(train, np.repeat(np.arange(12), 5))
    i1, i2 = rng.integers(0, 30, 40), rng.integers(0, 30, 40)
    got = backend.normalize_scores(vectors, i1, i2, cohort, mean, method, top_n)
    np.testing.assert_allclose(got, _brute_norm(vectors, i1, i2, cohort, mean, method, top_n), rtol=1e-10,
                               atol=1e-10)
    # top_n = 100 is capped at the cohort (12 singers): AS-norm is then S-norm
    if top_n >= 12:
        np.testing.assert_allclose(got, backend.normalize_scores(vectors, i1, i2, cohort, mean, "snorm", 0))


def test_cohort_is_per_singer_means_and_the_training_mean():
    x = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    cohort, mean = backend.singer_cohort(x, np.array(["b", "b", "a"]))
    np.testing.assert_allclose(cohort, [[0.0, 2.0], [2.0, 0.0]])
    np.testing.assert_allclose(mean, [4 / 3, 2 / 3])


def test_none_is_the_cosine_of_mean_subtracted_rows_and_pair_matches():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(5, 4))
    mean = rng.normal(size=4)
    got = backend.normalize_scores(v, np.array([0, 1]), np.array([2, 3]), v, mean, "none")
    assert got == pytest.approx([_cos(v[0] - mean, v[2] - mean), _cos(v[1] - mean, v[3] - mean)])
    cohort = rng.normal(size=(7, 4))
    assert backend.normalize_pair(v[0], v[2], cohort, mean, "asnorm", 3) == pytest.approx(
        _brute_norm(v, [0], [2], cohort, mean, "asnorm", 3)[0])


def test_score_norm_rejects_bad_settings():
    v = np.ones((3, 2))
    with pytest.raises(ValueError, match="expected one of"):
        backend.normalize_scores(v, [0], [1], v, v[0], "znorm")
    with pytest.raises(ValueError, match=">= 2 training singers"):
        backend.normalize_scores(v, [0], [1], v[:1], v[0], "snorm")


def test_calibration_equals_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    s = np.r_[rng.normal(0.6, 0.15, 300), rng.normal(0.1, 0.2, 1700)]
    y = np.r_[np.ones(300), np.zeros(1700)].astype(int)
    cal = backend.fit_calibration(s, y)
    ref = LogisticRegression(C=np.inf, class_weight="balanced", tol=1e-12, max_iter=10000).fit(s[:, None], y)
    assert cal.scale == pytest.approx(float(ref.coef_[0, 0]), rel=1e-5)
    assert cal.offset == pytest.approx(float(ref.intercept_[0]), rel=1e-5, abs=1e-6)
    assert cal.llr(0.5) == pytest.approx(cal.scale * 0.5 + cal.offset)


def test_calibration_recovers_a_known_llr():
    # targets N(mu, 1), non-targets N(-mu, 1): the true LLR is 2 mu s, whatever the class proportions
    rng = np.random.default_rng(3)
    mu = 1.0
    s = np.r_[rng.normal(mu, 1, 20000), rng.normal(-mu, 1, 60000)]
    y = np.r_[np.ones(20000), np.zeros(60000)]
    cal = backend.fit_calibration(s, y)
    assert cal.scale == pytest.approx(2 * mu, abs=0.05)
    assert cal.offset == pytest.approx(0.0, abs=0.05)


def _cllr_closed_form(d: float) -> float:
    """Cllr of the true LLR of Gaussian scores with d' = d: LLR | target ~ N(d^2/2, d^2), and by symmetry both
    halves are equal, so Cllr = E[log2(1 + e^-L)]."""
    f = lambda l: np.logaddexp(0.0, -l) / math.log(2) * stats.norm.pdf(l, d * d / 2, d)  # noqa: E731
    return integrate.quad(f, -40, 40 + d * d)[0]


@pytest.mark.parametrize("d", [0.5, 1.5, 3.0])
def test_cllr_matches_its_closed_form_on_gaussian_scores(d):
    rng = np.random.default_rng(4)
    n = 200000
    s = np.r_[rng.normal(d / 2, 1, n), rng.normal(-d / 2, 1, n)]
    y = np.r_[np.ones(n), np.zeros(n)]
    llr = d * s  # log N(s; d/2, 1) - log N(s; -d/2, 1)
    assert backend.cllr(llr, y) == pytest.approx(_cllr_closed_form(d), abs=0.005)
    # PAV cannot do worse than the true LLR on the same data, and finds nearly as good
    assert backend.min_cllr(s, y) <= backend.cllr(llr, y) + 1e-9
    assert backend.min_cllr(s, y) == pytest.approx(_cllr_closed_form(d), abs=0.01)


def test_cllr_and_min_cllr_boundaries():
    y = np.array([1, 1, 0, 0])
    assert backend.cllr(np.zeros(4), y) == pytest.approx(1.0)
    assert backend.min_cllr(np.array([3.0, 2.0, 1.0, 0.0]), y) == pytest.approx(0.0)
    # uninformative scores: the best monotone map is the constant prior -> LLR 0 -> 1 bit
    assert backend.min_cllr(np.zeros(4), y) == pytest.approx(1.0)
    assert backend.min_cllr(np.zeros(8), np.r_[np.ones(2), np.zeros(6)]) == pytest.approx(1.0)  # prior 1/4
    rng = np.random.default_rng(5)
    s, lab = rng.normal(size=500), rng.integers(0, 2, 500)
    s = s + lab
    # monotone transforms do not change min Cllr; any calibration does at least as badly
    assert backend.min_cllr(np.exp(3 * s), lab) == pytest.approx(backend.min_cllr(s, lab))
    cal = backend.fit_calibration(s, lab)
    assert backend.min_cllr(s, lab) <= backend.cllr(cal.llr(s), lab) + 1e-12


def test_act_dcf_equals_a_direct_count():
    rng = np.random.default_rng(6)
    llr = rng.normal(size=1000) * 4
    y = rng.integers(0, 2, 1000)
    for p, cm, cf in ((0.01, 1.0, 1.0), (0.3, 2.0, 1.0), (0.5, 1.0, 10.0)):
        thr = math.log((1 - p) * cf / (p * cm))
        misses = sum(1 for v, t in zip(llr, y) if t == 1 and not v >= thr)
        fas = sum(1 for v, t in zip(llr, y) if t == 0 and v >= thr)
        cost = cm * p * misses / (y == 1).sum() + cf * (1 - p) * fas / (y == 0).sum()
        assert backend.act_dcf(llr, y, p, cm, cf) == pytest.approx(cost / min(cm * p, cf * (1 - p)))


def test_act_dcf_of_well_calibrated_llrs_is_near_min_dcf():
    from singer_ssl.evaluation.metrics import min_dcf

    rng = np.random.default_rng(7)
    n = 50000
    s = np.r_[rng.normal(1.5, 1, n), rng.normal(-1.5, 1, n)]
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    cal = backend.fit_calibration(s, y)
    act = backend.act_dcf(cal.llr(s), y, 0.05)
    assert min_dcf(y, s, 0.05)[0] <= act + 1e-12 < min_dcf(y, s, 0.05)[0] + 0.02
    # a mis-calibrated system (LLR shifted by 3 nats) pays for it
    assert backend.act_dcf(cal.llr(s) + 3.0, y, 0.05) > act + 0.1
