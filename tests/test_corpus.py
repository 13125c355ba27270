"""Built-in singing corpus (singer_ssl.data.builtin_corpus, stages/corpus.py) on a reduced configuration.

Every property is measured on the written files with independent tools (soundfile for headers,
Praat's autocorrelation pitch tracker for melodies, numpy cross-correlation for stereo), never read
back from the generator's own bookkeeping.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import parselmouth
import pytest
import soundfile as sf
import yaml

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.stage import stage_main
from singer_ssl.data import builtin_corpus as corpus

CFG = {
    "seed": 7,
    "n_train_singers": 3,
    "n_test_singers": 2,
    "n_ood_singers": 0,  # the out-of-domain set: tests/test_ood_corpus.py
    "songs_per_singer": 2,
    "test_songs_per_singer": None,  # = songs_per_singer
    "min_seconds": 3.0,
    "max_seconds": 4.0,
    "sample_rates": [22050, 44100, 48000],
    "stereo_fraction": 0.5,
    "workers": 2,
}
NAMES = ("builtin-train", "builtin-test")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """Run the DVC stage's entry point on a params file holding CFG."""
    work = tmp_path_factory.mktemp("corpus")
    (work / "params.yaml").write_text(yaml.safe_dump({"corpus": CFG}))
    assert _stage(str(work / "raw"), "--params", str(work / "params.yaml")) == 0
    return work / "raw"


def _stage(*argv: str) -> int:
    from stages.corpus import main

    return stage_main("corpus", main, ("out",), argv=argv)


def wavs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav"))


def singers_csv(root: Path) -> list[dict[str, str]]:
    with open(root / "singers.csv", newline="") as f:
        return list(csv.DictReader(f))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_stage_prints_one_line_summary(generated, capsys):
    # the fixture already ran; its output is gone from capsys, so check the formatter directly
    line = corpus.summary_line(
        {"seconds": 1.0, "datasets": {"a": {"singers": 3, "songs": 6, "audio_seconds": 120.0}}}, Path("x")
    )
    assert line == "corpus: a 3 singers, 6 songs (2.0 min) in 1.0 s -> x"
    assert sorted(p.name for p in generated.iterdir()) == sorted(NAMES)  # no temporaries left


def test_singers_disjoint_and_song_counts(generated):
    train = {p.name for p in (generated / "builtin-train").iterdir() if p.is_dir()}
    test = {p.name for p in (generated / "builtin-test").iterdir() if p.is_dir()}
    assert len(train) == CFG["n_train_singers"] and len(test) == CFG["n_test_singers"]
    assert not train & test
    for name, singers in zip(NAMES, (train, test)):
        root = generated / name
        per_singer = {s: len(wavs(root / s)) for s in singers}
        assert set(per_singer.values()) == {CFG["songs_per_singer"]}, per_singer
        assert {r["singer"] for r in singers_csv(root)} == singers
        meta = json.loads((root / "corpus.json").read_text())
        assert {s["path"] for s in meta["songs"]} == {str(p.relative_to(root)) for p in wavs(root)}
        # descriptions live at the dataset root only; singer folders hold audio only
        assert all(p.suffix == ".wav" for s in singers for p in (root / s).rglob("*") if p.is_file())


def test_each_singer_is_a_distinct_voice(generated):
    rows = [r for name in NAMES for r in singers_csv(generated / name)]
    assert len({(r["voice"], r["language"]) for r in rows}) == len(rows)
    for r in rows:
        assert r["voice"] in corpus.VOICES and r["language"] in corpus.LANGUAGES
        semitones = 12 * np.log2(float(r["high_hz"]) / float(r["low_hz"]))
        assert 12 - 1e-6 <= semitones <= 17 + 1e-6
        assert 4.0 <= float(r["vibrato_rate_hz"]) <= 7.0


def test_durations_within_bounds(generated):
    files = wavs(generated)
    assert len(files) == (CFG["n_train_singers"] + CFG["n_test_singers"]) * CFG["songs_per_singer"]
    for p in files:
        info = sf.info(p)
        seconds = info.frames / info.samplerate
        assert CFG["min_seconds"] - 1 / info.samplerate <= seconds <= CFG["max_seconds"] + 1 / info.samplerate, p


