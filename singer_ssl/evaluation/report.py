"""Plot files of the evaluate stage (CSV for DVC's templates, PNG images for people).

Files written into the plots folder of a dataset (``plots/<dataset>/`` in the pipeline):
    roc.csv (fpr, tpr), det.csv (fpr, fnr)   curve data, thinned to <= 1000 points
    scores.csv (score, target, nontarget)      histogram densities of trial scores; scores.png
    tsne.csv (x, y, singer) + tsne.png          t-SNE of the segment embeddings (the GE2E singer encoder)
    confusion.csv (actual, predicted)           one row per probe test item (DVC confusion template)
    singer_means.csv (singer, e0..eD-1)         per-singer mean embedding (the GE2E singer encoder's lookup table)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from singer_ssl.core.io import atomic_path, write_csv


def thin(n: int, max_points: int = 1000) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spread rows out of ``n`` (first and last kept)."""
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(int))


def _savefig(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


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


def write_plots(out_dir: str | os.PathLike, data: dict[str, Any], perplexity: float = 30.0, max_points: int = 2000,
                seed: int = 0) -> None:
    """Write every plot file for one dataset (see module docstring).

    ``data``: ``labels`` (M,) and ``scores`` (M,) of the trials, ``embedding`` (N, D) and ``singers`` (N,)
    of the segments, ``probe`` (the result of :func:`singer_ssl.evaluation.probe.probe_singer_id`). The
    t-SNE runs on at most ``max_points`` segments drawn with ``np.random.default_rng(seed)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, scores = data["labels"], data["scores"]
    fpr, tpr, _ = roc_curve(labels, scores)
    keep = thin(len(fpr))
    write_csv(out / "roc.csv", ["fpr", "tpr"], zip(fpr[keep].round(6), tpr[keep].round(6)))
    write_csv(out / "det.csv", ["fpr", "fnr"], zip(fpr[keep].round(6), (1 - tpr[keep]).round(6)))

    bins = np.linspace(min(-1.0, scores.min()), max(1.0, scores.max()), 81)
    tgt, _ = np.histogram(scores[labels == 1], bins=bins, density=True)
    non, _ = np.histogram(scores[labels == 0], bins=bins, density=True)
    centers = (bins[:-1] + bins[1:]) / 2
    write_csv(out / "scores.csv", ["score", "target", "nontarget"], zip(centers.round(4), tgt.round(5), non.round(5)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, density=True, label="non-target (different singers)")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, density=True, label="target (same singer)")
    ax.set_xlabel("cosine score")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    _savefig(fig, out / "scores.png")
    plt.close(fig)

    emb, singers = data["embedding"], data["singers"]
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.choice(len(emb), size=min(int(max_points), len(emb)), replace=False))
    xy = tsne_2d(emb[sel], float(perplexity), seed)
    write_csv(out / "tsne.csv", ["x", "y", "singer"], zip(xy[:, 0].round(4), xy[:, 1].round(4), singers[sel]))
    fig, ax = plt.subplots(figsize=(6, 6))
    names = sorted(set(singers[sel].tolist()))
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    for i, s in enumerate(names):
        m = singers[sel] == s
        ax.scatter(xy[m, 0], xy[m, 1], s=8, color=cmap(i), label=s if len(names) <= 20 else None)
    if len(names) <= 20:
        ax.legend(fontsize=6, markerscale=2, loc="best")
    ax.set_title("t-SNE of singer embeddings")
    ax.set_xticks([])
    ax.set_yticks([])
    _savefig(fig, out / "tsne.png")
    plt.close(fig)

    pr = data["probe"]
    write_csv(out / "confusion.csv", ["actual", "predicted"], zip(pr["y_true"], pr["y_pred"]))

    names, means = singer_means(emb, singers)
    write_csv(out / "singer_means.csv", ["singer", *[f"e{i}" for i in range(means.shape[1])]],
              ([s, *np.round(m, 6)] for s, m in zip(names, means)))
