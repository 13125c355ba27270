"""Verification metrics checked against independent computations (brute force, sklearn + scipy, closed forms)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from scipy.stats import norm
from sklearn.metrics import roc_curve

from singer_ssl.evaluation import metrics

# ------------------------------------------------------------------------------------------------
# independent reference implementations
# ------------------------------------------------------------------------------------------------


def superb_eer(labels, scores):
    """s3prl / Torres et al. 2023 EER written out: sklearn roc_curve + brentq on interp1d(fpr, tpr)."""
    fpr, tpr, thr = roc_curve(labels, scores)
    x = brentq(lambda v: 1.0 - v - interp1d(fpr, tpr)(v), 0.0, 1.0)
    return 100.0 * x, float(interp1d(fpr, thr)(x))


def rates_at(labels, scores, theta):
    """(FAR, FRR) when accepting score >= theta, by plain loops."""
    pos = [s for s, y in zip(scores, labels) if y == 1]
    neg = [s for s, y in zip(scores, labels) if y == 0]
    far = sum(1 for s in neg if s >= theta) / len(neg)
    frr = sum(1 for s in pos if s < theta) / len(pos)
    return far, frr


def brute_force_eer(labels, scores):
    """Sweep every threshold (distinct scores and +inf), find where FAR - FRR changes sign, interpolate linearly."""
    thetas = sorted(set(scores.tolist()) | {np.inf}, reverse=True)
    pts = [rates_at(labels, scores, t) for t in thetas]  # FAR rises from 0, FRR falls to 0
    for (far0, frr0), (far1, frr1) in zip(pts, pts[1:]):
        d0, d1 = far0 - frr0, far1 - frr1
        if d0 <= 0 <= d1 or d0 >= 0 >= d1:
            if d0 == d1:
                return 100.0 * far0
            lam = d0 / (d0 - d1)
            return 100.0 * (far0 + lam * (far1 - far0))
    raise AssertionError("no crossing")


def brute_force_min_dcf(labels, scores, p_target, c_miss, c_fa):
    best = np.inf
    for theta in sorted(set(scores.tolist()) | {np.inf}):
        far, frr = rates_at(labels, scores, theta)
        best = min(best, c_miss * frr * p_target + c_fa * far * (1 - p_target))
    return best / min(c_miss * p_target, c_fa * (1 - p_target))


def random_trials(n, shift=1.5, seed=0, decimals=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = rng.standard_normal(n) + shift * labels
    if decimals is not None:  # force many ties
        scores = np.round(scores, decimals)
    return labels, scores


# ------------------------------------------------------------------------------------------------
# cosine scores
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_scores_match_per_pair_loop(backend, dtype):
    rng = np.random.default_rng(0)
    emb = (rng.standard_normal((50, 16)) * rng.uniform(0.1, 10, (50, 1))).astype(dtype)
    idx1, idx2 = rng.integers(0, 50, 300), rng.integers(0, 50, 300)
    idx1[:5], idx2[:5] = 7, 7  # repeated trial, self pair
    got = metrics.cosine_scores(emb, idx1, idx2, batch=37, backend=backend)
    e = emb.astype(np.float64)
    want = [e[a] @ e[b] / (np.linalg.norm(e[a]) * np.linalg.norm(e[b])) for a, b in zip(idx1, idx2)]
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, atol=tol)
    np.testing.assert_allclose(got[:5], 1.0, atol=tol)
    assert got.dtype == np.float64


def test_cosine_scores_zero_row_and_errors():
    emb = np.eye(3)
    emb[2] = 0.0
    np.testing.assert_allclose(metrics.cosine_scores(emb, [0, 0, 2], [1, 0, 1]), [0.0, 1.0, 0.0])
    bad = np.ones((4, 3))
    bad[1, 0] = np.nan
    bad[3] = np.inf
    with pytest.raises(ValueError, match=r"4 NaN/inf values in 2 rows.*\[1, 3\]"):
        metrics.cosine_scores(bad, [0], [1])
    with pytest.raises(ValueError, match="idx2 has 1 indices outside"):
        metrics.cosine_scores(np.ones((4, 3)), [0], [4])


# ------------------------------------------------------------------------------------------------
# ROC / EER
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,decimals,seed", [(20, None, 1), (500, None, 2), (500, 1, 3), (3000, 2, 4)])
def test_roc_equals_sklearn(n, decimals, seed):
    labels, scores = random_trials(n, seed=seed, decimals=decimals)
    for drop in (True, False):
        want = roc_curve(labels, scores, drop_intermediate=drop)
        for got, ref in zip(metrics.roc(labels, scores, drop_intermediate=drop), want):
            np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("n,decimals,seed", [(30, None, 5), (400, None, 6), (400, 1, 7), (2000, None, 8)])
def test_eer_matches_superb_brentq_and_brute_force(n, decimals, seed):
    labels, scores = random_trials(n, seed=seed, decimals=decimals)
    value, threshold = metrics.eer(labels, scores)
    ref_value, _ = superb_eer(labels, scores)
    assert value == pytest.approx(ref_value, abs=1e-8)
    assert value == pytest.approx(brute_force_eer(labels, scores), abs=1e-8)
    # the threshold is an operating point where FAR and FRR straddle the EER
    far, frr = rates_at(labels, scores, threshold)
    far_hi, frr_lo = rates_at(labels, scores, np.nextafter(threshold, -np.inf))
    step = 100.0 / min((labels == 1).sum(), (labels == 0).sum())
    assert min(far, frr, far_hi, frr_lo) * 100 - step <= value <= max(far, frr, far_hi, frr_lo) * 100 + step


def test_eer_threshold_equals_superb_on_horizontal_segment():
    # negatives 0.1..0.4 and positives 0.3, 0.5, 0.6, 0.7: the crossing lies between two negatives.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.35, 0.4, 0.3, 0.5, 0.6, 0.7])
    # tpr reaches 3/4 at fpr 0 (threshold 0.5); then fpr 1/4 at 0.4, 2/4 at 0.35, then tpr 1 at 0.3.
    # Hand calculation: ROC corners (0, .75) -> (.5, .75) [horizontal, thresholds .5 -> .35] -> (.5, 1);
    # 1 - x = .75 at x = .25, i.e. halfway between the corners: EER 25 %, threshold (.5 + .35) / 2 = .425.
    value, threshold = metrics.eer(labels, scores)
    assert value == pytest.approx(25.0)
    assert threshold == pytest.approx(0.425)
    ref_value, ref_threshold = superb_eer(labels, scores)
    assert (value, threshold) == pytest.approx((ref_value, ref_threshold))


def test_eer_special_cases():
    labels = np.array([1, 1, 1, 0, 0, 0])
    assert metrics.eer(labels, np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])) == pytest.approx((0.0, 0.7))
    assert metrics.eer(labels, np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]))[0] == pytest.approx(100.0)
    assert metrics.eer(labels, np.full(6, 0.5)) == pytest.approx((50.0, 0.5))
    # one negative above one positive of three: FAR = FRR = 1/3
    value, _ = metrics.eer(labels, np.array([0.9, 0.8, 0.2, 0.85, 0.1, 0.05]))
    assert value == pytest.approx(100 / 3)


def test_eer_errors():
    with pytest.raises(ValueError, match="only target"):
        metrics.eer(np.ones(4), np.arange(4.0))
    with pytest.raises(ValueError, match="only non-target"):
        metrics.eer(np.zeros(4), np.arange(4.0))
    with pytest.raises(ValueError, match="2 NaN/inf"):
        metrics.eer(np.array([0, 1, 0, 1]), np.array([0.1, np.nan, np.inf, 0.3]))
    with pytest.raises(ValueError, match="0/1"):
        metrics.eer(np.array([0, 2, 0, 1]), np.arange(4.0))
    with pytest.raises(ValueError, match="differ in length"):
        metrics.eer(np.array([0, 1, 0, 1]), np.arange(3.0))


# ------------------------------------------------------------------------------------------------
# minDCF, DET, thinning
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "p_target,c_miss,c_fa,decimals", [(0.01, 1, 1, None), (0.05, 1, 1, 1), (0.3, 2, 1, None), (0.5, 1, 10, 2)]
)
def test_min_dcf_matches_direct_formula(p_target, c_miss, c_fa, decimals):
    labels, scores = random_trials(400, shift=2.0, seed=11, decimals=decimals)
    value, threshold = metrics.min_dcf(labels, scores, p_target, c_miss, c_fa)
    assert value == pytest.approx(brute_force_min_dcf(labels, scores, p_target, c_miss, c_fa), abs=1e-12)
    far, frr = rates_at(labels, scores, threshold)
    c_def = min(c_miss * p_target, c_fa * (1 - p_target))
    assert value == pytest.approx((c_miss * frr * p_target + c_fa * far * (1 - p_target)) / c_def, abs=1e-12)


def test_min_dcf_bounds():
    labels = np.array([1, 0, 1, 0])
    assert metrics.min_dcf(labels, np.array([0.9, 0.1, 0.8, 0.2]))[0] == 0.0
    value, threshold = metrics.min_dcf(labels, np.array([0.1, 0.9, 0.2, 0.8]))
    assert (value, threshold) == (1.0, np.inf)  # rejecting everything is the best a reversed scorer can do
    with pytest.raises(ValueError, match="p_target"):
        metrics.min_dcf(labels, np.arange(4.0), p_target=1.0)


def test_det_curve_matches_loop():
    labels, scores = random_trials(200, seed=12, decimals=1)
    fpr, fnr, thr = metrics.det_curve(labels, scores)
    assert np.all(np.diff(thr) > 0) and thr[-1] == np.inf
    assert len(thr) == len(set(scores.tolist())) + 1
    for f, m, t in zip(fpr, fnr, thr):
        assert (f, m) == pytest.approx(rates_at(labels, scores, t))


def test_thin_curve_keeps_ends_and_limits_points():
    labels, scores = random_trials(20000, seed=13)
    fpr, tpr, thr = metrics.roc(labels, scores, drop_intermediate=False)
    tf, tt, th = metrics.thin_curve(fpr, tpr, thr, max_points=500)
    assert 100 < tf.size <= 500
    assert (tf[0], tt[0], tf[-1], tt[-1]) == (0.0, 0.0, 1.0, 1.0)
    # thinned points are original points, in order
    pos = np.searchsorted(-thr[1:], -th[1:]) + 1
    np.testing.assert_array_equal(fpr[pos], tf[1:])
    # no large gaps along the curve
    assert np.hypot(np.diff(tf), np.diff(tt)).max() < 4 * np.hypot(1, 1) / 500
    df, dm, _ = metrics.thin_curve(*metrics.det_curve(labels, scores), max_points=300, probit=True)
    assert df.size <= 300 and df[0] == 1.0 and df[-1] == 0.0
    small = metrics.thin_curve(np.arange(5.0), np.arange(5.0), max_points=10)
    np.testing.assert_array_equal(small[0], np.arange(5.0))


# ------------------------------------------------------------------------------------------------
# bootstrap
# ------------------------------------------------------------------------------------------------


def test_bootstrap_replicates_equal_eer_of_explicit_resamples():
    labels, scores = random_trials(300, seed=14, decimals=1)
    samples = metrics.bootstrap_eer_samples(labels, scores, n_boot=7, seed=3, block_elements=600)
    order = np.argsort(-scores, kind="stable")
    ls, ss = labels[order], scores[order]
    rng = np.random.default_rng(3)
    for r in range(7):
        idx = rng.integers(0, labels.size, labels.size)
        assert samples[r] == pytest.approx(brute_force_eer(ls[idx], ss[idx]), abs=1e-9)


def test_bootstrap_ci_covers_estimate_and_narrows():
    widths = []
    for n in (500, 20000):
        labels, scores = random_trials(n, seed=15)
        point, _ = metrics.eer(labels, scores)
        lo, hi = metrics.bootstrap_eer_ci(labels, scores, n_boot=300, seed=0)
        assert lo < point < hi
        widths.append(hi - lo)
    # width ~ 1 / sqrt(n): 40x the trials -> about 6x narrower
    assert widths[1] < widths[0] / 3
    assert metrics.bootstrap_eer_ci(labels, scores, 50, seed=1) == metrics.bootstrap_eer_ci(labels, scores, 50, seed=1)


def test_bootstrap_on_a_large_list():
    """20,000 trials, 1000 resamples (about 0.7 s on 2 cores; the speed is benchmarks/scoring.py's, not a test's)."""
    labels, scores = random_trials(20000, seed=16)
    lo, hi = metrics.bootstrap_eer_ci(labels, scores, n_boot=1000, seed=0)
    assert lo < metrics.eer(labels, scores)[0] < hi


def test_bootstrap_tiny_list_drops_single_class_resamples():
    samples = metrics.bootstrap_eer_samples(np.array([1, 0]), np.array([0.9, 0.1]), n_boot=200, seed=0)
    assert np.isnan(samples).sum() > 50  # half the resamples lack a class
    assert np.all(samples[np.isfinite(samples)] == 0.0)
    assert metrics.bootstrap_eer_ci(np.array([1, 0]), np.array([0.9, 0.1]), n_boot=200) == (0.0, 0.0)


def singer_trials(n_singers=6, n_trials=240, seed=0, decimals=1):
    """A small trial list over ``n_singers`` singers (about 1/3 target trials), scores with ties."""
    rng = np.random.default_rng(seed)
    s1 = rng.integers(0, n_singers, n_trials)
    same = rng.random(n_trials) < 0.35
    s2 = np.where(same, s1, (s1 + rng.integers(1, n_singers, n_trials)) % n_singers)
    labels = (s1 == s2).astype(int)
    scores = rng.standard_normal(n_trials) + 1.2 * labels + 0.3 * rng.standard_normal(n_singers)[s1]
    if decimals is not None:  # ties
        scores = np.round(scores, decimals)
    names = np.array([f"singer{i}" for i in range(n_singers)])
    return labels, scores, names[s1], names[s2]


def test_singer_bootstrap_replicates_equal_metrics_of_expanded_lists():
    labels, scores, s1, s2 = singer_trials()
    q_singers = s1[labels == 1][:30]
    q_ranks = np.random.default_rng(1).random(30)
    samples = metrics.singer_bootstrap_samples(
        labels, scores, s1, s2, query_singers=q_singers, query_ranks=q_ranks, n_boot=6, seed=4, p_target=0.2,
        c_miss=2.0, block_elements=500)  # 2 resamples per block
    names = np.unique(np.r_[s1, s2, q_singers]).tolist()
    rng = np.random.default_rng(4)
    for r in range(6):
        copies = dict(zip(names, np.bincount(rng.integers(0, len(names), len(names)), minlength=len(names))))
        # a trial is repeated once per drawn copy of its singer (target) or per pair of drawn copies (non-target)
        reps = [copies[a] if a == b else copies[a] * copies[b] for a, b in zip(s1, s2)]
        lab, sc = np.repeat(labels, reps), np.repeat(scores, reps)
        if 0 < lab.sum() < lab.size:
            assert samples["eer"][r] == pytest.approx(brute_force_eer(lab, sc), abs=1e-9)
            assert samples["min_dcf"][r] == pytest.approx(brute_force_min_dcf(lab, sc, 0.2, 2.0, 1.0), abs=1e-9)
        else:
            assert np.isnan(samples["eer"][r]) and np.isnan(samples["min_dcf"][r])
        q_reps = [copies[a] for a in q_singers]
        assert samples["mnr"][r] == pytest.approx(100 * np.mean(np.repeat(q_ranks, q_reps)), abs=1e-9)
    assert len({round(v, 9) for v in samples["eer"]}) > 3  # the resamples differ


def test_singer_bootstrap_ci_keys_and_determinism():
    labels, scores, s1, s2 = singer_trials(n_singers=20, n_trials=2000, seed=2, decimals=None)
    ci = metrics.singer_bootstrap_ci(labels, scores, s1, s2, n_boot=300, seed=0)
    assert set(ci) == {"eer", "min_dcf"}
    point = metrics.eer(labels, scores)[0]
    assert ci["eer"][0] < point < ci["eer"][1]
    assert ci["min_dcf"][0] <= metrics.min_dcf(labels, scores)[0] <= ci["min_dcf"][1]
    assert ci == metrics.singer_bootstrap_ci(labels, scores, s1, s2, n_boot=300, seed=0)
    with pytest.raises(ValueError, match="both query_singers and query_ranks"):
        metrics.singer_bootstrap_ci(labels, scores, s1, s2, query_ranks=np.zeros(3))
    with pytest.raises(ValueError, match="must match the 2000 trials"):
        metrics.singer_bootstrap_ci(labels, scores, s1[:-1], s2)


def correlated_population(rng, n_singers, mu, sd_target, sd_nontarget, per_singer=20, per_pair=4):
    """Scores with per-singer random offsets: target trials of singer s ~ N(mu + a_s, 1); non-target trials of
    singers s != t ~ N(b_s + b_t, 1), a_s ~ N(0, sd_target^2), b_s ~ N(0, sd_nontarget^2). Every singer has
    ``per_singer`` target trials and every pair ``per_pair`` non-target trials."""
    a = sd_target * rng.standard_normal(n_singers)
    b = sd_nontarget * rng.standard_normal(n_singers)
    t = np.repeat(np.arange(n_singers), per_singer)
    i, j = (np.repeat(v, per_pair) for v in np.triu_indices(n_singers, 1))
    scores = np.r_[mu + a[t] + rng.standard_normal(t.size), b[i] + b[j] + rng.standard_normal(i.size)]
    labels = np.r_[np.ones(t.size, int), np.zeros(i.size, int)]
    return labels, scores, np.r_[t, i], np.r_[t, j]


def test_singer_bootstrap_covers_true_eer_where_trial_bootstrap_does_not():
    mu, sd_t, sd_n = 2.0, 0.7, 0.5
    # population EER in closed form: target scores ~ N(mu, 1 + sd_t^2), non-target ~ N(0, 1 + 2 sd_n^2); the EER
    # threshold x solves (x - mu) / s_T = -x / s_N, so EER = Phi(-mu / (s_T + s_N))
    true_eer = 100 * norm.cdf(-mu / (np.hypot(1, sd_t) + np.sqrt(1 + 2 * sd_n**2)))
    rng = np.random.default_rng(2024)
    big = correlated_population(rng, 600, mu, sd_t, sd_n, per_singer=10, per_pair=1)  # cross-check the formula
    assert metrics.eer(big[0], big[1])[0] == pytest.approx(true_eer, abs=0.5)
    draws, covered_singer, covered_trial = 200, 0, 0
    for r in range(draws):
        labels, scores, s1, s2 = correlated_population(rng, 30, mu, sd_t, sd_n)
        lo, hi = metrics.singer_bootstrap_ci(labels, scores, s1, s2, n_boot=200, seed=r)["eer"]
        covered_singer += lo <= true_eer <= hi
        lo, hi = metrics.bootstrap_eer_ci(labels, scores, n_boot=200, seed=r)
        covered_trial += lo <= true_eer <= hi
    # measured with this seed: singer-level 93.0 %, trial-level 46.5 % (nominal 95 %)
    assert 0.90 <= covered_singer / draws <= 0.99
    assert covered_trial / draws < 0.80


def test_paired_difference_replicates_equal_differences_of_expanded_lists():
    """Each paired resample is the difference of the two systems' EERs on one and the same expanded trial list
    (brute-force EER), the reference averaged over its score vectors; the interval is the percentiles of those."""
    labels, a, s1, s2 = singer_trials(n_singers=7, n_trials=300, seed=5, decimals=None)
    rng = np.random.default_rng(9)
    refs = [a + rng.standard_normal(a.size) for _ in range(2)]
    n_boot = 40
    diff, (lo, hi) = metrics.paired_singer_eer_difference(labels, a, refs, s1, s2, n_boot=n_boot, seed=3)
    assert diff == pytest.approx(brute_force_eer(labels, a) - np.mean([brute_force_eer(labels, r) for r in refs]))

    def expanded_interval(system):
        """Percentiles of the brute-force EER differences on each resample's expanded trial list."""
        names = np.unique(np.r_[s1, s2]).tolist()
        draw, expected = np.random.default_rng(3), []
        for _ in range(n_boot):
            copies = dict(zip(names, np.bincount(draw.integers(0, len(names), len(names)), minlength=len(names))))
            reps = [copies[x] if x == y else copies[x] * copies[y] for x, y in zip(s1, s2)]
            lab = np.repeat(labels, reps)
            if 0 < lab.sum() < lab.size:
                expected.append(brute_force_eer(lab, np.repeat(system, reps))
                                - np.mean([brute_force_eer(lab, np.repeat(r, reps)) for r in refs]))
        return tuple(np.percentile(expected, [2.5, 97.5]))

    assert (lo, hi) == pytest.approx(expanded_interval(a), abs=1e-9)
    # several systems against the reference at once (resamples drawn once): each one as if alone
    b = a + 0.5 * rng.standard_normal(a.size)
    many = metrics.paired_singer_eer_differences(labels, {"a": a, "b": b}, refs, s1, s2, n_boot=n_boot, seed=3)
    assert (many["a"][0], *many["a"][1]) == pytest.approx((diff, lo, hi), abs=1e-12)
    assert many["b"][1] == pytest.approx(expanded_interval(b), abs=1e-9)
    ref_eer = np.mean([brute_force_eer(labels, r) for r in refs])
    assert many["b"][0] == pytest.approx(brute_force_eer(labels, b) - ref_eer)
    # identical systems: exactly no difference, in every resample
    assert metrics.paired_singer_eer_difference(labels, a, [a.copy()], s1, s2, n_boot=50) == (0.0, (0.0, 0.0))
    with pytest.raises(ValueError, match="reference_scores is empty"):
        metrics.paired_singer_eer_difference(labels, a, [], s1, s2)


