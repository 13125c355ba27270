"""Log-mel front end (vs nnAudio and librosa), the features stage's HDF5 output, and FeatureStore."""

from __future__ import annotations

import csv
import importlib
import io
import os
import pickle
import sys
from pathlib import Path

import h5py
import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from nnAudio.features import MelSpectrogram

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.frontend import FRONT_END_KEYS, LogMel, NnAudioLogMel
from singer_ssl.core.stage import stage_main
from singer_ssl.data.manifest import SegmentError
from singer_ssl.features import (
    FeaturesConfig,
    FeatureStore,
    RunningMoments,
    extract_features,
    segment_length,
)

ROOT = Path(__file__).resolve().parents[1]
# Small front end for the stage tests: 1 s segments at 16 kHz -> 40 mels x 126 frames.
SR, N_FFT, HOP, N_MELS = 16000, 512, 128, 40
FE = {"sample_rate": SR, "n_fft": N_FFT, "hop": HOP, "n_mels": N_MELS}


def _signals(sr: int, seconds: float, n: int, seed: int = 0) -> np.ndarray:
    """Sines + harmonics + noise at various levels, (n, S) float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    out = []
    for i in range(n):
        f0 = rng.uniform(90, 900)
        x = sum(0.3 / h * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6)) for h in range(1, 6))
        x = x + 10 ** rng.uniform(-4, -1) * rng.standard_normal(t.size)
        out.append(x * 10 ** (-i / 2))  # levels down to -20 dB and below
    return np.clip(np.stack(out), -1, 1).astype(np.float32)


def _max_err_where_audible(ours: torch.Tensor, ref_power: np.ndarray, log_offset: float = 1e-8) -> float:
    ref_power = np.asarray(ref_power, dtype=np.float64)
    mask = ref_power > 1e-6
    assert mask.mean() > 0.3  # the comparison covers most of the spectrogram
    diff = np.abs(ours.double().numpy() - np.log(ref_power + log_offset))
    return float(diff[mask].max())


# ---------------------------------------------------------------------------------------------- front end


@pytest.mark.parametrize("cfg", [
    {"sample_rate": 44100, "n_fft": 2048, "hop": 512, "n_mels": 128},  # Torres et al.'s front end
    {"sample_rate": 22050, "n_fft": 1024, "hop": 256, "n_mels": 64, "fmin": 50.0, "fmax": 8000.0},
])
def test_logmel_equals_nnaudio_with_sample_rate_passed(cfg):
    x = _signals(cfg["sample_rate"], 1.0, 3)
    nn_mel = MelSpectrogram(sr=cfg["sample_rate"], n_fft=cfg["n_fft"], hop_length=cfg["hop"],
                            n_mels=cfg["n_mels"], fmin=cfg.get("fmin", 0.0), fmax=cfg.get("fmax"),
                            verbose=False)
    with torch.no_grad():
        ref = nn_mel(torch.from_numpy(x)).numpy()
        ours = LogMel(**cfg)(torch.from_numpy(x))
    assert ours.shape == ref.shape == (3, cfg["n_mels"], 1 + x.shape[1] // cfg["hop"])
    assert _max_err_where_audible(ours, ref) <= 1e-3


def test_logmel_equals_librosa():
    """Independent implementation: librosa's melspectrogram (float64) with matching parameters."""
    x = _signals(44100, 1.0, 3, seed=1)
    with torch.no_grad():
        ours = LogMel(44100, 2048, 512, 128, fmin=30.0, fmax=16000.0)(torch.from_numpy(x))
    ref = np.stack([librosa.feature.melspectrogram(
        y=xi.astype(np.float64), sr=44100, n_fft=2048, hop_length=512, win_length=2048, window="hann",
        center=True, pad_mode="reflect", power=2.0, n_mels=128, fmin=30.0, fmax=16000.0, htk=False,
        norm="slaney") for xi in x])
    assert _max_err_where_audible(ours, ref) <= 1e-3


