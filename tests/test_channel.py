"""The channel-shortcut diagnostic (singer_ssl.evaluation.channel) against loops over the pairs and a filtered
trial list."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from singer_ssl.evaluation import channel
from singer_ssl.evaluation.metrics import cosine_scores, eer


def _data(channel_weight: float, seed: int = 0):
    """4 singers x 3 recordings x 4 segments: voice vector + a recording ("channel") vector + noise."""
    rng = np.random.default_rng(seed)
    singers, sources, rows = [], [], []
    for s in range(4):
        voice = rng.normal(size=16)
        for r in range(3):
            chan = rng.normal(size=16)
            for _ in range(4):
                rows.append(voice + channel_weight * chan + 0.5 * rng.normal(size=16))
                singers.append(f"s{s}")
                sources.append(f"s{s}/rec{r}")
    return np.array(rows), np.array(singers), np.array(sources)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_means_equal_a_loop_over_same_singer_pairs_and_cross_eer_a_filtered_list():
    x, singers, sources = _data(1.5)
    same, cross = [], []
    for a, b in itertools.combinations(range(len(x)), 2):
        if singers[a] == singers[b]:
            (same if sources[a] == sources[b] else cross).append(_cos(x[a], x[b]))
    rng = np.random.default_rng(1)
    i1, i2 = rng.integers(0, len(x), 400), rng.integers(0, len(x), 400)
    i2 = np.where(i1 == i2, (i2 + 1) % len(x), i2)
    labels = (singers[i1] == singers[i2]).astype(int)
    scores = cosine_scores(x, i1, i2)
    got = channel.channel_shortcut(x, singers, sources, labels, i1, i2, scores)
    assert got["pairs"] == {"same_recording": len(same), "cross_recording": len(cross)}
    assert got["target_score_mean"]["same_recording"] == pytest.approx(np.mean(same))
    assert got["target_score_mean"]["cross_recording"] == pytest.approx(np.mean(cross))
    assert got["score_gap"] == pytest.approx(np.mean(same) - np.mean(cross))
    non = scores[labels == 0]
    for kind, tar in (("same_recording", same), ("cross_recording", cross)):
        want = eer(np.r_[np.ones(len(tar)), np.zeros(len(non))], np.r_[tar, non])[0]
        assert got["pair_eer"][kind] == pytest.approx(want)
    assert got["pair_eer"]["same_recording"] < got["pair_eer"]["cross_recording"]
    keep = [k for k in range(400) if labels[k] == 0 or sources[i1[k]] != sources[i2[k]]]
    assert got["cross_recording_target_trials"] == sum(1 for k in keep if labels[k] == 1)
    assert got["cross_recording_eer"] == pytest.approx(eer(labels[keep], scores[keep])[0])
    assert got["eer"] == pytest.approx(eer(labels, scores)[0])
    # a strong channel vector: same-recording targets are easy, cross-recording ones are not
    assert got["score_gap"] > 0.2 and got["cross_recording_eer"] > got["eer"]
    assert "cross-recording EER" in channel.channel_line(got)


def test_a_channel_blind_embedding_shows_no_gap():
    x, singers, sources = _data(0.0)
    pairs = channel.same_singer_pairs(singers, sources)
    i, j = pairs["same_recording"]
    k, m = pairs["cross_recording"]
    gap = cosine_scores(x, i, j).mean() - cosine_scores(x, k, m).mean()
    assert abs(gap) < 0.1


def test_pairs_are_capped_seeded_and_never_cross_singers():
    _, singers, sources = _data(1.0)
    full = channel.same_singer_pairs(singers, sources)
    capped = channel.same_singer_pairs(singers, sources, max_pairs=10, seed=3)
    for kind in full:
        i, j = capped[kind]
        assert len(i) == 10 and (singers[i] == singers[j]).all() and (i < j).all()
        assert ((sources[i] == sources[j]) == (kind == "same_recording")).all()
        assert set(zip(i, j)) <= set(zip(*full[kind]))
        np.testing.assert_array_equal(i, channel.same_singer_pairs(singers, sources, max_pairs=10, seed=3)[kind][0])


def test_no_cross_recording_targets_gives_none():
    x = np.eye(4)
    singers, sources = np.array(["a", "a", "b", "b"]), np.array(["r1", "r1", "r2", "r2"])
    got = channel.channel_shortcut(x, singers, sources, np.array([1, 0]), np.array([0, 0]), np.array([1, 2]),
                                   np.array([0.5, 0.1]))
    assert got["cross_recording_eer"] is None and got["target_score_mean"]["cross_recording"] is None
    assert got["score_gap"] is None and "n/a" in channel.channel_line(got)