def test_paired_difference_covers_zero_between_equal_systems_and_is_narrower_than_unpaired():
    """Two systems of equal quality that share each singer's difficulty (per-singer offsets) and differ only in
    trial noise. Over simulated populations the paired 95 % interval covers the true difference 0 at least at the
    nominal rate; it is conservative, not wildly so: its mean width lies between 1x and 2x the 95 % range of the
    point differences across populations (measured: 4.5 vs 3.2 points, coverage 99 %; the vertex bootstrap counts
    a non-target pair's own noise through both singers' draws). It is much narrower than the singer-level interval
    of either EER (the shared difficulty cancels), and a clearly better system is declared better in every draw."""
    mu, sd_t, sd_n = 2.0, 0.7, 0.5
    rng = np.random.default_rng(77)
    draws, covered, narrower, detected, points, widths = 100, 0, 0, 0, [], []
    for r in range(draws):
        labels, base, s1, s2 = correlated_population(rng, 30, mu, sd_t, sd_n)
        a = base + 0.6 * rng.standard_normal(base.size)
        b = base + 0.6 * rng.standard_normal(base.size)
        diff, (lo, hi) = metrics.paired_singer_eer_difference(labels, a, [b], s1, s2, n_boot=200, seed=r)
        points.append(diff)
        widths.append(hi - lo)
        covered += lo <= 0.0 <= hi
        lo_a, hi_a = metrics.singer_bootstrap_ci(labels, a, s1, s2, n_boot=200, seed=r)["eer"]
        narrower += (hi - lo) < 0.6 * (hi_a - lo_a)
        worse = base + 2.0 * rng.standard_normal(base.size)  # same singers, much noisier
        detected += metrics.paired_singer_eer_difference(labels, a, [worse], s1, s2, n_boot=200, seed=r)[1][1] < 0
    assert covered / draws >= 0.92, covered
    spread = np.subtract(*np.percentile(points, [97.5, 2.5]))
    assert spread < np.mean(widths) < 2.0 * spread, (np.mean(widths), spread)
    assert narrower / draws > 0.9, narrower
    assert detected == draws


