"""The invariance report: each controlled transform against an independent measurement, the target-pair rule,
the EER summary against scikit-learn, and the embed -> store -> evaluate path on a tiny synthetic set."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss

from singer_ssl.augment import controlled as C
from singer_ssl.core.errors import ConfigError
from singer_ssl.evaluation.invariance import invariance_report, target_pairs

SR = 16000


def _harmonic(f0: float, seconds: float, sr: int = SR, formants=(700.0, 1200.0, 2600.0)) -> np.ndarray:
    """A sung-vowel-like tone: harmonics of ``f0`` with a 1/h source tilt and resonances at ``formants`` (Hz)."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.005 * np.sin(2 * np.pi * 5 * t))) / sr
    x = np.zeros_like(t)
    for h in range(1, int(sr / 2 / f0)):
        f = h * f0
        amp = (1.0 + sum(3.0 / (1.0 + ((f - fc) / (0.1 * fc)) ** 2) for fc in formants)) / h
        x += amp * np.sin(h * phase)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _praat_median_f0(x: np.ndarray, sr: int = SR) -> float:
    """Praat's "To Pitch" median; floor 100 Hz, the voice-appropriate floor for the 150-250 Hz tones here
    (with 75 Hz Praat's octave choice halves one PSOLA output's F0 whose spectrum is right)."""
    import parselmouth
    from parselmouth.praat import call

    pitch = call(parselmouth.Sound(x.astype(np.float64), sr), "To Pitch", 0.0, 100.0, 600.0)
    return call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz")


def _praat_f1_f2(x: np.ndarray, sr: int = SR) -> tuple[float, float]:
    import parselmouth
    from parselmouth.praat import call

    formant = call(parselmouth.Sound(x.astype(np.float64), sr), "To Formant (burg)", 0.0, 5, 5000.0, 0.025, 50.0)
    return tuple(call(formant, "Get mean", i, 0.0, 0.0, "Hertz") for i in (1, 2))


# ---------------------------------------------------------------------------------------------- transforms

@pytest.mark.parametrize("semitones", [-4, -2, 2, 4])
def test_pitch_shift_moves_praat_median_f0_by_the_interval_and_keeps_formants(semitones):
    x = _harmonic(196.0, 1.0)
    y = C.parse_transform(f"pitch:{semitones:+d}").apply(x, SR, seed=1, item=0)
    assert y.shape == x.shape and y.dtype == np.float32
    moved = 12 * np.log2(_praat_median_f0(y) / _praat_median_f0(x))
    assert abs(moved - semitones) < 0.3, moved
    if abs(semitones) == 4:  # formant-preserving: F1/F2 (Praat Burg) move far less than the 26 % of F0
        (f1x, f2x), (f1y, f2y) = _praat_f1_f2(x), _praat_f1_f2(y)
        assert abs(np.log(f1y / f1x)) < 0.12 and abs(np.log(f2y / f2x)) < 0.12, (f1x, f1y, f2x, f2y)


@pytest.mark.parametrize("spec, snr", [("white_noise:20", 20.0), ("white_noise:10", 10.0), ("pink_noise:10", 10.0),
                                       ("blue_noise:10", 10.0)])
def test_noise_has_the_requested_snr(spec, snr):
    x = _harmonic(220.0, 1.0)
    y = C.parse_transform(spec).apply(x, SR, seed=3, item=7)
    noise = y.astype(np.float64) - x
    measured = 10 * np.log10(np.sum(x.astype(np.float64) ** 2) / np.sum(noise**2))
    assert abs(measured - snr) < 0.1, measured
    np.testing.assert_array_equal(y, C.parse_transform(spec).apply(x, SR, seed=3, item=7))  # seeded
    assert not np.array_equal(y, C.parse_transform(spec).apply(x, SR, seed=3, item=8))  # per segment
    f, p = ss.welch(noise, SR, nperseg=2048)
    band = (f > 100) & (f < 6000)
    slope = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
    assert abs(slope - {"pink": -1.0, "blue": 1.0, "white": 0.0}[spec.split("_")[0]]) < 0.15, slope


