"""Audio I/O and the segment stage's signal chain: read (soundfile), mono, resample (soxr), crop.

Conventions
-----------
- Waveforms are float32 in [-1, 1]. Multi-channel arrays are ``(channels, samples)``; mono arrays
  are ``(samples,)``.
- Mono mix-down is the **mean of the channels** (not a sum, so a full-scale stereo file stays in
  range). Mixing happens before resampling (resampling is linear, so the order does not change the
  result, only the cost).
- Resampling uses soxr with quality ``"HQ"`` (:data:`RESAMPLE_QUALITY`): 20-bit precision, a
  linear-phase low-pass with a 95 % pass band, the same engine and setting as the default of
  ``sox -r`` (``rate -h``), which Torres et al.'s preprocessing called. The output has
  ``round(n * sr_out / sr_in)`` samples; the streaming resampler used for long files gives the
  same samples as one call on the whole signal.
- Segments are non-overlapping, consecutive windows of ``round(seconds * sr)`` samples
  (:func:`segment_bounds`). Remainder policy ``"drop"`` (Torres et al. 2023) drops the final partial window;
  ``"pad"`` keeps it, zero-padded at the end, when it holds at least half a window
  (``2 * remainder >= window``), and drops it otherwise.
- Levels: :func:`rms_dbfs` is ``20 log10(rms)`` relative to full scale 1.0 (a full-scale sine
  reads -3.01 dBFS). A signal is *digital silence* when its peak is below half a 16-bit step
  (:data:`SILENT_PEAK`): written as PCM_16 it would be all zeros.
- Level rules of a whole file (:func:`level_verdict`, on the decoded samples before mix-down):
  *anti-phase* - two or more channels whose mean (the mono mix-down) peaks more than
  :data:`CANCEL_DB` (40 dB) below the loudest channel: the channels cancel (L = -R), and what is left
  is rounding noise, so the file is skipped as ``silent: after mono mix-down ...``. *Over full scale*
  - float samples beyond +-1 (only float/lossy formats can hold them): up to :data:`MAX_OVER_FULL_SCALE`
  (+6 dBFS: decoder overshoot, mild overs) the file is kept, hard-clipped to +-1 at write time, and a
  ``warning: clipped ...`` row is recorded; beyond it (e.g. a float WAV at 40x full scale) clipping
  would flatten the waveform, so the file is skipped as ``clipped: ...``.

Bad input raises :class:`AudioError`, whose ``kind`` is one of :data:`ERROR_KINDS` and whose
message names the file and the reason. Inputs are only ever opened for reading.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from singer_ssl.core.io import atomic_path

#: extensions (lower case, no dot) of the formats libsndfile decodes; one list for pipeline, API and CLI
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "oga", "opus", "aif", "aiff", "mp3")
RESAMPLE_QUALITY = "HQ"
SILENT_PEAK = 2.0**-16  # half a PCM_16 step (libsndfile scales by 2^15): rounds to all zeros
REMAINDERS = ("drop", "pad")
ERROR_KINDS = ("unreadable", "empty", "not audio", "unsupported", "corrupt", "truncated", "non-finite")
DEFAULT_BLOCK_FRAMES = 1 << 20  # ~24 s at 44.1 kHz per channel: the streaming reader's memory bound
CANCEL_DB = 40.0  # mono mix-down peak this far below the loudest channel: anti-phase channels cancel
MAX_OVER_FULL_SCALE = 2.0  # +6.02 dBFS: float peaks above it are skipped as clipped, up to it kept (warned)

# libsndfile's open error codes (sndfile.h): 1 unrecognised format, 2 system, 3 malformed, 4 encoding.
_OPEN_ERROR_KIND = {1: "not audio", 2: "unreadable", 3: "corrupt", 4: "unsupported"}
# libsndfile's log line for a RIFF/AIFF data chunk whose declared size disagrees with the file.
_DATA_SIZE_RE = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF}  # streaming writers leave these; not truncation
_UNKNOWN_FRAMES = 1 << 62
_OGG_NO_EOS = "Last page lacks an end-of-stream bit"  # libsndfile's log for a cut-off Ogg stream


class AudioError(ValueError):
    """An audio file cannot be used; ``kind`` (one of ERROR_KINDS) says why, the message names the file."""

    def __init__(self, path: str | os.PathLike, kind: str, detail: str):
        self.path = str(path)
        self.kind = kind
        self.detail = detail
        super().__init__(f"{path}: {kind}: {detail}")

    @property
    def reason(self) -> str:
        """``'<kind>: <detail>'`` without the path (the form recorded in skipped.csv)."""
        return f"{self.kind}: {self.detail}"


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file: ``frames`` per channel at ``sample_rate`` Hz."""

    path: str
    sample_rate: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        """Duration in seconds declared by the header."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _open(path: str | os.PathLike) -> sf.SoundFile:
    """Open ``path`` for reading with soundfile, turning every failure into an AudioError."""
    path = Path(path)
    try:
        if path.is_dir():
            raise AudioError(path, "unreadable", "is a directory")
        with open(path, "rb") as f:  # plain open first: clean OS errors (permissions, missing target)
            head = f.read(1)
    except PermissionError:
        raise AudioError(path, "unreadable", "permission denied") from None
    except FileNotFoundError:
        raise AudioError(path, "unreadable", "file not found (dangling link?)") from None
    except OSError as e:
        raise AudioError(path, "unreadable", e.strerror or str(e)) from None
    if not head:
        raise AudioError(path, "empty", "0 bytes")
    try:
        snd = sf.SoundFile(str(path))
    except sf.LibsndfileError as e:
        kind = _OPEN_ERROR_KIND.get(getattr(e, "code", None), "corrupt")
        detail = (getattr(e, "error_string", "") or str(e)).strip() or "libsndfile could not open it"
        raise AudioError(path, kind, detail) from None
    except (RuntimeError, OSError, ValueError) as e:
        raise AudioError(path, "corrupt", str(e)) from None
    if snd.samplerate <= 0 or snd.channels <= 0:
        snd.close()
        raise AudioError(path, "corrupt", f"invalid header (rate {snd.samplerate}, channels {snd.channels})")
    for declared, actual in _DATA_SIZE_RE.findall(snd.extra_info or ""):
        declared, actual = int(declared), int(actual)
        if declared not in _PLACEHOLDER_SIZES and declared - actual > 1:  # 1: a missing pad byte
            snd.close()
            raise AudioError(path, "truncated", f"data chunk declares {declared} bytes, file holds {actual}")
    if _OGG_NO_EOS in (snd.extra_info or ""):
        snd.close()
        raise AudioError(path, "truncated", "Ogg stream ends without its end-of-stream page")
    return snd


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of ``path``; AudioError if it cannot be opened or is truncated."""
    with _open(path) as snd:
        return AudioInfo(str(path), int(snd.samplerate), int(snd.channels), int(snd.frames),
                         snd.format, snd.subtype)


