"""Linear probe: recording-level splits, scaler on train only, perfect / chance accuracy on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from singer_ssl.evaluation.probe import probe_singer_id, split_by_group


def synthetic(n_singers=5, recordings=6, segments=12, dim=16, singer_scale=5.0, recording_scale=0.0,
              noise=1.0, seed=0, shuffle_singers=False):
    """Segments = singer centre + recording offset + noise; groups = recording ids."""
    rng = np.random.default_rng(seed)
    centres = singer_scale * rng.standard_normal((n_singers, dim))
    emb, singers, groups = [], [], []
    rec_singer = np.repeat(np.arange(n_singers), recordings)
    if shuffle_singers:  # singer labels carry no information about the embedding
        rec_singer = rng.permutation(rec_singer)
    for r, s in enumerate(rec_singer):
        offset = recording_scale * rng.standard_normal(dim)
        true_centre = centres[r // recordings] if shuffle_singers else centres[s]
        emb.append(true_centre + offset + noise * rng.standard_normal((segments, dim)))
        singers += [f"singer{s}"] * segments
        groups += [f"singer{s}/rec{r}.wav"] * segments
    return np.vstack(emb), np.array(singers), np.array(groups)


def test_split_keeps_recordings_whole_and_stratifies():
    counts = {"a": 10, "b": 3, "c": 2, "d": 1, "e": 7}
    singers, groups = [], []
    for name, n in counts.items():
        for r in range(n):
            k = 1 + (r % 4)  # recordings of different lengths
            singers += [name] * k
            groups += [f"{name}-{r}"] * k
    singers, groups = np.array(singers), np.array(groups)
    split, excluded = split_by_group(singers, groups, val_fraction=0.15, test_fraction=0.25, seed=3)
    assert excluded == ["d"]
    for g in set(groups.tolist()):
        assert len(set(split[groups == g].tolist())) == 1, f"recording {g} spans splits"
    # recordings per split for each singer: round-half-up of the fractions, at least one each
    expected = {"a": (5, 2, 3), "b": (1, 1, 1), "c": (1, 0, 1), "e": (4, 1, 2)}  # (train, val, test)
    for name, (n_train, n_val, n_test) in expected.items():
        mine = singers == name
        got = tuple(len(set(groups[mine & (split == code)].tolist())) for code in (0, 1, 2))
        assert got == (n_train, n_val, n_test), name
    assert np.all(split[singers == "d"] == 3)
    again, _ = split_by_group(singers, groups, 0.15, 0.25, seed=3)
    np.testing.assert_array_equal(split, again)
    other = [split_by_group(singers, groups, 0.15, 0.25, seed=s)[0] for s in range(4, 8)]
    assert any(not np.array_equal(split, o) for o in other)


def test_split_group_owner_is_majority_singer():
    singers = np.array(["x", "x", "y", "y", "y", "x", "x", "x", "y"])
    groups = np.array(["r1", "r1", "r1", "r2", "r2", "r3", "r3", "r4", "r4"])
    split, _ = split_by_group(singers, groups, 0.3, 0.3, seed=0)
    for g in ("r1", "r2", "r3", "r4"):
        assert len(set(split[groups == g].tolist())) == 1


def test_probe_separable_clusters_perfect():
    emb, singers, groups = synthetic(n_singers=6, recordings=5, segments=20, singer_scale=6.0, noise=0.5)
    res = probe_singer_id(emb, singers, groups, seed=0)
    assert res["acc"] == 1.0 and res["bacc"] == 1.0
    assert res["n_classes"] == 6
    assert res["n_train"] + res["n_val"] + res["n_test"] == len(emb)
    assert len(res["y_true"]) == len(res["y_pred"]) == res["n_test"]
    matrix = np.array(res["confusion"]["matrix"])
    assert np.trace(matrix) == matrix.sum() == res["n_test"]
    assert res["confusion"]["labels"] == sorted(set(singers.tolist()))
    split = res["split"]
    for g in set(groups.tolist()):
        assert len(set(split[groups == g].tolist())) == 1


def test_probe_chance_when_only_recordings_are_distinguishable():
    # Each recording is its own tight cluster and singers are assigned to recordings at random. A probe that
    # leaked recordings across splits would score ~100 %; split by recording it can only guess (chance 1/5).
    emb, singers, groups = synthetic(n_singers=5, recordings=20, segments=8, singer_scale=0.0,
                                     recording_scale=5.0, noise=0.3, seed=1, shuffle_singers=True)
    res = probe_singer_id(emb, singers, groups, seed=0)
    assert res["acc"] < 0.45
    assert res["n_classes"] == 5 and res["n_test"] == 5 * 5 * 8


def test_probe_balanced_accuracy_and_determinism():
    emb, singers, groups = synthetic(n_singers=4, recordings=6, segments=10, singer_scale=0.7, noise=1.0, seed=2)
    keep = ~((singers == "singer0") & (np.arange(len(singers)) % 10 >= 3))
    emb, singers, groups = emb[keep], singers[keep], groups[keep]  # singer0 has fewer segments: imbalance
    res = probe_singer_id(emb, singers, groups, seed=5, max_epochs=60)
    y_true, y_pred = np.array(res["y_true"]), np.array(res["y_pred"])
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    assert res["bacc"] == pytest.approx(np.mean(recalls))
    assert res["acc"] == pytest.approx(np.mean(y_true == y_pred))
    assert 0.3 < res["acc"] < 1.0  # a noisy, non-trivial task
    again = probe_singer_id(emb, singers, groups, seed=5, max_epochs=60)
    assert again["y_pred"] == res["y_pred"] and again["best_epoch"] == res["best_epoch"]


def test_probe_scaler_fit_on_train_only():
    emb, singers, groups = synthetic(n_singers=3, recordings=4, segments=6, seed=3)
    emb = emb + np.where(np.char.find(groups, "rec1.") >= 0, 100.0, 0.0)[:, None]  # one shifted recording
    res = probe_singer_id(emb, singers, groups, seed=0, max_epochs=5)
    train = res["split"] == "train"
    np.testing.assert_allclose(res["scaler_mean"], emb[train].mean(axis=0))
    np.testing.assert_allclose(res["scaler_scale"], emb[train].std(axis=0))
    assert not np.allclose(res["scaler_mean"], emb.mean(axis=0))


def test_probe_excludes_single_recording_singers():
    emb, singers, groups = synthetic(n_singers=3, recordings=4, segments=5, seed=4)
    extra = np.zeros((3, emb.shape[1]))
    emb = np.vstack([emb, extra])
    singers = np.r_[singers, ["loner"] * 3]
    groups = np.r_[groups, ["loner/only.wav"] * 3]
    res = probe_singer_id(emb, singers, groups, seed=0, max_epochs=5)
    assert res["excluded_singers"] == ["loner"]
    assert "loner" not in res["confusion"]["labels"] and res["n_classes"] == 3
    assert np.all(res["split"][-3:] == "excluded")


def test_probe_errors():
    emb, singers, groups = synthetic(n_singers=2, recordings=3, segments=4, seed=5)
    one = singers == "singer0"
    with pytest.raises(ValueError, match="at least 2 singers"):
        probe_singer_id(emb[one], singers[one], groups[one])
    two_recs = np.char.find(groups, "rec2") < 0
    two_recs &= np.char.find(groups, "rec5") < 0  # every singer keeps 2 recordings: no validation split
    with pytest.raises(ValueError, match="too few recordings"):
        probe_singer_id(emb[two_recs], singers[two_recs], groups[two_recs])
    bad = emb.copy()
    bad[4, 0] = np.inf
    with pytest.raises(ValueError, match=r"1 NaN/inf values in 1 rows.*\[4\]"):
        probe_singer_id(bad, singers, groups)
    with pytest.raises(ValueError, match="must both have shape"):
        probe_singer_id(emb, singers[:-1], groups)
    with pytest.raises(ValueError, match="val_fraction"):
        probe_singer_id(emb, singers, groups, val_fraction=0.5, test_fraction=0.5)
