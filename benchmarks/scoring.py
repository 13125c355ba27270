"""Benchmark: scoring one million verification trials (cosine, EER, minDCF, MNR, bootstrap CI).

Stored-like data: ``--segments`` embeddings of ``--dim`` float32 dimensions from ``--singers`` singers (singer
centre + per-segment noise, EER around 20 %), and ``--trials`` Torres et al.-style trials (half same-singer, both
segments drawn with replacement). ``singer_ssl.evaluation.metrics`` is timed (best of ``--repeat`` runs) against
baselines in the same process:

- naive scoring: a per-pair Python loop (``a @ b / (|a| |b|)`` per trial), timed on ``--naive-subset`` trials and
  extrapolated linearly to all trials (reported as such);
- scikit-learn scoring: ``1 - sklearn.metrics.pairwise.paired_cosine_distances`` on gathered blocks of pairs;
- scikit-learn EER: ``roc_curve`` + ``scipy.optimize.brentq`` on ``interp1d(fpr, tpr)`` (SUPERB / Torres et al. 2023);
- minDCF: the Kaldi / VoxCeleb-trainer ``ComputeErrorRates`` + ``ComputeMinDcf`` Python loops;
- MNR: Torres et al.'s ``compute_rank`` loop (per query: filter the other singers' list, ``random.sample``, score the
  candidates, sort), with exact singer labels;
- bootstrap CI (1000 resamples of ``--bootstrap-trials`` trials): resample + re-sort + EER per resample, timed on
  ``--naive-boot`` resamples and extrapolated.

Usage: ``python benchmarks/scoring.py [--trials 1000000] [--segments 20000] [--dim 1000] [--markdown]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.evaluation import metrics  # noqa: E402


def make_embeddings(n_segments: int, dim: int, n_singers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) float32 embeddings = 0.25 x singer centre + unit noise, and (N,) singer names."""
    rng = np.random.default_rng(seed)
    codes = np.sort(rng.integers(0, n_singers, n_segments))  # stored by singer folder, as the HDF5 files are
    centres = rng.standard_normal((n_singers, dim), dtype=np.float32)
    emb = rng.standard_normal((n_segments, dim), dtype=np.float32)
    emb += 0.25 * centres[codes]
    return emb, np.array([f"singer{c:03d}" for c in codes])