def test_singer_bootstrap_on_a_large_list():
    """200 singers, 10,000 trials, 1000 queries, 1000 resamples (about 1 s on 2 cores; no speed assertion)."""
    labels, scores, s1, s2 = singer_trials(n_singers=200, n_trials=10000, seed=3, decimals=None)
    ranks = np.random.default_rng(0).random(1000)
    ci = metrics.singer_bootstrap_ci(labels, scores, s1, s2, query_singers=s1[:1000], query_ranks=ranks, n_boot=1000)
    assert ci["eer"][0] < metrics.eer(labels, scores)[0] < ci["eer"][1]
    assert ci["mnr"][0] < 100 * ranks.mean() < ci["mnr"][1]


# ------------------------------------------------------------------------------------------------
# MNR
# ------------------------------------------------------------------------------------------------


def brute_force_mnr(emb, query_pairs, negatives):
    """Expected rank under a random tie-break: negatives scoring higher count 1, tied ones 1/2."""
    ranks = []
    for (a, b), negs in zip(query_pairs, negatives):
        def cos(i, j):
            return float(emb[i] @ emb[j] / (np.linalg.norm(emb[i]) * np.linalg.norm(emb[j])))
        partner = cos(a, b)
        rank = sum(1.0 if cos(a, n) > partner else 0.5 if cos(a, n) == partner else 0.0 for n in negs)
        ranks.append(rank / (len(negs) + 1))
    return 100.0 * sum(ranks) / len(ranks)


