"""Linear probe: recording-level splits, scaler on train only, perfect / chance accuracy on synthetic data,
BYOL-A's early-stopping rule (ties accepted, patience 10), and the mean/std over seeded runs."""

from __future__ import annotations

import numpy as np
import pytest

from singer_ssl.evaluation.probe import EarlyStopping, probe_runs, probe_singer_id, split_by_group


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


# --------------------------------------------------------------------------------------------------
# BYOL-A's early stopping, against a brute-force transcription of its rule


def byol_a_stopping(history: list[float], patience: int) -> tuple[bool, int, int]:
    """``EarlyStopping.on_epoch_end`` of daisukelab/general-learning ``MLP/torch_mlp_clf.py`` (7b31d31, used
    by BYOL-A's evaluate.py) replayed over a validation-accuracy history, 0-based epochs and ``wait`` as there.

    Returns ``(stopped, epochs_run, best_epoch)`` (1-based counts); ``stopped`` False when the history ran out.
    """
    best_value, wait, best_epoch = 0, 0, None
    for epoch, acc in enumerate(history):
        if acc >= best_value:
            best_epoch, best_value, wait = epoch, acc, 1
        else:
            if wait >= patience:
                return True, epoch + 1, best_epoch + 1
            wait += 1
    return False, len(history), best_epoch + 1


def replay(history: list[float], patience: int) -> tuple[bool, int, int]:
    stopper = EarlyStopping(patience)
    for epoch, acc in enumerate(history, start=1):
        if stopper.update(epoch, acc)[1]:
            return True, epoch, stopper.best_epoch
    return False, len(history), stopper.best_epoch


@pytest.mark.parametrize("patience", [1, 2, 3, 10])
def test_early_stopping_matches_byol_a_on_histories_with_ties(patience):
    rng = np.random.default_rng(patience)
    for _ in range(300):
        # few distinct values, so ties and plateaus are frequent
        history = (rng.integers(0, 5, size=int(rng.integers(1, 40))) / 4).tolist()
        assert replay(history, patience) == byol_a_stopping(history, patience), history
    plateau = [0.5, 0.75] + [0.75] * 15 + [0.5] * 15
    assert replay(plateau, 10) == byol_a_stopping(plateau, 10) == (True, 27, 17)


def test_probe_plateau_of_ties_trains_as_long_as_byol_a():
    """Separable clusters learnt slowly (lr 1e-3): validation accuracy climbs in steps with long plateaus of ties
    (1/3 for 15 epochs). BYOL-A's rule moves the best epoch to the latest tie and runs all 40 epochs; a
    strict-improvement rule would have stopped ``patience`` epochs into the first long plateau."""
    emb, singers, groups = synthetic(n_singers=6, recordings=5, segments=20, singer_scale=6.0, noise=0.5)
    res = probe_singer_id(emb, singers, groups, seed=0, max_epochs=40, patience=10)
    history = res["val_history"]
    assert byol_a_stopping(history, 10) == (False, 40, 40)
    assert (res["epochs"], res["best_epoch"]) == (40, 40) and res["val_acc"] == history[-1] == max(history)
    strict_best, waited, strict_stop = -1.0, 0, None
    for epoch, acc in enumerate(history, start=1):
        strict_best, waited = (acc, 0) if acc > strict_best else (strict_best, waited + 1)
        if waited >= 10:
            strict_stop = epoch
            break
    assert strict_stop is not None and strict_stop < 30  # the strict rule would stop here: the rules differ


@pytest.mark.parametrize("seed", range(4))
def test_probe_stops_where_byol_a_stops(seed):
    """A noisy task shaped like the built-in test set (8 singers x 6 recordings x 3 segments): the epochs run and
    the best epoch are those BYOL-A's rule gives on the same validation history."""
    emb, singers, groups = synthetic(n_singers=8, recordings=6, segments=3, dim=64, singer_scale=0.5,
                                     recording_scale=1.0, noise=1.0, seed=seed)
    res = probe_singer_id(emb, singers, groups, seed=seed)
    history = res["val_history"]
    stopped, epochs, best = byol_a_stopping(history, 10)
    assert len(history) == res["epochs"] == epochs and res["best_epoch"] == best
    assert stopped or epochs == 200
    assert res["val_acc"] == history[best - 1] == max(history)


# --------------------------------------------------------------------------------------------------
# Several runs


def test_probe_runs_are_the_mean_and_std_of_seeded_runs():
    emb, singers, groups = synthetic(n_singers=4, recordings=6, segments=10, singer_scale=0.7, noise=1.0, seed=2)
    summary, first = probe_runs(emb, singers, groups, runs=3, seed=7, max_epochs=30)
    single = [probe_singer_id(emb, singers, groups, seed=7 + i, max_epochs=30) for i in range(3)]
    accs, baccs = [r["acc"] for r in single], [r["bacc"] for r in single]
    assert summary == pytest.approx({"acc": np.mean(accs), "acc_std": np.std(accs), "bacc": np.mean(baccs),
                                     "bacc_std": np.std(baccs), "runs": 3})
    assert len(set(accs)) > 1  # the runs differ (their own splits and initialisations)
    assert first["y_pred"] == single[0]["y_pred"]
    np.testing.assert_array_equal(first["split"], single[0]["split"])
    with pytest.raises(ValueError, match="runs must be an integer >= 1"):
        probe_runs(emb, singers, groups, runs=0)


def test_probe_runs_separable_clusters_perfect_on_average():
    emb, singers, groups = synthetic(n_singers=6, recordings=5, segments=20, singer_scale=6.0, noise=0.5)
    summary, _ = probe_runs(emb, singers, groups, runs=5, seed=0)
    assert summary == {"acc": 1.0, "acc_std": 0.0, "bacc": 1.0, "bacc_std": 0.0, "runs": 5}


def test_probe_runs_shuffled_labels_at_chance():
    """Singers assigned to recordings at random (10 singers x 40 recordings): chance is 1/10. Each run tests 100
    recordings; a recording's share of correct segments lies in [0, 1] with mean 0.1 under the null, so one run's
    accuracy has standard deviation at most sqrt(0.1 * 0.9 / 100) = 0.03, and so does the mean over runs
    (whatever their correlation). Tolerance: 3 standard deviations."""
    emb, singers, groups = synthetic(n_singers=10, recordings=40, segments=4, singer_scale=0.0, recording_scale=5.0,
                                     noise=0.3, seed=1, shuffle_singers=True)
    summary, first = probe_runs(emb, singers, groups, runs=5, seed=0)
    assert first["n_test"] == 10 * 10 * 4
    assert abs(summary["acc"] - 0.1) < 3 * 0.03, summary
