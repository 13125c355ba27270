"""Waveform augmentations, on audiomentations where it has them, seeded only by the caller's Generator.

Every augmentation is an object with ``draw(rng, n_samples) -> dict`` (its random parameters) and
``apply(x, **params) -> np.ndarray`` (deterministic); ``op(x, rng)`` is ``apply(x, **draw(rng, len(x)))``.
:class:`WaveformAugment` chains the enabled ones, each applied with its probability ``p``, in the fixed
order of :data:`WAVEFORM_NAMES`, which keeps both seed chains in their published order::

    gaussian_noise, pitch_shift_praat, gain, time_mask          (Torres et al. 2023: noise -> Praat -> gain -> mask)
    gain, polarity_inversion, colored_noise, filter_one_of,
    pitch_shift, delay                                          (SemiSupCon chain)
    gaussian_snr, seven_band_eq                                 (the GE2E singer encoder)

    full order: gaussian_noise, pitch_shift_praat, gain, polarity_inversion, colored_noise,
    gaussian_snr, filter_one_of, band_pass, band_stop, high_pass, low_pass, seven_band_eq,
    pitch_shift, delay, time_mask

Input and output: mono float32 ``(S,)`` at the builder's ``sample_rate``; the output has the same length
(pitch shifts crop/zero-pad), is a new array (the input is never modified) and is not clipped (gain can
exceed 0 dBFS; the log-mel front end does not care).

Conventions (where implementations disagree, the choice is named):

- ``gaussian_noise`` (library): audiomentations ``AddGaussianNoise`` — amplitude ``a ~
  U(min_amplitude, max_amplitude)``, ``y = x + a * N(0, 1)`` (noise std = a, in full-scale units).
- ``gain`` (library): audiomentations ``Gain`` — ``g ~ U(min_gain_db, max_gain_db)``, ``y = x * 10**(g/20)``.
- ``time_mask`` (library): audiomentations ``TimeMask`` (the draw of Torres et al.'s 0.29 version): length
  ``t ~ U{int(S*min_band_part) .. int(S*max_band_part)}``, start ``t0 ~ U{0 .. S-t}``, zeroed; optional
  equal-gain fades of ``fade_seconds`` inside the masked run (0 = hard edges, as Torres et al. 2023).

The ops marked "(library)" draw their parameters from the caller's Generator and let audiomentations do the
DSP (:func:`singer_ssl.augment.library.library_apply`; noise from the library's global generators seeded from
the Generator); the others are hand-written for the reason their entry gives.
- ``pitch_shift_praat``: Torres et al. 2023 ``PitchShiftParselmouth`` (Praat "Change gender"): pitch ratio
  ``U(min_pitch_ratio, max_pitch_ratio)`` and pitch-range ratio ``U(min_range_ratio, max_range_ratio)``,
  each inverted with probability ``invert_prob`` (0.5 => [1/1.3, 1.3]); formant ratio 1, duration 1;
  median pitch from "To Pitch" (time step 0.8/floor, floor 75 Hz, ceiling 600 Hz) times the ratio; when the
  resulting pitch minimum would be negative or no voiced frame exists, median and range are left unchanged
  (seed rule). Praat's own random generator (used by the overlap-add resynthesis) is seeded from ``rng``
  for the call, then re-randomised. A Praat failure (e.g. a clip shorter than the pitch analysis window)
  returns the input.
- ``polarity_inversion``: ``y = -x``.
- ``colored_noise``: torch-audiomentations ``AddColoredNoise`` as documented: SNR ``U(min_snr_db,
  max_snr_db)`` relative to the input RMS, power spectral density ``~ f**(-f_decay)`` with ``f_decay ~
  U(min_f_decay, max_f_decay)`` (0 white, 1 pink, 2 brown, -1 blue, -2 violet), no DC. (Their code shapes
  the amplitude with ``1/linspace(1, sqrt(sr/2))**f_decay`` on a 1 s noise tiled periodically; we shape
  the full-length noise by the documented law.)
- ``gaussian_snr`` (library): audiomentations ``AddGaussianSNR`` (the GE2E singer encoder): noise std =
  RMS(x) / 10**(snr/20).
- Filters (``band_pass``, ``band_stop``, ``high_pass``, ``low_pass``, ``filter_one_of``): zero-phase
  Butterworth magnitude responses of order ``order`` applied in the frequency domain (zero-padded FFT,
  so no circular wrap): low/high-pass ``|H|^2 = 1/(1+(f/fc)^(±2n))`` (-3 dB at fc, 6n dB/octave);
  band-pass ``|H|^2 = 1/(1+((f^2-f0^2)/(f B))^(2n))`` with edges ``center ± bandwidth/2``,
  ``bandwidth = center * bandwidth_fraction`` (torch-audiomentations parametrisation), ``B`` the edge
  distance and ``f0`` their geometric mean (-3 dB exactly at both edges); band-stop
  ``|H|^2 = 1 - |H_bp|^2``. SemiSupCon ran the four as torch-audiomentations ``OneOf`` (uniform choice,
  then p 0.3): ``filter_one_of`` does that, its ``choices`` mapping each filter name to its parameters.
- ``seven_band_eq``: audiomentations ``SevenBandParametricEQ`` (the GE2E singer encoder): low shelf, five peaking
  filters, high shelf (RBJ Audio-EQ-Cookbook biquads, centres uniform on the mel scale in the library's
  seven ranges, gain ``U(min_gain_db, max_gain_db)`` per band, Q ``U(0.5, 5)`` peaks / ``U(0.1, 0.999)``
  shelves) — the biquads' magnitude responses applied zero-phase (the library filters causally).
- ``pitch_shift``: librosa-style phase vocoder (n_fft 2048, hop 512, Hann) stretching by ``2**(n/12)``,
  then soxr resampling back, ``n ~ U(min_semitones, max_semitones)`` (SemiSupCon: ±4); duration kept.
- ``delay``: SemiSupCon's intent (SemiSupCon ``Delay``): delay ``d ~ U{min_delay_ms .. max_delay_ms}`` in
  samples, ``y[n] = volume * x[n] + (1 - volume) * sum_{k=1..repeats} attenuation**(k-1) * x[n - k d]``.
  (SemiSupCon's loop adds the same single-lag copy ``repeats`` times and jitters volume ±0.2, repeats ±1,
  attenuation ±0.2; we implement the documented multi-tap echo without the jitter.)

Cost per 4 s item at 44.1 kHz (176,400 samples; CPU time of one process on the 2-core dev laptop,
p = 1, mean of 20 calls of ``augment(x, rng)`` on a sung-vowel-like harmonic tone):

==================== ======= ==========================================================
augmentation           ms     note
==================== ======= ==========================================================
gaussian_noise          1.6   float32 normal draw
gain                    0.04
time_mask               0.04
polarity_inversion      0.03
gaussian_snr            2.0   normal draw + RMS
colored_noise           5.0   rfft/irfft of the noise
band_pass / band_stop   4.6   zero-padded rfft/irfft + Butterworth response
high_pass / low_pass    3.4
filter_one_of           4.2   one of the four above
seven_band_eq           6.7   7 biquad responses on the FFT grid
delay                   0.1
pitch_shift            22     phase vocoder + soxr resampling
pitch_shift_praat      46     Praat To Pitch + Change gender (PSOLA): the slow one
==================== ======= ==========================================================

The default chain of ``params.yaml`` (gaussian_noise, gain, time_mask, each p 0.5) costs 0.9 ms per item;
Torres et al.'s full chain (adding pitch_shift_praat at p 0.5) about 24 ms per item on average.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.fft as sfft

from singer_ssl.augment.library import library_apply
from singer_ssl.core.errors import ConfigError, choice_error

__all__ = ["WAVEFORM_NAMES", "WaveformAugment", "WaveformOp", "merge_params", "make_waveform_op"]


# ----------------------------------------------------------------------------------------------------
# parameter handling (shared with spectrogram.py)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def merge_params(
    where: str,
    defaults: Mapping[str, Any],
    raw: Mapping[str, Any] | None,
    ranges: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Merge user parameters ``raw`` over ``defaults``; ConfigError naming ``where`` on any problem.

    Types follow the default: a float default accepts any finite number, an int default an integer, a
    bool a bool, a str a str, a 2-tuple a pair of numbers ``[lo, hi]`` with ``lo <= hi``, a dict a
    mapping. ``ranges`` lists ``(min_key, max_key)`` pairs that must satisfy ``min <= max``.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of parameters, got {raw!r}")
    for key in raw:
        if key not in defaults:
            raise choice_error(f"{where} parameter", key, defaults)
    out = dict(defaults)
    for key, value in raw.items():
        default = defaults[key]
        bad = ConfigError(f"{where}.{key}: expected {_type_name(default)}, got {value!r}")
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise bad
        elif isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
        elif isinstance(default, float):
            if not _is_number(value) or not math.isfinite(value):
                raise bad
            value = float(value)
        elif isinstance(default, str):
            if not isinstance(value, str):
                raise bad
        elif isinstance(default, tuple):
            if (not isinstance(value, (list, tuple)) or len(value) != 2
                    or not all(_is_number(v) and math.isfinite(v) for v in value)):
                raise bad
            value = (float(value[0]), float(value[1]))
            if value[0] > value[1]:
                raise ConfigError(f"{where}.{key}: inverted range {list(value)} (need lo <= hi)")
        elif isinstance(default, dict):
            if not isinstance(value, Mapping):
                raise bad
            value = dict(value)
        out[key] = value
    for lo, hi in ranges:
        if out[lo] > out[hi]:
            raise ConfigError(f"{where}: inverted range, {lo} ({out[lo]}) > {hi} ({out[hi]})")
    return out


def _type_name(default: object) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, tuple):
        return "a pair [lo, hi] of numbers"
    return "a mapping"


def _require(cond: bool, message: str) -> None:
    """Raise ValueError(message) unless ``cond``; the builder prefixes the augmentation's path."""
    if not cond:
        raise ValueError(message)


