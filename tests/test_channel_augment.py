"""The recording-channel augmentations (singer_ssl/augment/channel.py), each against an independent measurement."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import yaml

from singer_ssl import augment
from singer_ssl.augment import channel as C
from singer_ssl.augment.library import library_random_state
from singer_ssl.core.errors import ConfigError
from singer_ssl.training.data import ViewDataset, load_segment_table
from tests.synthetic import make_training_set, pipeline_paths

SR = 16000


def harmonic(f0=220.0, seconds=1.0, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    return (0.2 * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 11))).astype(np.float32)


def one(name, sr=SR, **params):
    return augment.build_waveform({name: {"p": 1.0, **params}}, sr)


def snr_db(x, y):
    """Measured SNR of the mixture ``y`` against its clean part ``x`` (noise = y - x)."""
    noise = y.astype(np.float64) - x
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)) / np.mean(noise**2))


def schroeder_rt60(h, sr):
    """RT60 from Schroeder's backward-integrated energy decay curve: 3 x the -5 to -25 dB time (T20)."""
    energy = np.cumsum((h.astype(np.float64) ** 2)[::-1])[::-1]
    edc = 10 * np.log10(energy / energy[0] + 1e-300)
    return 3.0 * (np.argmax(edc <= -25.0) - np.argmax(edc <= -5.0)) / sr


