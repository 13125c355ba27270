"""Recording-channel augmentations: room, background, band-limit, codec, clipping (the default training chain).

Why: with ``augment.views: file`` both views of a pair come from one recording (one microphone, one room),
so "same channel" is a free shortcut to "same singer". Every speaker-verification toolkit closes it by
putting noise and reverberation on every view: wespeaker's SSL recipe (examples/voxceleb/v3: MUSAN noise
0-15 dB SNR, babble 10-30 dB, music 5-15 dB, or a simulated RIR, with p 1.0), 3D-Speaker and sslsv
(noise 0-15 dB, babble 13-20 dB, music 5-15 dB, simulated RIRs). No noise corpus is downloaded here: noise
is synthetic (coloured, music-like) or other training singers' audio (babble).

Ops (same ``draw(rng, S) -> params`` / ``apply(x, **params)`` contract as :mod:`.waveform`):

==================== ==================================================================================
``room_reverb``       convolution with one of ``bank_size`` room impulse responses simulated once per
                      process with pyroomacoustics' image-source ShoeBox (Allen & Berkley 1979), target
                      RT60 spread evenly over ``[min_rt60, max_rt60]`` s (absorption and reflection order
                      from Sabine's formula, ``pyroomacoustics.inverse_sabine``), room sizes and positions
                      from ``bank_seed``; direct path at sample 0, output scaled to the input RMS.
                      Hand-written convolution for speed: audiomentations ``RoomSimulator`` simulates a
                      room on every call (137 ms per 2 s item at 44.1 kHz; the bank's convolution ~3 ms).
``babble``            1..``max_speakers`` crops of *other* training singers (never the item's singer, never
                      its recording; the dataset supplies them, see :class:`BabbleSource`), each scaled to
                      unit RMS, summed, mixed at SNR ``U(min_snr_db, max_snr_db)``. Without a source (the
                      invariance report, a bare call) or a known other singer (a corpus without singer
                      labels) it leaves the input alone.
``music_bed``         a synthetic music-like bed mixed at SNR ``U(min_snr_db, max_snr_db)``: a chord of 3-4
                      harmonic tones (root on the equal-tempered scale 55-220 Hz, major or minor triad plus
                      octave, 8 harmonics at 1/k amplitudes) changing every 0.5-1 s, plus a kick/hi-hat pattern
                      (decaying 60 Hz sine, 30 ms white-noise bursts) at 80-160 beats per minute.
``band_limit``        sample-rate round trip through one of 8000/11025/16000/22050 Hz inside ``rates`` =
                      ``[lo, hi]`` (soxr HQ, the project's resampler), and with probability ``telephone_prob``
                      the 300-3400 Hz telephone band (a 4th-order Butterworth band-pass,
                      :class:`~singer_ssl.augment.waveform.BandPass`).
``mp3_compression``   audiomentations ``Mp3Compression`` (lameenc backend, constant bit-rate drawn
                      uniformly from the library's supported rates in ``[min_bitrate, max_bitrate]``
                      kbps); the encoder delay is kept and the output cropped to the input length.
``mu_law``            8-bit mu-law companding (ITU-T G.711, mu = 255): ``F(x) = sign(x) ln(1+mu|x|)/ln(1+mu)``
                      quantised to 256 levels and expanded back; peak-normalised before, rescaled after.
                      Hand-written: audiomentations has no mu-law codec (three numpy lines).
``clipping``          audiomentations ``ClippingDistortion``: percentile threshold ``t ~ U{min..max}``, clip
                      to the ``t/2`` and ``100 - t/2`` percentiles of ``x`` (``t`` % of the samples clipped,
                      as an overdriven microphone).
==================== ==================================================================================

Randomness: every parameter is drawn from the item's Generator; the audiomentations ops run through
:func:`singer_ssl.augment.library.library_apply` (the one bridge to the library's global random state).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy.signal import fftconvolve

from singer_ssl.augment.library import library_apply
from singer_ssl.augment.waveform import BandPass, WaveformOp, _fit_length, _require, _rms

__all__ = ["BabbleSource", "CHANNEL_OPS", "mix_at_snr", "rir_bank"]

#: ``source(rng, count, n_samples) -> (count, n_samples)`` float32 crops of other singers (see ViewDataset)
BabbleSource = Callable[[np.random.Generator, int, int], np.ndarray]


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x + g * noise`` with ``g`` such that ``20 log10(RMS(x) / RMS(g * noise)) = snr_db`` exactly.

    A silent ``x`` or ``noise`` (RMS 0) returns a copy of ``x`` (no SNR is defined). float32 ``(S,)``.
    """
    rx, rn = _rms(x), _rms(noise)
    if rx == 0.0 or rn == 0.0:
        return np.asarray(x, dtype=np.float32).copy()
    g = rx / (rn * 10.0 ** (snr_db / 20.0))
    return (x + np.float32(g) * noise).astype(np.float32, copy=False)