def test_filterbank_uses_the_given_sample_rate():
    """A 5 kHz tone peaks in the band centred nearest 5 kHz; Torres et al.'s filterbank (designed for
    22.05 kHz, applied to 44.1 kHz bins) puts it in the band it believes is 2.5 kHz."""
    sr = 44100
    t = np.arange(sr) / sr
    x = torch.from_numpy((0.5 * np.sin(2 * np.pi * 5000 * t)).astype(np.float32))[None]
    with torch.no_grad():
        band = int(LogMel(sr)(x)[0, :, 10:-10].mean(-1).argmax())
    centres = librosa.mel_frequencies(n_mels=128 + 2, fmin=0.0, fmax=sr / 2, htk=False)[1:-1]
    assert abs(centres[band] - 5000) <= np.diff(centres)[band]  # within one band of 5 kHz
    with torch.no_grad():
        torres2023 = torch.log(MelSpectrogram(n_fft=2048, hop_length=512, n_mels=128, verbose=False)(x) + 1e-8)
    wrong_band = int(torres2023[0, :, 10:-10].mean(-1).argmax())
    centres_22k = librosa.mel_frequencies(n_mels=128 + 2, fmin=0.0, fmax=11025.0, htk=False)[1:-1]
    assert abs(centres_22k[wrong_band] - 2500) <= np.diff(centres_22k)[wrong_band]  # read as 2.5 kHz
    assert abs(centres[wrong_band] - 5000) > 1000


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in favour of export
def test_logmel_scriptable_and_equal():
    m = LogMel(16000, 512, 128, 40).eval()
    scripted = torch.jit.script(m)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    buf.seek(0)
    loaded = torch.jit.load(buf)
    x = torch.from_numpy(_signals(16000, 0.5, 4))
    with torch.no_grad():
        eager = m(x)
        torch.testing.assert_close(scripted(x), eager, rtol=0, atol=1e-6)
        torch.testing.assert_close(loaded(x), eager, rtol=0, atol=1e-6)
    assert not dict(m.state_dict())  # window and filterbank derive from the params


