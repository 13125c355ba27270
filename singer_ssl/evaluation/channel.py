"""The channel-shortcut diagnostic: how much of a target score is the recording rather than the voice.

Two segments of one recording share the microphone, the room and the mix, so an encoder that leans on the
channel scores them higher than two recordings of the same singer. For one representation the evaluate stage
reports (``channel`` in ``metrics/<dataset>_details.json``, see :func:`channel_shortcut`):

- ``target_score_mean``: the mean cosine score of same-singer segment pairs from the *same* recording and from
  *different* recordings (every same-singer pair of the embedded segments, a seeded subset of at most
  ``max_pairs`` of each kind), and ``score_gap`` (same minus cross): near 0 for a channel-blind embedding;
- ``cross_recording_eer``: the EER (%) of the trial list restricted to its cross-recording target trials, with
  every non-target trial, beside ``eer`` of the whole list (the same scores): a cross-recording EER far above
  the whole list's means that the same-recording targets were easy because of the channel;
- ``pair_eer``: ``{same_recording, cross_recording}``, the EER (%) of those same-singer pairs of each kind as
  targets against the trial list's non-targets; informative also when the trial list holds cross-recording
  targets only (``trials.cross_recording: true``, where ``cross_recording_eer`` equals ``eer``).

A recording is the manifest's ``recording`` (the embeddings' ``source``): by default the file, for m4singer
the song folder.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: most same-singer pairs of each kind scored for the mean target scores
MAX_PAIRS = 20000


def same_singer_pairs(singers: np.ndarray, sources: np.ndarray, max_pairs: int = MAX_PAIRS,
                      seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"same_recording": (i, j), "cross_recording": (i, j)}``: every same-singer row pair ``i < j`` split by
    whether the two rows share a recording; a seeded subset (ascending) of at most ``max_pairs`` of each kind."""
    singers, sources = np.asarray(singers), np.asarray(sources)
    _, codes = np.unique(singers, return_inverse=True)
    codes = codes.reshape(-1)
    i_all, j_all = [], []
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        a, b = np.triu_indices(len(rows), k=1)
        i_all.append(rows[a])
        j_all.append(rows[b])
    i = np.concatenate(i_all) if i_all else np.zeros(0, np.int64)
    j = np.concatenate(j_all) if j_all else np.zeros(0, np.int64)
    same = sources[i] == sources[j]
    rng = np.random.default_rng([int(seed), 0xC4A])
    out = {}
    for kind, mask in (("same_recording", same), ("cross_recording", ~same)):
        k = np.flatnonzero(mask)
        if len(k) > max_pairs:
            k = np.sort(rng.choice(k, max_pairs, replace=False))
        out[kind] = (i[k], j[k])
    return out


def channel_shortcut(vectors: np.ndarray, singers: np.ndarray, sources: np.ndarray, labels: np.ndarray,
                     idx1: np.ndarray, idx2: np.ndarray, scores: np.ndarray, max_pairs: int = MAX_PAIRS,
                     seed: int = 0) -> dict[str, Any]:
    """The diagnostic block (module docstring) of ``vectors`` (N, D) with their ``singers`` and ``sources`` (N,),
    for a trial list ``labels``/``idx1``/``idx2`` (M,) and its cosine ``scores`` (M,).

    Returns ``{target_score_mean: {same_recording, cross_recording}, pairs: {same_recording, cross_recording},
    score_gap, pair_eer: {same_recording, cross_recording}, eer, cross_recording_eer,
    cross_recording_target_trials}``; a mean (and the gap) is None when no
    pair of its kind exists, ``cross_recording_eer`` None when the trial list has no cross-recording target.
    """
    from singer_ssl.evaluation.metrics import cosine_scores, eer

    sources = np.asarray(sources)
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    non = scores[labels == 0]
    means: dict[str, float | None] = {}
    counts: dict[str, int] = {}
    pair_eer: dict[str, float | None] = {}
    for kind, (i, j) in same_singer_pairs(singers, sources, max_pairs, seed).items():
        counts[kind] = int(len(i))
        s = cosine_scores(vectors, i, j)
        means[kind] = float(s.mean()) if len(i) else None
        pair_eer[kind] = (eer(np.r_[np.ones(len(s)), np.zeros(len(non))], np.r_[s, non])[0]
                          if len(i) and len(non) else None)
    cross_target = (labels == 1) & (sources[idx1] != sources[idx2])
    keep = cross_target | (labels == 0)
    n_cross = int(cross_target.sum())
    gap = None if None in means.values() else means["same_recording"] - means["cross_recording"]
    return {"target_score_mean": means, "pairs": counts, "score_gap": gap, "pair_eer": pair_eer,
            "eer": eer(labels, scores)[0],
            "cross_recording_eer": eer(labels[keep], scores[keep])[0] if n_cross else None,
            "cross_recording_target_trials": n_cross}


def channel_line(block: dict[str, Any]) -> str:
    """e.g. ``channel: target score same-recording 0.81 vs cross 0.62, cross-recording EER 14.2% (all 11.0%)``."""
    m = block["target_score_mean"]
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    cross = block["cross_recording_eer"]
    p = block["pair_eer"]
    pct = lambda v: "n/a" if v is None else f"{v:.2f}%"  # noqa: E731
    return (f"channel: target score same-recording {fmt(m['same_recording'])} vs cross {fmt(m['cross_recording'])}"
            f" (pair EER {pct(p['same_recording'])} vs {pct(p['cross_recording'])}), cross-recording EER "
            f"{pct(cross)} (all {block['eer']:.2f}%)")