def iter_blocks(path: str | os.PathLike, block_frames: int = DEFAULT_BLOCK_FRAMES,
                info: list[AudioInfo] | None = None) -> Iterator[np.ndarray]:
    """Yield consecutive blocks ``(channels, <= block_frames)`` float32 of ``path``.

    Memory is bounded by ``block_frames`` whatever the file's length. Raises AudioError (possibly
    after some blocks were yielded) for decode errors (``corrupt``), fewer frames than the header
    declares (``truncated``; not checked for MP3, whose frame count is an estimate), NaN/inf
    samples (``non-finite``) and files without frames (``empty``). When ``info`` is a list, the
    file's :class:`AudioInfo` is appended to it as soon as the header is read.
    """
    with _open(path) as snd:
        header = AudioInfo(str(path), int(snd.samplerate), int(snd.channels), int(snd.frames),
                           snd.format, snd.subtype)
        if info is not None:
            info.append(header)
        n_read = 0
        while True:
            try:
                block = snd.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as e:
                msg = re.sub(r"^Error\s*:\s*", "", str(e).strip())
                raise AudioError(path, "corrupt", f"decode error after {n_read} frames: {msg}") from None
            if len(block) == 0:
                break
            if not np.isfinite(block).all():
                bad = int(np.size(block) - np.count_nonzero(np.isfinite(block)))
                raise AudioError(path, "non-finite", f"{bad} NaN/inf samples in frames "
                                                     f"{n_read}..{n_read + len(block)}")
            n_read += len(block)
            yield np.ascontiguousarray(block.T)
    if n_read == 0:
        raise AudioError(path, "empty", "no audio frames")
    known_length = 0 < header.frames < _UNKNOWN_FRAMES  # streamed files may declare 0 or SF_COUNT_MAX
    if header.format != "MP3" and known_length and n_read < header.frames:
        raise AudioError(path, "truncated", f"header declares {header.frames} frames, decoded {n_read}")


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a whole file: ``(x float32 (channels, samples), sample_rate)``.

    Raises AudioError (kinds in ERROR_KINDS) for unreadable, empty, non-audio, unsupported,
    corrupt or truncated files and for NaN/inf samples. For files of arbitrary length prefer
    :class:`SegmentReader`, which streams.
    """
    info: list[AudioInfo] = []
    blocks = list(iter_blocks(path, info=info))
    return np.concatenate(blocks, axis=1), info[0].sample_rate


def to_mono(x: np.ndarray) -> np.ndarray:
    """Mix ``(channels, samples)`` down to ``(samples,)`` float32 by the mean of the channels.

    A 1-D input is returned as float32 unchanged.
    """
    x = np.asarray(x)
    if x.ndim == 1:
        return x.astype(np.float32, copy=False)
    if x.ndim != 2:
        raise ValueError(f"expected (channels, samples) or (samples,), got shape {x.shape}")
    if x.shape[0] == 1:
        return x[0].astype(np.float32, copy=True)
    return x.mean(axis=0, dtype=np.float64).astype(np.float32)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``(samples,)`` or ``(channels, samples)`` from ``sr_in`` to ``sr_out`` Hz with soxr.

    Quality :data:`RESAMPLE_QUALITY` (soxr "HQ", as sox's default ``rate``). Output float32 with
    ``round(samples * sr_out / sr_in)`` samples; identity (a float32 copy-free view) when the rates
    are equal.
    """
    x = np.asarray(x, dtype=np.float32)
    if int(sr_in) == int(sr_out):
        return x
    if x.shape[-1] == 0:
        return np.zeros(x.shape[:-1] + (0,), dtype=np.float32)
    if x.ndim == 1:
        return soxr.resample(x, sr_in, sr_out, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)
    y = soxr.resample(np.ascontiguousarray(x.T), sr_in, sr_out, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(y.T, dtype=np.float32)


def level_verdict(channels: int, channel_peak: float, mono_peak: float) -> str | None:
    """The level rule of a whole file (module docstring), from its channel count, the largest absolute
    decoded sample of any channel and the largest absolute sample of the mono mix-down (both before
    resampling): ``"silent: ..."`` (anti-phase) or ``"clipped: ..."`` (skip), ``"warning: clipped: ..."``
    (kept), None when fine."""
    if channels > 1 and channel_peak >= SILENT_PEAK and mono_peak < channel_peak * 10 ** (-CANCEL_DB / 20):
        below = 20 * math.log10(channel_peak / mono_peak) if mono_peak > 0 else math.inf
        return (f"silent: after mono mix-down (anti-phase: the {channels} channels cancel, mono peak "
                f"{below:.1f} dB below the loudest channel's)")
    if channel_peak > 1.0:
        level = f"samples reach {channel_peak:.3g} ({20 * math.log10(channel_peak):+.1f} dBFS)"
        if channel_peak > MAX_OVER_FULL_SCALE:
            return (f"clipped: {level}, beyond +6 dBFS: hard-clipping to full scale would flatten it "
                    "(rescale the file)")
        return f"warning: clipped: {level}; hard-clipped to full scale (file kept)"
    return None


def load_mono(path: str | os.PathLike, sr: int, strict: bool = False) -> np.ndarray:
    """Read a whole file, mix to mono (channel mean) and resample to ``sr`` Hz: float32 ``(samples,)``.

    The one reader shared by the embed stage, :func:`singer_ssl.api.embed_files` and the CLI.
    Raises :class:`AudioError` for a file that cannot be used (see :func:`read_audio`). With
    ``strict`` also the segment stage's whole-file skips: digital silence, anti-phase channels and
    samples beyond +6 dBFS (:func:`level_verdict`; kinds ``silent`` and ``clipped``).
    """
    x, file_sr = read_audio(path)
    mono = to_mono(x)
    if strict:
        verdict = level_verdict(x.shape[0], peak(x), peak(mono))
        if verdict is None and is_silent(mono):
            verdict = "silent: digital silence throughout"
        if verdict is not None and not verdict.startswith("warning:"):
            kind, detail = verdict.split(": ", 1)
            raise AudioError(path, kind, detail)
    return resample(mono, file_sr, int(sr))


def segment_samples(seconds: float, sr: int) -> int:
    """Samples per segment: ``round(seconds * sr)`` (at least 1)."""
    if not seconds > 0:
        raise ValueError(f"segment length must be > 0 s, got {seconds}")
    return max(1, int(round(seconds * sr)))


def segment_bounds(n_samples: int, sr: int, seconds: float, remainder: str = "drop") -> list[tuple[int, int]]:
    """Non-overlapping ``[(start, end)]`` sample ranges covering a signal of ``n_samples`` at ``sr`` Hz.

    Windows have ``N = round(seconds * sr)`` samples and start at ``k * N``. ``remainder="drop"``
    gives ``floor(n_samples / N)`` windows; ``"pad"`` adds the final partial window
    ``(K * N, n_samples)`` when its length L satisfies ``2 L >= N`` (the caller zero-pads it to N).
    """
    if remainder not in REMAINDERS:
        raise ValueError(f"unknown remainder policy {remainder!r}; valid choices: {', '.join(REMAINDERS)}")
    n = segment_samples(seconds, sr)
    full = n_samples // n
    bounds = [(k * n, (k + 1) * n) for k in range(full)]
    rest = n_samples - full * n
    if remainder == "pad" and rest > 0 and 2 * rest >= n:
        bounds.append((full * n, n_samples))
    return bounds


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of ``x`` in dB relative to full scale 1.0 (``-inf`` for all zeros)."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(x * x)))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def peak(x: np.ndarray) -> float:
    """Largest absolute sample value (0 for an empty array)."""
    return float(np.max(np.abs(x))) if np.size(x) else 0.0


def is_silent(x: np.ndarray) -> bool:
    """True when ``x`` is digital silence (peak below :data:`SILENT_PEAK`)."""
    return peak(x) < SILENT_PEAK


def write_wav(path: str | os.PathLike, x: np.ndarray, sr: int) -> None:
    """Atomically write mono ``(samples,)`` (or ``(channels, samples)``) as a PCM_16 WAV file.

    Values are clipped to [-1, 1] first (resampling can overshoot full scale by a little; libsndfile
    would otherwise wrap around).
    """
    x = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
    data = x if x.ndim == 1 else np.ascontiguousarray(x.T)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, int(sr), format="WAV", subtype="PCM_16")


