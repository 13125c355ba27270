"""Out-of-domain built-in test corpus (singer_ssl.data.ood_corpus, written by stages/corpus.py).

Properties are measured on the written files or the synthesiser's output with independent tools:
soundfile for headers, the dataset layout scanner for labels, Praat's autocorrelation pitch tracker
for the melody, Praat's Burg LPC for formants, scipy's sosfreqz for the EQ sections and Schroeder
backward integration for the reverb time.
"""

from __future__ import annotations

import csv
import json
import re
import tempfile
from pathlib import Path

import numpy as np
import parselmouth
import pytest
import soundfile as sf
import yaml
from scipy.signal import sosfreqz

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.stage import stage_main
from singer_ssl.data import builtin_corpus as corpus
from singer_ssl.data import ood_corpus as ood
from singer_ssl.data.layouts import list_sources

CFG = {
    "seed": 11,
    "n_train_singers": 1,
    "n_test_singers": 1,
    "n_ood_singers": 3,
    "songs_per_singer": 1,  # training singers
    "test_songs_per_singer": 2,  # builtin-test and builtin-ood singers
    "min_seconds": 3.0,
    "max_seconds": 4.0,
    "sample_rates": [22050, 44100, 48000],
    "stereo_fraction": 0.5,
    "workers": 2,
}
OOD = "builtin-ood"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """The corpus stage's entry point on a params file holding CFG."""
    from stages.corpus import main

    work = tmp_path_factory.mktemp("ood")
    (work / "params.yaml").write_text(yaml.safe_dump({"corpus": CFG}))
    assert stage_main("corpus", main, ("out",), argv=[str(work / "raw"), "--params", str(work / "params.yaml")]) == 0
    return work / "raw"


def _rows(root: Path) -> list[dict[str, str]]:
    with open(root / "singers.csv", newline="") as f:
        return list(csv.DictReader(f))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_labels_rates_and_counts(generated):
    root = generated / OOD
    assert sorted(p.name for p in generated.iterdir()) == ["builtin-ood", "builtin-test", "builtin-train"]
    sources = list_sources({"path": str(root), "layout": "builtin"})  # the layout params.yaml names
    singers = sorted({s for _, s in sources})
    assert singers == [f"ood-s{i:02d}" for i in range(CFG["n_ood_singers"])]
    assert all(re.fullmatch(r"ood-s\d\d/\d\d_[a-z]+_[a-z]+\.wav", rel) for rel, _ in sources), sources
    assert len(sources) == CFG["n_ood_singers"] * CFG["test_songs_per_singer"]
    for name, songs in (("builtin-train", CFG["songs_per_singer"]), ("builtin-test", CFG["test_songs_per_singer"])):
        assert {int(r["songs"]) for r in _rows(generated / name)} == {songs}
    infos = [sf.info(root / rel) for rel, _ in sources]
    assert {i.samplerate for i in infos} <= set(CFG["sample_rates"]) and len({i.samplerate for i in infos}) >= 2
    assert {i.channels for i in infos} == {1, 2}
    for i in infos:
        assert CFG["min_seconds"] - 1e-3 <= i.frames / i.samplerate <= CFG["max_seconds"] + 1e-3
        assert i.subtype in ("PCM_16", "PCM_24")
    meta = json.loads((root / "corpus.json").read_text())
    assert {s["path"] for s in meta["songs"]} == {rel for rel, _ in sources}
    assert {r["singer"] for r in _rows(root)} == set(singers)
    for rel, _ in sources:
        x, _ = sf.read(root / rel, always_2d=True)
        assert 0.01 < np.max(np.abs(x)) <= ood.MAX_PEAK + 1e-3, rel


def test_singers_disjoint_from_training(generated):
    train = _rows(generated / "builtin-train") + _rows(generated / "builtin-test")
    rows = _rows(generated / OOD)
    assert not {r["singer"] for r in train} & {r["singer"] for r in rows}
    # different voice family: no eSpeak voice/language, Klatt parameters instead, all distinct
    assert all(r["synthesis"] == "klattgrid" and "voice" not in r and "language" not in r for r in rows)
    assert all("voice" in r and r["voice"] in corpus.VOICES for r in train)
    keys = [(r["group"], r["vtl_scale"], r["f1_a_hz"], r["f2_i_hz"], r["open_phase"]) for r in rows]
    assert len(set(keys)) == len(keys)
    # drawn formants = Peterson & Barney (1952) group averages x vocal-tract scale x small deviation
    for i in range(CFG["n_ood_singers"]):
        s = ood.make_singer(CFG["seed"], i, CFG["n_ood_singers"])
        for vowel, f in s.formants.items():
            ref = np.array(ood.PETERSON_BARNEY_1952[s.group][vowel]) * s.vtl_scale
            assert np.all(np.abs(np.log(np.array(f[:3]) / ref)) < 5 * 0.04), (s.name, vowel, f, ref)


def _job(seed: int, index: int, root: Path) -> tuple[dict, list]:
    args = (CFG["n_ood_singers"], CFG["test_songs_per_singer"], CFG["min_seconds"], CFG["max_seconds"],
            tuple(CFG["sample_rates"]), CFG["stereo_fraction"], str(root))
    return ood.singer_job(seed, index, *args)


def test_deterministic_independent_of_process_and_order_and_seeded(generated, tmp_path):
    # in this process, in reverse order, after other synthesis: the same bytes as the stage's pool wrote
    rows = [_job(CFG["seed"], i, tmp_path / "a")[0] for i in reversed(range(CFG["n_ood_singers"]))]
    wav = {k: v for k, v in _tree(generated / OOD).items() if k.endswith(".wav")}
    assert _tree(tmp_path / "a") == wav
    assert [{k: str(v) for k, v in r.items()} for r in rows[::-1]] == _rows(generated / OOD)
    _job(CFG["seed"] + 1, 0, tmp_path / "b")
    other = {p.read_bytes() for p in (tmp_path / "b").rglob("*.wav")}
    assert other and not other & set(wav.values())


