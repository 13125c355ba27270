"""Embedding store round trip, NaN checks, and the handcrafted MFCC baseline vs librosa."""

import numpy as np
import pytest

from singer_ssl.evaluation.baselines import mfcc_stats
from singer_ssl.evaluation.report import singer_means
from singer_ssl.evaluation.store import EmbeddingSet, read_embeddings, write_embeddings
from singer_ssl.evaluation.verification import TrialKeyError, check_labels, trial_indices


def _set(n=6, d=4):
    rng = np.random.default_rng(0)
    return EmbeddingSet([f"s{i % 2}/f{i}.wav" for i in range(n)], [f"s{i % 2}" for i in range(n)],
                        [f"src{i // 2}" for i in range(n)],
                        {"embedding": rng.normal(size=(n, d)), "baseline/mfcc/embedding": rng.normal(size=(n, 3))})


def test_round_trip(tmp_path):
    es = _set()
    write_embeddings(tmp_path / "e.h5", es)
    back = read_embeddings(tmp_path / "e.h5")
    assert back.keys == es.keys and back.singers == es.singers and back.sources == es.sources
    assert set(back.vectors) == set(es.vectors)
    name = "baseline/mfcc/embedding"
    np.testing.assert_allclose(back.vectors[name], es.vectors[name], rtol=1e-6)


def test_nan_rejected_before_writing(tmp_path):
    es = _set()
    es.vectors["embedding"][2, 1] = np.nan
    with pytest.raises(ValueError, match=r"embedding: 1 embeddings contain NaN/inf \(e.g. s0/f2.wav\)"):
        write_embeddings(tmp_path / "e.h5", es)
    assert not list(tmp_path.iterdir())


def test_mfcc_stats_matches_librosa():
    librosa = pytest.importorskip("librosa")
    logmel = np.random.default_rng(1).normal(size=(64, 50))
    ref = librosa.feature.mfcc(S=logmel, n_mfcc=20, dct_type=2, norm="ortho")
    expected = np.concatenate([ref.mean(1), ref.std(1)])
    np.testing.assert_allclose(mfcc_stats(logmel), expected, rtol=1e-5, atol=1e-5)


def test_trial_indices_and_errors():
    es = _set()
    i1, i2 = trial_indices(es, ["s0/f0.wav", "s1/f3.wav"], ["s0/f2.wav", "s0/f4.wav"])
    assert i1.tolist() == [0, 3] and i2.tolist() == [2, 4]
    with pytest.raises(TrialKeyError, match="2 trial keys are not in the embeddings.*ghost"):
        trial_indices(es, ["s0/f0.wav", "ghost/a.wav"], ["ghost/b.wav", "s0/f2.wav"])
    with pytest.raises(ValueError, match="only target"):
        check_labels(np.ones(5, int))
    with pytest.raises(ValueError, match="only non-target"):
        check_labels(np.zeros(5, int))


def test_singer_means_brute_force():
    es = _set(n=9)
    v, s = es.vectors["embedding"], np.asarray(es.singers)
    names, means = singer_means(v, s)
    for name, m in zip(names, means):
        np.testing.assert_allclose(m, v[[i for i in range(len(s)) if s[i] == name]].mean(0))


def test_test_dataset_rejects_train_and_unknown():
    from singer_ssl.core.params import ConfigError, test_dataset

    params = {"datasets": {"train": {"a": {"path": "x"}}, "test": {"b": {"path": "y"}}}}
    assert test_dataset(params, "b", "embed") == {"path": "y"}
    with pytest.raises(ConfigError, match="'a' is a train dataset; embed runs on test datasets"):
        test_dataset(params, "a", "embed")
    with pytest.raises(ConfigError, match="valid choices: a, b"):
        test_dataset(params, "zzz", "evaluate")
