"""Plot files of the evaluate stage: CSV data for DVC's vega templates, matplotlib PNG figures for people.

Files written into the plots folder of a dataset (``plots/<dataset>/`` in the pipeline):
    roc.csv (fpr, tpr)                          ROC, thinned to <= 1000 points (DVC template ``simple``)
    det.csv (fpr, fnr, fpr_probit, fnr_probit)  DET: the same points and their normal deviates
                                                Φ⁻¹(clip(p, PROBIT_EPS, 1 - PROBIT_EPS)) (template det_probit)
    roc_det.png                                 ROC and DET (normal-deviate axes, as in the speaker-verification
                                                literature, Martin et al. 1997) with the EER point marked
    scores.csv (score, target, nontarget)       histogram densities of the trial scores over their own range
    scores.png                                  that histogram with the EER threshold drawn
    tsne.csv (x, y, singer) + tsne.png          t-SNE of the segment embeddings, one colour per singer
    confusion.csv (actual, predicted)           one row per probe test item (DVC confusion template)
    singer_means.csv (singer, e0..eD-1)         per-singer mean embedding (the GE2E singer encoder's lookup table)
    summary.png                                 EER and probe accuracy of the model against both baselines
                                                (:func:`write_summary`, from the metrics dict)

The EER point is :func:`singer_ssl.evaluation.metrics.eer` (SUPERB / Torres et al. 2023): the root of
FNR = FPR on the linearly interpolated ROC, and its cosine threshold.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from singer_ssl.core.io import atomic_path, write_csv

#: probabilities are clipped to [PROBIT_EPS, 1 - PROBIT_EPS] before the normal deviate (Φ⁻¹(0) = -inf)
PROBIT_EPS = 1e-4
#: DET tick positions (%), as NIST's DET plots
DET_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)


def thin(n: int, max_points: int = 1000) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spread rows out of ``n`` (first and last kept)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def probit(p: np.ndarray, eps: float = PROBIT_EPS) -> np.ndarray:
    """Normal deviate Φ⁻¹(p) of probabilities ``p`` (any shape), clipped to [eps, 1 - eps] first."""
    from scipy.stats import norm

    return norm.ppf(np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps))


def eer_point(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The EER as marked on the figures: ``(eer in %, cosine threshold)`` by
    :func:`singer_ssl.evaluation.metrics.eer` (FNR = FPR on the linearly interpolated ROC)."""
    from singer_ssl.evaluation.metrics import eer

    return eer(labels, scores)


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tsne_2d(vectors: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """2-D t-SNE (scikit-learn, PCA init, cosine metric) of L2-normalised vectors."""
    from sklearn.manifold import TSNE

    x = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    perp = float(min(perplexity, max(2.0, (len(x) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perp, init="pca", metric="cosine", random_state=seed).fit_transform(x)


def singer_means(vectors: np.ndarray, singers: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Per-singer mean embedding (the GE2E singer encoder's lookup table): sorted singer names, (S, D)."""
    names = sorted(set(singers.tolist()))
    inv = {s: i for i, s in enumerate(names)}
    codes = np.fromiter((inv[s] for s in singers), int, len(singers))
    sums = np.zeros((len(names), vectors.shape[1]))
    np.add.at(sums, codes, vectors)
    return names, sums / np.bincount(codes, minlength=len(names))[:, None]


def score_bins(scores: np.ndarray, n_bins: int = 60) -> np.ndarray:
    """``n_bins + 1`` histogram edges spanning the scores (5 % margin each side), not the whole [-1, 1]."""
    lo, hi = float(scores.min()), float(scores.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.05
    return np.linspace(lo - pad, hi + pad, n_bins + 1)


def titled(dataset: str, text: str) -> str:
    """A figure title naming the test set: ``"<dataset>: <text>"`` (``text`` alone without a name)."""
    return f"{dataset}: {text}" if dataset else text


def plot_roc_det(ax_roc, ax_det, fpr: np.ndarray, tpr: np.ndarray, eer_pct: float, threshold: float,
                 dataset: str = "") -> None:
    """Draw the ROC (linear axes) and the DET (normal-deviate axes, ticks :data:`DET_TICKS` %) with the EER point;
    the titles name ``dataset``."""
    e = eer_pct / 100.0
    label = f"EER {eer_pct:.2f} % (cosine {threshold:.3f})"
    ax_roc.plot(fpr, tpr, color="C0", lw=1.5)
    ax_roc.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls=":")
    ax_roc.plot([0, 1], [1, 0], color="0.8", lw=0.8, ls="--")
    ax_roc.plot([e], [1 - e], "o", color="C3", label=label)
    ax_roc.set(xlim=(0, 1), ylim=(0, 1), xlabel="false acceptance rate", ylabel="true acceptance rate",
               title=titled(dataset, "ROC"))
    ax_roc.legend(loc="lower right", fontsize=8)
    lo, hi = probit(DET_TICKS[0] / 200.0), probit(0.5)
    ax_det.plot(probit(fpr), probit(1 - tpr), color="C0", lw=1.5)
    ax_det.plot([lo, hi], [lo, hi], color="0.8", lw=0.8, ls="--")
    ax_det.plot([probit(e)], [probit(e)], "o", color="C3", label=label)
    ticks = probit(np.array(DET_TICKS) / 100.0)
    names = [f"{t:g}" for t in DET_TICKS]
    ax_det.set_xticks(ticks, names, fontsize=8)
    ax_det.set_yticks(ticks, names, fontsize=8)
    ax_det.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="false acceptance rate (%)", ylabel="false rejection rate (%)",
               title=titled(dataset, "DET (normal-deviate axes)"))
    ax_det.grid(True, lw=0.4, alpha=0.5)
    ax_det.legend(loc="lower left", fontsize=8)


def plot_scores(ax, scores: np.ndarray, labels: np.ndarray, bins: np.ndarray, eer_pct: float,
                threshold: float, dataset: str = "") -> None:
    """Target / non-target score histograms (densities) with the EER threshold as a vertical line; the title
    names ``dataset``."""
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, density=True, color="C0",
            label=f"different singers ({int((labels == 0).sum())} trials)")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, density=True, color="C1",
            label=f"same singer ({int((labels == 1).sum())} trials)")
    ax.axvline(threshold, color="C3", lw=1.5, label=f"EER threshold {threshold:.3f} (EER {eer_pct:.2f} %)")
    ax.set_xlim(bins[0], bins[-1])
    ax.set(xlabel="cosine score", ylabel="density", title=titled(dataset, "trial scores"))
    ax.legend(fontsize=8, loc="upper left")


def plot_tsne(ax, xy: np.ndarray, singers: np.ndarray, dataset: str = "") -> None:
    """t-SNE points, one colour per singer (legend up to 20 singers); the title names ``dataset``."""
    plt = _pyplot()
    names = sorted(set(singers.tolist()))
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    for i, s in enumerate(names):
        m = singers == s
        ax.scatter(xy[m, 0], xy[m, 1], s=10, color=cmap(i % 20), label=s if len(names) <= 20 else None)
    if len(names) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5), title="singer")
    ax.set_title(titled(dataset, f"t-SNE of the embeddings ({len(xy)} segments, {len(names)} singers)"))
    ax.set_xticks([])
    ax.set_yticks([])


def write_plots(out_dir: str | os.PathLike, data: dict[str, Any], perplexity: float = 30.0, max_points: int = 2000,
                seed: int = 0, dataset: str = "") -> None:
    """Write every plot file for one dataset except ``summary.png`` (see module docstring); figure titles name
    ``dataset``.

    ``data``: ``labels`` (M,) and ``scores`` (M,) of the trials, ``embedding`` (N, D) and ``singers`` (N,)
    of the segments, ``probe`` (the result of :func:`singer_ssl.evaluation.probe.probe_singer_id`). The
    t-SNE runs on at most ``max_points`` segments drawn with ``np.random.default_rng(seed)``.
    """
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, scores = np.asarray(data["labels"]), np.asarray(data["scores"])
    fpr, tpr, _ = roc_curve(labels, scores)
    eer_pct, threshold = eer_point(labels, scores)
    keep = thin(len(fpr))
    f, t = fpr[keep].round(6), tpr[keep].round(6)
    write_csv(out / "roc.csv", ["fpr", "tpr"], zip(f, t))
    write_csv(out / "det.csv", ["fpr", "fnr", "fpr_probit", "fnr_probit"],
              zip(f, (1 - t).round(6), probit(f).round(5), probit(1 - t).round(5)))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.6))
    plot_roc_det(a, b, fpr, tpr, eer_pct, threshold, dataset)
    _savefig(fig, out / "roc_det.png")
    plt.close(fig)

    bins = score_bins(scores)
    tgt, _ = np.histogram(scores[labels == 1], bins=bins, density=True)
    non, _ = np.histogram(scores[labels == 0], bins=bins, density=True)
    centers = (bins[:-1] + bins[1:]) / 2
    write_csv(out / "scores.csv", ["score", "target", "nontarget"], zip(centers.round(4), tgt.round(5), non.round(5)))
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    plot_scores(ax, scores, labels, bins, eer_pct, threshold, dataset)
    _savefig(fig, out / "scores.png")
    plt.close(fig)

    emb, singers = data["embedding"], np.asarray(data["singers"])
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.choice(len(emb), size=min(int(max_points), len(emb)), replace=False))
    xy = tsne_2d(emb[sel], float(perplexity), seed)
    write_csv(out / "tsne.csv", ["x", "y", "singer"], zip(xy[:, 0].round(4), xy[:, 1].round(4), singers[sel]))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    plot_tsne(ax, xy, singers[sel], dataset)
    _savefig(fig, out / "tsne.png")
    plt.close(fig)

    pr = data["probe"]
    write_csv(out / "confusion.csv", ["actual", "predicted"], zip(pr["y_true"], pr["y_pred"]))

    names, means = singer_means(emb, singers)
    write_csv(out / "singer_means.csv", ["singer", *[f"e{i}" for i in range(means.shape[1])]],
              ([s, *np.round(m, 6)] for s, m in zip(names, means)))