def torres_rank_loop(emb, query_pairs, negatives):
    """Torres et al. 2023 ``eval.py::compute_rank`` re-derived: candidates = [partner] + negatives, cosine
    similarities, ``rank = argsort(sims)[::-1]``, position of candidate 0 divided by the number of candidates."""
    out = []
    for (a, b), negs in zip(query_pairs, negatives):
        cands = emb[[b, *negs]]
        sims = cands @ emb[a] / np.maximum(np.linalg.norm(cands, axis=1) * np.linalg.norm(emb[a]), 1e-8)
        rank = np.argsort(sims)[::-1]
        out.append(np.where(rank == 0)[0][0] / len(sims))
    return float(np.mean(out))


def clustered(n_singers=6, per_singer=30, dim=8, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_singers, dim))
    singers = np.repeat([f"s{i}" for i in range(n_singers)], per_singer)
    emb = np.repeat(centres, per_singer, axis=0) + spread * rng.standard_normal((n_singers * per_singer, dim))
    return emb, singers


def positive_pairs(singers, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, singers.size, 5 * n)
    b = rng.integers(0, singers.size, 5 * n)
    same = singers[a] == singers[b]
    return a[same][:n], b[same][:n]


def test_mnr_matches_brute_force_with_sampled_negatives():
    emb, singers = clustered()
    idx1, idx2 = positive_pairs(singers, 60, seed=1)
    value, nq, nneg = metrics.mean_normalized_rank(emb, singers, (idx1, idx2), n_queries=50, n_negatives=40, seed=9)
    assert (nq, nneg) == (50, 40)
    negatives = metrics.sample_other_singer_negatives(singers, idx1[:50], n_negatives=40, seed=9)
    for q, row in enumerate(negatives):
        assert len(set(row.tolist())) == 40  # without replacement
        assert all(singers[row] != singers[idx1[q]])
    assert value == pytest.approx(brute_force_mnr(emb, zip(idx1[:50], idx2[:50]), negatives), abs=1e-9)


