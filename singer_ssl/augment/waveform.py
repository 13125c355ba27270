"""Waveform augmentations, on audiomentations where it has them, seeded only by the caller's Generator.

Every augmentation is an object with ``draw(rng, n_samples) -> dict`` (its random parameters) and
``apply(x, **params) -> np.ndarray`` (deterministic); ``op(x, rng)`` is ``apply(x, **draw(rng, len(x)))``.
:class:`singer_ssl.augment.chain.WaveformAugment` chains the enabled ones, each applied with its probability
``p``, in the fixed order of :data:`WAVEFORM_NAMES`, which keeps both seed chains in their published order::

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

- ``pitch_shift_praat`` (hand-written: audiomentations has no Praat route; exactness to Torres et al.'s code
  is checked in tests/test_augment.py and tests/test_praat_seed.py): Torres et al. 2023
  ``PitchShiftParselmouth`` (Praat "Change gender"): pitch ratio ``U(min_pitch_ratio, max_pitch_ratio)`` and
  pitch-range ratio ``U(min_range_ratio, max_range_ratio)``, each inverted with probability ``invert_prob``
  (0.5 => [1/1.3, 1.3]); formant ratio 1, duration 1; median pitch from "To Pitch" (time step 0.8/floor, floor
  75 Hz, ceiling 600 Hz) times the ratio; when the resulting pitch minimum would be negative or no voiced
  frame exists, median and range are left unchanged (seed rule). Praat's own random generator (used by the
  overlap-add resynthesis) is seeded from ``rng`` for the call, then re-randomised. A Praat failure (e.g. a
  clip shorter than the pitch analysis window) returns the input.
- ``polarity_inversion`` (library): audiomentations ``PolarityInversion``, ``y = -x``.
- ``colored_noise`` (hand-written: SemiSupCon's torch-audiomentations law, which audiomentations'
  ``AddColorNoise`` parametrises differently, in dB/octave on a fixed-size noise tile; the PSD slope and SNR
  are checked in tests/test_augment.py): torch-audiomentations ``AddColoredNoise`` as documented: SNR
  ``U(min_snr_db, max_snr_db)`` relative to the input RMS, power spectral density ``~ f**(-f_decay)`` with
  ``f_decay ~ U(min_f_decay, max_f_decay)`` (0 white, 1 pink, 2 brown, -1 blue, -2 violet), no DC. (Their code
  shapes the amplitude with ``1/linspace(1, sqrt(sr/2))**f_decay`` on a 1 s noise tiled periodically; we shape
  the full-length noise by the documented law.)
- ``gaussian_snr`` (library): audiomentations ``AddGaussianSNR`` (the GE2E singer encoder): noise std =
  RMS(x) / 10**(snr/20).
- Filters (``band_pass``, ``band_stop``, ``high_pass``, ``low_pass``, ``filter_one_of``) (library):
  audiomentations ``BandPassFilter`` / ``BandStopFilter`` / ``HighPassFilter`` / ``LowPassFilter``, digital
  Butterworth (``scipy.signal.butter``, bilinear, -3 dB exactly at the cut-offs) of order ``order`` (rolloff
  ``6 * order`` dB/octave), run causally (``sosfilt``); band edges ``center ± bandwidth/2`` with
  ``bandwidth = center * bandwidth_fraction`` (torch-audiomentations parametrisation). SemiSupCon ran the
  four as torch-audiomentations ``OneOf`` (uniform choice, then p 0.3): ``filter_one_of`` does that, its
  ``choices`` mapping each filter name to its parameters.
- ``seven_band_eq`` (library): audiomentations ``SevenBandParametricEQ`` (the GE2E singer encoder): low shelf,
  five peaking filters, high shelf (the library's RBJ Audio-EQ-Cookbook biquads, run causally), centres
  uniform on the mel scale in the library's seven ranges, gain ``U(min_gain_db, max_gain_db)`` per band.
- ``pitch_shift`` (library): audiomentations ``PitchShift`` with librosa's phase vocoder (stretch by
  ``2**(n/12)``, soxr resampling back), ``n ~ U(min_semitones, max_semitones)`` (SemiSupCon: ±4); duration
  kept; a clip shorter than one 2048-sample frame comes back unchanged.
- ``delay`` (hand-written: audiomentations has no echo/delay transform): SemiSupCon's intent (SemiSupCon
  ``Delay``): delay ``d ~ U{min_delay_ms .. max_delay_ms}`` in samples, ``y[n] = volume * x[n] + (1 - volume)
  * sum_{k=1..repeats} attenuation**(k-1) * x[n - k d]``. (SemiSupCon's loop adds the same single-lag copy
  ``repeats`` times and jitters volume ±0.2, repeats ±1, attenuation ±0.2; we implement the documented
  multi-tap echo without the jitter.)

Cost per 2 s item at 44.1 kHz (88,200 samples; CPU time of one process on the shared 2-core dev machine
under load, p = 1, mean of 5-10 calls): gain, time_mask, polarity_inversion, delay < 0.1 ms; gaussian_noise
1.4, gaussian_snr ~2, colored_noise 2.2, filters 1.3, seven_band_eq 5, pitch_shift 18 (librosa; the former
hand-written vocoder 13), pitch_shift_praat ~23 (Praat To Pitch + Change gender). The recording-channel
ops: :mod:`singer_ssl.augment.channel`.
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

__all__ = ["WaveformOp", "merge_params"]


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
        return library_apply("PolarityInversion", x, self.sample_rate, {})


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
    """An audiomentations Butterworth filter (``sosfilt``, causal), order ``order`` (rolloff ``6 * order`` dB/oct)."""

    library_name: ClassVar[str] = ""

    def check(self) -> None:
        _require(self.order >= 1, f"order must be >= 1, got {self.order}")

    def _run(self, x: np.ndarray, parameters: dict[str, float], **bounds: float) -> np.ndarray:
        rolloff = 6 * int(self.order)
        return library_apply(self.library_name, x, self.sample_rate, {**parameters, "rolloff": rolloff},
                             min_rolloff=rolloff, max_rolloff=rolloff, zero_phase=False, **bounds)


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

    def apply(self, x, center_hz, bandwidth_fraction):
        return self._run(x, {"center_freq": center_hz, "bandwidth": center_hz * bandwidth_fraction},
                         min_center_freq=min(self.min_center_hz, center_hz),
                         max_center_freq=max(self.max_center_hz, center_hz),
                         min_bandwidth_fraction=min(self.min_bandwidth_fraction, bandwidth_fraction),
                         max_bandwidth_fraction=max(self.max_bandwidth_fraction, bandwidth_fraction))


class BandPass(_BandFilter):
    name = "band_pass"
    library_name = "BandPassFilter"


class BandStop(_BandFilter):
    name = "band_stop"
    library_name = "BandStopFilter"


class _CutoffFilter(_Filter):
    def check(self) -> None:
        super().check()
        _require(self.min_cutoff_hz > 0, f"min_cutoff_hz must be > 0, got {self.min_cutoff_hz}")

    def draw(self, rng, n_samples):
        return {"cutoff_hz": float(rng.uniform(self.min_cutoff_hz, self.max_cutoff_hz))}

    def apply(self, x, cutoff_hz):
        return self._run(x, {"cutoff_freq": cutoff_hz}, min_cutoff_freq=min(self.min_cutoff_hz, cutoff_hz),
                         max_cutoff_freq=max(self.max_cutoff_hz, cutoff_hz))


class HighPass(_CutoffFilter):
    name = "high_pass"
    library_name = "HighPassFilter"
    defaults = {"min_cutoff_hz": 200.0, "max_cutoff_hz": 2400.0, "order": 4}
    ranges = (("min_cutoff_hz", "max_cutoff_hz"),)


class LowPass(_CutoffFilter):
    name = "low_pass"
    library_name = "LowPassFilter"
    defaults = {"min_cutoff_hz": 150.0, "max_cutoff_hz": 7500.0, "order": 4}
    ranges = (("min_cutoff_hz", "max_cutoff_hz"),)


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


class SevenBandEQ(WaveformOp):
    """audiomentations ``SevenBandParametricEQ``'s seven biquads (its own ``LowShelfFilter`` / ``PeakingFilter`` /
    ``HighShelfFilter``), the bands drawn here as the library draws them."""

    name = "seven_band_eq"
    defaults = {"min_gain_db": -12.0, "max_gain_db": 12.0}
    ranges = (("min_gain_db", "max_gain_db"),)
    # (library filter, centre range in Hz, Q range): audiomentations SevenBandParametricEQ
    BANDS: ClassVar[tuple[tuple[str, tuple[float, float], tuple[float, float]], ...]] = (
        ("LowShelfFilter", (42.0, 95.0), (0.1, 0.999)),
        ("PeakingFilter", (91.0, 204.0), (0.5, 5.0)),
        ("PeakingFilter", (196.0, 441.0), (0.5, 5.0)),
        ("PeakingFilter", (421.0, 948.0), (0.5, 5.0)),
        ("PeakingFilter", (909.0, 2045.0), (0.5, 5.0)),
        ("PeakingFilter", (1957.0, 4404.0), (0.5, 5.0)),
        ("HighShelfFilter", (4216.0, 9486.0), (0.1, 0.999)),
    )

    def draw(self, rng, n_samples):
        """Centres uniform on the mel scale in each band's range (clamped below 0.45 x the sample rate, where a
        band would pass Nyquist: the top bands at rates under 21 kHz), gain ``U(min, max)`` dB, Q uniform."""
        lo = np.array([b[1][0] for b in self.BANDS])
        hi = np.array([b[1][1] for b in self.BANDS])
        centers = np.minimum(_mel_to_hz(rng.uniform(_mel(lo), _mel(hi))), 0.45 * self.sample_rate)
        gains = rng.uniform(self.min_gain_db, self.max_gain_db, size=len(self.BANDS))
        qs = rng.uniform([b[2][0] for b in self.BANDS], [b[2][1] for b in self.BANDS])
        return {"centers_hz": centers.tolist(), "gains_db": gains.tolist(), "qs": qs.tolist()}

    def apply(self, x, centers_hz, gains_db, qs):
        y = x
        for (kind, (lo, hi), (q_lo, q_hi)), c, g, q in zip(self.BANDS, centers_hz, gains_db, qs):
            y = library_apply(kind, y, self.sample_rate, {"center_freq": c, "gain_db": g, "q_factor": q},
                              min_center_freq=min(lo, c), max_center_freq=hi, min_gain_db=self.min_gain_db,
                              max_gain_db=self.max_gain_db, min_q=q_lo, max_q=q_hi)
        return y


class PitchShift(WaveformOp):
    name = "pitch_shift"
    defaults = {"min_semitones": -4.0, "max_semitones": 4.0}
    ranges = (("min_semitones", "max_semitones"),)

    def draw(self, rng, n_samples):
        return {"semitones": float(rng.uniform(self.min_semitones, self.max_semitones))}

    def apply(self, x, semitones):
        if semitones == 0.0 or x.shape[0] < 2048:  # shorter than one phase-vocoder frame
            return x.copy()
        y = library_apply("PitchShift", x, self.sample_rate, {"num_semitones": semitones},
                          min_semitones=min(self.min_semitones, semitones),
                          max_semitones=max(self.max_semitones, semitones), method="librosa_phase_vocoder")
        return _fit_length(y, x.shape[0])


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