def _interval(block: dict[str, Any]) -> tuple[float, float] | None:
    ci = block.get("eer_ci95_singer") or block.get("eer_ci95")
    return (float(ci[0]), float(ci[1])) if ci else None


def summary_bars(metrics: dict[str, Any]) -> dict[str, list[tuple[str, float, tuple[float, float] | None]]]:
    """The bars of the summary figure: ``{"eer": [...], "acc": [...]}`` of ``(name, value, (low, high))``.

    EER (%) of the model's embedding and of the MFCC baseline (whiskers: the singer-bootstrap 95 % interval
    ``eer_ci95_singer``, else ``eer_ci95``) and of the random-init baseline (mean over initialisations,
    whiskers: ± their std); linear-probe accuracy (%) of the same three (whiskers: ± std over the runs).
    """
    base = metrics["baselines"]
    ri, mf, emb = base["random_init"], base["mfcc"], metrics["embedding"]
    inits = ri.get("inits", 1)

    def pm(v: float, e: float | None) -> tuple[float, float] | None:
        return None if e is None else (v - e, v + e)

    acc = [(metrics["probe"]["acc"], metrics["probe"]["acc_std"]), (ri["probe"]["acc"], ri["probe"]["acc_std"]),
           (mf["probe"]["acc"], mf["probe"]["acc_std"])]
    names = ["model", f"random init ({inits})", "MFCC"]
    return {
        "eer": [(names[0], emb["eer"], _interval(emb)), (names[1], ri["eer"], pm(ri["eer"], ri.get("eer_std"))),
                (names[2], mf["eer"], _interval(mf))],
        "acc": [(n, 100 * a, pm(100 * a, 100 * e)) for n, (a, e) in zip(names, acc)],
    }