def test_silent_segment_gets_no_noise():
    z = np.zeros(SR, np.float32)
    np.testing.assert_array_equal(C.add_noise(z, 10.0, np.random.default_rng(0)), z)


def test_resample_round_trip_leaves_no_energy_above_8k():
    sr = 44100
    x = np.random.default_rng(0).standard_normal(sr).astype(np.float32)
    y = C.parse_transform("resample:16000").apply(x, sr)
    assert y.shape == x.shape
    def power(z):
        return np.abs(np.fft.rfft(z[2000:-2000] * np.hanning(sr - 4000))) ** 2

    f = np.fft.rfftfreq(sr - 4000, 1 / sr)
    spec = power(y)
    assert 10 * np.log10(spec[f > 8000].sum() / spec.sum()) < -60
    passband = (f > 500) & (f < 7000)
    assert abs(10 * np.log10(spec[passband].sum() / power(x)[passband].sum())) < 0.1  # the passband stays


def test_gain_is_exact():
    x = _harmonic(220.0, 0.5)
    y = C.parse_transform("gain:-12").apply(x, SR)
    np.testing.assert_allclose(y, x * 10 ** (-12 / 20), rtol=1e-6)
    assert abs(20 * np.log10(np.std(y) / np.std(x)) + 12.0) < 1e-4


def test_gain_ramp_level_follows_the_line_in_db():
    x = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    y = C.parse_transform("gain_ramp:-20").apply(x, SR)
    win = SR // 20  # short windows at 5 %, 50 % and 95 % of the segment: the ramp's dB there (closed form)
    for centre in (0.05, 0.5, 0.95):
        c = int(centre * (SR - 1))
        sl = slice(c - win // 2, c + win // 2 + 1)
        level = 10 * np.log10(np.mean(y[sl].astype(np.float64) ** 2) / np.mean(x[sl].astype(np.float64) ** 2))
        assert abs(level - (-20.0 * centre)) < 0.2, (centre, level)
    assert y[0] == x[0] and y[-1] == pytest.approx(x[-1] * 0.1, rel=1e-5)


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_quantize_has_the_levels_and_the_textbook_snr(bits):
    t = np.arange(SR) / SR
    x = (0.5 * np.sin(2 * np.pi * 441.7 * t)).astype(np.float32)  # full-range sine (peak = quantiser range)
    y = C.parse_transform(f"quantize:{bits}").apply(x, SR)
    assert len(np.unique(y)) <= 2**bits + 1
    step = 2 * 0.5 / 2**bits
    assert np.max(np.abs(y - x)) <= step / 2 + 1e-6
    snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean((y - x).astype(np.float64) ** 2))
    assert abs(snr - (6.02 * bits + 1.76)) < 1.0, snr  # uniform quantisation of a full-scale sine


def test_seen_and_held_out_follow_the_training_chain():
    from singer_ssl.evaluation.invariance import SEEN_BY, split_seen

    assert set(SEEN_BY) == set(C.KINDS)  # every transform kind is classified
    specs = ["white_noise:10", "pink_noise:10", "band_pass:300-3400", "resample:16000", "reverb:0.5", "pitch:+2",
             "gain:-12", "blue_noise:10", "gain_ramp:-20", "quantize:6", "identity"]
    chain = ("gain", "colored_noise", "room_reverb", "band_limit", "mp3_compression", "time_mask")
    groups = split_seen(specs, chain)
    assert groups["seen"] == ["white_noise:10", "pink_noise:10", "band_pass:300-3400", "resample:16000",
                              "reverb:0.5", "gain:-12"]
    assert groups["held_out"] == ["pitch:+2", "blue_noise:10", "gain_ramp:-20", "quantize:6"]
    old = split_seen(specs, ("gaussian_noise", "gain", "time_mask"))  # the previous default chain
    assert old["seen"] == ["white_noise:10", "gain:-12"]
    # the held-out families are produced by no training augmentation at all
    from singer_ssl.augment import WAVEFORM_NAMES

    assert split_seen(["blue_noise:10", "gain_ramp:-20", "quantize:6"], WAVEFORM_NAMES)["seen"] == []