def make_trials(singers: np.ndarray, n_trials: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Torres et al. 2023 ``create_speaker_pairs``: with prob. 1/2 two segments of one singer, else of two
    distinct singers."""
    rng = np.random.default_rng(seed)
    names, codes = np.unique(singers, return_inverse=True)
    rows_of = [np.flatnonzero(codes == c) for c in range(names.size)]
    sizes = np.array([r.size for r in rows_of])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    by_singer = np.concatenate(rows_of)
    labels = rng.random(n_trials) < 0.5
    s1 = rng.integers(0, names.size, n_trials)
    s2 = (s1 + rng.integers(1, names.size, n_trials)) % names.size
    s2[labels] = s1[labels]
    idx1 = by_singer[starts[s1] + (rng.random(n_trials) * sizes[s1]).astype(np.int64)]
    idx2 = by_singer[starts[s2] + (rng.random(n_trials) * sizes[s2]).astype(np.int64)]
    return labels.astype(np.int64), idx1, idx2


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


# ------------------------------------------------------------------------------------------------
# baselines
# ------------------------------------------------------------------------------------------------


def naive_cosine(emb: np.ndarray, idx1: np.ndarray, idx2: np.ndarray) -> np.ndarray:
    out = []
    for a, b in zip(idx1.tolist(), idx2.tolist()):
        u, v = emb[a], emb[b]
        out.append(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v))))
    return np.array(out)


def sklearn_cosine(emb: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, block: int = 16384) -> np.ndarray:
    from sklearn.metrics.pairwise import paired_cosine_distances

    out = np.empty(idx1.size)
    for s in range(0, idx1.size, block):
        out[s : s + block] = 1.0 - paired_cosine_distances(emb[idx1[s : s + block]], emb[idx2[s : s + block]])
    return out


def sklearn_eer(labels: np.ndarray, scores: np.ndarray) -> float:
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return 100.0 * brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


def kaldi_min_dcf(labels: np.ndarray, scores: np.ndarray, p_target: float = 0.01) -> float:
    """Kaldi ``sid/compute_min_dcf.py`` (as in clovaai voxceleb_trainer ``tuneThreshold.py``), loops as written."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    lab = [int(labels[i]) for i in order]
    fnrs, fprs = [], []
    for i in range(len(lab)):
        if i == 0:
            fnrs.append(lab[i])
            fprs.append(1 - lab[i])
        else:
            fnrs.append(fnrs[i - 1] + lab[i])
            fprs.append(fprs[i - 1] + 1 - lab[i])
    fnrs_norm, fprs_norm = sum(lab), len(lab) - sum(lab)
    fnrs = [x / float(fnrs_norm) for x in fnrs]
    fprs = [1 - x / float(fprs_norm) for x in fprs]
    min_c = float("inf")
    for fnr, fpr in zip(fnrs, fprs):
        min_c = min(min_c, fnr * p_target + fpr * (1 - p_target))
    return min_c / min(p_target, 1 - p_target)


def torres2023_mnr(emb: np.ndarray, singers: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, n_queries: int,
                n_negatives: int, seed: int) -> float:
    """Torres et al. 2023 ``compute_rank`` per-query loop (exact labels instead of its path-substring test)."""
    rng = random.Random(seed)
    names = singers.tolist()
    ranks = []
    for a, b in list(zip(idx1.tolist(), idx2.tolist()))[:n_queries]:
        others = [i for i, s in enumerate(names) if s != names[a]]
        cands = [b, *rng.sample(others, n_negatives)]
        c = emb[cands]
        sims = c @ emb[a] / (np.linalg.norm(c, axis=1) * np.linalg.norm(emb[a]))
        order = np.argsort(-sims).tolist()
        ranks.append(order.index(0) / (n_negatives + 1))
    return 100.0 * float(np.mean(ranks))


def naive_bootstrap(labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_boot):
        idx = rng.integers(0, labels.size, labels.size)
        out.append(sklearn_eer(labels[idx], scores[idx]))
    return np.array(out)


# ------------------------------------------------------------------------------------------------


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1_000_000)
    ap.add_argument("--segments", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--singers", type=int, default=100)
    ap.add_argument("--mnr-queries", type=int, default=1000)
    ap.add_argument("--mnr-negatives", type=int, default=512)
    ap.add_argument("--bootstrap-trials", type=int, default=20_000)
    ap.add_argument("--naive-subset", type=int, default=20_000, help="trials for the naive loop (extrapolated)")
    ap.add_argument("--naive-boot", type=int, default=50, help="resamples for the naive bootstrap (extrapolated)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown rows")
    args = ap.parse_args(argv)

    emb, singers = make_embeddings(args.segments, args.dim, args.singers, args.seed)
    labels, idx1, idx2 = make_trials(singers, args.trials, args.seed + 1)
    pos = labels == 1
    config = f"{args.trials:,} trials, {args.segments:,} x {args.dim} float32, {args.singers} singers"
    print(f"# {config}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}; load average {os.getloadavg()[0]:.1f} at start", flush=True)

    # ---- ours ---------------------------------------------------------------------------------------
    metrics.cosine_scores(emb[:10], idx1[:5] % 10, idx2[:5] % 10)  # warm-up: imports torch, sparse kernels
    t_cos, scores = best_of(lambda: metrics.cosine_scores(emb, idx1, idx2), args.repeat)
    t_eer, (eer, _) = best_of(lambda: metrics.eer(labels, scores), args.repeat)
    t_dcf, (dcf, _) = best_of(lambda: metrics.min_dcf(labels, scores), args.repeat)
    t_mnr, (mnr, nq, nneg) = best_of(
        lambda: metrics.mean_normalized_rank(emb, singers, (idx1[pos], idx2[pos]), args.mnr_queries,
                                             args.mnr_negatives, seed=args.seed), args.repeat)
    t_total = t_cos + t_eer + t_dcf + t_mnr
    t_cos_np, scores_np = best_of(lambda: metrics.cosine_scores(emb, idx1, idx2, backend="numpy"), 1)
    nb = args.bootstrap_trials
    t_boot, ci = best_of(lambda: metrics.bootstrap_eer_ci(labels[:nb], scores[:nb], 1000, seed=0), args.repeat)

    # ---- baselines ----------------------------------------------------------------------------------
    ns = min(args.naive_subset, args.trials)
    t_naive_sub, naive = best_of(lambda: naive_cosine(emb, idx1[:ns], idx2[:ns]), 1)
    t_naive = t_naive_sub * args.trials / ns
    t_skcos, sk_scores = best_of(lambda: sklearn_cosine(emb, idx1, idx2), 1)
    t_skeer, sk_eer = best_of(lambda: sklearn_eer(labels, scores), 1)
    t_kaldi, kaldi_dcf = best_of(lambda: kaldi_min_dcf(labels, scores), 1)
    t_rank, rank_torres = best_of(lambda: torres2023_mnr(emb, singers, idx1[pos], idx2[pos], args.mnr_queries,
                                                  args.mnr_negatives, args.seed), 1)
    t_nboot_sub, _ = best_of(lambda: naive_bootstrap(labels[:nb], scores[:nb], args.naive_boot, 0), 1)
    t_nboot = t_nboot_sub * 1000 / args.naive_boot

    print(f"# load average {os.getloadavg()[0]:.1f} at end (timings are best of {args.repeat} for ours, "
          "one run for baselines)")
    # ---- agreement ----------------------------------------------------------------------------------
    print(f"# EER {eer:.4f} % (sklearn+brentq {sk_eer:.4f} %), minDCF {dcf:.4f} (Kaldi loop {kaldi_dcf:.4f}), "
          f"MNR {mnr:.2f} % over {nq} queries x {nneg} negatives "
          f"(Torres et al. 2023 loop {rank_torres:.2f} %, other draws), "
          f"EER 95 % CI on {nb:,} trials [{ci[0]:.2f}, {ci[1]:.2f}]")
    print(f"# max |score difference|: vs naive loop {np.abs(scores[:ns] - naive).max():.1e}, "
          f"vs sklearn {np.abs(scores - sk_scores).max():.1e}, vs numpy backend {np.abs(scores - scores_np).max():.1e}")

    rows = [
        ("cosine scoring", f"{args.trials:,} trials, D={args.dim}", t_cos,
         f"naive per-pair loop {fmt(t_naive)} (timed on {ns:,} trials, x{args.trials // ns} extrapolated)", t_naive),
        ("cosine scoring", f"{args.trials:,} trials, D={args.dim}", t_cos,
         f"sklearn paired_cosine_distances, blocks of 16k: {fmt(t_skcos)}", t_skcos),
        ("cosine scoring", f"{args.trials:,} trials, D={args.dim}", t_cos,
         f"own numpy backend (chunked gather + einsum): {fmt(t_cos_np)}", t_cos_np),
        ("EER", f"{args.trials:,} trials", t_eer, f"sklearn roc_curve + brentq: {fmt(t_skeer)}", t_skeer),
        ("minDCF (p=0.01)", f"{args.trials:,} trials", t_dcf, f"Kaldi ComputeMinDcf loops: {fmt(t_kaldi)}", t_kaldi),
        ("MNR", f"{nq} queries x {nneg} negatives, N={args.segments:,}", t_mnr,
         f"Torres et al. 2023 compute_rank loop: {fmt(t_rank)}", t_rank),
        ("total: scores + EER + minDCF + MNR", config, t_total,
         "naive loop + sklearn EER + Kaldi minDCF + Torres et al. 2023 MNR: "
         f"{fmt(t_naive + t_skeer + t_kaldi + t_rank)}",
         t_naive + t_skeer + t_kaldi + t_rank),
        ("bootstrap EER CI", f"1000 resamples of {nb:,} trials", t_boot,
         f"resample + sklearn EER per resample {fmt(t_nboot)} (timed on {args.naive_boot}, extrapolated)", t_nboot),
    ]
    if args.markdown:
        print("| benchmark | configuration | result | baseline | ratio |")
        print("|---|---|---|---|---|")
        for name, conf, ours, base_txt, base in rows:
            print(f"| {name} | {conf} | {fmt(ours)} | {base_txt} | {base / ours:.1f}x |")
    else:
        w = max(len(r[0]) for r in rows)
        for name, _conf, ours, base_txt, base in rows:
            print(f"{name:<{w}}  {fmt(ours):>9}  {base / ours:7.1f}x faster than {base_txt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