def write_summary(path: str | os.PathLike, metrics: dict[str, Any], dataset: str) -> None:
    """``summary.png``: EER (lower is better) and linear-probe accuracy (higher is better) of the model
    against the random-init (mean ± std over initialisations) and MFCC baselines, for one test set."""
    plt = _pyplot()
    bars = summary_bars(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, title in ((axes[0], "eer", "Verification EER (%), lower is better"),
                           (axes[1], "acc", "Singer-ID probe accuracy (%), higher is better")):
        rows = bars[key]
        x = np.arange(len(rows))
        values = np.array([r[1] for r in rows])
        ax.bar(x, values, color=["C2", "C7", "C0"])
        tops = values.copy()
        for i, (_, v, ci) in enumerate(rows):
            if ci is not None:
                ax.errorbar([i], [v], yerr=[[v - ci[0]], [ci[1] - v]], color="k", capsize=4, lw=1)
                tops[i] = max(v, ci[1])
            ax.annotate(f"{v:.1f}", (i, tops[i]), ha="center", va="bottom", fontsize=8, xytext=(0, 2),
                        textcoords="offset points")
        ax.set_xticks(x, [r[0] for r in rows])
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(float(tops.max()) * 1.15, 1.0))
    n = metrics.get("counts", {})
    fig.suptitle(f"{dataset}: {n.get('singers', '?')} singers, {n.get('segments', '?')} segments, "
                 f"{n.get('trials', '?')} trials", fontsize=10)
    fig.text(0.5, -0.02, "whiskers: EER of model and MFCC, 95 % interval over singers; random init, ± std over "
             "initialisations; probe, ± std over runs", ha="center", fontsize=7.5, color="0.3")
    fig.tight_layout()
    _savefig(fig, Path(path))
    plt.close(fig)