def test_mnr_deterministic_candidates_and_counts():
    emb, singers = clustered(n_singers=3, per_singer=10, spread=3.0)
    idx1, idx2 = positive_pairs(singers, 8, seed=2)
    # 20 other-singer segments per query < 512 requested: every other-singer segment is a candidate
    value, nq, nneg = metrics.mean_normalized_rank(emb, singers, (idx1, idx2), n_queries=1000, n_negatives=512)
    assert (nq, nneg) == (8, 20)
    all_others = [np.flatnonzero(singers != singers[a]) for a in idx1]
    assert value == pytest.approx(brute_force_mnr(emb, zip(idx1, idx2), all_others), abs=1e-9)


def test_mnr_perfect_and_chance():
    emb, singers = clustered(n_singers=5, per_singer=40, spread=0.01)
    pairs = positive_pairs(singers, 100, seed=3)
    assert metrics.mean_normalized_rank(emb, singers, pairs, n_negatives=100)[0] == 0.0
    rng = np.random.default_rng(4)
    noise = rng.standard_normal((200, 32))
    value = metrics.mean_normalized_rank(noise, singers, positive_pairs(singers, 1000, 5), n_negatives=100)[0]
    assert abs(value - 100 * 50 / 101) < 4.0


def test_mnr_ties_count_half_two_levels_by_hand():
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    singers = np.array(["a", "a", "b", "b", "c"])
    # query 0, partner 1 (cos 1); negatives 2 (cos 1, tie), 3 (cos 0, lower), 4 (cos 1, tie): (0 + 2/2) / 4
    assert metrics.mean_normalized_rank(emb, singers, ([0], [1]), n_negatives=3) == (25.0, 1, 3)
    # query 3, partner 2 (cos 0); negatives 0, 1, 4 all cos 0 (three ties): (3/2) / 4
    assert metrics.mean_normalized_rank(emb, singers, ([3], [2]), n_negatives=3) == (37.5, 1, 3)
    # query 2, partner 3 (cos 0); negatives 0, 1, 4 all cos 1 > 0: 3 / 4
    assert metrics.mean_normalized_rank(emb, singers, ([2], [3]), n_negatives=3) == (75.0, 1, 3)
    # both queries at once: the mean of the per-query ranks
    ranks, k = metrics.mnr_ranks(emb, singers, ([0, 3, 2], [1, 2, 3]), n_negatives=3)
    np.testing.assert_array_equal(ranks, [0.25, 0.375, 0.75])
    assert k == 3


