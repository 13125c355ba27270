"""The invariance report: how far controlled transforms of one side of a target pair move the EER.

A singer embedding should not change when the same voice is pitch-shifted, made quieter, noisier,
band-limited, reverberant or down-sampled. The embed stage (``embed.invariance``) embeds transformed copies
(:mod:`singer_ssl.augment.controlled`) of a deterministic subset of segments, at most
``segments_per_singer`` per singer (:func:`singer_ssl.augment.controlled.select_rows`), into the embedding
file's ``invariance`` group. The evaluate stage then builds, for every transform, target trials
``(a, T(b))``: ``b`` a subset segment, transformed, ``a`` every other segment of the same singer,
untransformed, from another source recording when the singer has one (:func:`target_pairs`); the
non-target trials are the trial list's own (untransformed). Each transform is summarised by the EER (%,
:func:`singer_ssl.evaluation.metrics.eer`) of those target trials against those non-target trials, next to
the *reference* EER of the same pairs untransformed, ``(a, b)``. The vectors are the trained encoder's
``embedding``. No transform needs the trial list, so the embed stage does not depend on the trials stage
(both are built from the segments in parallel).

Seen vs held-out: a transform is *seen* when the model's training chain (the waveform augmentations it was
trained with, stored by the embed stage) contains its family (:data:`SEEN_BY`,
e.g. ``white_noise`` is seen with ``colored_noise``, ``resample`` with ``band_limit``), else *held-out*; the
held-out families (``blue_noise``, ``gain_ramp``, ``quantize``) are ones no training augmentation produces,
so they measure invariance that was not trained for. ``identity`` is in neither group.

Metrics block ``invariance`` (in ``metrics/<dataset>.json``)::

    {representation: "embedding", segments, target_trials, nontarget_trials, reference_eer,
     eer: {<transform spec>: eer, ...},
     target_score_mean: {reference: ..., <transform spec>: ..., ...}, nontarget_score_mean,
     training_chain: [<augmentation>, ...], groups: {seen: [<spec>, ...], held_out: [<spec>, ...]},
     max_increase: {seen: <max EER - reference, points>, held_out: ...}   (null for an empty group),
     increase_ci95_singer: {<transform spec>: [lo, hi], ...}}

``increase_ci95_singer`` is the paired singer-level bootstrap interval of each transform's EER increase
(points; the reference and the transformed scores scored on the same singer resamples,
:func:`singer_ssl.evaluation.metrics.singer_bootstrap_samples`, as the ``versus`` block): the report holds
a few hundred target trials, so an increase of a few points can be trial noise; an interval that contains 0
means the transform's cost is not shown, one whose lower end is above a target means the target is missed
beyond noise. Omitted when ``n_boot`` is 0.

and one plot, ``invariance.png``: the EER per transform, seen and held-out apart, with the reference EER
as a line, and the target cosine-score distribution per transform beside the untransformed target and
non-target distributions; the test set is named in the title.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

#: transform kind (:data:`singer_ssl.augment.controlled.KINDS`) -> the training waveform augmentations that
#: produce its family (none: held out by design)
SEEN_BY: dict[str, tuple[str, ...]] = {
    "pitch": ("pitch_shift_praat", "pitch_shift"),
    "gain": ("gain",),
    "white_noise": ("gaussian_noise", "gaussian_snr", "colored_noise"),
    "pink_noise": ("colored_noise",),
    "band_pass": ("band_limit", "band_pass", "filter_one_of"),
    "reverb": ("room_reverb",),
    "resample": ("band_limit",),
    "blue_noise": (),
    "gain_ramp": (),
    "quantize": (),
    "identity": (),
}


def target_pairs(singers: np.ndarray, sources: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target trials of the report: ``(a, j)`` with ``a`` a row (untransformed side) and ``j`` a position in ``rows``.

    For subset row ``b = rows[j]``: every row ``a != b`` of the same singer from another source when the
    singer has another source, else every ``a != b`` of the same singer. Both (M,) int64, ordered by ``j``, ``a``.
    """
    singers, sources = np.asarray(singers), np.asarray(sources)
    a_out, j_out = [], []
    for j, b in enumerate(np.asarray(rows, dtype=np.int64)):
        same = np.flatnonzero(singers == singers[b])
        same = same[same != b]
        other = same[sources[same] != sources[b]]
        partners = other if other.size else same
        a_out.append(partners)
        j_out.append(np.full(partners.size, j, dtype=np.int64))
    if not a_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(a_out).astype(np.int64), np.concatenate(j_out)