class Mp3Compression(WaveformOp):
    name = "mp3_compression"
    defaults = {"min_bitrate": 16, "max_bitrate": 64}
    ranges = (("min_bitrate", "max_bitrate"),)

    def check(self) -> None:
        from audiomentations import Mp3Compression as Mp3

        _require(8 <= self.min_bitrate and self.max_bitrate <= 320, "bit-rates must lie in 8..320 kbps")
        self.choices = [b for b in Mp3.SUPPORTED_BITRATES if self.min_bitrate <= b <= self.max_bitrate]
        _require(bool(self.choices), f"no MP3 bit-rate in [{self.min_bitrate}, {self.max_bitrate}] kbps "
                                     f"(supported: {Mp3.SUPPORTED_BITRATES})")

    def draw(self, rng, n_samples):
        return {"bitrate": int(self.choices[rng.integers(len(self.choices))])}

    def apply(self, x, bitrate):
        y = library_apply("Mp3Compression", x, self.sample_rate, {"bitrate": bitrate}, min_bitrate=self.min_bitrate,
                          max_bitrate=self.max_bitrate, backend="lameenc", preserve_delay=True)
        return _fit_length(y, x.shape[0])


class Clipping(WaveformOp):
    name = "clipping"
    defaults = {"min_percentile_threshold": 0, "max_percentile_threshold": 10}
    ranges = (("min_percentile_threshold", "max_percentile_threshold"),)

    def check(self) -> None:
        _require(0 <= self.min_percentile_threshold and self.max_percentile_threshold <= 100,
                 "percentile thresholds must lie in 0..100")

    def draw(self, rng, n_samples):
        return {"percentile_threshold": int(rng.integers(self.min_percentile_threshold,
                                                         self.max_percentile_threshold + 1))}

    def apply(self, x, percentile_threshold):
        return library_apply("ClippingDistortion", x, self.sample_rate, {"percentile_threshold": percentile_threshold})


class MuLaw(WaveformOp):
    name = "mu_law"
    defaults = {"bits": 8}

    def check(self) -> None:
        _require(2 <= self.bits <= 16, f"bits must lie in 2..16, got {self.bits}")

    def apply(self, x):
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak == 0.0:
            return x.copy()
        mu = 2.0 ** self.bits - 1.0
        u = x.astype(np.float64) / peak
        f = np.sign(u) * np.log1p(mu * np.abs(u)) / np.log1p(mu)
        q = np.round((f + 1.0) / 2.0 * mu) / mu * 2.0 - 1.0  # 2**bits levels on [-1, 1]
        y = np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu
        return (y * peak).astype(np.float32)


class BandLimit(WaveformOp):
    name = "band_limit"
    defaults = {"rates": (8000.0, 22050.0), "telephone_prob": 0.25}
    RATES: tuple[int, ...] = (8000, 11025, 16000, 22050)

    def check(self) -> None:
        _require(0.0 <= self.telephone_prob <= 1.0, f"telephone_prob must lie in [0, 1], got {self.telephone_prob}")
        lo, hi = self.rates
        self.rate_choices = tuple(r for r in self.RATES if lo <= r <= hi and r < self.sample_rate)
        _require(lo >= 1000, f"rates must be >= 1000 Hz, got {lo}")
        self._telephone = BandPass(self.sample_rate, order=4)

    def draw(self, rng, n_samples):
        rate = int(self.rate_choices[rng.integers(len(self.rate_choices))]) if self.rate_choices else 0
        return {"rate": rate, "telephone": bool(rng.random() < self.telephone_prob)}

    def apply(self, x, rate, telephone):
        from singer_ssl.core.audio import resample

        y = x
        if rate:
            y = _fit_length(resample(resample(x, self.sample_rate, rate), rate, self.sample_rate), x.shape[0])
        if telephone:
            y = self._telephone.apply(y, center_hz=1850.0, bandwidth_fraction=3100.0 / 1850.0)
        return np.array(y, dtype=np.float32)