# ----------------------------------------------------------------------------------------------------
# base class and helpers


class WaveformOp:
    """One waveform augmentation; subclasses set ``name``, ``defaults``, ``ranges``, ``draw``, ``apply``."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    ranges: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, sample_rate: int, **params: Any) -> None:
        _require(isinstance(sample_rate, (int, np.integer)) and sample_rate > 0,
                 f"sample_rate must be a positive integer, got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        full = {**self.defaults, **params}
        for key, value in full.items():
            setattr(self, key, value)
        self.params = full
        self.check()

    def check(self) -> None:
        """Raise ValueError for parameter values outside their domain (ranges are checked before)."""

    def draw(self, rng: np.random.Generator, n_samples: int) -> dict[str, Any]:
        return {}

    def apply(self, x: np.ndarray, **params: Any) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.apply(x, **self.draw(rng, x.shape[0]))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def _fit_length(y: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``y`` at the end to ``n`` samples."""
    if y.shape[0] >= n:
        return y[:n]
    return np.concatenate([y, np.zeros(n - y.shape[0], dtype=y.dtype)])


@functools.lru_cache(maxsize=8)
def _log_bins(n_bins: int) -> np.ndarray:
    """float32 ``log(k)`` for FFT bins ``k = 0..n_bins-1`` (bin 0 set to log 1); read-only, cached."""
    out = np.log(np.maximum(np.arange(n_bins, dtype=np.float64), 1.0)).astype(np.float32)
    out.setflags(write=False)
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _apply_magnitude(x: np.ndarray, sample_rate: int, magnitude) -> np.ndarray:
    """Zero-phase filter: multiply the zero-padded spectrum of ``x`` by ``magnitude(freqs_hz)``.

    The padding (0.1 s, at most the signal length) leaves room for the two-sided impulse response, so
    the result is a linear (not circular) convolution for responses shorter than that.
    """
    n = x.shape[0]
    if n == 0:
        return x.copy()
    pad = min(n, sample_rate // 10)
    n_fft = sfft.next_fast_len(n + pad, real=True)
    spec = sfft.rfft(x, n=n_fft)
    freqs = np.arange(spec.shape[0], dtype=np.float64) * (sample_rate / n_fft)
    spec *= magnitude(freqs).astype(np.float32)
    return sfft.irfft(spec, n=n_fft)[:n].astype(np.float32, copy=False)


def _butter_lowpass_sq(freqs: np.ndarray, cutoff: float, order: int) -> np.ndarray:
    """Butterworth low-pass power response ``1 / (1 + (f/fc)^(2n))``."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + (freqs / cutoff) ** (2 * order))


def _butter_bandpass_sq(freqs: np.ndarray, low: float, high: float, order: int) -> np.ndarray:
    """Butterworth band-pass power response (LP->BP transform), -3 dB at ``low`` and ``high``."""
    f0_sq = low * high
    bw = high - low
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        u = ((freqs**2 - f0_sq) / (freqs * bw)) ** (2 * order)
        out = 1.0 / (1.0 + u)
    return np.nan_to_num(out, nan=0.0)


# ----------------------------------------------------------------------------------------------------
# Torres et al. 2023


class GaussianNoise(WaveformOp):
    name = "gaussian_noise"
    defaults = {"min_amplitude": 0.001, "max_amplitude": 0.05}  # Torres et al. 2023
    ranges = (("min_amplitude", "max_amplitude"),)

    def check(self) -> None:
        _require(self.min_amplitude >= 0, f"min_amplitude must be >= 0, got {self.min_amplitude}")

    def draw(self, rng, n_samples):
        return {"amplitude": float(rng.uniform(self.min_amplitude, self.max_amplitude)),
                "seed": int(rng.integers(2**31 - 1))}

    def apply(self, x, amplitude, seed):
        return library_apply("AddGaussianNoise", x, self.sample_rate, {"amplitude": amplitude}, seed)


class Gain(WaveformOp):
    name = "gain"
    defaults = {"min_gain_db": -6.0, "max_gain_db": 0.0}
    ranges = (("min_gain_db", "max_gain_db"),)

    def draw(self, rng, n_samples):
        return {"gain_db": float(rng.uniform(self.min_gain_db, self.max_gain_db))}

    def apply(self, x, gain_db):
        return library_apply("Gain", x, self.sample_rate, {"amplitude_ratio": float(10.0 ** (gain_db / 20.0))})


class TimeMask(WaveformOp):
    name = "time_mask"
    defaults = {"min_band_part": 0.0, "max_band_part": 0.125, "fade_seconds": 0.0}
    ranges = (("min_band_part", "max_band_part"),)

    def check(self) -> None:
        _require(0.0 <= self.min_band_part <= 1.0 and 0.0 <= self.max_band_part <= 1.0,
                 "min_band_part and max_band_part must lie in [0, 1]")
        _require(self.fade_seconds >= 0.0, f"fade_seconds must be >= 0, got {self.fade_seconds}")

    def draw(self, rng, n_samples):
        length = int(rng.integers(int(n_samples * self.min_band_part), int(n_samples * self.max_band_part) + 1))
        start = int(rng.integers(0, n_samples - length + 1))
        return {"start": start, "length": length}

    def apply(self, x, start, length):
        return library_apply("TimeMask", x, self.sample_rate, {"t": length, "t0": start},
                             min_band_part=self.min_band_part, max_band_part=self.max_band_part,
                             fade_duration=float(self.fade_seconds))


class PitchShiftPraat(WaveformOp):
    name = "pitch_shift_praat"
    defaults = {
        "min_pitch_ratio": 1.0, "max_pitch_ratio": 1.3,
        "min_range_ratio": 1.0, "max_range_ratio": 1.5,
        "invert_prob": 0.5, "formant_ratio": 1.0,
        "pitch_floor": 75.0, "pitch_ceiling": 600.0,
    }
    ranges = (("min_pitch_ratio", "max_pitch_ratio"), ("min_range_ratio", "max_range_ratio"),
              ("pitch_floor", "pitch_ceiling"))

    def check(self) -> None:
        _require(self.min_pitch_ratio > 0 and self.min_range_ratio > 0, "pitch and range ratios must be > 0")
        _require(0.0 <= self.invert_prob <= 1.0, f"invert_prob must lie in [0, 1], got {self.invert_prob}")
        _require(self.formant_ratio > 0, f"formant_ratio must be > 0, got {self.formant_ratio}")
        _require(self.pitch_floor > 0, f"pitch_floor must be > 0, got {self.pitch_floor}")

    def draw(self, rng, n_samples):
        pitch_ratio = float(rng.uniform(self.min_pitch_ratio, self.max_pitch_ratio))
        if rng.random() < self.invert_prob:
            pitch_ratio = 1.0 / pitch_ratio
        range_ratio = float(rng.uniform(self.min_range_ratio, self.max_range_ratio))
        if rng.random() < self.invert_prob:
            range_ratio = 1.0 / range_ratio
        # Praat's overlap-add resynthesis draws random numbers (unvoiced stretches): seed it from rng
        return {"pitch_ratio": pitch_ratio, "range_ratio": range_ratio,
                "praat_seed": int(rng.integers(1, 2**31 - 1))}

    def apply(self, x, pitch_ratio, range_ratio, praat_seed=None):
        import parselmouth
        from parselmouth.praat import call

        from singer_ssl.core.praat import praat_seed as seeded_praat

        n = x.shape[0]
        with warnings.catch_warnings(), seeded_praat(praat_seed):  # Praat's global RNG left as found after
            warnings.simplefilter("ignore")  # "no voiced segments", RandomPool notices
            try:
                sound = parselmouth.Sound(x.astype(np.float64), sampling_frequency=float(self.sample_rate))
                if pitch_ratio == 1.0:
                    out = call(sound, "Change gender", self.pitch_floor, self.pitch_ceiling,
                               self.formant_ratio, 0.0, range_ratio, 1.0)
                else:
                    pitch = call(sound, "To Pitch", 0.8 / self.pitch_floor, self.pitch_floor, self.pitch_ceiling)
                    median = call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz")
                    minimum = call(pitch, "Get minimum", 0.0, 0.0, "Hertz", "Parabolic")
                    new_median = median * pitch_ratio
                    lowest = new_median + (minimum * pitch_ratio - new_median) * range_ratio
                    if math.isnan(new_median) or lowest < 0:
                        new_median, range_ratio = 0.0, 1.0  # seed rule: leave median and range alone
                    out = call((sound, pitch), "Change gender", self.formant_ratio, new_median, range_ratio, 1.0)
            except parselmouth.PraatError:
                return x.copy()
        y = np.asarray(out.values[0], dtype=np.float32)
        return _fit_length(y, n)


# ----------------------------------------------------------------------------------------------------
# SemiSupCon / the GE2E singer encoder


class PolarityInversion(WaveformOp):
    name = "polarity_inversion"

    def apply(self, x):
        return -x


class _SnrNoise(WaveformOp):
    defaults = {"min_snr_db": 3.0, "max_snr_db": 30.0}
    ranges = (("min_snr_db", "max_snr_db"),)

    def _noise_std(self, x: np.ndarray, snr_db: float) -> float:
        return _rms(x) / 10.0 ** (snr_db / 20.0)


class ColoredNoise(_SnrNoise):
    name = "colored_noise"
    defaults = {"min_snr_db": 3.0, "max_snr_db": 30.0, "min_f_decay": -2.0, "max_f_decay": 2.0}
    ranges = (("min_snr_db", "max_snr_db"), ("min_f_decay", "max_f_decay"))

    def draw(self, rng, n_samples):
        n_fft = sfft.next_fast_len(max(n_samples, 2), real=True)
        return {"snr_db": float(rng.uniform(self.min_snr_db, self.max_snr_db)),
                "f_decay": float(rng.uniform(self.min_f_decay, self.max_f_decay)),
                "white": rng.standard_normal(n_fft, dtype=np.float32)}

    def apply(self, x, snr_db, f_decay, white):
        n = x.shape[0]
        spec = sfft.rfft(white)
        shape = np.exp(np.float32(-f_decay / 2.0) * _log_bins(spec.shape[0]))  # amplitude ~ f^(-f_decay/2)
        shape[0] = 0.0  # no DC                                                  <=> PSD ~ f^(-f_decay)
        spec *= shape
        noise = sfft.irfft(spec, n=white.shape[0])[:n]
        noise_rms = _rms(noise)
        if noise_rms == 0.0:
            return x.copy()
        scale = self._noise_std(x, snr_db) / noise_rms
        return (x + np.float32(scale) * noise).astype(np.float32, copy=False)


class GaussianSNR(_SnrNoise):
    name = "gaussian_snr"
    defaults = {"min_snr_db": 20.0, "max_snr_db": 50.0}

    def draw(self, rng, n_samples):
        return {"snr_db": float(rng.uniform(self.min_snr_db, self.max_snr_db)), "seed": int(rng.integers(2**31 - 1))}

    def apply(self, x, snr_db, seed):
        return library_apply("AddGaussianSNR", x, self.sample_rate, {"noise_std": self._noise_std(x, snr_db)}, seed)


class _Filter(WaveformOp):
    def check(self) -> None:
        _require(self.order >= 1, f"order must be >= 1, got {self.order}")


class _BandFilter(_Filter):
    defaults = {"min_center_hz": 200.0, "max_center_hz": 4000.0,
                "min_bandwidth_fraction": 0.5, "max_bandwidth_fraction": 1.99, "order": 4}
    ranges = (("min_center_hz", "max_center_hz"), ("min_bandwidth_fraction", "max_bandwidth_fraction"))

    def check(self) -> None:
        super().check()
        _require(self.min_center_hz > 0, f"min_center_hz must be > 0, got {self.min_center_hz}")
        _require(0 < self.min_bandwidth_fraction and self.max_bandwidth_fraction < 2,
                 "bandwidth fractions must lie in (0, 2) so that the lower edge stays above 0 Hz")

    def draw(self, rng, n_samples):
        return {"center_hz": float(rng.uniform(self.min_center_hz, self.max_center_hz)),
                "bandwidth_fraction": float(rng.uniform(self.min_bandwidth_fraction,
                                                        self.max_bandwidth_fraction))}

    def _band_sq(self, freqs, center_hz, bandwidth_fraction):
        half = center_hz * bandwidth_fraction / 2.0
        return _butter_bandpass_sq(freqs, center_hz - half, center_hz + half, self.order)


class BandPass(_BandFilter):
    name = "band_pass"

    def apply(self, x, center_hz, bandwidth_fraction):
        return _apply_magnitude(x, self.sample_rate,
                                lambda f: np.sqrt(self._band_sq(f, center_hz, bandwidth_fraction)))


class BandStop(_BandFilter):
    name = "band_stop"

    def apply(self, x, center_hz, bandwidth_fraction):
        return _apply_magnitude(
            x, self.sample_rate, lambda f: np.sqrt(1.0 - self._band_sq(f, center_hz, bandwidth_fraction)))


class _CutoffFilter(_Filter):
    def check(self) -> None:
        super().check()
        _require(self.min_cutoff_hz > 0, f"min_cutoff_hz must be > 0, got {self.min_cutoff_hz}")

    def draw(self, rng, n_samples):
        return {"cutoff_hz": float(rng.uniform(self.min_cutoff_hz, self.max_cutoff_hz))}


class HighPass(_CutoffFilter):
    name = "high_pass"
    defaults = {"min_cutoff_hz": 200.0, "max_cutoff_hz": 2400.0, "order": 4}
    ranges = (("min_cutoff_hz", "max_cutoff_hz"),)

    def apply(self, x, cutoff_hz):
        return _apply_magnitude(
            x, self.sample_rate, lambda f: np.sqrt(1.0 - _butter_lowpass_sq(f, cutoff_hz, self.order)))


class LowPass(_CutoffFilter):
    name = "low_pass"
    defaults = {"min_cutoff_hz": 150.0, "max_cutoff_hz": 7500.0, "order": 4}
    ranges = (("min_cutoff_hz", "max_cutoff_hz"),)

    def apply(self, x, cutoff_hz):
        return _apply_magnitude(
            x, self.sample_rate, lambda f: np.sqrt(_butter_lowpass_sq(f, cutoff_hz, self.order)))


FILTERS: dict[str, type[WaveformOp]] = {c.name: c for c in (BandPass, BandStop, HighPass, LowPass)}


class FilterOneOf(WaveformOp):
    """Pick one filter uniformly from ``choices`` ({filter name: its parameters}) and apply it."""

    name = "filter_one_of"
    defaults = {"choices": {"band_pass": {}, "band_stop": {}, "high_pass": {}, "low_pass": {}}}

    def check(self) -> None:
        _require(len(self.choices) > 0, "choices must name at least one filter")
        self.filters = []
        for fname, fparams in self.choices.items():
            if fname not in FILTERS:
                raise choice_error("filter in choices", fname, FILTERS)
            cls = FILTERS[fname]
            merged = merge_params(f"choices.{fname}", cls.defaults, fparams, cls.ranges)
            try:
                self.filters.append(cls(self.sample_rate, **merged))
            except ConfigError:
                raise
            except ValueError as err:
                raise ValueError(f"choices.{fname}: {err}") from None

    def draw(self, rng, n_samples):
        index = int(rng.integers(len(self.filters)))
        return {"index": index, "params": self.filters[index].draw(rng, n_samples)}

    def apply(self, x, index, params):
        return self.filters[index].apply(x, **params)


def _mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)


def rbj_biquad(kind: str, center_hz: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ Audio-EQ-Cookbook biquad ``[b0, b1, b2, a0, a1, a2]`` for kind peaking|low_shelf|high_shelf."""
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * center_hz / sample_rate
    cw, alpha = np.cos(w0), np.sin(w0) / (2.0 * q)
    if kind == "peaking":
        return np.array([1 + alpha * a, -2 * cw, 1 - alpha * a, 1 + alpha / a, -2 * cw, 1 - alpha / a])
    s = 2.0 * np.sqrt(a) * alpha
    if kind == "low_shelf":
        return np.array([a * ((a + 1) - (a - 1) * cw + s), 2 * a * ((a - 1) - (a + 1) * cw),
                         a * ((a + 1) - (a - 1) * cw - s), (a + 1) + (a - 1) * cw + s,
                         -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - s])
    if kind == "high_shelf":
        return np.array([a * ((a + 1) + (a - 1) * cw + s), -2 * a * ((a - 1) + (a + 1) * cw),
                         a * ((a + 1) + (a - 1) * cw - s), (a + 1) - (a - 1) * cw + s,
                         2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - s])
    raise ValueError(f"unknown biquad kind {kind!r}")


class SevenBandEQ(WaveformOp):
    name = "seven_band_eq"
    defaults = {"min_gain_db": -12.0, "max_gain_db": 12.0}
    ranges = (("min_gain_db", "max_gain_db"),)
    # (kind, centre range in Hz, Q range): audiomentations SevenBandParametricEQ
    BANDS: ClassVar[tuple[tuple[str, tuple[float, float], tuple[float, float]], ...]] = (
        ("low_shelf", (42.0, 95.0), (0.1, 0.999)),
        ("peaking", (91.0, 204.0), (0.5, 5.0)),
        ("peaking", (196.0, 441.0), (0.5, 5.0)),
        ("peaking", (421.0, 948.0), (0.5, 5.0)),
        ("peaking", (909.0, 2045.0), (0.5, 5.0)),
        ("peaking", (1957.0, 4404.0), (0.5, 5.0)),
        ("high_shelf", (4216.0, 9486.0), (0.1, 0.999)),
    )

    def draw(self, rng, n_samples):
        lo = np.array([b[1][0] for b in self.BANDS])
        hi = np.array([b[1][1] for b in self.BANDS])
        centers = _mel_to_hz(rng.uniform(_mel(lo), _mel(hi)))
        gains = rng.uniform(self.min_gain_db, self.max_gain_db, size=len(self.BANDS))
        qs = rng.uniform([b[2][0] for b in self.BANDS], [b[2][1] for b in self.BANDS])
        return {"centers_hz": centers.tolist(), "gains_db": gains.tolist(), "qs": qs.tolist()}

    def magnitude(self, freqs: np.ndarray, centers_hz, gains_db, qs) -> np.ndarray:
        """Product of the seven biquads' magnitude responses at ``freqs`` (Hz)."""
        coefs = np.stack([rbj_biquad(b[0], c, g, q, self.sample_rate)
                          for b, c, g, q in zip(self.BANDS, centers_hz, gains_db, qs)])  # (7, 6)
        # |c0 + c1 z^-1 + c2 z^-2|^2 on z = e^{jw}: c0^2+c1^2+c2^2 + 2(c0 c1 + c1 c2) cos w + 2 c0 c2 cos 2w
        w = 2.0 * np.pi * freqs / self.sample_rate
        cos1, cos2 = np.cos(w), np.cos(2.0 * w)

        def power(c0, c1, c2):
            const = c0 * c0 + c1 * c1 + c2 * c2
            return const + 2.0 * (c0 * c1 + c1 * c2) * cos1 + 2.0 * (c0 * c2) * cos2

        gain_sq = np.ones_like(freqs)
        for b0, b1, b2, a0, a1, a2 in coefs:
            gain_sq *= power(b0, b1, b2) / power(a0, a1, a2)
        return np.sqrt(gain_sq)

    def apply(self, x, centers_hz, gains_db, qs):
        return _apply_magnitude(x, self.sample_rate, lambda f: self.magnitude(f, centers_hz, gains_db, qs))


def _stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """Centred (zero-padded) STFT, frames x bins."""
    xp = np.pad(x, n_fft // 2)
    n_frames = 1 + (xp.shape[0] - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(xp, n_fft)[::hop][:n_frames]
    return sfft.rfft(frames * window, axis=1)


def _istft(spec: np.ndarray, n_fft: int, hop: int, window: np.ndarray) -> np.ndarray:
    """Weighted overlap-add inverse of :func:`_stft` (requires n_fft % hop == 0); centre padding removed."""
    frames = sfft.irfft(spec, n=n_fft, axis=1) * window
    n_frames, ratio = frames.shape[0], n_fft // hop
    out = np.zeros((n_frames + ratio - 1, hop), dtype=frames.dtype)
    norm = np.zeros_like(out)
    blocks = frames.reshape(n_frames, ratio, hop)
    wsq = (window**2).reshape(ratio, hop)
    for q in range(ratio):
        out[q:q + n_frames] += blocks[:, q]
        norm[q:q + n_frames] += wsq[q]
    out, norm = out.reshape(-1), norm.reshape(-1)
    out = np.where(norm > 1e-8, out / np.maximum(norm, 1e-8), 0.0)
    return out[n_fft // 2:]


def phase_vocoder_stretch(x: np.ndarray, factor: float, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """Time-stretch ``x`` to ``round(len(x) * factor)`` samples keeping pitch (librosa's phase vocoder)."""
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    spec = _stft(x.astype(np.float32, copy=False), n_fft, hop, window)
    n_frames, n_bins = spec.shape
    steps = np.arange(0.0, n_frames, 1.0 / factor)
    magnitude = np.concatenate([np.abs(spec), np.zeros((2, n_bins), dtype=np.float32)])
    phase = np.concatenate([np.angle(spec), np.zeros((2, n_bins), dtype=np.float32)])
    left = steps.astype(np.int64)
    alpha = (steps - left).astype(np.float32)[:, None]
    mag = magnitude[left]
    mag += alpha * (magnitude[left + 1] - mag)
    advance = (2.0 * np.pi * hop / n_fft * np.arange(n_bins)).astype(np.float32)
    dphase = phase[left + 1] - phase[left] - advance
    dphase += advance
    two_pi = np.float32(2.0 * np.pi)
    dphase -= two_pi * np.round(dphase / two_pi)  # increments wrapped to [-pi, pi]: keeps acc small
    acc = np.empty_like(mag)  # running phase: acc[t] = phase[0] + sum_{s<t} dphase[s]
    acc[0] = phase[0]
    for t in range(1, acc.shape[0]):  # per frame (~100/s), faster than np.cumsum(axis=0) on float32
        np.add(acc[t - 1], dphase[t - 1], out=acc[t])
    np.remainder(acc, two_pi, out=acc)  # cheap cos/sin below
    stretched = np.empty(mag.shape, dtype=np.complex64)
    stretched.real = mag * np.cos(acc)
    stretched.imag = mag * np.sin(acc)
    y = _istft(stretched, n_fft, hop, window)
    return _fit_length(y.astype(np.float32, copy=False), int(round(x.shape[0] * factor)))


class PitchShift(WaveformOp):
    name = "pitch_shift"
    defaults = {"min_semitones": -4.0, "max_semitones": 4.0}
    ranges = (("min_semitones", "max_semitones"),)

    def draw(self, rng, n_samples):
        return {"semitones": float(rng.uniform(self.min_semitones, self.max_semitones))}

    def apply(self, x, semitones):
        import soxr

        n = x.shape[0]
        if semitones == 0.0 or n < 2048:
            return x.copy()
        ratio = 2.0 ** (semitones / 12.0)
        stretched = phase_vocoder_stretch(x, ratio)
        y = soxr.resample(stretched, self.sample_rate * ratio, self.sample_rate)
        return _fit_length(np.asarray(y, dtype=np.float32), n)


class Delay(WaveformOp):
    name = "delay"
    defaults = {"min_delay_ms": 100.0, "max_delay_ms": 500.0, "volume": 0.5, "repeats": 2, "attenuation": 0.5}
    ranges = (("min_delay_ms", "max_delay_ms"),)

    def check(self) -> None:
        _require(self.min_delay_ms > 0, f"min_delay_ms must be > 0, got {self.min_delay_ms}")
        _require(0.0 <= self.volume <= 1.0, f"volume must lie in [0, 1], got {self.volume}")
        _require(0.0 <= self.attenuation <= 1.0, f"attenuation must lie in [0, 1], got {self.attenuation}")
        _require(self.repeats >= 1, f"repeats must be >= 1, got {self.repeats}")

    def draw(self, rng, n_samples):
        lo = max(1, int(self.min_delay_ms * self.sample_rate / 1000))
        hi = max(lo, int(self.max_delay_ms * self.sample_rate / 1000))
        return {"delay_samples": int(rng.integers(lo, hi + 1))}

    def apply(self, x, delay_samples):
        y = x * np.float32(self.volume)
        wet = np.float32(1.0 - self.volume)
        for k in range(1, self.repeats + 1):
            lag = k * delay_samples
            if lag >= x.shape[0]:
                break
            y[lag:] += (wet * np.float32(self.attenuation ** (k - 1))) * x[:-lag]
        return y


# ----------------------------------------------------------------------------------------------------
# registry and chain

from singer_ssl.augment.channel import CHANNEL_OPS  # noqa: E402  (channel.py builds on the classes above)

_ORDER: tuple[type[WaveformOp], ...] = (
    GaussianNoise, PitchShiftPraat, Gain, PolarityInversion, ColoredNoise, GaussianSNR, FilterOneOf,
    BandPass, BandStop, HighPass, LowPass, SevenBandEQ, PitchShift, Delay, *CHANNEL_OPS, TimeMask,
)
WAVEFORM_OPS: dict[str, type[WaveformOp]] = {cls.name: cls for cls in _ORDER}
WAVEFORM_NAMES: tuple[str, ...] = tuple(WAVEFORM_OPS)


def make_waveform_op(where: str, name: str, raw: Mapping[str, Any] | None,
                     sample_rate: int) -> tuple[WaveformOp, float]:
    """Build one augmentation from its params-file entry ``{p, ...}``; returns ``(op, p)``."""
    if name not in WAVEFORM_OPS:
        raise choice_error("waveform augmentation", name, WAVEFORM_NAMES)
    cls = WAVEFORM_OPS[name]
    params = merge_params(where, {"p": 1.0, **cls.defaults}, raw, cls.ranges)
    p = params.pop("p")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{where}.p = {p} is outside [0, 1]")
    try:
        op = cls(sample_rate, **params)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return op, p


class WaveformAugment:
    """Chain of waveform augmentations, each applied with its probability, in :data:`WAVEFORM_NAMES` order.

    ``augment(x, rng)``: ``x`` mono ``(S,)`` (any float dtype), ``rng`` a ``np.random.Generator`` — the only
    randomness used, so equal generator states give equal outputs (seed it per worker/item).
    Returns a new float32 array ``(S,)``. Picklable (holds only numbers), for DataLoader workers.
    """

    def __init__(self, steps: Sequence[tuple[WaveformOp, float]]) -> None:
        rank = {name: i for i, name in enumerate(WAVEFORM_NAMES)}
        self.steps = sorted(((op, float(p)) for op, p in steps if p > 0), key=lambda s: rank[s[0].name])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(op.name for op, _ in self.steps)

    def __call__(self, x: np.ndarray, rng: np.random.Generator, source: Any = None) -> np.ndarray:
        """``source``: the babble source (:data:`singer_ssl.augment.channel.BabbleSource`, other singers' crops)."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"waveform augmentation expects a mono (S,) array, got shape {x.shape}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        y = x.astype(np.float32, copy=True)
        for op, p in self.steps:
            if p >= 1.0 or rng.random() < p:
                y = op(y, rng, source) if getattr(op, "needs_source", False) else op(y, rng)
        return y

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        inner = ", ".join(f"{op!r} p={p}" for op, p in self.steps)
        return f"WaveformAugment([{inner}])"