def _cos(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    nu = np.maximum(np.linalg.norm(u, axis=1), 1e-8)
    nv = np.maximum(np.linalg.norm(v, axis=1), 1e-8)
    return np.sum(u * v, axis=1) / (nu * nv)


def split_seen(specs: list[str], training_chain: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """``{"seen": [...], "held_out": [...]}``: the transform specs whose family the chain contains, and the rest.

    A spec's family is its kind (the part before ``:``); ``identity`` goes in neither list.
    """
    chain = set(training_chain)
    groups: dict[str, list[str]] = {"seen": [], "held_out": []}
    for spec in specs:
        kind = spec.partition(":")[0]
        if kind != "identity":
            groups["seen" if chain & set(SEEN_BY.get(kind, ())) else "held_out"].append(spec)
    return groups


def invariance_report(embedding: np.ndarray, singers: np.ndarray, sources: np.ndarray, rows: np.ndarray,
                      transformed: dict[str, np.ndarray], labels: np.ndarray, idx1: np.ndarray,
                      idx2: np.ndarray, training_chain: tuple[str, ...] = (), n_boot: int = 0,
                      seed: int = 0) -> tuple[dict[str, Any] | None, dict[str, np.ndarray]]:
    """The ``invariance`` metrics block and the score arrays for the plot.

    ``embedding`` (N, D) untransformed; ``rows`` (K,) the transformed subset; ``transformed`` maps each
    transform spec to its (K, D) embeddings (row j = ``rows[j]`` transformed); ``labels``, ``idx1``, ``idx2``
    the trial list (only its non-target trials, label 0, are used); ``training_chain`` the model's training
    waveform augmentations (seen vs held-out, :func:`split_seen`); ``n_boot`` > 0 adds the increases'
    paired singer-level intervals (``seed`` seeds the resamples). Returns ``(None, {})`` when no target
    pair exists (every subset singer has a single segment). Scores: ``reference``, each spec and ``nontarget``.
    """
    from singer_ssl.evaluation.metrics import eer, paired_singer_eer_differences

    rows = np.asarray(rows, dtype=np.int64)
    a, j = target_pairs(singers, sources, rows)
    neg = np.asarray(labels) == 0
    if a.size == 0 or not neg.any():
        return None, {}
    nontarget = _cos(embedding[np.asarray(idx1)[neg]], embedding[np.asarray(idx2)[neg]])
    y = np.r_[np.ones(a.size, dtype=int), np.zeros(nontarget.size, dtype=int)]
    scores = {"reference": _cos(embedding[a], embedding[rows[j]])}
    for spec, vecs in transformed.items():
        scores[spec] = _cos(embedding[a], np.asarray(vecs)[j])
    eers = {name: float(eer(y, np.r_[s, nontarget])[0]) for name, s in scores.items()}
    block = {
        "representation": "embedding", "segments": int(rows.size), "target_trials": int(a.size),
        "nontarget_trials": int(nontarget.size), "reference_eer": eers.pop("reference"), "eer": eers,
        "target_score_mean": {name: float(s.mean()) for name, s in scores.items()},
        "nontarget_score_mean": float(nontarget.mean()),
        "training_chain": list(training_chain),
    }
    block["groups"] = split_seen(list(eers), training_chain)
    block["max_increase"] = {g: (max(eers[s] for s in specs) - block["reference_eer"]) if specs else None
                             for g, specs in block["groups"].items()}
    if n_boot > 0:
        singers = np.asarray(singers)
        s1 = np.r_[singers[a], singers[np.asarray(idx1)[neg]]]
        s2 = np.r_[singers[rows[j]], singers[np.asarray(idx2)[neg]]]

        diffs = paired_singer_eer_differences(
            y, {spec: np.r_[scores[spec], nontarget] for spec in eers}, [np.r_[scores["reference"], nontarget]],
            s1, s2, n_boot=n_boot, seed=seed)
        block["increase_ci95_singer"] = {spec: list(ci) for spec, (_, ci) in diffs.items()}
    return block, {**scores, "nontarget": nontarget}


def write_invariance_plot(path: str | os.PathLike, block: dict[str, Any] | None,
                          scores: dict[str, np.ndarray], dataset: str = "") -> None:
    """``invariance.png``: EER per transform (bars: seen, then held-out) with the reference EER (line), and
    target-score boxes; ``dataset`` (the test set) is named in the title.

    Without a report (``block`` None: ``embed.invariance`` off, or no target pair) the image says so, so the
    pipeline's declared plot file always exists.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from singer_ssl.core.io import atomic_path
    from singer_ssl.evaluation.report import titled

    where = f" on {dataset}" if dataset else ""
    if block is None:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no invariance report{where}\n(embed.invariance off, or no same-singer pair)",
                ha="center", va="center")
        ax.set_title(titled(dataset, "invariance"), fontsize=10)
    else:
        groups = block.get("groups") or split_seen(list(block["eer"]), block.get("training_chain", ()))
        other = [n for n in block["eer"] if n not in groups["seen"] and n not in groups["held_out"]]
        names = [*groups["seen"], *groups["held_out"], *other]
        colors = {**{n: "tab:blue" for n in groups["seen"]}, **{n: "tab:orange" for n in groups["held_out"]},
                  **{n: "tab:gray" for n in other}}
        x = np.arange(len(names)) + np.r_[np.zeros(len(groups["seen"])), np.ones(len(names) - len(groups["seen"]))]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(9.0, 0.9 * len(names) + 5), 4.4))
        heights = np.array([block["eer"][n] for n in names])
        ci = block.get("increase_ci95_singer") or {}
        yerr = None
        if all(n in ci for n in names):  # the increase's paired interval, drawn around the bar's EER
            inc = heights - block["reference_eer"]
            yerr = np.array([[d - ci[n][0] for d, n in zip(inc, names)], [ci[n][1] - d for d, n in zip(inc, names)]])
            yerr = np.clip(yerr, 0.0, None)
        ax1.bar(x, heights, color=[colors[n] for n in names], yerr=yerr, capsize=2, ecolor="0.3")
        ax1.axhline(block["reference_eer"], color="k", ls="--", label=f"untransformed {block['reference_eer']:.1f} %")
        for label, color in (("seen in training", "tab:blue"), ("held-out", "tab:orange")):
            ax1.bar([np.nan], [np.nan], color=color, label=label)
        ax1.set_xticks(x, names, rotation=45, ha="right")
        ax1.set_xlabel("transform (pitch: semitones, noise: SNR dB, gain: dB, band: Hz, reverb: RT60 s, "
                       "resample: Hz, quantize: bits)", fontsize=7)
        ax1.set_ylabel("EER (%)")
        bars = "; bars: paired singer-level 95 % interval of the increase" if yerr is not None else ""
        ax1.set_title(f"invariance{where}: transformed targets vs untransformed non-targets\n"
                      f"({block['target_trials']} / {block['nontarget_trials']} trials{bars})", fontsize=8)
        ax1.legend(fontsize=7)
        box = ["nontarget", "reference", *names]
        ax2.boxplot([scores[n] for n in box], showfliers=False)
        ax2.set_xticks(range(1, len(box) + 1), ["non-target", "untransformed", *names], rotation=45, ha="right")
        ax2.set_ylabel("cosine score (unitless, -1..1)")
        ax2.set_xlabel("trial group / transform", fontsize=7)
        ax2.set_title("same-singer score distribution per transform", fontsize=8)
        fig.suptitle(titled(dataset, "invariance of the embedding to each transform"), fontsize=10)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