@pytest.mark.parametrize("value", [0.0, 0.7])
def test_mnr_collapsed_embeddings_score_chance(value):
    # a collapsed model: every embedding identical (or all zero, whose cosine is defined as 0 by the NORM_EPS clamp)
    emb, singers = clustered(n_singers=5, per_singer=20)
    emb = np.full_like(emb, value)
    pairs = positive_pairs(singers, 50, seed=6)
    mnr, nq, k = metrics.mean_normalized_rank(emb, singers, pairs, n_negatives=63)
    assert (nq, k) == (50, 63)
    # every candidate tied: rank k/2 among k + 1 = 64 candidates (a power of 2, so exact in floating point)
    assert mnr == 100.0 * 63 / (2 * 64) == 49.21875
    assert np.isfinite(metrics.cosine_scores(emb, *pairs)).all()
    labels = np.r_[np.ones(50, int), np.zeros(50, int)]
    scores = metrics.cosine_scores(emb, np.r_[pairs[0], pairs[0]], np.r_[pairs[1], (pairs[1] + 20) % 100])
    assert metrics.eer(labels, scores)[0] == 50.0  # the EER agrees: chance


def test_mnr_equals_torres_loop_without_ties():
    emb, singers = clustered(n_singers=8, per_singer=25, dim=16, spread=1.5, seed=3)
    idx1, idx2 = positive_pairs(singers, 120, seed=7)
    ranks, k = metrics.mnr_ranks(emb, singers, (idx1, idx2), n_queries=100, n_negatives=90, seed=5)
    negatives = metrics.sample_other_singer_negatives(singers, idx1[:100], n_negatives=90, seed=5)
    reference = torres_rank_loop(emb, zip(idx1[:100], idx2[:100]), negatives)
    assert 0.1 < reference < 0.6  # informative but imperfect embeddings: a real test of the ordering
    assert float(np.mean(ranks)) == pytest.approx(reference, abs=1e-12)