def test_mixed_sample_rates_and_stereo(generated):
    infos = [sf.info(p) for p in wavs(generated)]
    rates = {i.samplerate for i in infos}
    assert rates <= set(CFG["sample_rates"]) and len(rates) >= 2
    channels = [i.channels for i in infos]
    assert 2 in channels and 1 in channels and set(channels) <= {1, 2}


def test_stereo_channels_differ_by_small_delay_and_gain(generated):
    stereo = [p for p in wavs(generated) if sf.info(p).channels == 2]
    assert stereo
    for p in stereo:
        x, sr = sf.read(p)
        left, right = x[:, 0], x[:, 1]
        max_lag = int(np.ceil(corpus.STEREO_MAX_DELAY_S * sr)) + 2
        lags = np.arange(-max_lag, max_lag + 1)
        core = slice(max_lag, len(left) - max_lag)
        xcorr = [np.dot(left[core], np.roll(right, -lag)[core]) for lag in lags]
        lag = lags[int(np.argmax(xcorr))]
        assert 0 <= lag <= corpus.STEREO_MAX_DELAY_S * sr + 1, (p, lag)
        ratio_db = 20 * np.log10(np.std(left) / np.std(right))
        assert abs(ratio_db) <= corpus.STEREO_MAX_GAIN_DB + 0.2, (p, ratio_db)
        assert not np.array_equal(left, right)


def test_nesting_depth(generated):
    depths = set()
    for name in NAMES:
        for p in wavs(generated / name):
            folders = len(p.relative_to(generated / name).parts) - 1  # singer[/album[/disc]]
            assert 1 <= folders <= 3, p
            depths.add(folders)
    assert len(depths) >= 2


def test_levels_vary_and_do_not_clip(generated):
    for p in wavs(generated):
        x, _ = sf.read(p, always_2d=True)
        assert np.max(np.abs(x)) <= 10 ** (corpus.PEAK_DBFS / 20) + 1e-3, p
        rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)))
        assert -40.0 < rms_db < -14.0, (p, rms_db)  # active level -28..-18 dBFS, pauses lower the mean


def test_pitch_mostly_within_declared_range(generated):
    tol = 2 ** (1.5 / 12)  # vibrato (<= 90 cents) and portamento overshoot
    for name in NAMES:
        root = generated / name
        ranges = {r["singer"]: (float(r["low_hz"]), float(r["high_hz"])) for r in singers_csv(root)}
        notes: dict[str, set] = {s: set() for s in ranges}
        for p in wavs(root):
            singer = p.relative_to(root).parts[0]
            low, high = ranges[singer]
            x, sr = sf.read(p, always_2d=True)
            f0 = parselmouth.Sound(x.mean(axis=1), sr).to_pitch(0.01, 50.0, 1500.0).selected_array["frequency"]
            voiced = f0[f0 > 0]
            assert voiced.size > 0.4 * f0.size, p  # mostly sung, not silence
            inside = np.mean((voiced >= low / tol) & (voiced <= high * tol))
            assert inside >= 0.85, (p, inside, low, high)
            semitones, counts = np.unique(np.round(12 * np.log2(voiced / 440.0)), return_counts=True)
            notes[singer] |= set(semitones[counts >= 10])  # held >= 0.1 s
        for singer, held in notes.items():
            assert len(held) >= 3, (singer, held)  # melodies, not a monotone


def test_deterministic_across_worker_counts_and_seed_sensitive(generated, tmp_path):
    same = corpus.generate_corpus(tmp_path / "same", **{**CFG, "workers": 1})
    assert set(same["datasets"]) == set(NAMES)
    for name in NAMES:
        assert tree_bytes(tmp_path / "same" / name) == tree_bytes(generated / name)

    corpus.generate_corpus(tmp_path / "other", **{**CFG, "seed": CFG["seed"] + 1})
    a = [p.read_bytes() for p in wavs(generated)]
    b = [p.read_bytes() for p in wavs(tmp_path / "other")]
    assert not set(a) & set(b)


