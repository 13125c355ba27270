"""Tests of singer_ssl.core.audio: reading, mono, soxr resampling, segment bounds, streaming, bad files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from singer_ssl.core import audio


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def fft_peak_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec)) * sr / len(x)


# ------------------------------------------------------------------------------------ reading

def test_read_audio_shape_dtype_and_values(tmp_path: Path):
    rng = np.random.default_rng(0)
    data = (rng.uniform(-0.5, 0.5, size=(1234, 2))).astype(np.float32)  # soundfile layout (frames, ch)
    p = tmp_path / "st.wav"
    sf.write(p, data, 22050, subtype="PCM_16")
    x, sr = audio.read_audio(p)
    assert sr == 22050
    assert x.dtype == np.float32 and x.shape == (2, 1234)
    np.testing.assert_allclose(x, data.T, atol=1.0 / 32767)


def test_read_audio_flac_mono(tmp_path: Path):
    y = sine(440, 0.5, 16000)
    p = tmp_path / "m.flac"
    sf.write(p, y, 16000, subtype="PCM_16")
    x, sr = audio.read_audio(p)
    assert (sr, x.shape) == (16000, (1, len(y)))
    np.testing.assert_allclose(x[0], y, atol=1.0 / 32767)


def test_to_mono_is_channel_mean():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, size=(3, 500)).astype(np.float32)
    expected = (x[0].astype(np.float64) + x[1] + x[2]) / 3
    m = audio.to_mono(x)
    assert m.shape == (500,) and m.dtype == np.float32
    np.testing.assert_allclose(m, expected, atol=1e-6)
    np.testing.assert_array_equal(audio.to_mono(x[1]), x[1])
    np.testing.assert_array_equal(audio.to_mono(x[:1]), x[0])


# --------------------------------------------------------------------------------- resampling

@pytest.mark.parametrize("sr_in,sr_out", [(48000, 44100), (22050, 44100), (16000, 44100), (44100, 16000),
                                          (8000, 22050)])
@pytest.mark.parametrize("n", [1, 999, 44100, 100003])
def test_resample_length(sr_in: int, sr_out: int, n: int):
    y = audio.resample(np.zeros(n, dtype=np.float32), sr_in, sr_out)
    assert y.dtype == np.float32
    assert abs(len(y) - round(n * sr_out / sr_in)) <= 1


@pytest.mark.parametrize("sr_in,sr_out,freq", [(48000, 44100, 1000.0), (22050, 44100, 3000.0),
                                               (44100, 16000, 440.0)])
def test_resample_keeps_sine_frequency(sr_in: int, sr_out: int, freq: float):
    y = audio.resample(sine(freq, 1.0, sr_in), sr_in, sr_out)
    resolution = sr_out / len(y)
    assert abs(fft_peak_hz(y, sr_out) - freq) <= resolution
    # amplitude preserved in the pass band (Hann-free RMS over the steady middle part)
    mid = y[len(y) // 4: 3 * len(y) // 4]
    assert math.isclose(np.sqrt(np.mean(mid.astype(np.float64) ** 2)), 0.5 / math.sqrt(2), rel_tol=0.01)


def test_resample_upsampling_adds_no_images():
    """22.05 -> 44.1 kHz: a 5 kHz tone must not leak an image at 22050 - 5000 Hz (anti-imaging filter)."""
    y = audio.resample(sine(5000, 1.0, 22050), 22050, 44100)
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / 44100)
    image = spec[(freqs > 16000) & (freqs < 18000)].max()
    assert 20 * np.log10(image / spec.max()) < -80


def test_resample_multichannel_and_identity():
    x = np.stack([sine(500, 0.3, 48000), sine(900, 0.3, 48000)])
    y = audio.resample(x, 48000, 44100)
    assert y.shape == (2, round(x.shape[1] * 44100 / 48000))
    np.testing.assert_allclose(y[1], audio.resample(x[1], 48000, 44100), atol=1e-6)
    np.testing.assert_array_equal(audio.resample(x[0], 44100, 44100), x[0])


# ------------------------------------------------------------------------------------- bounds

@pytest.mark.parametrize("n_samples,expected_drop,expected_pad", [
    (10, [(0, 4), (4, 8)], [(0, 4), (4, 8), (8, 10)]),   # remainder 2 = half: padded
    (9, [(0, 4), (4, 8)], [(0, 4), (4, 8)]),             # remainder 1 < half: dropped
    (8, [(0, 4), (4, 8)], [(0, 4), (4, 8)]),
    (3, [], [(0, 3)]),
    (1, [], []),
])
def test_segment_bounds_cases(n_samples, expected_drop, expected_pad):
    # seconds=1 at sr=4 -> windows of 4 samples
    assert audio.segment_bounds(n_samples, 4, 1.0, "drop") == expected_drop
    assert audio.segment_bounds(n_samples, 4, 1.0, "pad") == expected_pad


@pytest.mark.parametrize("duration", [0.5, 3.99, 4.0, 7.3, 60.25])
def test_segment_bounds_counts_match_floor(duration: float):
    sr, seconds = 44100, 4.0
    n = int(round(duration * sr))
    bounds = audio.segment_bounds(n, sr, seconds)
    assert len(bounds) == math.floor(duration / seconds)
    assert all(e - s == 176400 for s, e in bounds)
    assert all(b[0] == a[1] for a, b in zip(bounds, bounds[1:]))  # contiguous, non-overlapping


def test_segment_bounds_rejects_unknown_policy():
    with pytest.raises(ValueError, match="drop, pad"):
        audio.segment_bounds(100, 10, 1.0, "keep")


# ---------------------------------------------------------------------------------- streaming

@pytest.mark.parametrize("sr_in", [16000, 22050])
@pytest.mark.parametrize("remainder", ["drop", "pad"])
def test_segment_reader_equals_whole_file_chain(tmp_path: Path, sr_in: int, remainder: str):
    rng = np.random.default_rng(2)
    data = rng.uniform(-0.4, 0.4, size=(int(3.7 * sr_in), 2)).astype(np.float32)
    p = tmp_path / "x.wav"
    sf.write(p, data, sr_in, subtype="FLOAT")
    sr_out, seconds = 16000, 1.0
    whole = audio.resample(audio.to_mono(data.T), sr_in, sr_out)  # independent whole-signal chain
    bounds = audio.segment_bounds(len(whole), sr_out, seconds, remainder)
    reader = audio.SegmentReader(p, sr_out, seconds, remainder, block_frames=1500)  # many blocks
    got = list(reader)
    assert [(s, e) for _, s, e, _ in got] == bounds
    assert [k for k, *_ in got] == list(range(len(bounds)))
    for (_, s, e, x), (bs, be) in zip(got, bounds):
        assert x.shape == (16000,) and x.dtype == np.float32
        np.testing.assert_allclose(x[: e - s], whole[bs:be], atol=1e-5)
        assert not x[e - s:].any()  # padding is zeros
    assert reader.n_samples == len(whole)
    assert reader.info is not None and reader.info.sample_rate == sr_in and reader.info.channels == 2


# ---------------------------------------------------------------------------------- bad files

def _wav_bytes(tmp_path: Path, fmt: str = "WAV", subtype: str = "PCM_16", ext: str = "wav") -> bytes:
    p = tmp_path / f"src.{ext}"
    noise = np.random.default_rng(3).uniform(-0.3, 0.3, size=(3 * 16000, 2)).astype(np.float32)
    sf.write(p, noise, 16000, format=fmt, subtype=subtype)  # noise: Ogg pages well past the headers
    return p.read_bytes()


def _make_bad(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / f"bad_{kind.replace(' ', '_')}.wav"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "no frames":
        sf.write(p, np.zeros((0, 1), dtype=np.float32), 16000)
    elif kind == "not audio":
        p.write_text("this is a text file, not a wave file\n" * 10)
    elif kind == "corrupt":
        p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    elif kind == "truncated":
        b = _wav_bytes(tmp_path)
        p.write_bytes(b[: len(b) // 2])
    elif kind == "header only":
        p.write_bytes(_wav_bytes(tmp_path)[:44])
    elif kind == "truncated flac":
        p = tmp_path / "bad.flac"
        b = _wav_bytes(tmp_path, "FLAC", "PCM_16", "flac")
        p.write_bytes(b[: len(b) // 2])
    elif kind == "truncated ogg":
        p = tmp_path / "bad.ogg"
        b = _wav_bytes(tmp_path, "OGG", "VORBIS", "ogg")
        p.write_bytes(b[: len(b) // 2])
    elif kind in ("nan", "inf"):
        x = sine(300, 0.5, 16000)
        x[1000] = np.nan if kind == "nan" else np.inf
        sf.write(p, x, 16000, subtype="FLOAT")
    elif kind == "dangling link":
        p.symlink_to(tmp_path / "does-not-exist.wav")
    elif kind == "directory":
        p.mkdir()
    return p


@pytest.mark.parametrize("kind,expected", [
    ("empty", {"empty"}), ("no frames", {"empty"}), ("not audio", {"not audio"}), ("corrupt", {"corrupt"}),
    ("truncated", {"truncated"}), ("header only", {"truncated"}),
    ("truncated flac", {"corrupt", "truncated"}),
    ("truncated ogg", {"truncated"}), ("nan", {"non-finite"}), ("inf", {"non-finite"}),
    ("dangling link", {"unreadable"}), ("directory", {"unreadable"}),
])
def test_bad_files_raise_audio_error_with_kind(tmp_path: Path, kind: str, expected: set[str]):
    p = _make_bad(tmp_path, kind)
    with pytest.raises(audio.AudioError) as err:
        audio.read_audio(p)
    assert err.value.kind in expected
    assert err.value.kind in audio.ERROR_KINDS
    assert str(p) in str(err.value) and err.value.reason.startswith(err.value.kind + ": ")
    with pytest.raises(audio.AudioError):  # the streaming reader fails the same way
        list(audio.SegmentReader(p, 16000, 0.1))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads chmod-000 files")
def test_permission_denied_is_unreadable(tmp_path: Path):
    p = tmp_path / "locked.wav"
    sf.write(p, sine(300, 0.2, 16000), 16000)
    p.chmod(0)
    try:
        with pytest.raises(audio.AudioError) as err:
            audio.read_audio(p)
        assert err.value.kind == "unreadable" and "permission" in err.value.detail
    finally:
        p.chmod(0o644)


# ------------------------------------------------------------------------------ levels, write

def test_rms_dbfs_and_silence():
    assert math.isclose(audio.rms_dbfs(sine(1000, 1.0, 48000, amp=1.0)), -10 * math.log10(2), abs_tol=0.01)
    assert math.isclose(audio.rms_dbfs(sine(1000, 1.0, 48000, amp=0.1)), -20 - 10 * math.log10(2),
                        abs_tol=0.01)
    assert audio.rms_dbfs(np.zeros(10)) == -math.inf
    assert audio.is_silent(np.full(100, 1e-6, dtype=np.float32))
    assert not audio.is_silent(np.r_[np.zeros(99), 2.0 / 32767].astype(np.float32))


def test_write_wav_pcm16_mono_clipped_atomic(tmp_path: Path):
    x = sine(440, 0.25, 16000, amp=0.8)
    x[10] = 1.7  # overshoot must be clipped, not wrapped
    x[11] = -3.0
    p = tmp_path / "out" / "seg.wav"
    p.parent.mkdir()
    audio.write_wav(p, x, 16000)
    info = sf.info(p)
    assert (info.format, info.subtype, info.channels, info.samplerate, info.frames) == (
        "WAV", "PCM_16", 1, 16000, len(x))
    y, _ = sf.read(p, dtype="int16")
    assert y[10] == 32767 and y[11] <= -32767
    mask = np.ones(len(x), bool)
    mask[[10, 11]] = False
    np.testing.assert_allclose(y[mask] / 32768.0, x[mask], atol=1.0 / 32768)  # libsndfile scales by 2^15
    assert sorted(q.name for q in p.parent.iterdir()) == ["seg.wav"]  # no temporary left behind


def test_permission_error_maps_to_unreadable(tmp_path: Path, monkeypatch):
    """Same mapping as the chmod test above, also when the tests run as root."""
    p = tmp_path / "x.wav"
    sf.write(p, sine(300, 0.2, 16000), 16000)

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(audio, "open", deny, raising=False)
    with pytest.raises(audio.AudioError) as err:
        audio.read_audio(p)
    assert (err.value.kind, err.value.detail) == ("unreadable", "permission denied")