def band_energy(y, sr, lo, hi):
    spec = np.abs(np.fft.rfft(y.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(y), 1 / sr)
    return spec[(f >= lo) & (f < hi)].sum()


@pytest.mark.parametrize("name, params", [
    ("colored_noise", {"min_snr_db": 3.0, "max_snr_db": 12.0}),
    ("music_bed", {"min_snr_db": 5.0, "max_snr_db": 15.0}),
])
def test_noise_is_mixed_at_the_drawn_snr(name, params):
    x = harmonic()
    op = augment.build_waveform({name: params}, SR).steps[0][0]
    for seed in range(4):
        drawn = op.draw(np.random.default_rng(seed), x.size)
        y = op.apply(x, **drawn)
        assert snr_db(x, y) == pytest.approx(drawn["snr_db"], abs=0.05)
        assert params["min_snr_db"] <= drawn["snr_db"] <= params["max_snr_db"]


def test_music_bed_is_tonal_and_rhythmic():
    bed = C.music_bed(2 * SR, SR, np.random.default_rng(1))
    spec = np.abs(np.fft.rfft(bed)) ** 2
    top = np.sort(spec)[::-1]
    assert top[:200].sum() / spec.sum() > 0.3  # energy in a few partials (white noise: ~200 / 16000 bins)
    frames = bed[: bed.size // 160 * 160].reshape(-1, 160)
    assert np.std(np.log(np.mean(frames**2, axis=1) + 1e-12)) > 0.3  # drum hits: a non-flat envelope


def test_babble_mixes_other_voices_at_the_drawn_snr_and_needs_a_source():
    x = harmonic()
    op = augment.build_waveform({"babble": {"min_speakers": 2, "max_speakers": 2}}, SR).steps[0][0]
    drawn = op.draw(np.random.default_rng(0), x.size)
    others = np.stack([harmonic(310.0), harmonic(95.0)])
    y = op.apply(x, others=others, **drawn)
    assert snr_db(x, y) == pytest.approx(drawn["snr_db"], abs=0.05)
    # the noise is the two crops at equal RMS: project y - x onto each crop (they are near-orthogonal tones)
    noise = y - x
    w = np.linalg.lstsq(others.T.astype(np.float64), noise.astype(np.float64), rcond=None)[0]
    rms = np.sqrt(np.mean(others.astype(np.float64) ** 2, axis=1))
    assert w[0] * rms[0] == pytest.approx(w[1] * rms[1], rel=1e-3)
    assert np.array_equal(op.apply(x, others=None, **drawn), x)  # no source: unchanged


def test_room_reverb_bank_rt60_matches_the_targets_by_schroeder_integration():
    op = augment.build_waveform({"room_reverb": {"min_rt60": 0.2, "max_rt60": 0.8, "bank_size": 4}}, SR)
    rir = op.steps[0][0]
    bank = rir.bank()
    targets = np.linspace(0.2, 0.8, 4)
    measured = np.array([schroeder_rt60(h, SR) for h in bank])
    assert np.all(measured > 0.5 * targets) and np.all(measured < 1.5 * targets), measured
    assert np.all(np.diff(measured) > 0)  # longer target, longer measured decay
    assert all(abs(h[0]) == np.max(np.abs(h)) for h in bank)  # direct path first
    # applying it convolves with the chosen response (scipy-independent check: numpy's direct convolution)
    x = harmonic(seconds=0.25)
    y = rir.apply(x, index=1)
    ref = np.convolve(x.astype(np.float64), bank[1].astype(np.float64))[: x.size]
    ref *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(ref**2))
    assert np.allclose(y, ref, atol=1e-5)


@pytest.mark.parametrize("rate", [8000, 11025])
def test_band_limit_removes_the_spectrum_above_the_round_trip_nyquist(rate):
    sr = 44100
    x = np.random.default_rng(0).standard_normal(sr).astype(np.float32) * 0.1
    op = augment.build_waveform({"band_limit": {"rates": [rate, rate], "telephone_prob": 0.0}}, sr).steps[0][0]
    y = op.apply(x, rate=rate, telephone=False)
    above = band_energy(y, sr, 0.55 * rate, sr / 2) / band_energy(x, sr, 0.55 * rate, sr / 2)
    below = band_energy(y, sr, 100, 0.4 * rate) / band_energy(x, sr, 100, 0.4 * rate)
    assert 10 * np.log10(above) < -40 and abs(10 * np.log10(below)) < 0.5
    tel = op.apply(x, rate=rate, telephone=True)
    assert 10 * np.log10(band_energy(tel, sr, 20, 150) / band_energy(x, sr, 20, 150)) < -20
    assert abs(10 * np.log10(band_energy(tel, sr, 1000, 2500) / band_energy(x, sr, 1000, 2500))) < 1.0


def test_band_limit_draws_only_the_allowed_rates():
    op = augment.build_waveform({"band_limit": {"rates": [11025, 16000]}}, 44100).steps[0][0]
    rates = {op.draw(np.random.default_rng(s), 100)["rate"] for s in range(60)}
    assert rates == {11025, 16000}


def test_mp3_round_trip_changes_the_signal_by_a_bounded_amount():
    sr = 44100
    x = harmonic(seconds=1.0, sr=sr)
    y = augment.build_waveform({"mp3_compression": {"min_bitrate": 32, "max_bitrate": 32}}, sr)(
        x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32
    lag = int(np.argmax(np.correlate(y[:12000], x[:8000], "valid")))  # the encoder delay (kept)
    assert 0 < lag < 4000
    snr = snr_db(x[: x.size - lag], y[lag:])
    assert 10.0 < snr < 60.0  # changed (lossy), but still the same signal


def test_mu_law_has_256_levels_and_the_textbook_snr():
    x = harmonic()
    y = one("mu_law")(x, np.random.default_rng(0))
    assert len(np.unique(y)) <= 256
    assert 30.0 < snr_db(x, y) < 45.0  # 8-bit mu-law: ~38 dB for a full-range signal (ITU-T G.711)
    assert np.max(np.abs(y)) == pytest.approx(np.max(np.abs(x)), rel=1e-6)  # the peak maps onto itself


def test_clipping_clips_at_most_the_drawn_share_and_leaves_the_rest():
    x = harmonic()
    y = one("clipping", min_percentile_threshold=10, max_percentile_threshold=10)(x, np.random.default_rng(0))
    changed = y != x
    assert 0.0 < changed.mean() <= 0.11
    assert np.max(np.abs(y)) < np.max(np.abs(x))
    assert np.all(np.abs(y[changed]) <= np.abs(x[changed]))  # clipped towards zero, never amplified


def test_library_random_state_is_seeded_and_restored():
    random.seed(5)
    np.random.seed(5)
    expect = (random.random(), np.random.random())
    random.seed(5)
    np.random.seed(5)
    with library_random_state(123):
        a = (random.random(), np.random.random())
    with library_random_state(123):
        b = (random.random(), np.random.random())
    assert a == b  # seeded
    assert (random.random(), np.random.random()) == expect  # the outer streams continue untouched


def default_chain(sr=SR):
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    return augment.build_waveform(params["augment"]["waveform"], sr)


def test_default_chain_is_the_channel_chain_same_seed_same_output_and_picklable():
    chain = default_chain()
    for name in ("room_reverb", "babble", "music_bed", "colored_noise", "band_limit", "mp3_compression", "mu_law",
                 "clipping", "seven_band_eq"):
        assert name in chain.names
    x = harmonic()
    others = lambda rng, k, n: np.stack([harmonic(150.0 + 40 * i) for i in range(k)])  # noqa: E731
    outs = [chain(x, np.random.default_rng([7, i]), source=others) for i in range(6)]
    again = pickle.loads(pickle.dumps(chain))
    for i, y in enumerate(outs):
        assert np.array_equal(again(x, np.random.default_rng([7, i]), source=others), y)
    assert not any(np.array_equal(outs[0], y) for y in outs[1:])


def test_channel_parameters_are_validated_like_the_others():
    with pytest.raises(ConfigError, match="room_reverb"):
        augment.build_waveform({"room_reverb": {"max_rt60": 5.0}}, SR)
    with pytest.raises(ConfigError, match="inverted range"):
        augment.build_waveform({"babble": {"min_snr_db": 20.0, "max_snr_db": 10.0}}, SR)
    with pytest.raises(ConfigError, match="mp3_compression"):
        augment.build_waveform({"mp3_compression": {"min_bitrate": 4}}, SR)
    with pytest.raises(ConfigError, match="bitrates|bit_rate|parameter"):
        augment.build_waveform({"mp3_compression": {"bitrates": 4}}, SR)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    make_training_set(root)  # 6 singers x 2 songs x 3 one-second segments at 8 kHz
    return root


def test_babble_never_uses_the_items_own_singer_or_recording(toy, monkeypatch):
    paths = pipeline_paths(toy)
    table = load_segment_table(paths.features, paths.segments, ["toy"])
    pool = np.flatnonzero(table.singer != table.singer[0])[:-1]  # a pool without singer 0 and one segment
    pool = np.r_[0, 1, pool]  # plus two of singer 0's own segments
    chain = augment.build_waveform({"babble": {"min_speakers": 3, "max_speakers": 3}}, 8000)
    ds = ViewDataset(table, "wave", "file", 4000, chain, babble_pool=pool)
    read: list[int] = []
    crop = ds._wave_crop
    monkeypatch.setattr(ds, "_wave_crop", lambda i, rng, n=None: (read.append(i), crop(i, rng, n))[1])
    for index in range(len(table)):
        read.clear()
        mix = ds.babble(index, np.random.default_rng(index), 3, 4000)
        assert mix.shape == (3, 4000) and len(set(read)) == 3
        assert set(read) <= set(pool.tolist())
        assert all(table.singer[i] != table.singer[index] for i in read)
        assert all(table.source[i] != table.source[index] for i in read)
    # through the dataset: the views carry babble, reproducibly from the item's key
    v = ds[(0, 0, 1, 0, 0, 0, 0)]
    assert np.array_equal(ds[(0, 0, 1, 0, 0, 0, 0)][0], v[0])
    plain = ViewDataset(table, "wave", "file", 4000, None)
    assert not np.array_equal(plain[(0, 0, 1, 0, 0, 0, 0)][0], v[0])


@pytest.mark.parametrize("name", ["torres2023", "ge2e-singer", "semisupcon", "byol-a", "fonseca2021"])
def test_paper_presets_keep_their_own_chain_over_the_default(name):
    """A preset is deep-merged over params.yaml: none of the default chain's entries or ranges may leak into a
    paper's chain (the merged chain equals the one the preset's own entries build with the class defaults)."""
    from singer_ssl.presets import load_preset, merge

    root = Path(__file__).parents[1]
    params = yaml.safe_load((root / "params.yaml").read_text())
    preset = load_preset(name, root / "presets")
    merged = augment.build_waveform(merge(params, preset)["augment"]["waveform"], 44100)
    alone = augment.build_waveform(preset["augment"]["waveform"], 44100)
    assert repr(merged) == repr(alone)
    assert merge(params, preset)["augment"].get("ramp_epochs", 0) == 0  # nor the default's curriculum


def test_ramp_strength_is_the_linear_curriculum():
    """min(1, epoch / ramp_epochs), 1 without a ramp; a negative ramp is refused."""
    assert [augment.ramp_strength(e, 2) for e in range(5)] == [0.0, 0.5, 1.0, 1.0, 1.0]
    assert [augment.ramp_strength(e, 4) for e in range(3)] == [0.0, 0.25, 0.5]
    assert augment.ramp_strength(0, 0) == 1.0 and augment.ramp_strength(7, 0.0) == 1.0
    with pytest.raises(ValueError, match="ramp_epochs"):
        augment.ramp_strength(0, -1)


def test_chain_strength_scales_every_probability():
    """strength 0: the input untouched; 1: the configured chain; a p = 1 op at strength 0.3 applies in ~30 % of
    items (binomial: 2000 draws, 4.5 sigma); a strength outside [0, 1] is refused."""
    x = harmonic()
    chain = augment.build_waveform({"gain": {"p": 1.0, "min_gain_db": -12.0, "max_gain_db": -6.0}}, SR)
    assert np.array_equal(chain(x, np.random.default_rng(0), strength=0.0), x)
    assert np.array_equal(chain(x, np.random.default_rng(0), strength=1.0), chain(x, np.random.default_rng(0)))
    applied = sum(not np.array_equal(chain(x, np.random.default_rng(s), strength=0.3), x) for s in range(2000))
    assert abs(applied / 2000 - 0.3) < 4.5 * np.sqrt(0.3 * 0.7 / 2000)
    with pytest.raises(ValueError, match="strength"):
        chain(x, np.random.default_rng(0), strength=1.5)


def test_ramp_gives_clean_training_views_first_and_full_validation_views(toy):
    """Dataset glue: with ramp_epochs 2 a training item of epoch 0 (key: seed, stream 0, epoch 0, ...) is the
    plain crop; from epoch 2 on, and for validation items (stream 1) at any epoch, the views equal those of the
    dataset without a ramp; ramp_epochs flows from params (augment.ramp_epochs) into the config, validated."""
    from singer_ssl.training.config import AugmentConfig

    paths = pipeline_paths(toy)
    table = load_segment_table(paths.features, paths.segments, ["toy"])
    chain = augment.build_waveform({"gain": {"p": 1.0, "min_gain_db": -12.0, "max_gain_db": -6.0},
                                    "colored_noise": {"p": 1.0}}, 8000)
    ramped = ViewDataset(table, "wave", "file", 4000, chain, ramp_epochs=2)
    full = ViewDataset(table, "wave", "file", 4000, chain)
    plain = ViewDataset(table, "wave", "file", 4000, None)
    for index in range(0, len(table), 5):
        assert np.array_equal(ramped[(index, 0, 1, 0, 0, 0, 0)][0], plain[(index, 0, 1, 0, 0, 0, 0)][0])
        assert not np.array_equal(ramped[(index, 0, 1, 0, 0, 0, 0)][0], full[(index, 0, 1, 0, 0, 0, 0)][0])
        for key in [(1, 0, 2, 3, 1), (1, 0, 5, 0, 0), (1, 1, 0, 0, 0)]:  # epoch 2, epoch 5, validation epoch 0
            a, b = ramped[(index, 0, *key)][:2], full[(index, 0, *key)][:2]
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert AugmentConfig.from_section({"ramp_epochs": 3}).ramp_epochs == 3.0
    assert AugmentConfig.from_section({}).ramp_epochs == 0.0
    for bad in (-1, "two", True):
        with pytest.raises(ConfigError, match="augment.ramp_epochs"):
            AugmentConfig.from_section({"ramp_epochs": bad})


def test_ramp_augmentations_scale_only_the_named_entries():
    """augment.ramp_augmentations: strength scales only the named entries' probabilities. At strength 0 with
    only colored_noise ramped, the chain's output is the gain-only chain's (same generator: the un-ramped p = 1
    gain draws first, the ramped noise is skipped); at strength 1 it is the whole chain; the names must be
    waveform augmentation names (one-line ConfigError otherwise) and reach the training config."""
    from singer_ssl.training.config import AugmentConfig

    x = harmonic()
    gain = {"p": 1.0, "min_gain_db": -12.0, "max_gain_db": -6.0}
    entries = {"gain": gain, "colored_noise": {"p": 1.0, "min_snr_db": 0.0, "max_snr_db": 5.0}}
    ramped = augment.build_waveform(entries, SR, ramped=["colored_noise"])
    gain_only = augment.build_waveform({"gain": gain}, SR)
    whole = augment.build_waveform(entries, SR)
    for seed in range(20):
        out = ramped(x, np.random.default_rng(seed), strength=0.0)
        assert np.array_equal(out, gain_only(x, np.random.default_rng(seed)))
        assert not np.array_equal(out, x)  # the gain was not ramped away
        assert np.array_equal(ramped(x, np.random.default_rng(seed)), whole(x, np.random.default_rng(seed)))
    assert np.array_equal(whole(x, np.random.default_rng(0), strength=0.0), x)  # no list: every entry ramped

    section = {"waveform": entries, "ramp_epochs": 1, "ramp_augmentations": ["colored_noise"]}
    assert AugmentConfig.from_section(section).ramp_augmentations == ("colored_noise",)
    assert AugmentConfig.from_section({"waveform": entries}).ramp_augmentations == ()
    for bad in (["colored_nosie"], "colored_noise", [3]):
        with pytest.raises(ConfigError, match="augment.ramp_augmentations") as err:
            AugmentConfig.from_section({**section, "ramp_augmentations": bad})
        assert "\n" not in str(err.value)
