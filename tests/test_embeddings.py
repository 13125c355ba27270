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


# --------------------------------------------------------------------------------------------------
# The random-init baseline's several initialisations (embed.random_inits)


def _tiny_model_and_features(tmp_path, n=12, n_mels=16, frames=40):
    """A features HDF5 of ``n`` random log-mels and a saved AudioNTT2020 model folder matching its front end."""
    import h5py

    from singer_ssl.model.folder import build_model, save_model_folder

    rng = np.random.default_rng(0)
    attrs = {"sample_rate": 8000, "n_fft": 256, "hop": 64, "n_mels": n_mels, "fmin": 0.0, "fmax": 4000.0,
             "log_offset": 1e-8, "center": True, "window": "hann", "mel": "slaney", "mean": -4.0, "std": 3.0}
    logmel = rng.normal(-4, 3, (n, n_mels, frames)).astype(np.float32)
    s = h5py.string_dtype("utf-8")
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("logmel", data=logmel)
        f.create_dataset("key", data=np.array([f"s{i % 3}/x{i}.wav" for i in range(n)], dtype=object), dtype=s)
        f.create_dataset("singer", data=np.array([f"s{i % 3}" for i in range(n)], dtype=object), dtype=s)
        f.create_dataset("source", data=np.array([f"s{i % 3}/r{i // 6}.wav" for i in range(n)], dtype=object),
                         dtype=s)
        for k, v in attrs.items():
            f.attrs[k] = v
    frontend = {k: attrs[k] for k in ("sample_rate", "n_fft", "hop", "n_mels", "fmin", "log_offset")}
    hp = {"frontend": {**frontend, "fmax": None}, "normalization": {"mean": -4.0, "std": 3.0},
          "encoder": {"name": "audiontt2020", "kwargs": {"n_mels": n_mels, "embedding_dim": 16}},
          "head": {"kind": "silu_linear", "dim": 8, "hidden": 12}, "segment_seconds": 0.32}
    save_model_folder(build_model(hp).eval(), hp, tmp_path / "model")
    return logmel, hp


def test_embed_stores_each_random_init_seeded_from_seed(tmp_path, one_torch_thread):
    """Init k is ``torch.manual_seed(seed + k); build_model(hparams)`` (init 0: the weights training starts from),
    re-embedded here independently of the stage."""
    import h5py
    import torch

    from singer_ssl.embed import embed_dataset
    from singer_ssl.model.folder import build_model

    logmel, hp = _tiny_model_and_features(tmp_path)
    es = embed_dataset(tmp_path / "f.h5", tmp_path / "seg", tmp_path / "model", tmp_path / "e.h5", seed=5,
                       device="cpu", random_inits=3)
    back = read_embeddings(tmp_path / "e.h5")
    assert sorted(n for n in back.vectors if n.startswith("baseline/random_init")) == [
        "baseline/random_init/embedding", "baseline/random_init/init1/embedding",
        "baseline/random_init/init1/projection", "baseline/random_init/init2/embedding",
        "baseline/random_init/init2/projection", "baseline/random_init/projection"]
    with h5py.File(tmp_path / "e.h5") as f:
        assert f.attrs["random_init_seeds"].tolist() == [5, 6, 7]
    for k, prefix in enumerate(["baseline/random_init", "baseline/random_init/init1", "baseline/random_init/init2"]):
        torch.manual_seed(5 + k)
        with torch.inference_mode():
            h, z = build_model(hp).eval().embed_logmel(torch.from_numpy(logmel))
        np.testing.assert_allclose(es.vectors[f"{prefix}/embedding"], h.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(es.vectors[f"{prefix}/projection"], z.numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(es.vectors["baseline/random_init/embedding"],
                           es.vectors["baseline/random_init/init1/embedding"])
    one = embed_dataset(tmp_path / "f.h5", tmp_path / "seg", tmp_path / "model", tmp_path / "e1.h5", seed=5,
                        device="cpu", random_inits=1)
    assert not any("init1" in n for n in one.vectors)
    np.testing.assert_array_equal(one.vectors["baseline/random_init/embedding"],
                                  es.vectors["baseline/random_init/embedding"])
    with pytest.raises(ValueError, match="random_inits must be >= 1"):
        embed_dataset(tmp_path / "f.h5", tmp_path / "seg", tmp_path / "model", tmp_path / "e0.h5", random_inits=0)