class SegmentReader:
    """Stream one file as mono segments at ``sr_out``: iterate to get ``(k, start, end, x)``.

    ``k`` is the segment index, ``start``/``end`` the segment's sample range in the resampled mono
    signal (``end - start < N`` only for a padded final segment), ``x`` float32 ``(N,)`` with
    ``N = round(seconds * sr_out)``. The file is decoded in blocks of ``block_frames``, mixed to
    mono, resampled by a streaming soxr resampler (same samples as :func:`resample` on the whole
    signal) and cut as :func:`segment_bounds` would cut the whole signal, so memory does not grow
    with the file's length.

    After a complete iteration: ``info`` (AudioInfo), ``n_samples`` (length of the resampled mono
    signal) and ``peak`` (its largest absolute value). Iteration raises AudioError as
    :func:`iter_blocks` does.
    """

    def __init__(self, path: str | os.PathLike, sr_out: int, seconds: float, remainder: str = "drop",
                 block_frames: int = DEFAULT_BLOCK_FRAMES):
        if remainder not in REMAINDERS:
            raise ValueError(f"unknown remainder policy {remainder!r}; "
                             f"valid choices: {', '.join(REMAINDERS)}")
        self.path = Path(path)
        self.sr_out = int(sr_out)
        self.seconds = float(seconds)
        self.remainder = remainder
        self.block_frames = int(block_frames)
        self.segment_length = segment_samples(seconds, sr_out)
        self.info: AudioInfo | None = None
        self.n_samples = 0
        self.peak = 0.0
        self.channel_peak = 0.0  # largest absolute decoded sample of any channel (before mix-down)
        self.mono_peak = 0.0  # largest absolute sample of the mono mix-down (before resampling)

    def _mono_resampled(self) -> Iterator[np.ndarray]:
        infos: list[AudioInfo] = []
        stream = None
        for block in iter_blocks(self.path, self.block_frames, info=infos):
            if self.info is None:
                self.info = infos[0]
                if self.info.sample_rate != self.sr_out:
                    stream = soxr.ResampleStream(self.info.sample_rate, self.sr_out, 1, dtype="float32",
                                                 quality=RESAMPLE_QUALITY)
            mono = to_mono(block)
            self.channel_peak = max(self.channel_peak, peak(block))
            self.mono_peak = max(self.mono_peak, peak(mono))
            yield mono if stream is None else stream.resample_chunk(mono, last=False)
        if stream is not None:
            yield stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def __iter__(self) -> Iterator[tuple[int, int, int, np.ndarray]]:
        n = self.segment_length
        pending = np.zeros(0, dtype=np.float32)
        k = 0
        for chunk in self._mono_resampled():
            if chunk.size == 0:
                continue
            self.n_samples += chunk.size
            self.peak = max(self.peak, peak(chunk))
            pending = np.concatenate([pending, chunk]) if pending.size else chunk
            n_full = pending.size // n
            for j in range(n_full):
                yield k, k * n, (k + 1) * n, np.array(pending[j * n:(j + 1) * n], dtype=np.float32)
                k += 1
            pending = pending[n_full * n:].copy()
        rest = pending.size
        if self.remainder == "pad" and rest > 0 and 2 * rest >= n:
            x = np.zeros(n, dtype=np.float32)
            x[:rest] = pending
            yield k, k * n, k * n + rest, x

    def level_verdict(self) -> str | None:
        """:func:`level_verdict` of the file read so far (call after a complete iteration)."""
        return level_verdict(self.info.channels if self.info else 1, self.channel_peak, self.mono_peak)

    def min_samples(self) -> int:
        """Shortest resampled signal that yields one segment under the remainder policy."""
        n = self.segment_length
        return n if self.remainder == "drop" else (n + 1) // 2