def test_band_pass_attenuates_tones_by_the_butterworth_design_response():
    sr = 44100
    t = np.arange(sr) / sr
    sos = ss.butter(4, [300, 3400], btype="bandpass", fs=sr, output="sos")  # the digital design
    design = {}
    measured = {}
    for f0 in (100.0, 1000.0, 6000.0):
        y = C.parse_transform("band_pass:300-3400").apply(np.sin(2 * np.pi * f0 * t).astype(np.float32), sr)
        mid = slice(sr // 4, 3 * sr // 4)  # away from the ends (the filter's start-up transient)
        measured[f0] = 20 * np.log10(np.std(y[mid]) / np.sqrt(0.5))
        design[f0] = 20 * np.log10(np.abs(ss.sosfreqz(sos, worN=[f0], fs=sr)[1][0]))
    for f0 in (100.0, 6000.0):
        rel, want = measured[f0] - measured[1000.0], design[f0] - design[1000.0]
        assert abs(rel - want) < 0.2, (f0, rel, want)
    assert measured[100.0] - measured[1000.0] < -30 and measured[6000.0] - measured[1000.0] < -15


def test_reverb_rt60_from_schroeder_integration():
    impulse = np.zeros(SR, np.float32)
    impulse[0] = 1.0
    h = C.parse_transform("reverb:0.5").apply(impulse, SR, seed=4, item=0).astype(np.float64)
    edc = np.cumsum((h**2)[::-1])[::-1]
    edc_db = 10 * np.log10(edc / edc[0] + 1e-30)
    fit = (edc_db <= -5) & (edc_db >= -25)  # T20
    slope = np.polyfit(np.arange(h.size)[fit] / SR, edc_db[fit], 1)[0]
    assert abs(-60.0 / slope - 0.5) < 0.05, -60.0 / slope
    x = _harmonic(220.0, 0.5)  # linear: the output is x convolved with that response (one room per seed)
    np.testing.assert_allclose(C.parse_transform("reverb:0.5").apply(x, SR, seed=4, item=9),
                               np.convolve(x, h)[: x.size], atol=1e-5)


def test_identity_and_lengths():
    x = _harmonic(220.0, 0.3)
    for spec in C.DEFAULT_TRANSFORMS + ("identity", "pink_noise:10"):
        y = C.parse_transform(spec).apply(x, SR, seed=0, item=1)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all(), spec
    np.testing.assert_array_equal(C.parse_transform("identity").apply(x, SR), x)


@pytest.mark.parametrize("spec, message", [
    ("pitch", "expected pitch:<semitones"),
    ("pitch:up", "expected pitch:<semitones"),
    ("echo:3", "unknown transform 'echo'"),
    ("band_pass:3400-300", "expected band_pass:<low-high"),
    ("reverb:0", "expected reverb:<RT60"),
    ("resample:16000.5", "expected resample:<a sample rate"),
    ("identity:1", "expected identity:<no argument"),
    (12, "expected a transform spec string"),
])
def test_bad_specs_are_one_line_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message) as err:
        C.parse_transform(spec, "embed.invariance.transforms[0]")
    assert str(err.value).startswith("embed.invariance.transforms[0]: ") and "\n" not in str(err.value)


def test_invariance_config():
    assert C.InvarianceConfig.from_mapping(None) is None and C.InvarianceConfig.from_mapping({}) is None
    cfg = C.InvarianceConfig.from_mapping({"segments_per_singer": 2, "transforms": ["gain:-6", "identity"]})
    assert cfg.segments_per_singer == 2 and [t.spec for t in cfg.transforms] == ["gain:-6", "identity"]
    with pytest.raises(ConfigError, match="listed twice"):
        C.InvarianceConfig.from_mapping({"transforms": ["gain:-6", "gain:-6"]})
    with pytest.raises(ConfigError, match="embed.invariance.segments_per_singer: expected an integer >= 1"):
        C.InvarianceConfig.from_mapping({"segments_per_singer": 0})
    with pytest.raises(ConfigError, match="embed.invariance.k: unknown parameter"):
        C.InvarianceConfig.from_mapping({"k": 1})


