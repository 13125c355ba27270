"""Augmentations: each against an independent expectation (closed form, FFT, parselmouth, scipy)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import parselmouth
import pytest
import scipy.signal
import torch
import torch.nn.functional as F
import yaml

from singer_ssl import augment
from singer_ssl.augment import spectrogram as S
from singer_ssl.augment import waveform as W
from singer_ssl.core.errors import ConfigError

SR = 16000


def wave(*names_params: tuple[str, dict], sample_rate: int = SR) -> augment.WaveformAugment:
    return augment.build_waveform({n: {"p": 1.0, **kw} for n, kw in names_params}, sample_rate)


def tones(freqs, seconds=1.0, sr=SR, amp=0.1):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * sum(np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)


def harmonic(f0, seconds=1.0, sr=SR, n_harmonics=10):
    """Sung-vowel-like harmonic tone with a 1/k spectrum and soft onset/offset."""
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, n_harmonics + 1))
    env = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.02)
    return (0.2 * x * env).astype(np.float32)


def praat_f0(x, sr=SR) -> float:
    pitch = parselmouth.Sound(x.astype(np.float64), sampling_frequency=sr).to_pitch(
        time_step=0.01, pitch_floor=75, pitch_ceiling=600)
    f = pitch.selected_array["frequency"]
    return float(np.median(f[f > 0]))


def tone_gain_db(x, y, freq, sr=SR) -> float:
    """Gain at ``freq`` from the FFT of whole-second signals (integer number of cycles: exact bins)."""
    k = int(round(freq * len(x) / sr))
    return 20 * np.log10(np.abs(np.fft.rfft(y)[k]) / np.abs(np.fft.rfft(x)[k]))


# ------------------------------------------------------------------------------------------------
# waveform: each augmentation


def test_gain_ratio_matches_drawn_db():
    x = tones([440.0])
    x[x == 0] = 1e-3
    op = wave(("gain", {"min_gain_db": -6.0, "max_gain_db": 0.0}))
    for seed in range(5):
        # replay the generator to learn the drawn gain: coin skipped at p=1, then U(min, max)
        g = np.random.default_rng(seed).uniform(-6.0, 0.0)
        y = op(x, np.random.default_rng(seed))
        np.testing.assert_allclose(y / x, 10 ** (g / 20), rtol=1e-5)
        assert -6.0 <= 20 * np.log10(np.median(y / x)) <= 0.0


def test_gaussian_noise_residual_std_in_range():
    x = tones([300.0], seconds=2.0)
    op = wave(("gaussian_noise", {"min_amplitude": 0.01, "max_amplitude": 0.05}))
    stds = [np.std(op(x, np.random.default_rng(s)) - x) for s in range(30)]
    assert min(stds) > 0.01 * 0.97 and max(stds) < 0.05 * 1.03
    assert max(stds) - min(stds) > 0.02  # the amplitude really is drawn


def test_time_mask_zeroes_one_short_contiguous_run():
    x = (1.0 + 0.5 * tones([50.0])).astype(np.float32)  # never zero
    op = wave(("time_mask", {"max_band_part": 0.125}))
    lengths = []
    for s in range(30):
        y = op(x, np.random.default_rng(s))
        zero = np.flatnonzero(y == 0.0)
        if zero.size:
            assert np.all(np.diff(zero) == 1)  # contiguous
        assert zero.size <= int(0.125 * x.size)
        keep = np.ones(x.size, bool)
        keep[zero] = False
        np.testing.assert_array_equal(y[keep], x[keep])
        lengths.append(zero.size)
    assert max(lengths) > 0.06 * x.size


def test_time_mask_fade_is_an_equal_gain_crossfade_inside_the_run():
    x = np.ones(SR, np.float32)
    op = W.TimeMask(SR, min_band_part=0.1, max_band_part=0.1, fade_seconds=0.01)
    y = op.apply(x, start=1000, length=1600)
    fade = 160
    out, back = y[1000:1000 + fade], y[2600 - fade:2600]
    assert out[0] == pytest.approx(1.0) and out[-1] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(out) <= 0) and np.all(np.diff(back) >= 0)  # monotone fades
    np.testing.assert_allclose(out + back, 1.0, atol=0.01)  # equal gain: the two fades sum to one (signalsmith)
    np.testing.assert_allclose(back, out[::-1], atol=1e-6)  # symmetric
    assert np.all(y[1000 + fade:2600 - fade] == 0)
    assert np.all(y[:1000] == 1) and np.all(y[2600:] == 1)


def test_polarity_inversion_negates_exactly():
    x = tones([220.0, 1000.0])
    np.testing.assert_array_equal(wave(("polarity_inversion", {}))(x, np.random.default_rng(0)), -x)


@pytest.mark.parametrize("invert_prob,ratio", [(0.0, 1.25), (1.0, 1 / 1.25)])
def test_pitch_shift_praat_moves_f0_by_the_ratio(invert_prob, ratio):
    x = harmonic(200.0, seconds=1.0)
    op = wave(("pitch_shift_praat", {"min_pitch_ratio": 1.25, "max_pitch_ratio": 1.25,
                                     "invert_prob": invert_prob}))
    y = op(x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32
    assert praat_f0(y) == pytest.approx(200.0 * ratio, rel=0.02)
    assert praat_f0(x) == pytest.approx(200.0, rel=0.01)


def test_pitch_shift_praat_is_seeded_and_keeps_length_of_noise():
    rng = np.random.default_rng(3)
    x = (0.05 * rng.standard_normal(12345)).astype(np.float32)  # unvoiced: median undefined
    x[:6000] += harmonic(180.0, seconds=6000 / SR)
    op = wave(("pitch_shift_praat", {}))
    a, b = op(x, np.random.default_rng(1)), op(x, np.random.default_rng(1))
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, b)  # Praat's own RNG is seeded from ours


def test_pitch_shift_praat_failure_returns_input():
    x = np.full(50, 0.1, np.float32)  # too short for Praat's pitch analysis
    op = W.PitchShiftPraat(SR)
    y = op.apply(x, pitch_ratio=1.2, range_ratio=1.0, praat_seed=1)
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("semitones", [3.0, -4.0])
def test_pitch_shift_phase_vocoder_moves_f0(semitones):
    x = harmonic(200.0, seconds=1.0)
    op = wave(("pitch_shift", {"min_semitones": semitones, "max_semitones": semitones}))
    y = op(x, np.random.default_rng(0))
    assert y.shape == x.shape
    assert praat_f0(y) == pytest.approx(200.0 * 2 ** (semitones / 12), rel=0.02)
    # duration kept: the energy envelope still spans the clip
    assert np.std(y[: SR // 4]) > 0.2 * np.std(x[: SR // 4])
    assert np.std(y[-SR // 4:]) > 0.2 * np.std(x[-SR // 4:])


def butter_db(f, fc, order, kind, sr=SR):
    """Digital Butterworth (bilinear transform, cut-off pre-warped) power response in dB, in closed form."""
    ratio = np.tan(np.pi * f / sr) / np.tan(np.pi * fc / sr)
    lp = 1 / (1 + ratio ** (2 * order))
    return 10 * np.log10(lp if kind == "low" else 1 - lp)


@pytest.mark.parametrize("kind", ["low", "high"])
def test_low_high_pass_attenuation_matches_butterworth(kind):
    freqs = [125.0, 500.0, 1000.0, 2000.0, 4000.0]
    x = tones(freqs)
    name = f"{kind}_pass"
    y = wave((name, {"min_cutoff_hz": 1000.0, "max_cutoff_hz": 1000.0, "order": 4}))(x, np.random.default_rng(0))
    for f in freqs:
        expected = butter_db(f, 1000.0, 4, kind)
        if expected > -40:  # below that the float32 noise floor of the measurement takes over
            assert tone_gain_db(x, y, f) == pytest.approx(expected, abs=0.3)
    stop = 4000.0 if kind == "low" else 125.0
    assert tone_gain_db(x, y, stop) < -40


def test_band_pass_and_band_stop():
    freqs = [100.0, 750.0, 1000.0, 1250.0, 5000.0]
    x = tones(freqs)
    cfg = {"min_center_hz": 1000.0, "max_center_hz": 1000.0,
           "min_bandwidth_fraction": 0.5, "max_bandwidth_fraction": 0.5}  # edges 750 and 1250 Hz
    bp = wave(("band_pass", cfg))(x, np.random.default_rng(0))
    bs = wave(("band_stop", cfg))(x, np.random.default_rng(0))
    assert abs(tone_gain_db(x, bp, 1000.0)) < 0.1
    assert tone_gain_db(x, bp, 750.0) == pytest.approx(-3.01, abs=0.1)  # Butterworth edges: -3 dB
    assert tone_gain_db(x, bp, 1250.0) == pytest.approx(-3.01, abs=0.1)
    assert tone_gain_db(x, bp, 100.0) < -40 and tone_gain_db(x, bp, 5000.0) < -40
    assert tone_gain_db(x, bs, 1000.0) < -40
    assert abs(tone_gain_db(x, bs, 100.0)) < 0.1 and abs(tone_gain_db(x, bs, 5000.0)) < 0.1
    # power complementary: |H_bp|^2 + |H_bs|^2 = 1 at the edge tones
    for f in (750.0, 1250.0):
        assert 10 ** (tone_gain_db(x, bp, f) / 10) + 10 ** (tone_gain_db(x, bs, f) / 10) == pytest.approx(1, abs=0.01)


def test_filter_one_of_picks_each_choice():
    x = tones([200.0, 4000.0])
    op = wave(("filter_one_of", {"choices": {
        "low_pass": {"min_cutoff_hz": 1000.0, "max_cutoff_hz": 1000.0},
        "high_pass": {"min_cutoff_hz": 1000.0, "max_cutoff_hz": 1000.0}}}))
    seen = set()
    for s in range(20):
        y = op(x, np.random.default_rng(s))
        low, high = tone_gain_db(x, y, 200.0), tone_gain_db(x, y, 4000.0)
        assert (low > -0.1 and high < -40) or (high > -0.1 and low < -40)
        seen.add("low_pass" if low > high else "high_pass")
    assert seen == {"low_pass", "high_pass"}


def test_seven_band_eq_matches_audiomentations_biquads():
    from audiomentations import HighShelfFilter, LowShelfFilter, PeakingFilter

    freqs = [60.0, 150.0, 300.0, 700.0, 1500.0, 3000.0, 6000.0]
    x = tones(freqs, sr=22050)
    op = W.SevenBandEQ(22050)
    params = op.draw(np.random.default_rng(4), x.size)
    y = op.apply(x, **params)
    kinds = [LowShelfFilter] + [PeakingFilter] * 5 + [HighShelfFilter]
    for f in freqs:  # steady-state tone gains = the product of the drawn biquads' responses (scipy sosfreqz)
        expected = 0.0
        for cls, c, g, q in zip(kinds, params["centers_hz"], params["gains_db"], params["qs"]):
            sos = cls._get_biquad_coefficients_from_input_parameters(None, c, g, q, 22050)
            _, h = scipy.signal.sosfreqz(sos, worN=[f], fs=22050)
            expected += 20 * np.log10(np.abs(h[0]))
        assert tone_gain_db(x, y, f, sr=22050) == pytest.approx(expected, abs=0.3)
    assert all(-12 <= g <= 12 for g in params["gains_db"])


def test_seven_band_eq_stays_finite_below_the_top_band_nyquist():
    x = tones([220.0, 1000.0], sr=8000)
    op = W.SevenBandEQ(8000)
    for s in range(20):
        params = op.draw(np.random.default_rng(s), x.size)
        assert max(params["centers_hz"]) <= 0.45 * 8000
        assert np.isfinite(op.apply(x, **params)).all()


@pytest.mark.parametrize("f_decay", [-2.0, 0.0, 1.0, 2.0])
def test_colored_noise_snr_and_spectral_slope(f_decay):
    x = tones([440.0], seconds=2.0)
    op = wave(("colored_noise", {"min_snr_db": 10.0, "max_snr_db": 10.0,
                                 "min_f_decay": f_decay, "max_f_decay": f_decay}))
    noise = op(x, np.random.default_rng(0)) - x
    rms = lambda a: np.sqrt(np.mean(np.square(a, dtype=np.float64)))  # noqa: E731
    assert 20 * np.log10(rms(x) / rms(noise)) == pytest.approx(10.0, abs=0.05)
    f, psd = scipy.signal.welch(noise, fs=SR, nperseg=4096)
    band = (f > 100) & (f < 6000)
    slope = np.polyfit(np.log(f[band]), np.log(psd[band]), 1)[0]
    assert slope == pytest.approx(-f_decay, abs=0.15)


def test_gaussian_snr_noise_level():
    x = tones([440.0, 880.0], seconds=2.0)
    op = wave(("gaussian_snr", {"min_snr_db": 20.0, "max_snr_db": 20.0}))
    noise = op(x, np.random.default_rng(0)) - x
    assert np.std(noise) == pytest.approx(np.sqrt(np.mean(x.astype(np.float64) ** 2)) / 10, rel=0.02)


def test_delay_echo_at_the_right_lag():
    sr = 8000
    x = np.random.default_rng(0).standard_normal(4 * sr).astype(np.float32)
    op = wave(("delay", {"min_delay_ms": 100.0, "max_delay_ms": 100.0, "volume": 0.5,
                         "repeats": 2, "attenuation": 0.5}), sample_rate=sr)
    y = op(x, np.random.default_rng(0))
    d = 800
    expected = 0.5 * x
    expected[d:] += 0.5 * x[:-d]
    expected[2 * d:] += 0.25 * x[:-2 * d]
    np.testing.assert_allclose(y, expected, atol=1e-6)
    ac = scipy.signal.correlate(y, y, mode="full", method="fft")[y.size - 1:]
    ac /= ac[0]
    assert int(np.argmax(ac[1:sr])) + 1 == d
    # white input: R(d)/R(0) = (v w + w^2 a) / (v^2 + w^2 + w^2 a^2), R(2d)/R(0) = v w a / (...)
    r0 = 0.25 + 0.25 + 0.0625
    assert ac[d] == pytest.approx((0.25 + 0.125) / r0, abs=0.02)
    assert ac[2 * d] == pytest.approx(0.125 / r0, abs=0.02)


# ------------------------------------------------------------------------------------------------
# waveform: chain behaviour


CHEAP = ("gaussian_noise", "gain", "polarity_inversion", "colored_noise", "gaussian_snr", "filter_one_of",
         "band_pass", "band_stop", "high_pass", "low_pass", "seven_band_eq", "delay", "time_mask")


def test_p_zero_is_identity_and_p_one_always_applies():
    x = tones([330.0])
    off = augment.build_waveform({n: {"p": 0.0} for n in augment.WAVEFORM_NAMES}, SR)
    assert len(off) == 0
    for s in range(5):
        y = off(x, np.random.default_rng(s))
        np.testing.assert_array_equal(y, x)
        assert y is not x
    on = wave(("gain", {"min_gain_db": -6.0, "max_gain_db": -6.0}))
    for s in range(20):
        np.testing.assert_allclose(on(x, np.random.default_rng(s)), x * 10 ** (-6 / 20), rtol=1e-6)


def test_probability_half_applies_about_half_the_time():
    x = tones([330.0])
    op = augment.build_waveform({"polarity_inversion": {"p": 0.5}}, SR)
    rng = np.random.default_rng(0)
    flipped = sum(bool(np.array_equal(op(x, rng), -x)) for _ in range(400))
    assert 160 < flipped < 240  # Binomial(400, 0.5): +-4 sigma


def test_chain_is_deterministic_given_the_generator_and_picklable():
    x = harmonic(210.0, seconds=0.5) + 0.01 * np.random.default_rng(0).standard_normal(SR // 2).astype(np.float32)
    cfg = {n: {"p": 0.7} for n in (*CHEAP, "pitch_shift_praat", "pitch_shift")}
    op = augment.build_waveform(cfg, SR)
    clone = pickle.loads(pickle.dumps(op))
    before = x.copy()
    a, b = op(x, np.random.default_rng(11)), clone(x, np.random.default_rng(11))
    c = op(x, np.random.default_rng(12))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(x, before)  # input untouched
    assert a.shape == x.shape and a.dtype == np.float32


def test_each_augmentation_keeps_length_and_dtype():
    x = harmonic(250.0, seconds=0.37).astype(np.float64)  # odd length, float64 input
    for name in augment.WAVEFORM_NAMES:
        y = wave((name, {}))(x, np.random.default_rng(0))
        assert y.shape == x.shape and y.dtype == np.float32, name
        assert np.all(np.isfinite(y)), name


def test_waveform_rejects_non_mono():
    op = wave(("gain", {}))
    with pytest.raises(ValueError, match="mono"):
        op(np.zeros((2, 100), np.float32), np.random.default_rng(0))


def test_fixed_order_regardless_of_config_order():
    a = augment.build_waveform({"time_mask": {}, "gain": {}, "gaussian_noise": {}}, SR)
    assert a.names == ("gaussian_noise", "gain", "time_mask")
    assert augment.WAVEFORM_NAMES.index("pitch_shift_praat") < augment.WAVEFORM_NAMES.index("gain")


# ------------------------------------------------------------------------------------------------
# validation


def test_validate_accepts_params_yaml_section_and_builds_it():
    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    augment.validate(params["augment"])
    assert len(augment.build_waveform(params["augment"]["waveform"], 44100)) >= 1
    augment.build_spectrogram(params["augment"].get("spectrogram"))


@pytest.mark.parametrize("cfg,fragments", [
    ({"wavefrom": {}}, ["augment key", "'wavefrom'",
                        "crop_seconds, ramp_augmentations, ramp_epochs, spectrogram, views, waveform"]),
    ({"waveform": {"noise": {}}}, ["'noise'", *augment.WAVEFORM_NAMES]),
    ({"spectrogram": {"gain": {}}}, ["'gain'", "mixup", "a waveform augmentation"]),
    ({"waveform": {"gain": {"min_gain": -3}}}, ["augment.waveform.gain", "'min_gain'", "max_gain_db, min_gain_db, p"]),
    ({"waveform": {"gain": {"p": 1.5}}}, ["augment.waveform.gain.p", "outside [0, 1]"]),
    ({"spectrogram": {"mixup": {"p": -0.1}}}, ["augment.spectrogram.mixup.p", "outside"]),
    ({"waveform": {"gain": {"min_gain_db": 0.0, "max_gain_db": -6.0}}}, ["min_gain_db", "max_gain_db", "inverted"]),
    ({"spectrogram": {"random_resize_crop": {"time_scale": [1.5, 0.6]}}}, ["time_scale", "inverted"]),
    ({"waveform": {"delay": {"repeats": 1.5}}}, ["augment.waveform.delay.repeats", "integer"]),
    ({"waveform": {"time_mask": {"max_band_part": 2.0}}}, ["augment.waveform.time_mask", "[0, 1]"]),
    ({"waveform": {"filter_one_of": {"choices": {"notch": {}}}}}, ["'notch'", "band_pass, band_stop"]),
    ({"waveform": {"filter_one_of": {"choices": {"low_pass": {"cutoff": 1}}}}}, ["choices.low_pass", "'cutoff'"]),
    ({"spectrogram": {"spec_augment": {"fill": "max"}}}, ["'max'", "mean, min, zero"]),
    ({"views": "pairs"}, ["augment.views", "clip, file"]),
    ({"crop_seconds": 0}, ["augment.crop_seconds"]),
    ({"waveform": ["gain"]}, ["augment.waveform", "mapping"]),
])
def test_validate_errors_name_the_culprit_and_the_choices(cfg, fragments):
    with pytest.raises(ConfigError) as err:
        augment.validate(cfg)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_names_and_defaults():
    assert augment.NAMES == augment.WAVEFORM_NAMES + augment.SPECTROGRAM_NAMES
    assert len(set(augment.NAMES)) == len(augment.NAMES)
    assert augment.defaults("pitch_shift_praat")["max_pitch_ratio"] == 1.3
    with pytest.raises(ConfigError, match="mixup"):
        augment.defaults("mixupp")


# ------------------------------------------------------------------------------------------------
# spectrogram


def spec(*names_params: tuple[str, dict]) -> S.SpectrogramAugment:
    return augment.build_spectrogram({n: {"p": 1.0, **kw} for n, kw in names_params}).train()


def logmel(b=4, f=32, t=40, seed=0):
    return torch.randn(b, 1, f, t, generator=torch.Generator().manual_seed(seed))


def test_eval_mode_is_identity_and_leaves_the_bank_alone():
    chain = augment.build_spectrogram({n: {} for n in augment.SPECTROGRAM_NAMES}).eval()
    x = logmel()
    assert chain(x) is x
    assert chain.ops[0].filled == 0


def test_mixup_ratio_zero_is_identity_and_bank_is_fifo():
    mix = spec(("mixup", {"ratio": 0.0, "bank_size": 5}))
    batches = [logmel(b=2, seed=s) for s in range(3)]
    for x in batches:
        torch.testing.assert_close(mix(x), x, rtol=0, atol=0)
    op = mix.ops[0]
    assert op.filled == 5 and op.bank.shape == (5, 1, 32, 40)
    last5 = torch.cat(batches)[-5:]
    stored = {tuple(v.flatten()[:3].tolist()) for v in op.bank}
    assert stored == {tuple(v.flatten()[:3].tolist()) for v in last5}


def test_mixup_is_log_mixup_exp_with_bank_item_and_bounded_lambda():
    mix = spec(("mixup", {"ratio": 0.4, "bank_size": 1}))
    z = logmel(b=1, seed=1)
    assert torch.equal(mix(z), z)  # empty bank: nothing to mix with
    x = logmel(b=6, seed=2).double()
    mix.ops[0].reset()
    mix(z.double())
    y = mix(x)
    # invert y = log((1-l) e^x + l e^z): l = (e^y - e^x) / (e^z - e^x), the same for every bin of an item
    lam = (y.exp() - x.exp()) / (z.double().exp() - x.exp())
    lam = lam.flatten(1)
    torch.testing.assert_close(lam, lam[:, :1].expand_as(lam), rtol=1e-6, atol=1e-6)
    assert torch.all((lam[:, 0] >= 0) & (lam[:, 0] <= 0.4))
    assert lam[:, 0].std() > 0  # drawn per item


def test_mixback_mixes_energy_normalised_partner():
    mb = spec(("mixback", {"max_ratio": 0.05}))
    x = logmel(b=2, seed=3).double()
    y = mb(x)
    for i, j in ((0, 1), (1, 0)):  # with two items the partner is the other one
        r = x[i].exp().sum() / x[j].exp().sum()
        lam = ((y[i].exp() - x[i].exp()) / (r * x[j].exp() - x[i].exp())).flatten()
        torch.testing.assert_close(lam, lam[:1].expand_as(lam), rtol=1e-6, atol=1e-6)
        assert 0 <= lam[0] <= 0.05


def test_random_resize_crop_matches_byola_crop_and_interpolate():
    rrc = S.RandomResizeCrop(interpolation="bilinear")
    x = logmel(b=5, f=16, t=24, seed=4)
    gen = torch.Generator().manual_seed(0)
    i, j, h, w = rrc.crop_params(x, gen)
    y = rrc.resize_crop(x, i, j, h, w)
    canvas_f, canvas_t = 16, 36
    assert torch.all((h >= int(0.6 * 16)) & (h <= canvas_f) & (w >= int(0.6 * 24)) & (w <= canvas_t))
    assert torch.all((i + h <= canvas_f) & (j + w <= canvas_t) & (i >= 0) & (j >= 0))
    for b in range(5):  # BYOL-A: zero canvas, input centred, crop, F.interpolate(align_corners=True)
        canvas = torch.zeros(1, 1, canvas_f, canvas_t)
        canvas[..., :, 6:30] = x[b:b + 1]
        crop = canvas[..., i[b]:i[b] + h[b], j[b]:j[b] + w[b]]
        ref = F.interpolate(crop, size=(16, 24), mode="bilinear", align_corners=True)
        torch.testing.assert_close(y[b:b + 1], ref, rtol=1e-4, atol=1e-5)


def test_random_resize_crop_identity_crop_and_shape():
    x = logmel(f=20, t=30, seed=5)
    ident = spec(("random_resize_crop", {"virtual_crop_scale": [1.0, 1.0], "freq_scale": [1.0, 1.0],
                                         "time_scale": [1.0, 1.0]}))
    torch.testing.assert_close(ident(x), x, rtol=1e-5, atol=1e-5)
    y = spec(("random_resize_crop", {}))(x)
    assert y.shape == x.shape and not torch.equal(y, x)


def test_spec_augment_mask_count_width_and_fill():
    sa = spec(("spec_augment", {"freq_width": 6, "n_freq_masks": 2, "time_width": 5, "n_time_masks": 2}))
    x = torch.rand(16, 1, 32, 40, generator=torch.Generator().manual_seed(6)) + 1.0
    y = sa(x)
    for b in range(16):
        low = x[b, 0].min()
        fill = y[b, 0] == low
        rows = fill.all(dim=1).numpy()
        cols = fill.all(dim=0).numpy()
        for masked, width in ((rows, 6), (cols, 5)):
            runs = np.diff(np.concatenate([[0], masked.astype(int), [0]]))
            assert (runs == 1).sum() <= 2  # at most two masks (overlaps merge)
            assert masked.sum() <= 2 * (width - 1)  # widths in 0..W-1
        untouched = ~(torch.from_numpy(rows)[:, None] | torch.from_numpy(cols)[None, :])
        assert torch.equal(y[b, 0][untouched], x[b, 0][untouched])
        assert torch.all(y[b, 0][~untouched] == low)


def test_linear_fader_adds_a_bounded_time_ramp():
    x = logmel(seed=7)
    d = (spec(("linear_fader", {"gain": 1.0}))(x) - x)[:, 0]  # (B, F, T)
    torch.testing.assert_close(d, d[:, :1].expand_as(d))  # same for every mel band
    ramp = d[:, 0]
    torch.testing.assert_close(ramp[:, 2:] - 2 * ramp[:, 1:-1] + ramp[:, :-2], torch.zeros_like(ramp[:, 2:]),
                               atol=1e-5, rtol=0)  # linear in time
    assert torch.all(ramp[:, [0, -1]].abs() <= 1.0)


def test_compression_scales_each_item_in_range():
    x = logmel(seed=8) - 3.0
    y = spec(("compression", {}))(x)
    c = (y / x).flatten(1)
    torch.testing.assert_close(c, c[:, :1].expand_as(c))
    assert torch.all((c[:, 0] >= 0.75) & (c[:, 0] <= 1.0))


def test_gaussian_noise_spec_std_bounded():
    x = logmel(b=8, f=64, t=100, seed=9)
    d = (spec(("gaussian_noise_spec", {"max_std": 0.01}))(x) - x).flatten(1)
    assert torch.all(d.std(dim=1) < 0.0105)


def test_spectrogram_p_zero_one_and_per_item_half():
    x = logmel(b=200, f=8, t=10, seed=10)
    assert augment.build_spectrogram({"compression": {"p": 0.0}}).names == ()
    off = augment.build_spectrogram({"compression": {"p": 0.0}}).train()
    assert torch.equal(off(x), x)
    on = spec(("compression", {"min_factor": 0.5, "max_factor": 0.5}))
    torch.testing.assert_close(on(x), 0.5 * x)
    half = augment.build_spectrogram({"compression": {"p": 0.5, "min_factor": 0.5, "max_factor": 0.5}}).train()
    changed = (half(x) != x).flatten(1).any(dim=1).sum().item()
    assert 70 < changed < 130  # Binomial(200, 0.5): +-4 sigma


def test_spectrogram_chain_deterministic_with_generator_and_shapes():
    cfg = {n: {"p": 0.8} for n in augment.SPECTROGRAM_NAMES}
    x = logmel(b=6, seed=11)
    outs = []
    for _ in range(2):
        chain = augment.build_spectrogram(cfg).train()
        gen = torch.Generator().manual_seed(5)
        chain(x, gen)  # fills the mixup bank
        outs.append(chain(x, gen))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert outs[0].shape == x.shape
    chain = augment.build_spectrogram(cfg).train()
    y3 = chain(x[:, 0])  # (B, F, T) accepted
    assert y3.shape == x[:, 0].shape
    yb = chain(x.to(torch.bfloat16))
    assert yb.dtype == torch.bfloat16 and yb.shape == x.shape
    with pytest.raises(ValueError, match="B, 1, F, T"):
        chain(torch.zeros(2, 3, 8, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_spectrogram_chain_runs_on_cuda():
    chain = augment.build_spectrogram({n: {"p": 0.8} for n in augment.SPECTROGRAM_NAMES}).train().cuda()
    x = logmel(b=8).cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    y = chain(x, gen)
    y = chain(x, gen)
    assert y.device.type == "cuda" and y.shape == x.shape and torch.isfinite(y).all()