@functools.lru_cache(maxsize=4)
def rir_bank(sample_rate: int, min_rt60: float, max_rt60: float, bank_size: int, bank_seed: int) -> tuple:
    """``bank_size`` image-source RIRs (tuple of float32 arrays, direct path at 0, unit energy), cached per process.

    Room ``i``: dimensions ``U([3, 2.5, 2.4], [10, 8, 4])`` m (shrunk by 10 % steps, to at least 2 m, until
    Sabine's formula reaches the target with absorption <= 0.8), source and microphone uniform inside (0.5 m
    from the walls, 1 m apart when a draw of 100 allows), target RT60 ``min + (max - min) * i / (bank_size - 1)``,
    absorption and maximum reflection order (capped at 40) from Sabine's formula (``pyroomacoustics.inverse_sabine``).
    """
    import pyroomacoustics as pra

    rng = np.random.default_rng([int(bank_seed), 0x21])
    targets = np.linspace(min_rt60, max_rt60, bank_size) if bank_size > 1 else np.array([min_rt60])
    out = []
    for rt60 in targets:
        dims = rng.uniform([3.0, 2.5, 2.4], [10.0, 8.0, 4.0])
        while 0.161 * np.prod(dims) / (2 * (dims[0] * dims[1] + dims[1] * dims[2] + dims[0] * dims[2])) > 0.8 * rt60:
            dims = np.maximum(dims * 0.9, 2.0)  # Sabine: absorption 0.161 V / (S RT60) kept <= 0.8
        src = rng.uniform(0.5, dims - 0.5)
        mic = rng.uniform(0.5, dims - 0.5)
        for _ in range(100):
            if np.linalg.norm(mic - src) >= 1.0:
                break
            mic = rng.uniform(0.5, dims - 0.5)
        absorption, max_order = pra.inverse_sabine(float(rt60), dims)
        room = pra.ShoeBox(dims, fs=int(sample_rate), materials=pra.Material(absorption),
                           max_order=min(int(max_order), 40), air_absorption=False)
        room.add_source(src)
        room.add_microphone(mic)
        room.compute_rir()
        h = np.asarray(room.rir[0][0], dtype=np.float64)
        h = h[int(np.argmax(np.abs(h))):]  # direct path at sample 0
        out.append((h / np.sqrt(np.sum(h * h))).astype(np.float32))
    return tuple(out)


class RoomReverb(WaveformOp):
    name = "room_reverb"
    defaults = {"min_rt60": 0.1, "max_rt60": 1.0, "bank_size": 16, "bank_seed": 0}
    ranges = (("min_rt60", "max_rt60"),)

    def check(self) -> None:
        _require(self.min_rt60 >= 0.05 and self.max_rt60 <= 3.0, "RT60 must lie in [0.05, 3] s")
        _require(self.bank_size >= 1, f"bank_size must be >= 1, got {self.bank_size}")

    def bank(self) -> tuple:
        return rir_bank(self.sample_rate, float(self.min_rt60), float(self.max_rt60), int(self.bank_size),
                        int(self.bank_seed))

    def draw(self, rng, n_samples):
        return {"index": int(rng.integers(self.bank_size))}

    def apply(self, x, index):
        h = self.bank()[index]
        y = fftconvolve(x, h)[: x.shape[0]].astype(np.float32)
        rx, ry = _rms(x), _rms(y)
        return y * np.float32(rx / ry) if ry > 0 else y