def test_select_rows_spreads_over_sources_deterministically():
    singers = np.array(["a"] * 6 + ["b"] * 2 + ["c"])
    sources = np.array(["a1", "a1", "a1", "a2", "a2", "a3", "b1", "b1", "c1"])
    rows = C.select_rows(singers, sources, 3, seed=1)
    assert rows.tolist() == sorted(rows.tolist())
    assert sorted(sources[rows[singers[rows] == "a"]].tolist()) == ["a1", "a2", "a3"]  # one per recording
    assert (singers[rows] == "b").sum() == 2 and (singers[rows] == "c").sum() == 1
    np.testing.assert_array_equal(rows, C.select_rows(singers, sources, 3, seed=1))


# ---------------------------------------------------------------------------------------------- the summary

def test_target_pairs_prefer_other_recordings():
    singers = np.array(["a", "a", "a", "b", "b", "c"])
    sources = np.array(["r1", "r1", "r2", "r3", "r3", "r4"])
    a, j = target_pairs(singers, sources, np.array([0, 3, 5]))
    # row 0 (a, r1): only row 2 is another recording; row 3 (b, one recording): row 4; row 5: no partner
    assert list(zip(a.tolist(), j.tolist())) == [(2, 0), (4, 1)]


def _sklearn_eer(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = np.flatnonzero(fnr - fpr <= 0)[0]  # first ROC point past the crossing; interpolate linearly
    d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
    lam = d0 / (d0 - d1)
    return 100 * (fpr[i - 1] + lam * (fpr[i] - fpr[i - 1]))


def _toy(n_singers=20, per=10, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_singers, dim))
    singers = np.repeat([f"s{i}" for i in range(n_singers)], per)
    sources = np.array([f"{s}/r{k % 3}" for s, k in zip(singers, np.tile(np.arange(per), n_singers))])
    emb = centres[np.repeat(np.arange(n_singers), per)] + 0.9 * rng.standard_normal((n_singers * per, dim))
    n = len(singers)
    i1, i2 = rng.integers(0, n, 3000), rng.integers(0, n, 3000)
    keep = i1 != i2
    labels = (singers[i1] == singers[i2]).astype(int)[keep]  # the list's target trials must not be used
    return emb, singers, sources, labels, i1[keep], i2[keep], rng


def test_identity_transform_gives_the_untransformed_eer_computed_with_sklearn():
    from sklearn.metrics.pairwise import cosine_similarity

    emb, singers, sources, labels, i1, i2, _ = _toy()
    rows = C.select_rows(singers, sources, 3, seed=0)
    shrunk = emb[rows] * 0.5  # a cosine-invariant change: the identity as far as scoring goes
    block, scores = invariance_report(emb, singers, sources, rows, {"identity": shrunk}, labels, i1, i2)
    # independent: target pairs by the rule, scored with sklearn, EER from sklearn's ROC
    cos = cosine_similarity(emb)
    targets = []
    for b in rows:
        same = [a for a in range(len(singers)) if singers[a] == singers[b] and a != b]
        other = [a for a in same if sources[a] != sources[b]]
        targets += [cos[a, b] for a in (other or same)]
    nontargets = cos[i1[labels == 0], i2[labels == 0]]
    want = _sklearn_eer(np.r_[np.ones(len(targets)), np.zeros(len(nontargets))], np.r_[targets, nontargets])
    assert block["target_trials"] == len(targets) and block["nontarget_trials"] == len(nontargets)
    assert block["reference_eer"] == pytest.approx(want, abs=1e-9)
    assert block["eer"]["identity"] == pytest.approx(want, abs=1e-9)
    assert 0 < want < 40  # the toy singers are separable, so the comparison below means something
    assert sorted(scores) == ["identity", "nontarget", "reference"]


