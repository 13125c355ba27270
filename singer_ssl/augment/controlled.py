"""Controlled, deterministic signal transforms for the invariance report (embed stage, ``embed.invariance``).

Unlike the training augmentations (:mod:`singer_ssl.augment.waveform`, random parameters), each transform
here has fixed parameters named in its *spec* string, so a report can say "the EER under a +2 semitone
shift". Input and output: mono float ``(S,)`` at ``sr`` Hz, same length, a new float32 array (no clipping).

Specs (``kind:argument``; the spec string is the transform's name in the metrics):

==================== =================================================================================
``pitch:<st>``        formant-preserving pitch shift by ``st`` semitones (Praat "Change gender" through
                      :class:`~singer_ssl.augment.waveform.PitchShiftPraat`, Torres et al. 2023's route: new
                      median F0 = old median * 2**(st/12), pitch range ratio 1, formant shift ratio 1,
                      duration 1; PSOLA resynthesis, so the spectral envelope is kept)
``gain:<dB>``         ``y = x * 10**(dB/20)``
``white_noise:<dB>``  additive Gaussian white noise at SNR ``dB`` relative to the segment's RMS (exact:
                      the drawn noise is rescaled to the target RMS)
``pink_noise:<dB>``   the same with pink noise (power spectral density ~ 1/f, no DC)
``band_pass:<lo>-<hi>`` 4th-order digital Butterworth band-pass (bilinear, causal), -3 dB at ``lo`` and
                      ``hi`` Hz (e.g. ``band_pass:300-3400``, the telephone band), through
                      :class:`~singer_ssl.augment.waveform.BandPass` (audiomentations ``BandPassFilter``)
``reverb:<RT60 s>``   convolution with a synthetic room impulse response: Gaussian noise under an
                      exponential envelope whose energy decays 60 dB in RT60 seconds, ``RT60`` s long,
                      unit energy, no direct path; one response per seed (one "room" for all segments)
``resample:<Hz>``     down-sample to ``Hz`` and back with soxr HQ (Torres et al. 2023's ``-du`` with 16000)
``blue_noise:<dB>``   the same with blue noise (power spectral density ~ f, no DC): a colour law outside
                      the training chain's white..red (``colored_noise`` f_decay >= 0; 0..1.5 by default)
``gain_ramp:<dB>``    time-varying gain, linear in dB from 0 at the first sample to ``dB`` at the last
                      (a fader / singer moving off the microphone; the chain's gain is constant per view)
``quantize:<bits>``   uniform PCM re-quantisation to ``bits`` bits (mid-tread, step ``2 peak / 2**bits``,
                      peak = max |x|): a codec outside the chain (MP3 and mu-law are)
``identity``          a copy (a sanity check: its EER equals the reference)
==================== =================================================================================

Families the training chain never contains (``blue_noise``, ``gain_ramp``, ``quantize``) are the report's
*held-out* transforms; :data:`singer_ssl.evaluation.invariance.SEEN_BY` says which training augmentations
make each kind *seen*.

Randomness: :meth:`Transform.apply` takes ``seed`` (the run's) and ``item`` (the segment's number); noise
and the Praat resynthesis draw from ``numpy.random.default_rng([seed, item])``, the room response from
``default_rng([seed])``, so equal arguments give equal bytes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy.signal import fftconvolve

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.params import int_param, mapping_param

__all__ = ["DEFAULT_TRANSFORMS", "KINDS", "InvarianceConfig", "Transform", "add_noise", "band_pass",
           "gain", "gain_ramp", "parse_transform", "pitch_shift", "quantize", "resample_round_trip", "reverb",
           "room_impulse_response", "select_rows"]

#: spec kinds and the form of their argument
KINDS = {
    "pitch": "semitones, e.g. pitch:+2",
    "gain": "dB, e.g. gain:-12",
    "white_noise": "SNR in dB, e.g. white_noise:20",
    "pink_noise": "SNR in dB, e.g. pink_noise:10",
    "band_pass": "low-high in Hz, e.g. band_pass:300-3400",
    "reverb": "RT60 in seconds, e.g. reverb:0.5",
    "resample": "a sample rate in Hz, e.g. resample:16000",
    "blue_noise": "SNR in dB, e.g. blue_noise:10",
    "gain_ramp": "dB reached at the end, e.g. gain_ramp:-20",
    "quantize": "bits, e.g. quantize:6",
    "identity": "no argument",
}
BAND_PASS_ORDER = 4
PITCH_FLOOR, PITCH_CEILING = 75.0, 600.0  # Hz, Praat's pitch analysis range (PitchShiftPraat's defaults)


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    y = _f32(y)[:n]
    return np.pad(y, (0, n - y.shape[0])) if y.shape[0] < n else y


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def gain(x: np.ndarray, gain_db: float) -> np.ndarray:
    """``x * 10**(gain_db/20)`` as float32 ``(S,)``."""
    return _f32(x) * np.float32(10.0 ** (gain_db / 20.0))


def pitch_shift(x: np.ndarray, sr: int, semitones: float, seed: int = 1) -> np.ndarray:
    """Formant-preserving pitch shift by ``semitones`` (Praat "Change gender", formant ratio 1; see module doc).

    ``seed`` (>= 1) seeds Praat's random generator for the overlap-add resynthesis. A clip Praat cannot
    analyse (no voiced frame, shorter than the analysis window) comes back unshifted (Praat's resynthesis).
    """
    from singer_ssl.augment.waveform import PitchShiftPraat

    op = PitchShiftPraat(int(sr), pitch_floor=PITCH_FLOOR, pitch_ceiling=PITCH_CEILING, formant_ratio=1.0)
    return _f32(op.apply(_f32(x), pitch_ratio=2.0 ** (semitones / 12.0), range_ratio=1.0, praat_seed=int(seed)))


def gain_ramp(x: np.ndarray, end_db: float) -> np.ndarray:
    """``x[n] * 10**(g[n]/20)`` with ``g`` linear from 0 dB (first sample) to ``end_db`` (last), float32 ``(S,)``."""
    x = _f32(x)
    g = np.linspace(0.0, float(end_db), x.shape[0]) if x.shape[0] > 1 else np.zeros(x.shape[0])
    return (x * 10.0 ** (g / 20.0)).astype(np.float32)


def quantize(x: np.ndarray, bits: int) -> np.ndarray:
    """Uniform mid-tread quantisation of ``x`` to ``bits`` bits over ``[-peak, peak]`` (step ``2 peak / 2**bits``)."""
    x = _f32(x)
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0:
        return x.copy()
    step = 2.0 * peak / 2.0 ** int(bits)
    return (np.round(x / step) * step).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator, color: str = "white") -> np.ndarray:
    """``x`` plus ``color`` ("white", "pink" or "blue") Gaussian noise scaled to exactly ``RMS(x) / 10**(snr_db/20)``.

    A silent ``x`` (RMS 0) comes back unchanged (no SNR is defined).
    """
    x = _f32(x)
    n = x.shape[0]
    target = _rms(x) / 10.0 ** (snr_db / 20.0)
    if target == 0.0 or n < 2:
        return x.copy()
    if color == "white":
        noise = rng.standard_normal(n)
    elif color in ("pink", "blue"):
        n_fft = sfft.next_fast_len(n, real=True)
        spec = sfft.rfft(rng.standard_normal(n_fft))
        k = np.arange(spec.shape[0], dtype=np.float64)
        tilt = np.sqrt(k[1:]) if color == "blue" else 1.0 / np.sqrt(k[1:])
        spec[1:] *= tilt  # amplitude ~ f^(-+1/2) <=> power ~ 1/f (pink) or f (blue)
        spec[0] = 0.0
        noise = sfft.irfft(spec, n=n_fft)[:n]
    else:
        raise ValueError(f"noise color must be white, pink or blue, got {color!r}")
    noise = noise - noise.mean()
    noise *= target / _rms(noise)
    return (x.astype(np.float64) + noise).astype(np.float32)


def band_pass(x: np.ndarray, sr: int, low_hz: float, high_hz: float, order: int = BAND_PASS_ORDER) -> np.ndarray:
    """Digital Butterworth band-pass of ``order``, -3 dB at ``low_hz`` and ``high_hz`` (see module doc)."""
    from singer_ssl.augment.waveform import BandPass

    if not 0.0 < low_hz < high_hz:
        raise ValueError(f"band_pass needs 0 < low < high, got {low_hz}-{high_hz} Hz")
    center = (low_hz + high_hz) / 2.0
    op = BandPass(int(sr), order=int(order))
    return _f32(op.apply(_f32(x), center_hz=center, bandwidth_fraction=(high_hz - low_hz) / center))


def room_impulse_response(sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Synthetic room impulse response ``(round(rt60 * sr),)`` float64, unit energy.

    ``h[n] = w[n] * 10**(-3 n / (rt60 * sr))`` with ``w`` white Gaussian: the energy envelope falls
    60 dB in ``rt60`` seconds (Schroeder's backward integral of ``h**2`` has slope -60 dB / RT60).
    """
    if rt60 <= 0:
        raise ValueError(f"RT60 must be > 0 s, got {rt60}")
    n = max(1, int(round(rt60 * sr)))
    h = rng.standard_normal(n) * 10.0 ** (-3.0 * np.arange(n) / (rt60 * sr))
    return h / np.sqrt(np.sum(h * h))


def reverb(x: np.ndarray, sr: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` convolved with :func:`room_impulse_response` (drawn from ``rng``), cropped to ``len(x)``."""
    x = _f32(x)
    h = room_impulse_response(sr, rt60, rng)
    return _fit(fftconvolve(x.astype(np.float64), h)[: x.shape[0]], x.shape[0])


def resample_round_trip(x: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """Down-sample ``x`` from ``sr`` to ``rate`` Hz and back with soxr HQ (the embed stage's ``degrade_16k``)."""
    from singer_ssl.core.audio import resample

    x = _f32(x)
    if int(rate) >= int(sr):
        return x.copy()
    return _fit(resample(resample(x, int(sr), int(rate)), int(rate), int(sr)), x.shape[0])


_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"


@dataclass(frozen=True)
class Transform:
    """One controlled transform: ``spec`` (its name), ``kind`` and numeric ``args``."""

    spec: str
    kind: str
    args: tuple[float, ...] = ()

    def apply(self, x: np.ndarray, sr: int, seed: int = 0, item: int = 0) -> np.ndarray:
        """Transform mono ``x`` ``(S,)`` at ``sr`` Hz; ``seed`` and ``item`` fix the random draws (module doc)."""
        k, a = self.kind, self.args
        if k == "identity":
            return _f32(x).copy()
        if k == "gain":
            return gain(x, a[0])
        if k == "pitch":
            praat_seed = int(np.random.default_rng([seed, item]).integers(1, 2**31 - 1))
            return pitch_shift(x, sr, a[0], seed=praat_seed)
        if k in ("white_noise", "pink_noise", "blue_noise"):
            return add_noise(x, a[0], np.random.default_rng([seed, item]), color=k.split("_")[0])
        if k == "band_pass":
            return band_pass(x, sr, a[0], a[1])
        if k == "reverb":
            return reverb(x, sr, a[0], np.random.default_rng([seed]))
        if k == "resample":
            return resample_round_trip(x, sr, int(a[0]))
        if k == "gain_ramp":
            return gain_ramp(x, a[0])
        if k == "quantize":
            return quantize(x, int(a[0]))
        raise ValueError(f"unknown transform kind {k!r}")


def parse_transform(spec: object, where: str = "transform") -> Transform:
    """Parse a spec string (module doc); ConfigError ``"<where>: ..."`` naming the expected form otherwise."""
    if not isinstance(spec, str):
        raise ConfigError(f"{where}: expected a transform spec string such as 'pitch:+2', got {spec!r}")
    kind, _, arg = spec.strip().partition(":")
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown transform {kind!r} in {spec!r}; valid kinds: {', '.join(KINDS)}")
    bad = ConfigError(f"{where}: {spec!r}: expected {kind}:<{KINDS[kind]}>")
    if kind == "identity":
        if arg:
            raise bad
        return Transform(spec.strip(), kind)
    if kind == "band_pass":
        m = re.fullmatch(rf"\s*({_NUMBER})\s*-\s*({_NUMBER})\s*", arg)
        if not m or not 0.0 < float(m[1]) < float(m[2]):
            raise bad
        return Transform(spec.strip(), kind, (float(m[1]), float(m[2])))
    if not re.fullmatch(rf"\s*{_NUMBER}\s*", arg) or not math.isfinite(float(arg)):
        raise bad
    value = float(arg)
    if ((kind == "reverb" and not 0.0 < value <= 10.0) or (kind == "resample" and (value < 1000 or value % 1))
            or (kind == "quantize" and (not 1 <= value <= 24 or value % 1))):
        raise bad
    return Transform(spec.strip(), kind, (value,))


# ----------------------------------------------------------------------------------------------------
# the embed stage's plan: which transforms, which segments

INVARIANCE_KEYS = ("segments_per_singer", "transforms")
DEFAULT_TRANSFORMS = ("pitch:-4", "pitch:-2", "pitch:+2", "pitch:+4", "gain:-12", "white_noise:20",
                      "white_noise:10", "band_pass:300-3400", "reverb:0.5", "resample:16000",
                      "blue_noise:10", "gain_ramp:-20", "quantize:6")


@dataclass(frozen=True)
class InvarianceConfig:
    """``embed.invariance``: ``segments_per_singer`` (>= 1) transformed segments per singer, the ``transforms``."""

    segments_per_singer: int = 3
    transforms: tuple[Transform, ...] = tuple(parse_transform(s) for s in DEFAULT_TRANSFORMS)

    @classmethod
    def from_mapping(cls, value: Any, where: str = "embed.invariance") -> InvarianceConfig | None:
        """Validate ``embed.invariance``; ``None`` or ``{}`` (or an empty transform list) disables it (-> None)."""
        if value is None or value == {}:
            return None
        sec = mapping_param(value, where, INVARIANCE_KEYS)
        k = int_param(sec.get("segments_per_singer", cls.segments_per_singer), f"{where}.segments_per_singer",
                      minimum=1)
        raw = sec.get("transforms", list(DEFAULT_TRANSFORMS))
        if raw is None:
            return None
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{where}.transforms: expected a list of transform specs, got {raw!r}")
        transforms = tuple(parse_transform(s, f"{where}.transforms[{i}]") for i, s in enumerate(raw))
        seen: set[str] = set()
        for t in transforms:
            if t.spec in seen:
                raise ConfigError(f"{where}.transforms: {t.spec!r} is listed twice")
            seen.add(t.spec)
        return cls(k, transforms) if transforms else None


def select_rows(singers: np.ndarray, sources: np.ndarray, per_singer: int, seed: int) -> np.ndarray:
    """Rows (sorted, int64) of at most ``per_singer`` segments per singer, spread over source recordings.

    Per singer, its segments are shuffled with ``default_rng(seed)`` (one generator, singers in sorted order)
    and taken round-robin over their sources (sources in order of first appearance after the shuffle), so
    ``per_singer`` segments come from ``per_singer`` different recordings whenever the singer has that many.
    """
    singers, sources = np.asarray(singers), np.asarray(sources)
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for s in sorted(set(singers.tolist())):
        rows = rng.permutation(np.flatnonzero(singers == s))
        rank: dict[str, int] = {}
        count: dict[str, int] = {}
        order = []
        for r in rows:  # (index of this segment within its source, source order) puts one per source first
            src = sources[r]
            rank.setdefault(src, len(rank))
            order.append((count.get(src, 0), rank[src], int(r)))
            count[src] = count.get(src, 0) + 1
        out.extend(r for _, _, r in sorted(order)[:per_singer])
    return np.asarray(sorted(out), dtype=np.int64)