def test_cpu_sub_batching_does_not_change_output():
    x = torch.from_numpy(_signals(16000, 1.0, 5, seed=3))
    m = LogMel(16000, 512, 128, 40)
    with torch.no_grad():
        chunked = m(x)  # 16,000-sample rows: 16 rows per sub-batch -> force small sub-batches below
        m.chunk_samples = 16000 * 2
        small = m(x)
        single = torch.cat([m(x[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(small, chunked, rtol=0, atol=1e-5)
    torch.testing.assert_close(single, chunked, rtol=0, atol=1e-5)


def test_nnaudio_backend_matches_logmel():
    x = torch.from_numpy(_signals(16000, 1.0, 2, seed=4))
    with torch.no_grad():
        a = LogMel(16000, 512, 128, 40)(x)
        b = NnAudioLogMel(16000, 512, 128, 40)(x)
    power = torch.exp(b).numpy()
    assert _max_err_where_audible(a, power) <= 1e-3


def test_from_attrs_and_bad_params():
    m = LogMel.from_attrs({"sample_rate": 22050, "n_fft": 1024, "hop": 256, "n_mels": 64, "fmax": None,
                           "encoder": "ignored"})
    assert m.params() == {"sample_rate": 22050, "n_fft": 1024, "hop": 256, "n_mels": 64, "fmin": 0.0,
                          "fmax": 11025.0, "log_offset": 1e-8}
    with pytest.raises(ValueError, match="n_mels"):
        LogMel.from_attrs({"sample_rate": 22050, "n_fft": 1024, "hop": 256})
    with pytest.raises(ValueError, match="fmax"):
        LogMel(16000, fmax=9000.0)


def test_running_moments_match_numpy():
    rng = np.random.default_rng(0)
    parts = [(1e4 + rng.standard_normal(n)).astype(np.float32) for n in (1, 7, 1000, 3, 50000)]
    rm = RunningMoments()
    for p in parts:
        rm.update(p)
    whole = np.concatenate(parts).astype(np.float64)
    assert rm.count == whole.size
    assert rm.mean == pytest.approx(whole.mean(), rel=1e-12)
    assert rm.std == pytest.approx(whole.std(), rel=1e-9)


# ----------------------------------------------------------------------------------------------- stage


def _make_segments(folder: Path, spec: list[tuple[str, str, np.ndarray]], sr: int = SR,
                   seconds: float = 1.0) -> list[dict[str, str]]:
    """Write ``<singer>/<name>.wav`` PCM_16 files + manifest.csv like the segment stage does."""
    rows = []
    for i, (singer, source, x) in enumerate(spec):
        seg = f"{singer}/{Path(source).stem}_{i}.wav"
        (folder / singer).mkdir(parents=True, exist_ok=True)
        sf.write(folder / seg, x, sr, subtype="PCM_16")
        rows.append({"segment": seg, "singer": singer, "source": source, "start_s": f"{i * seconds:g}",
                     "end_s": f"{(i + 1) * seconds:g}", "dataset": folder.name})
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["segment", "singer", "source", "start_s", "end_s", "dataset"])
        w.writeheader()
        w.writerows(rows)
    return rows


@pytest.fixture()
def segdir(tmp_path: Path) -> Path:
    folder = tmp_path / "segments" / "toy"
    x = _signals(SR, 1.0, 7, seed=5)
    spec = [("alice", "alice/song1.wav", x[0]), ("alice", "alice/song1.wav", x[1]),
            ("alice", "alice/song2.flac", x[2]), ("bob", "bob/a.wav", x[3]), ("bob", "bob/b.wav", x[4]),
            ("carol é", "carol é/x.wav", x[5]), ("carol é", "carol é/x.wav", x[6])]
    _make_segments(folder, spec)
    return folder


def _extract(segdir: Path, out: Path, **kw):
    return extract_features(segdir, out, **FE, progress=False, **kw)


def test_stage_output_layout_and_values(segdir: Path, tmp_path: Path):
    out = tmp_path / "features" / "toy.h5"
    attrs = _extract(segdir, out, batch_size=3, workers=2)  # 7 items: batches 3 + 3 + 1
    with open(segdir / "manifest.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with h5py.File(out, "r") as h5:
        ds = h5["logmel"]
        assert ds.shape == (7, N_MELS, 1 + SR // HOP) and ds.dtype == np.float32
        assert ds.chunks == (1, N_MELS, 1 + SR // HOP)
        assert list(h5["key"].asstr()[()]) == [r["segment"] for r in rows]
        assert list(h5["singer"].asstr()[()]) == [r["singer"] for r in rows]
        assert list(h5["source"].asstr()[()]) == [r["source"] for r in rows]
        for k in (*FRONT_END_KEYS, "center", "window", "mel", "mean", "std"):
            assert k in h5.attrs, k
        assert h5.attrs["sample_rate"] == SR and h5.attrs["fmax"] == SR / 2 and h5.attrs["mel"] == "slaney"
        assert bool(h5.attrs["center"]) and h5.attrs["window"] == "hann"
        data = ds[()]
    # Every item equals librosa's log-mel of the wav as decoded independently.
    for i, r in enumerate(rows):
        y, sr = sf.read(segdir / r["segment"], dtype="float64")
        ref = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                             pad_mode="reflect", center=True, power=2.0)
        mask = ref > 1e-6
        assert np.abs(data[i] - np.log(ref + 1e-8))[mask].max() <= 1e-3
    # Dataset statistics over every value (numpy, float64).
    assert attrs["mean"] == pytest.approx(data.astype(np.float64).mean(), rel=1e-9)
    assert attrs["std"] == pytest.approx(data.astype(np.float64).std(), rel=1e-9)
    assert not [p for p in out.parent.iterdir() if p.name != "toy.h5"]  # no temp file left


def test_stage_output_independent_of_workers_and_batch(segdir: Path, tmp_path: Path):
    a = _extract(segdir, tmp_path / "a.h5", batch_size=2, workers=3)
    b = _extract(segdir, tmp_path / "b.h5", batch_size=32, workers=1)
    with h5py.File(tmp_path / "a.h5") as fa, h5py.File(tmp_path / "b.h5") as fb:
        np.testing.assert_allclose(fa["logmel"][()], fb["logmel"][()], rtol=0, atol=1e-5)
    assert a["mean"] == pytest.approx(b["mean"], rel=1e-7) and a["std"] == pytest.approx(b["std"], rel=1e-7)
    c = _extract(segdir, tmp_path / "c.h5", batch_size=2, workers=1)
    # Deterministic: the same batches give a byte-identical file whatever the threads.
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "c.h5").read_bytes()
    assert (a["mean"], a["std"]) == (c["mean"], c["std"])


def test_stage_float16_storage(segdir: Path, tmp_path: Path):
    _extract(segdir, tmp_path / "f32.h5")
    _extract(segdir, tmp_path / "f16.h5", dtype="float16")
    with h5py.File(tmp_path / "f32.h5") as a, h5py.File(tmp_path / "f16.h5") as b:
        assert b["logmel"].dtype == np.float16
        np.testing.assert_allclose(b["logmel"][()].astype(np.float32), a["logmel"][()], atol=2e-2)
    with pytest.raises(ValueError, match="float64"):
        _extract(segdir, tmp_path / "x.h5", dtype="float64")


def _rewrite_manifest_rows(folder: Path, rows: list[dict[str, str]]) -> None:
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["segment", "singer", "source", "start_s", "end_s", "dataset"])
        w.writeheader()
        w.writerows(rows)


def test_stage_errors_name_the_culprit(segdir: Path, tmp_path: Path):
    out = tmp_path / "out" / "toy.h5"
    # A segment shorter than the manifest says.
    short = segdir / "bob" / "a_3.wav"
    sf.write(short, np.zeros(SR - 100, np.float32), SR, subtype="PCM_16")
    with pytest.raises(SegmentError, match="a_3.wav"):
        _extract(segdir, out, workers=2, batch_size=2)
    # An unreadable one.
    short.write_bytes(b"not a wav file at all")
    with pytest.raises(SegmentError, match="a_3.wav"):
        _extract(segdir, out, workers=1)
    # Wrong sample rate.
    sf.write(short, np.zeros(SR, np.float32), 8000, subtype="PCM_16")
    with pytest.raises(SegmentError, match=r"a_3\.wav.*8000 Hz"):
        _extract(segdir, out)
    # Missing file.
    short.unlink()
    with pytest.raises(SegmentError, match="a_3.wav"):
        _extract(segdir, out)
    assert not out.parent.exists() or not list(out.parent.iterdir())  # nothing half-written


def test_stage_empty_or_missing_manifest(tmp_path: Path):
    folder = tmp_path / "emptyset"
    folder.mkdir()
    with pytest.raises(SegmentError, match="emptyset.*no manifest"):
        extract_features(folder, tmp_path / "x.h5", **FE, progress=False)
    _rewrite_manifest_rows(folder, [])
    with pytest.raises(SegmentError, match="'emptyset'.*no segments"):
        extract_features(folder, tmp_path / "x.h5", **FE, progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_segment_length_accepts_padded_tail_rejects_odd_rows():
    rows = [{"segment": f"s/{i}.wav", "start_s": str(4 * i), "end_s": str(4 * i + 4)} for i in range(3)]
    rows.append({"segment": "s/tail.wav", "start_s": "12", "end_s": "14.5"})  # zero-padded remainder
    assert segment_length(rows, 44100) == 176400
    rows.append({"segment": "s/odd.wav", "start_s": "0", "end_s": "9"})
    with pytest.raises(SegmentError, match="odd.wav"):
        segment_length(rows, 44100)
    rounded = [{"segment": "a", "start_s": "0.333333", "end_s": "4.333333"},
               {"segment": "b", "start_s": "4.333", "end_s": "8.333"}]
    assert segment_length(rounded, 44100) == 176400


# ------------------------------------------------------------------------------------------ FeatureStore


def _worker_read(store: FeatureStore, i: int) -> tuple[int, np.ndarray]:
    return os.getpid(), store[i]


def test_feature_store(segdir: Path, tmp_path: Path):
    out = tmp_path / "toy.h5"
    _extract(segdir, out)
    with h5py.File(out) as h5:
        data = h5["logmel"][()]
        keys = list(h5["key"].asstr()[()])
        mean = float(h5.attrs["mean"])
    lazy = FeatureStore(tmp_path / "not-yet.h5")  # lazy: constructing opens nothing
    with pytest.raises(FileNotFoundError, match="not-yet.h5"):
        len(lazy)
    store = FeatureStore(out)
    assert store._h5 is None
    assert len(store) == 7 and store.shape == data.shape
    assert store.keys == keys and store.singers[0] == "alice" and store.sources[2] == "alice/song2.flac"
    assert store.singers[-1] == "carol é"
    assert store.mean == mean and store.attrs["n_mels"] == N_MELS and store.attrs["window"] == "hann"
    np.testing.assert_array_equal(store[3], data[3])
    np.testing.assert_array_equal(store[-1], data[6])
    np.testing.assert_array_equal(store.batch([5, 1, 5, 0]), data[[5, 1, 5, 0]])
    with pytest.raises(IndexError):
        store[7]
    assert LogMel.from_attrs(store.attrs).params()["fmax"] == SR / 2
    # Picklable after use; the copy opens its own handle.
    copy = pickle.loads(pickle.dumps(store))
    assert copy._h5 is None
    np.testing.assert_array_equal(copy[2], data[2])
    store.close()


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_feature_store_in_dataloader_workers(segdir: Path, tmp_path: Path):
    out = tmp_path / "toy.h5"
    _extract(segdir, out)
    store = FeatureStore(out)
    _ = store[0]  # parent opened a handle before forking: workers must open their own
    loader = torch.utils.data.DataLoader(store, batch_size=2, num_workers=2,
                                         multiprocessing_context="fork")
    got = torch.cat(list(loader)).numpy()
    with h5py.File(out) as h5:
        np.testing.assert_array_equal(got, h5["logmel"][()])


# ------------------------------------------------------------------------------------------ stage script


def test_features_stage_script(segdir: Path, tmp_path: Path, monkeypatch, capsys):
    project = tmp_path / "project"
    seg_target = project / "data" / "segments" / "test" / "toy"
    seg_target.parent.mkdir(parents=True)
    segdir.rename(seg_target)
    (project / "params.yaml").write_text(
        "datasets:\n  test:\n    toy: {path: data/raw/toy}\n"
        f"audio: {{sample_rate: {SR}}}\n"
        f"features: {{n_fft: {N_FFT}, hop: {HOP}, n_mels: {N_MELS}, fmin: 0.0, fmax: null, "
        "log_offset: 1.0e-8, dtype: float32, batch_size: 4, device: auto}\n", encoding="utf-8")
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    stage = importlib.import_module("stages.features")

    def cli(*argv: str) -> int:
        return stage_main("features", stage.main, ("dataset", "segments", "out"), argv=argv)

    assert cli("toy", "data/segments/test/toy", "data/features/test/toy.h5") == 0
    assert "toy: 7 segments -> data/features/test/toy.h5 (40 mels x 126 frames" in capsys.readouterr().out
    assert FeatureStore(project / "data/features/test/toy.h5").shape == (7, N_MELS, 1 + SR // HOP)
    assert cli("nope", "data/segments/test/toy", "data/features/test/nope.h5") == 1
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert cli("toy", "data/segments/test/gone", "data/features/test/toy2.h5") == 1
    assert capsys.readouterr().err.startswith("error: features: dataset 'toy': no manifest at data/segments/test/gone")


FEATURE_PARAMS = {"datasets": {"train": {"tr": {"path": "x"}}, "test": {"toy": {"path": "y"}}},
                  "audio": {"sample_rate": 16000},
                  "features": {"n_fft": 512, "hop": 128, "n_mels": 40, "fmin": 0.0, "fmax": None,
                               "log_offset": 1.0e-8, "dtype": "float32", "batch_size": 4, "device": "auto"}}


def test_features_config_defaults_and_values():
    cfg = FeaturesConfig.from_params(FEATURE_PARAMS, "toy")
    got = (cfg.dataset, cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels, cfg.batch_size)
    assert got == ("toy", 16000, 512, 128, 40, 4)
    assert cfg.fmax is None and cfg.workers is None and cfg.device == "auto"
    bare = FeaturesConfig.from_params({"datasets": FEATURE_PARAMS["datasets"]}, "tr")
    assert bare == FeaturesConfig("tr")  # Torres et al.'s front end at 44.1 kHz
    assert (bare.sample_rate, bare.n_fft, bare.hop, bare.n_mels, bare.log_offset) == (44100, 2048, 512, 128, 1e-8)


@pytest.mark.parametrize("override,message", [
    ({"n_ffts": 512}, "features.n_ffts: unknown parameter; valid keys of features: batch_size, device, dtype"),
    ({"n_fft": 0}, "features.n_fft: expected an integer >= 1, got 0"),
    ({"hop": "512"}, "features.hop: expected an integer >= 1, got '512'"),
    ({"n_mels": 40.5}, "features.n_mels: expected an integer >= 1, got 40.5"),
    ({"batch_size": 0}, "features.batch_size: expected an integer >= 1, got 0"),
    ({"fmin": -1.0}, "features.fmin: expected a number >= 0.0 and < 8000.0, got -1.0"),
    ({"fmax": 9000.0}, "features.fmax: expected a number > 0.0 and <= 8000.0, got 9000.0"),
    ({"fmin": 500.0, "fmax": 400.0}, "features.fmax: expected a number > 500.0 and <= 8000.0, got 400.0"),
    ({"log_offset": 0}, "features.log_offset: expected a number > 0.0, got 0"),
    ({"dtype": "float64"}, "features.dtype: expected one of float32, float16, got 'float64'"),
    ({"device": "gpu0"}, "features.device: expected auto, cpu, cuda or cuda:N, got 'gpu0'"),
    ({"workers": 0}, "features.workers: expected an integer >= 1, got 0"),
])
def test_features_config_errors_are_one_line_and_name_the_parameter(override, message):
    params = {**FEATURE_PARAMS, "features": {**FEATURE_PARAMS["features"], **override}}
    with pytest.raises(ConfigError) as err:
        FeaturesConfig.from_params(params, "toy")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_features_config_checks_audio_and_dataset_only():
    with pytest.raises(ConfigError, match=r"^audio.sample_rate: expected an integer >= 1, got -8000$"):
        FeaturesConfig.from_params({**FEATURE_PARAMS, "audio": {"sample_rate": -8000}}, "toy")
    with pytest.raises(ConfigError, match=r"^audio.rates: unknown parameter"):
        FeaturesConfig.from_params({**FEATURE_PARAMS, "audio": {"rates": 1}}, "toy")
    with pytest.raises(ConfigError, match="unknown dataset 'toyy'; valid choices: toy, tr"):
        FeaturesConfig.from_params(FEATURE_PARAMS, "toyy")
    garbage = {"segment": {"seconds": -1, "bogus": 1}, "train": "broken", "augment": {"waveform": 3},
               "trials": {"external": {"nope": "x"}}, "corpus": {"n_singers": 3},
               "datasets": {"train": {"tr": {"path": "x", "layout": "nope"}}, "test": {"toy": {"path": "y"}}}}
    assert FeaturesConfig.from_params({**FEATURE_PARAMS, **garbage}, "toy") == FeaturesConfig.from_params(
        FEATURE_PARAMS, "toy")


def test_band_groups_cover_every_nonzero_weight():
    from singer_ssl.core.frontend import band_groups, mel_filterbank

    for sr, n_fft, n_mels in ((44100, 2048, 128), (16000, 512, 40), (22050, 1024, 96)):
        basis = mel_filterbank(sr, n_fft, n_mels).numpy()
        groups = band_groups(torch.from_numpy(basis))
        assert [g[0] for g in groups] == list(range(0, n_mels, 16)) and groups[-1][1] == n_mels
        covered = np.zeros_like(basis, dtype=bool)
        for g0, g1, lo, hi in groups:
            covered[g0:g1, lo:hi] = True
        assert not basis[~covered].any()  # nothing outside the bands
        assert covered.mean() < 0.35  # and the bands skip most of the matrix


# ------------------------------------------------------------------ degenerate front ends (issue 25)


def test_empty_mel_filters_match_the_built_filterbank():
    """Brute force: the filters of the basis the front end really uses (nnAudio's get_mel) whose weights are all
    zero, over random front ends, equal what empty_mel_filters derives from the band edges."""
    import warnings

    from singer_ssl.core.frontend import empty_mel_filters, mel_filterbank

    rng = np.random.default_rng(0)
    with_empty = 0
    for _ in range(150):
        sr = int(rng.choice([8000, 16000, 22050, 44100]))
        n_fft = int(rng.choice([32, 64, 256, 512, 2048]))
        n_mels = int(rng.integers(1, 300))
        fmin = float(rng.uniform(0, sr / 4)) if rng.random() < 0.5 else 0.0
        fmax = None if rng.random() < 0.5 else float(rng.uniform(fmin + 1, sr / 2))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa's "Empty filters detected"
            basis = mel_filterbank(sr, n_fft, n_mels, fmin, fmax).numpy()
        want = np.flatnonzero(basis.max(1) <= 0).tolist()
        assert [m for m, _, _ in empty_mel_filters(sr, n_fft, n_mels, fmin, fmax)] == want, (sr, n_fft, n_mels)
        with_empty += bool(want)
    assert 30 < with_empty < 140  # both outcomes exercised


@pytest.mark.parametrize("override", [{"fmax": 100.0}, {"n_mels": 1024}, {"n_fft": 64}])
def test_front_end_with_empty_mel_filters_is_refused(override):
    """Issue 25 case 6: these passed with nnAudio's "Empty filters detected" warning only."""
    params = {**FEATURE_PARAMS, "features": {**FEATURE_PARAMS["features"], **override}}
    with pytest.raises(ConfigError) as err:
        FeaturesConfig.from_params(params, "toy")
    msg = str(err.value)
    assert msg.startswith("features.n_mels: ") and "hold no FFT bin" in msg and "\n" not in msg
    assert "features.n_fft" in msg and "features.fmax" in msg


def test_min_frames_is_the_longest_encoder_minimum():
    from singer_ssl import encoders
    from singer_ssl.core.frontend import MIN_FRAMES

    mel = [cls.min_length for cls in encoders.ENCODERS.values() if getattr(cls, "input_kind", "logmel") == "logmel"]
    assert len(mel) >= 5 and MIN_FRAMES == max(mel)


def test_hop_leaving_too_few_frames_is_refused_before_any_work(segdir: Path, tmp_path: Path):
    """Issue 25 case 6: features.hop 100000 gave 2 frames per 4 s segment, computed every feature, and train
    blamed augment.crop_seconds. Boundary: the largest hop that leaves MIN_FRAMES frames passes."""
    from singer_ssl.core.frontend import MIN_FRAMES, n_frames

    out = tmp_path / "f.h5"
    with pytest.raises(ConfigError) as err:
        extract_features(segdir, out, **{**FE, "hop": 100000}, progress=False)
    assert str(err.value).startswith("features.hop: 100000 samples gives 1 frame(s) per 16000-sample segment")
    assert not out.exists()
    largest = max(h for h in range(1, 4000) if n_frames(SR, h, N_FFT) >= MIN_FRAMES)  # brute force
    assert f"at most {largest})" in str(err.value)
    with pytest.raises(ConfigError, match="gives 7 frame"):
        extract_features(segdir, out, **{**FE, "hop": largest + 1}, progress=False)
    assert extract_features(segdir, out, **{**FE, "hop": largest}, progress=False)["n_segments"] == 7
    with h5py.File(out) as f:
        assert f["logmel"].shape[-1] == MIN_FRAMES