def test_mnr_exact_label_not_substring():
    # Torres et al. 2023 tested "singer name in path": anchor male1 excluded female1 and male10 as negatives.
    singers = np.array(["male1", "male1", "female1", "male10", "male10", "other"])
    negatives = metrics.sample_other_singer_negatives(singers, np.array([0]), n_negatives=10, seed=0)
    assert sorted(negatives[0].tolist()) == [2, 3, 4, 5]
    emb = np.random.default_rng(0).standard_normal((6, 4))
    assert metrics.mean_normalized_rank(emb, singers, ([0], [1]), n_negatives=10)[1:] == (1, 4)


def test_mnr_errors():
    emb, singers = clustered(n_singers=2, per_singer=5)
    with pytest.raises(ValueError, match="not same-singer"):
        metrics.mean_normalized_rank(emb, singers, ([0, 1], [1, 9]))
    with pytest.raises(ValueError, match="no same-singer query pairs"):
        metrics.mean_normalized_rank(emb, singers, ([], []))
    with pytest.raises(ValueError, match="no segments of other singers"):
        metrics.mean_normalized_rank(emb[:5], singers[:5], ([0], [1]))
    bad = emb.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN/inf values in 1 rows.*\[3\]"):
        metrics.mean_normalized_rank(bad, singers, ([0], [1]))