def test_identity_destroying_transform_gives_chance_eer():
    emb, singers, sources, labels, i1, i2, rng = _toy()
    rows = C.select_rows(singers, sources, 3, seed=0)
    random = rng.standard_normal((rows.size, emb.shape[1])) * 3
    block, _ = invariance_report(emb, singers, sources, rows, {"random": random}, labels, i1, i2)
    assert block["reference_eer"] < 25
    assert 40 < block["eer"]["random"] < 60, block


def test_report_groups_and_their_worst_increase():
    emb, singers, sources, labels, i1, i2, rng = _toy()
    rows = C.select_rows(singers, sources, 3, seed=0)
    noisy = emb[rows] + 0.5 * rng.standard_normal((rows.size, emb.shape[1]))
    random = rng.standard_normal((rows.size, emb.shape[1])) * 3
    block, _ = invariance_report(emb, singers, sources, rows,
                                 {"white_noise:20": emb[rows], "white_noise:10": noisy, "quantize:6": random,
                                  "identity": emb[rows]}, labels, i1, i2, training_chain=("colored_noise",))
    assert block["groups"] == {"seen": ["white_noise:20", "white_noise:10"], "held_out": ["quantize:6"]}
    assert block["eer"]["white_noise:10"] > block["eer"]["white_noise:20"]  # the worst of the group counts
    assert block["training_chain"] == ["colored_noise"]
    for group, spec in (("seen", "white_noise:10"), ("held_out", "quantize:6")):
        assert block["max_increase"][group] == pytest.approx(block["eer"][spec] - block["reference_eer"])
    assert block["max_increase"]["held_out"] > block["max_increase"]["seen"]


def test_increase_interval_is_the_paired_singer_bootstrap_of_the_versus_block():
    from singer_ssl.evaluation.metrics import paired_singer_eer_difference

    emb, singers, sources, labels, i1, i2, rng = _toy()
    rows = C.select_rows(singers, sources, 3, seed=0)
    noisy = emb[rows] + 0.8 * rng.standard_normal((rows.size, emb.shape[1]))
    random = rng.standard_normal((rows.size, emb.shape[1])) * 3
    transformed = {"identity": emb[rows] * 2.0, "white_noise:10": noisy, "quantize:6": random}
    block, scores = invariance_report(emb, singers, sources, rows, transformed, labels, i1, i2,
                                      n_boot=200, seed=5)
    ci = block["increase_ci95_singer"]
    assert sorted(ci) == sorted(transformed)
    assert ci["identity"] == [0.0, 0.0]  # same scores on every resample
    assert ci["quantize:6"][0] > 10  # destroyed identity: the increase is shown beyond noise
    # independent path: the versus block's paired difference on the same trials, built here by the pair rule
    a, j = target_pairs(singers, sources, rows)
    neg = labels == 0
    y = np.r_[np.ones(a.size, int), np.zeros(int(neg.sum()), int)]
    s1 = np.r_[singers[a], singers[i1[neg]]]
    s2 = np.r_[singers[rows[j]], singers[i2[neg]]]
    for spec in ("white_noise:10", "quantize:6"):
        diff, (lo, hi) = paired_singer_eer_difference(
            y, np.r_[scores[spec], scores["nontarget"]], [np.r_[scores["reference"], scores["nontarget"]]],
            s1, s2, n_boot=200, seed=5)
        assert diff == pytest.approx(block["eer"][spec] - block["reference_eer"], abs=1e-9)
        assert ci[spec] == pytest.approx([lo, hi], abs=1e-9)
        assert lo <= diff <= hi
    assert "increase_ci95_singer" not in invariance_report(emb, singers, sources, rows, transformed, labels,
                                                           i1, i2)[0]