def test_sung_f0_follows_the_melody(generated):
    """Praat's pitch on the held part of every note >= 0.4 s is the score's note within 0.5 semitone."""
    root = generated / OOD
    errors = []
    for i in range(CFG["n_ood_singers"]):
        singer = ood.make_singer(CFG["seed"], i, CFG["n_ood_singers"])
        plans = ood.plan_songs(CFG["seed"], singer, CFG["test_songs_per_singer"], CFG["min_seconds"],
                               CFG["max_seconds"], tuple(CFG["sample_rates"]), CFG["stereo_fraction"])
        for plan in plans:
            rng = np.random.default_rng(np.random.SeedSequence([CFG["seed"], 11, i, plan.song_index]))
            notes = ood.compose(singer, rng, plan.seconds + 0.05).notes
            assert all(singer.low_midi <= m <= singer.high_midi for _, _, m, _ in notes)
            x, sr = sf.read(root / plan.relpath, always_2d=True)
            pitch = parselmouth.Sound(x.mean(axis=1), sr).to_pitch(0.01, 60.0, 1200.0)
            f0, t = pitch.selected_array["frequency"], pitch.xs()
            for on, off, midi, _ in notes:
                sel = (t > on + 0.15) & (t < off - 0.1) & (f0 > 0)
                if off - on >= 0.4 and sel.sum() >= 5:
                    errors.append(12 * np.log2(np.median(f0[sel]) / 440.0) + 69 - midi)
    errors = np.abs(np.array(errors))
    assert errors.size >= 8
    assert np.mean(errors < 0.5) >= 0.9, errors  # an occasional octave error of the tracker is allowed


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_vowel_formants_measured_by_praat(index):
    """A sustained dry vowel: Burg F2 within 8 % of the drawn value for every vowel, F1 within 10 % for the
    open vowels (LPC's F1 of close vowels is pulled towards the low harmonics)."""
    singer = ood.make_singer(5, index, 8)
    f0 = 440.0 * 2 ** ((singer.low_midi - 69) / 12)
    t = np.arange(0.0, 0.8, 1.0 / f0)
    ceiling = {"man": 5000.0, "woman": 5500.0, "child": 6500.0}[singer.group] * singer.vtl_scale
    for vowel in ("ɑ", "æ", "i", "u"):
        score = ood.Score(f0_t=t, f0_hz=np.full(t.size, f0), amp_t=t, amp_db=np.full(t.size, 90.0),
                          formant_t=np.array([0.0]), formant_hz=np.array([singer.formants[vowel]]), notes=[],
                          duration=0.8)  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            x = ood.synthesise(singer, score, 1, Path(tmp))
        formant = parselmouth.Sound(x, ood.SYNTH_RATE).to_formant_burg(0.01, 5, ceiling, 0.025, 50.0)
        times = np.arange(0.25, 0.6, 0.01)
        f1, f2 = (np.nanmedian([formant.get_value_at_time(k, tt) for tt in times]) for k in (1, 2))
        want1, want2 = singer.formants[vowel][:2]
        assert abs(f2 / want2 - 1) < 0.08, (singer.group, vowel, f2, want2)
        if vowel in ("ɑ", "æ"):
            assert abs(f1 / want1 - 1) < 0.10, (singer.group, vowel, f1, want1)


def test_eq_sections_match_their_design():
    fs = 48000.0
    freqs = np.array([20.0, 1000.0, 3000.0, 23000.0])
    for kind, f0, gain, q, at, want in (
        ("peak", 1000.0, 6.0, 1.0, 1, 6.0), ("peak", 3000.0, -5.0, 2.0, 2, -5.0),
        ("lowshelf", 150.0, 4.0, 0.707, 0, 4.0), ("highshelf", 3000.0, -7.0, 0.707, 3, -7.0),
        ("highpass", 1000.0, 0.0, 0.707, 1, -3.01),
    ):  # fmt: skip
        sos = ood._biquad(kind, f0, gain, q, fs)[None, :]
        _, h = sosfreqz(sos, worN=freqs, fs=fs)
        assert 20 * np.log10(abs(h[at])) == pytest.approx(want, abs=0.15), (kind, 20 * np.log10(abs(h)))


def test_room_reverb_time():
    """Schroeder backward integration of the impulse response: -5 to -35 dB decay extrapolated to 60 dB."""
    fs = 22050
    for rt60 in (0.2, 0.6):
        ir = ood.room_ir(np.random.default_rng(0), fs, rt60, 1)[:, 0]
        edc = 10 * np.log10(np.cumsum(ir[::-1] ** 2)[::-1] / np.sum(ir**2))
        t = np.arange(ir.size) / fs
        sel = (edc <= -5) & (edc >= -35)
        slope = np.polyfit(t[sel], edc[sel], 1)[0]
        assert -60 / slope == pytest.approx(rt60, rel=0.12)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_ood_singers": -1}, "corpus.n_ood_singers: expected an integer >= 0, got -1"),
        ({"n_ood_singers": "8"}, "corpus.n_ood_singers: expected an integer >= 0, got '8'"),
        ({"ood_name": "builtin-test"}, "corpus.train_name/test_name/ood_name: must differ"),
        ({"test_songs_per_singer": 0}, "corpus.test_songs_per_singer: expected an integer >= 1, got 0"),
    ],
)
def test_bad_ood_params_named(override, message):
    with pytest.raises(ConfigError) as err:
        corpus.CorpusConfig.from_params({"corpus": {**CFG, **override}})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
