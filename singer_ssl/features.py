"""The features stage: log-mel features of a segment folder into one HDF5 file, and its reader.

The front end itself lives in :mod:`singer_ssl.core.frontend`. :class:`FeaturesConfig` validates
``audio.sample_rate`` and ``features.*``; :func:`run` (what ``stages/features.py`` calls) runs
:func:`extract_features` and returns the stage's summary line.

:func:`extract_features` reads a segment folder (``manifest.csv`` + wavs, see
:mod:`singer_ssl.data.manifest`). Worker threads
each decode a batch of wavs (libsndfile releases the GIL) into a reused buffer and compute its
log-mels with single-threaded torch; the calling thread writes each batch to HDF5 as one slice, in
manifest order, and folds the batch statistics into the dataset mean/std (Chan et al.'s parallel
Welford update, float64). :class:`FeatureStore` reads the file back lazily.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import soundfile as sf
import torch
from torch import nn

from singer_ssl.core.device import resolve_device
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.frontend import (  # noqa: F401
    FIXED_ATTRS,
    FRONT_END_KEYS,
    MIN_FRAMES,
    LogMel,
    empty_mel_filters,
    front_end_params,
    make_extractor,
    n_frames,
)
from singer_ssl.core.io import atomic_path, open_h5, require_free_space
from singer_ssl.core.params import (
    choice_param,
    dataset_spec,
    int_param,
    number_param,
    section,
)
from singer_ssl.data.manifest import SegmentError, read_manifest

STORAGE_DTYPES = ("float32", "float16")
AUDIO_KEYS = ("sample_rate",)
#: ``features.*``; ``workers`` (decode+compute threads, default: the usable cores) is optional and
#: absent from params.yaml: the output does not depend on it.
FEATURES_KEYS = ("n_fft", "hop", "n_mels", "fmin", "fmax", "log_offset", "dtype", "batch_size", "device",
                 "workers")


@dataclass(frozen=True)
class FeaturesConfig:
    """Validated ``audio.sample_rate`` and ``features.*`` for one dataset (defaults = Torres et al.'s front end).

    ``device``: ``auto`` (CUDA via nnAudio when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``,
    resolved when the stage runs. ``workers``: decode+compute threads (None: the usable cores).
    """

    dataset: str
    sample_rate: int = 44100
    n_fft: int = 2048
    hop: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    log_offset: float = 1e-8
    dtype: str = "float32"
    batch_size: int = 32
    device: str = "auto"
    workers: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], dataset: str) -> FeaturesConfig:
        """Check that ``dataset`` is configured and validate ``audio`` and ``features``; nothing else is read.

        Every problem is a one-line ConfigError naming the dotted parameter.
        """
        dataset_spec(dict(params), dataset)
        audio = section(dict(params), "audio", AUDIO_KEYS)
        fe = section(dict(params), "features", FEATURES_KEYS)
        sr = int_param(audio.get("sample_rate", 44100), "audio.sample_rate", minimum=1)
        ints = {k: int_param(fe.get(k, getattr(cls, k)), f"features.{k}", minimum=1)
                for k in ("n_fft", "hop", "n_mels", "batch_size")}
        fmin = number_param(fe.get("fmin", 0.0), "features.fmin", 0.0, sr / 2.0, high_open=True)
        fmax = fe.get("fmax")
        if fmax is not None:
            fmax = number_param(fmax, "features.fmax", fmin, sr / 2.0, low_open=True)
        log_offset = number_param(fe.get("log_offset", 1e-8), "features.log_offset", 0.0, low_open=True)
        dtype = choice_param(fe.get("dtype", "float32"), "features.dtype", STORAGE_DTYPES)
        device = fe.get("device", "auto")
        device = "auto" if device is None else device
        if not isinstance(device, str) or not _valid_device(device):
            raise ConfigError(f"features.device: expected auto, cpu, cuda or cuda:N, got {device!r}")
        workers = fe.get("workers")
        if workers is not None:
            workers = int_param(workers, "features.workers", minimum=1)
        check_mel_filters(sr, ints["n_fft"], ints["n_mels"], fmin, fmax)
        return cls(dataset, sr, fmin=fmin, fmax=fmax, log_offset=log_offset, dtype=dtype, device=device,
                   workers=workers, **ints)


def check_mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> None:
    """ConfigError naming ``features.n_mels`` (and the keys that widen the bands) when a mel filter holds no
    FFT bin (:func:`singer_ssl.core.frontend.empty_mel_filters`): its feature row would be the constant
    ``log(log_offset)`` for every sound (nnAudio only warns "Empty filters detected")."""
    empty = empty_mel_filters(sample_rate, n_fft, n_mels, fmin, fmax)
    if empty:
        m, lo, hi = empty[0]
        top = sample_rate / 2.0 if fmax is None else fmax
        raise ConfigError(f"features.n_mels: {len(empty)} of the {n_mels} mel filters between features.fmin "
                          f"{fmin:g} Hz and features.fmax {top:g} Hz hold no FFT bin (features.n_fft {n_fft}: bins "
                          f"{sample_rate / n_fft:.4g} Hz apart at audio.sample_rate {sample_rate}; first empty filter "
                          f"{m}: {lo:.4g}-{hi:.4g} Hz); lower features.n_mels, raise features.n_fft or widen "
                          f"fmin..fmax")


def _valid_device(name: str) -> bool:
    if name in ("", "auto"):
        return True
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        return False
    return True



# ----------------------------------------------------------------------------------------------- stage


class RunningMoments:
    """Streaming mean / population std in float64 (Chan, Golub & LeVeque's pairwise Welford update).

    ``update(x)`` folds in a batch of any shape; equals ``np.mean``/``np.std`` of the concatenation.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0

    @staticmethod
    def batch_stats(x: torch.Tensor | np.ndarray) -> tuple[int, float, float]:
        """``(count, mean, M2)`` of one batch, M2 = sum of squared deviations.

        Shifted sums (pivot K = the first value, so ``x - K`` is small and exact for nearby values)
        accumulated in float64: ``mean = K + S1/n``, ``M2 = S2 - S1^2/n`` with ``S1 = sum(x - K)``,
        ``S2 = sum((x - K)^2)``; ~3x cheaper than converting the batch to float64 first.
        """
        x = torch.as_tensor(x).detach().reshape(-1)
        n = int(x.numel())
        if n == 0:
            return 0, 0.0, 0.0
        pivot = x[0].item()
        d = x - pivot
        s1 = float(d.sum(dtype=torch.float64))
        s2 = float(d.square().sum(dtype=torch.float64))
        return n, pivot + s1 / n, max(0.0, s2 - s1 * s1 / n)

    def merge(self, count: int, mean: float, m2: float) -> None:
        """Fold in another partition's ``(count, mean, M2)``."""
        if count == 0:
            return
        total = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / total
        self.m2 += m2 + delta * delta * self.count * count / total
        self.count = total

    def update(self, x: torch.Tensor | np.ndarray) -> None:
        """Fold in a batch of any shape."""
        self.merge(*self.batch_stats(x))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count else float("nan")


def segment_length(rows: Sequence[Mapping[str, Any]], sample_rate: int, manifest: str = "manifest") -> int:
    """The common segment length in samples: the most frequent ``round((end_s - start_s) * sr)``.

    Other rows may be shorter (a zero-padded final segment, ``segment.remainder: pad``, records its
    real ``end_s``) down to half a segment, never longer, within a tolerance of 1 ms + 1 sample for
    rounded times. Raises SegmentError naming the first offending row.
    """
    try:
        durations = np.array([float(r["end_s"]) - float(r["start_s"]) for r in rows])
    except ValueError as e:
        raise SegmentError(f"{manifest}: non-numeric start_s/end_s ({e})") from None
    implied = durations * sample_rate
    if not np.isfinite(implied).all():
        i = int(np.flatnonzero(~np.isfinite(implied))[0])
        raise SegmentError(f"{manifest}: segment {rows[i]['segment']!r} has non-finite start_s/end_s")
    values, counts = np.unique(np.round(implied).astype(np.int64), return_counts=True)
    n = int(values[counts == counts.max()].max())
    tol = sample_rate / 1000.0 + 1.0
    bad = np.flatnonzero((implied > n + tol) | (implied < n / 2.0 - tol))
    if n <= 0 or bad.size:
        i = int(bad[0]) if bad.size else 0
        raise SegmentError(f"{manifest}: segment {rows[i]['segment']!r} spans {durations[i]:.4f} s while "
                           f"segments span {n / sample_rate:.4f} s; features need fixed-length segments")
    return n


def _read_into(path: Path, out: np.ndarray, sample_rate: int) -> None:
    """Decode mono ``path`` into ``out`` (float32, exactly ``len(out)`` frames) or raise SegmentError."""
    try:
        with sf.SoundFile(str(path)) as f:
            if f.samplerate != sample_rate or f.channels != 1 or f.frames != out.shape[0]:
                raise SegmentError(
                    f"segment {path}: {f.frames} frames, {f.channels} channel(s) at {f.samplerate} Hz; "
                    f"expected {out.shape[0]} frames, mono at {sample_rate} Hz per the manifest "
                    f"(corrupt workspace? re-run the segment stage)")
            got = f.read(frames=out.shape[0], dtype="float32", out=out)
            if got.shape[0] != out.shape[0]:
                raise SegmentError(f"segment {path}: read {got.shape[0]} of {out.shape[0]} frames")
    except SegmentError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise SegmentError(f"segment {path}: cannot read audio ({e})") from None


def read_segments(paths: Sequence[Path], out: np.ndarray, sample_rate: int) -> np.ndarray:
    """Decode ``paths`` into the rows of ``out`` (>= len(paths), n_samples) float32; returns the filled rows.

    Raises SegmentError naming the file when one is unreadable or not mono/``sample_rate``/that long.
    """
    for j, path in enumerate(paths):
        _read_into(path, out[j], sample_rate)
    return out[:len(paths)]


def _ordered_map(fn: Callable[[int], Any], starts: Sequence[int], workers: int) -> Iterator[tuple[int, Any]]:
    """``(start, fn(start))`` in order, computed by ``workers`` threads, at most ``workers + 1`` ahead.

    A worker's exception is raised here; queued work is cancelled and running work awaited.
    """
    if workers <= 1:
        for s in starts:
            yield s, fn(s)
        return
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="features")
    try:
        todo = iter(starts)
        pending: deque[tuple[int, Future]] = deque()
        for s in itertools.islice(todo, workers + 1):
            pending.append((s, ex.submit(fn, s)))
        while pending:
            s, fut = pending.popleft()
            result = fut.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, ex.submit(fn, nxt)))
            yield s, result
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """CPU cores this process may use (``os.sched_getaffinity`` where available)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def extract_features(segment_dir: str | os.PathLike, out_path: str | os.PathLike, *, sample_rate: int,
                     n_fft: int = 2048, hop: int = 512, n_mels: int = 128, fmin: float = 0.0,
                     fmax: float | None = None, log_offset: float = 1e-8, dtype: str = "float32",
                     batch_size: int = 32, device: str | torch.device = "auto", workers: int | None = None,
                     dataset: str | None = None, progress: bool | None = None,
                     extractor: nn.Module | None = None) -> dict[str, Any]:
    """Compute log-mels of every segment in ``segment_dir`` into ``out_path`` (HDF5, written atomically).

    Layout: ``logmel`` (N, n_mels, T) ``dtype`` chunked (1, n_mels, T); ``key``/``singer``/``source`` (N,)
    utf-8 from the manifest (``key`` = ``segment``, ``source`` = ``recording``), in manifest order; attrs = the
    front-end params (:data:`FRONT_END_KEYS`, ``fmax`` resolved) + :data:`FIXED_ATTRS` + ``mean``/``std`` (population,
    over every log-mel value before the storage cast, accumulated in float64) + bookkeeping (``dataset``,
    ``n_segments``, ``segment_samples``, ``dtype``, ``extractor``). Returns the attrs.

    Work is split into batches of ``batch_size`` segments; ``workers`` threads (default: the usable
    CPU cores) each decode a batch and compute its features, while the calling thread folds the
    batch statistics in and writes the batch as one slice, in manifest order (so the output is
    identical for any ``workers``). On CPU torch runs single-threaded for the duration: parallelism
    comes from the worker threads instead of OpenMP, whose spin-waiting barriers collapse (measured
    ~10x slower) when the decoders or another process compete for the cores.
    ``device``: ``"auto"`` = CUDA (nnAudio) when available, else CPU (:class:`LogMel`); ``extractor``
    overrides :func:`make_extractor`'s choice. ``progress``: tqdm bar on stderr (``None``: only when
    stderr is a terminal). Raises SegmentError (missing/empty manifest, a wav that is unreadable or
    not mono / ``sample_rate`` / the manifest's length, naming it) before anything is renamed into place.
    """
    from tqdm.auto import tqdm

    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"features: unknown dtype {dtype!r}; valid choices: {', '.join(STORAGE_DTYPES)}")
    if int(batch_size) < 1:
        raise ValueError(f"features: batch_size must be >= 1, got {batch_size}")
    batch_size = int(batch_size)
    workers = default_workers() if workers is None else max(1, int(workers))
    segment_dir = Path(segment_dir)
    name = dataset or segment_dir.name
    fe = front_end_params(sample_rate, n_fft, hop, n_mels, fmin, fmax, log_offset)
    rows = read_manifest(segment_dir, name)
    n_samples = segment_length(rows, fe["sample_rate"], str(segment_dir / "manifest.csv"))
    if n_samples <= fe["n_fft"] // 2:
        raise SegmentError(f"dataset {name!r}: segments of {n_samples} samples are too short for n_fft "
                           f"{fe['n_fft']} (reflect padding needs more than n_fft // 2)")
    paths = [segment_dir / r["segment"] for r in rows]
    n, t = len(rows), n_frames(n_samples, fe["hop"], fe["n_fft"])
    if t < MIN_FRAMES:  # n_frames >= MIN_FRAMES  <=>  hop <= (padded length - n_fft) // (MIN_FRAMES - 1)
        max_hop = (n_samples + 2 * (fe["n_fft"] // 2) - fe["n_fft"]) // (MIN_FRAMES - 1)
        raise ConfigError(f"features.hop: {fe['hop']} samples gives {t} frame(s) per {n_samples}-sample segment of "
                          f"dataset {name!r}, fewer than the {MIN_FRAMES} the log-mel encoders need; lower "
                          f"features.hop (at most {max_hop}) or lengthen segment.seconds")
    dev = resolve_device(device)
    module = extractor if extractor is not None else make_extractor(dev, **fe)
    buffers: deque[np.ndarray] = deque()  # decode buffers reused across batches (no page faults)

    def work(start: int) -> tuple[np.ndarray, tuple[int, float, float]]:
        stop = min(start + batch_size, n)
        buf = buffers.pop() if buffers else np.empty((batch_size, n_samples), dtype=np.float32)
        try:
            wave = read_segments(paths[start:stop], buf, fe["sample_rate"])
            with torch.inference_mode():
                feats = module(torch.from_numpy(wave).to(dev, non_blocking=True))
                stats = RunningMoments.batch_stats(feats)
                out = feats.cpu().numpy()
        finally:
            buffers.append(buf)
        if out.shape != (stop - start, fe["n_mels"], t):
            raise RuntimeError(f"extractor returned {out.shape}, expected {(stop - start, fe['n_mels'], t)}")
        return out, stats

    moments = RunningMoments()
    str_dt = h5py.string_dtype("utf-8")
    attrs: dict[str, Any] = {**fe, **FIXED_ATTRS}
    prev_threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    # h5py may crash (not raise) when a write hits a full disk: refuse to start without room for the log-mels
    require_free_space(out_path, n * fe["n_mels"] * t * np.dtype(dtype).itemsize)
    try:
        with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
            # No object timestamps: the same inputs give byte-identical files (stable DVC hashes).
            ds = h5.create_dataset("logmel", shape=(n, fe["n_mels"], t), dtype=dtype,
                                   chunks=(1, fe["n_mels"], t), track_times=False)
            # h5 ``source`` = the manifest's ``recording`` (the grouping id of views and probe splits)
            for col, h5name in (("segment", "key"), ("singer", "singer"), ("recording", "source")):
                h5.create_dataset(h5name, data=np.array([r[col] for r in rows], dtype=object), dtype=str_dt,
                                  track_times=False)
            with tqdm(total=n, desc=f"features {name}", unit="seg", dynamic_ncols=True,
                      disable=None if progress is None else not progress) as bar:
                for start, (out, stats) in _ordered_map(work, range(0, n, batch_size), workers):
                    moments.merge(*stats)
                    ds[start:start + out.shape[0]] = out.astype(dtype, copy=False)
                    bar.update(out.shape[0])
            if not (math.isfinite(moments.mean) and math.isfinite(moments.std)):
                raise ValueError(f"dataset {name!r}: non-finite log-mel values (log_offset must be > 0)")
            attrs.update(mean=moments.mean, std=moments.std, dataset=name, n_segments=n,
                         segment_samples=n_samples, dtype=dtype, extractor=type(module).__name__)
            for k, v in attrs.items():
                h5.attrs[k] = v
    finally:
        torch.set_num_threads(prev_threads)
    return attrs


def run(cfg: FeaturesConfig, segments: str | os.PathLike, out: str | os.PathLike) -> str:
    """Extract the features of segment folder ``segments`` into ``out`` (HDF5); the stage's summary line.

    Raises SegmentError (bad segment folder) or ConfigError (``features.device`` unavailable here).
    """
    try:
        device = resolve_device(cfg.device)
    except ValueError as e:
        raise ConfigError(f"features.device: {e}") from None
    t0 = time.perf_counter()
    attrs = extract_features(segments, out, sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop=cfg.hop,
                             n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, log_offset=cfg.log_offset,
                             dtype=cfg.dtype, batch_size=cfg.batch_size, device=device, workers=cfg.workers,
                             dataset=cfg.dataset)
    dt = time.perf_counter() - t0
    n = attrs["n_segments"]
    frames = n_frames(attrs["segment_samples"], attrs["hop"], attrs["n_fft"])
    return (f"{cfg.dataset}: {n} segments -> {out} ({attrs['n_mels']} mels x {frames} frames, {attrs['dtype']}, "
            f"{attrs['extractor']} on {device}); mean {attrs['mean']:.3f}, "
            f"std {attrs['std']:.3f}; {dt:.1f} s ({n / max(dt, 1e-9):.0f} segments/s)")



# ---------------------------------------------------------------------------------------------- reader


def _attr_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


class FeatureStore:
    """Lazy reader of a features HDF5 file.

    Nothing is opened until first used; the file handle is per process (re-opened after a fork,
    never pickled), so a store can be handed to DataLoader workers. ``store[i]`` reads one item
    ``(n_mels, T)`` float32 without loading the file; ``store.batch(indices)`` reads several.
    ``keys``/``singers``/``sources`` (lists of str), ``attrs`` (dict), ``mean``/``std`` are read once.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._meta: dict[str, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_meta": self._meta}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self._meta = state["path"], state["_meta"]
        self._h5, self._pid = None, None

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            if not self.path.is_file():
                raise FileNotFoundError(f"features file not found: {self.path} (run the features stage)")
            self._h5 = open_h5(self.path, "features file")
            self._pid = os.getpid()
        return self._h5

    def _metadata(self) -> dict[str, Any]:
        if self._meta is None:
            h5 = self._file()
            if "logmel" not in h5:
                raise ValueError(f"{self.path}: no 'logmel' dataset; not a singer-ssl features file")
            self._meta = {
                "len": int(h5["logmel"].shape[0]),
                "shape": tuple(int(s) for s in h5["logmel"].shape[1:]),
                "keys": [str(s) for s in h5["key"].asstr()[()]],
                "singers": [str(s) for s in h5["singer"].asstr()[()]],
                "sources": [str(s) for s in h5["source"].asstr()[()]] if "source" in h5 else [],
                "attrs": {k: _attr_value(v) for k, v in h5.attrs.items()},
            }
        return self._meta

    def __len__(self) -> int:
        return self._metadata()["len"]

    def __getitem__(self, i: int) -> np.ndarray:
        n = len(self)
        i = int(i)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} items in {self.path}")
        return np.asarray(self._file()["logmel"][i % n], dtype=np.float32)

    def batch(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Items ``indices`` as (len(indices), n_mels, T) float32, in the order given."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, *self._metadata()["shape"]), dtype=np.float32)
        order = np.argsort(idx, kind="stable")
        uniq, inverse = np.unique(idx[order], return_inverse=True)
        if uniq[0] < 0 or uniq[-1] >= len(self):
            raise IndexError(f"indices out of range for {len(self)} items in {self.path}")
        data = np.asarray(self._file()["logmel"][uniq], dtype=np.float32)
        out = np.empty((idx.size, *data.shape[1:]), dtype=np.float32)
        out[order] = data[inverse]
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        """(N, n_mels, T)."""
        return (len(self), *self._metadata()["shape"])

    @property
    def keys(self) -> list[str]:
        return self._metadata()["keys"]

    @property
    def singers(self) -> list[str]:
        return self._metadata()["singers"]

    @property
    def sources(self) -> list[str]:
        return self._metadata()["sources"]

    @property
    def attrs(self) -> dict[str, Any]:
        return self._metadata()["attrs"]

    @property
    def mean(self) -> float:
        return float(self.attrs["mean"])

    @property
    def std(self) -> float:
        return float(self.attrs["std"])

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._pid = None, None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r})"


__all__ = [
    "FeatureStore", "FeaturesConfig", "RunningMoments", "SegmentError", "default_workers", "extract_features",
    "read_segments", "run", "segment_length",
]