def test_no_target_pair_gives_no_report():
    singers, sources = np.array(["a", "b"]), np.array(["r1", "r2"])
    emb = np.eye(2)
    assert invariance_report(emb, singers, sources, np.array([0]), {"g": emb[:1]}, np.array([0]), np.array([0]),
                             np.array([1])) == (None, {})


# ---------------------------------------------------------------------------------------------- the pipeline path

def test_embed_store_evaluate_path(tmp_path, one_torch_thread):
    """The embed stage writes the transformed copies into the ``invariance`` group (the main matrices as without
    it); the identity copy equals the untransformed rows, and evaluate reports and plots it."""
    from singer_ssl.embed import embed_dataset
    from singer_ssl.evaluation.invariance import write_invariance_plot
    from singer_ssl.evaluation.store import read_embeddings
    from singer_ssl.evaluation.verification import load_trials
    from singer_ssl.model.folder import build_model, save_model_folder
    from tests.synthetic import make_training_set

    paths = make_training_set(tmp_path, n_singers=3, sources_per_singer=2, segments_per_source=2, seconds=0.5)
    hp = {"frontend": {"sample_rate": 8000, "n_fft": 256, "hop": 64, "n_mels": 16, "fmin": 0.0, "fmax": None,
                       "log_offset": 1e-8},
          "normalization": {"mean": -4.0, "std": 3.0},
          "encoder": {"name": "audiontt2020", "kwargs": {"n_mels": 16, "embedding_dim": 16}},
          "head": {"kind": "silu_linear", "dim": 8, "hidden": 12}, "segment_seconds": 0.5,
          "augment": {"waveform": {"colored_noise": {"p": 0.4}, "gain": {"p": 0.0}, "band_limit": {}}}}
    save_model_folder(build_model(hp).eval(), hp, tmp_path / "model")
    inv = C.InvarianceConfig.from_mapping({"segments_per_singer": 2, "transforms": ["identity", "gain:-12"]})
    args = (paths["features"], paths["segments"], tmp_path / "model")
    plain = embed_dataset(*args, tmp_path / "plain.h5", seed=1, device="cpu", random_inits=1)
    embed_dataset(*args, tmp_path / "e.h5", seed=1, device="cpu", random_inits=1, invariance=inv)
    es = read_embeddings(tmp_path / "e.h5")
    assert sorted(es.vectors) == sorted(plain.vectors)  # existing layout unchanged
    for name, v in plain.vectors.items():
        np.testing.assert_array_equal(es.vectors[name], v)
    assert es.invariance_rows.tolist() == C.select_rows(np.asarray(es.singers), np.asarray(es.sources), 2, 1).tolist()
    assert list(es.invariance) == ["identity", "gain:-12"]
    np.testing.assert_allclose(es.invariance["identity"], es.vectors["embedding"][es.invariance_rows], atol=1e-4)
    assert not np.allclose(es.invariance["gain:-12"], es.invariance["identity"], atol=1e-3)
    trials = tmp_path / "trials.txt"
    keys, singers = es.keys, es.singers
    lines = [f"{int(singers[i] == singers[j])},{keys[i]},{keys[j]}" for i in range(len(keys))
             for j in range(i + 1, len(keys))]
    trials.write_text("\n".join(lines) + "\n")
    t = load_trials(es, trials)
    assert es.training_chain == ("colored_noise", "band_limit")  # the model's chain, p > 0, through the store
    block, scores = invariance_report(es.vectors["embedding"], np.asarray(singers), np.asarray(es.sources),
                                      es.invariance_rows, es.invariance, t.labels, t.idx1, t.idx2,
                                      training_chain=es.training_chain)
    assert block["eer"]["identity"] == pytest.approx(block["reference_eer"], abs=1e-6)
    assert block["groups"] == {"seen": [], "held_out": ["gain:-12"]}  # gain at p 0 is not in the chain
    write_invariance_plot(tmp_path / "invariance.png", block, scores, dataset="toy")
    write_invariance_plot(tmp_path / "none.png", None, {})
    assert (tmp_path / "invariance.png").stat().st_size > 1000 and (tmp_path / "none.png").stat().st_size > 1000