def test_failure_leaves_no_half_written_output(tmp_path, monkeypatch):
    small = {**CFG, "n_train_singers": 2, "n_test_singers": 1, "songs_per_singer": 1,
             "min_seconds": 2.0, "max_seconds": 2.5}  # fmt: skip
    previous = tmp_path / "builtin-train"
    previous.mkdir()
    (previous / "old.txt").write_text("previous run")

    def fail(root, *args, **kwargs):  # after every song was written into the temporary folders
        assert any(root.rglob("*.wav"))
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(corpus, "write_dataset_description", fail)
    with pytest.raises(RuntimeError, match="simulated crash"):
        corpus.generate_corpus(tmp_path, **small)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["builtin-train"]  # no temporaries, no test set
    assert [p.name for p in previous.iterdir()] == ["old.txt"]  # previous output untouched


@pytest.mark.parametrize(
    ("override", "culprit"),
    [
        ({"n_singers": 3}, "n_singers"),
        ({"min_seconds": 9.0, "max_seconds": 8.0}, "min_seconds"),
        ({"sample_rates": [8000]}, "sample_rates"),
        ({"stereo_fraction": 1.5}, "stereo_fraction"),
        ({"songs_per_singer": "six"}, "songs_per_singer"),
        ({"n_train_singers": 0}, "n_train_singers"),
    ],
)
def test_bad_config_named_before_writing(tmp_path, override, culprit):
    with pytest.raises(ConfigError, match=culprit):
        corpus.generate_corpus(tmp_path / "out", **{**CFG, **override})
    assert not (tmp_path / "out").exists()


def test_stage_reports_bad_params(tmp_path, capsys):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"corpus": {**CFG, "max_seconds": 1.0}}))
    assert _stage(str(tmp_path / "raw"), "--params", str(tmp_path / "params.yaml")) == 1
    err = capsys.readouterr().err
    assert "corpus.min_seconds" in err and err.startswith("error: corpus: ") and err.count("\n") == 1
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_singers": 3}, "corpus.n_singers: unknown parameter; valid keys of corpus: max_seconds, min_seconds"),
        ({"songs_per_singer": "six"}, "corpus.songs_per_singer: expected an integer >= 0, got 'six'"),
        ({"songs_per_singer": 0}, "corpus.songs_per_singer: expected an integer >= 1, got 0"),
        ({"n_test_singers": 2.5}, "corpus.n_test_singers: expected an integer >= 0, got 2.5"),
        ({"seed": -1}, "corpus.seed: expected an integer >= 0, got -1"),
        ({"stereo_fraction": "half"}, "corpus.stereo_fraction: expected a number >= 0.0 and <= 1.0, got 'half'"),
        ({"sample_rates": [44100, "cd"]}, "corpus.sample_rates: expected an integer >= 1, got 'cd'"),
        ({"workers": -2}, "corpus.workers: expected an integer >= 0, got -2"),
        ({"max_seconds": True}, "corpus.max_seconds: expected a number > 0.0, got True"),
    ],
)
def test_corpus_config_errors_are_one_line_and_name_the_parameter(override, message):
    with pytest.raises(ConfigError) as err:
        corpus.CorpusConfig.from_params({"corpus": {**CFG, **override}})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_corpus_config_reads_only_its_section():
    garbage = {"segment": {"seconds": -1}, "train": "x", "augment": {"waveform": 1}, "datasets": 3,
               "trials": {"external": {"nope": 1}}, "audio": None}
    cfg = corpus.CorpusConfig.from_params({"corpus": CFG, **garbage})
    assert cfg == corpus.CorpusConfig(**{**CFG, "sample_rates": tuple(CFG["sample_rates"])})
    assert corpus.CorpusConfig.from_params({}) == corpus.CorpusConfig()
    assert corpus.CorpusConfig.from_params({"corpus": {"workers": None}}).workers >= 1