class Babble(WaveformOp):
    name = "babble"
    defaults = {"min_snr_db": 13.0, "max_snr_db": 20.0, "min_speakers": 1, "max_speakers": 3}
    ranges = (("min_snr_db", "max_snr_db"), ("min_speakers", "max_speakers"))
    needs_source = True

    def check(self) -> None:
        _require(self.min_speakers >= 1, f"min_speakers must be >= 1, got {self.min_speakers}")

    def draw(self, rng, n_samples):
        return {"snr_db": float(rng.uniform(self.min_snr_db, self.max_snr_db)),
                "count": int(rng.integers(self.min_speakers, self.max_speakers + 1))}

    def apply(self, x, snr_db, count, others=None):
        """``others`` (count, S): the other singers' crops (None: no source, ``x`` is returned unchanged)."""
        if others is None or len(others) == 0:
            return x.copy()
        others = np.asarray(others, dtype=np.float32)
        rms = np.sqrt(np.mean(np.square(others, dtype=np.float64), axis=1))
        noise = np.sum(others[rms > 0] / rms[rms > 0, None].astype(np.float32), axis=0) if np.any(rms > 0) else 0
        return mix_at_snr(x, np.broadcast_to(noise, x.shape).astype(np.float32), snr_db)

    def __call__(self, x, rng, source: BabbleSource | None = None):
        params = self.draw(rng, x.shape[0])
        others = source(rng, params["count"], x.shape[0]) if source is not None else None
        return self.apply(x, others=others, **params)


_TABLE_SIZE = 2048
#: one period of a tone with 8 harmonics at amplitudes 1/k (the highest, 8 x 440 Hz, stays below 4 kHz)
_HARMONIC_TABLE = sum(np.sin(2 * np.pi * k * np.arange(_TABLE_SIZE) / _TABLE_SIZE) / k for k in range(1, 9))


def music_bed(n_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic music-like bed ``(n_samples,)`` float32 (chords + kick/hi-hat; see the module table)."""
    t = np.arange(n_samples) / sample_rate
    y = np.zeros(n_samples)
    start = 0
    while start < n_samples:  # chords
        length = int(rng.uniform(0.5, 1.0) * sample_rate)
        root = 55.0 * 2.0 ** (int(rng.integers(0, 25)) / 12.0)
        third = 4 if rng.random() < 0.5 else 3
        seg = slice(start, min(n_samples, start + length))
        for semis in (0, third, 7, 12)[: int(rng.integers(3, 5))]:
            f0 = root * 2.0 ** (semis / 12.0)
            phase = (f0 * t[seg] + rng.random()) % 1.0  # one wavetable lookup per tone (cheap)
            y[seg] += _HARMONIC_TABLE[(phase * _TABLE_SIZE).astype(np.int64)]
        start += length
    beat = int(sample_rate * 60.0 / rng.uniform(80.0, 160.0))
    kick = np.sin(2 * np.pi * 60.0 * t[: beat // 2]) * np.exp(-t[: beat // 2] / 0.05)
    hat_len = int(0.03 * sample_rate)
    hat = rng.standard_normal(hat_len) * np.exp(-np.arange(hat_len) / (0.008 * sample_rate))
    drums = np.zeros(n_samples)
    for b0 in range(0, n_samples, beat):
        k = kick[: n_samples - b0]
        drums[b0:b0 + k.size] += k * 3.0
        h0 = b0 + beat // 2
        if h0 < n_samples:
            h = hat[: n_samples - h0]
            drums[h0:h0 + h.size] += h
    return (y / max(_rms(y), 1e-12) + drums / max(_rms(drums), 1e-12)).astype(np.float32)


class MusicBed(WaveformOp):
    name = "music_bed"
    defaults = {"min_snr_db": 5.0, "max_snr_db": 15.0}
    ranges = (("min_snr_db", "max_snr_db"),)

    def draw(self, rng, n_samples):
        return {"snr_db": float(rng.uniform(self.min_snr_db, self.max_snr_db)),
                "bed": music_bed(n_samples, self.sample_rate, rng)}

    def apply(self, x, snr_db, bed):
        return mix_at_snr(x, bed, snr_db)


#: in their order of application (a recording's path: room -> background -> transmission -> codec -> clipping)
CHANNEL_OPS: tuple[type[WaveformOp], ...] = (RoomReverb, Babble, MusicBed, BandLimit, Mp3Compression, MuLaw,
                                             Clipping)