def test_verification_block_carries_singer_intervals():
    from singer_ssl.evaluation.verification import Trials, verification

    emb, singers = clustered(n_singers=8, per_singer=15, spread=1.5, seed=5)
    rng = np.random.default_rng(8)
    idx1, idx2 = rng.integers(0, 120, 600), rng.integers(0, 120, 600)
    keep = idx1 != idx2
    idx1, idx2 = idx1[keep], idx2[keep]
    labels = (singers[idx1] == singers[idx2]).astype(int)
    block, scores, (nq, nneg) = verification(emb, singers, Trials(labels, idx1, idx2), bootstrap=200,
                                             mnr_queries=40, mnr_negatives=30, seed=3)
    assert set(block) == {"eer", "eer_ci95", "eer_threshold", "min_dcf", "mnr", "eer_ci95_singer",
                          "min_dcf_ci95_singer", "mnr_ci95_singer"}
    pos = labels == 1
    assert (block["mnr"], nq, nneg) == metrics.mean_normalized_rank(emb, singers, (idx1[pos], idx2[pos]), 40, 30, 3)
    assert block["eer_ci95"] == list(metrics.bootstrap_eer_ci(labels, scores, n_boot=200, seed=3))
    ranks, _ = metrics.mnr_ranks(emb, singers, (idx1[pos], idx2[pos]), 40, 30, 3)
    direct = metrics.singer_bootstrap_ci(labels, scores, singers[idx1], singers[idx2],
                                         query_singers=singers[idx1[pos][:40]], query_ranks=ranks, n_boot=200, seed=3)
    for name in ("eer", "min_dcf", "mnr"):
        assert block[f"{name}_ci95_singer"] == list(direct[name])
        lo, hi = block[f"{name}_ci95_singer"]
        assert lo <= block[name] <= hi
