"""Training data: the segment table of all training datasets and the two-view dataset.

Layout (contract): features ``<features_dir>/<name>.h5`` (read through
:class:`singer_ssl.features.FeatureStore`), segments ``<segments_dir>/<name>/`` (wav files named by the
manifest's ``segment`` column = the HDF5 ``key``); the pipeline passes ``data/features/train`` and
``data/segments/train`` (``dvc.yaml``).

Views (``augment.views``):

- ``file`` (Torres et al. 2023): the two views are random crops of two *different* segments of the same
  recording (the same segment when the recording has only one); a recording is the manifest's
  ``recording`` (stored as the features' ``source``: the source file by default, an M4Singer song folder).
- ``clip`` (Fonseca et al. 2021): two random crops ("patches") of the same segment.

Two input modes:

- ``logmel``: views are frame crops of the stored log-mels (no waveform augmentation); a crop of
  ``crop_samples`` samples corresponds to ``1 + crop_samples // hop`` frames (centred STFT).
- ``wave``: views are sample crops of the segment audio, read with soundfile (only the crop is
  read) and augmented in the DataLoader workers; the log-mel is computed later, batched, on the
  training device (or the waveform goes straight to a waveform encoder). The ``babble`` augmentation
  reads crops of other training singers' segments through :meth:`ViewDataset.babble`.

Every sample's randomness (which partner segment, crop offsets, augmentation draws) comes from its
own ``numpy.random.Generator`` seeded by the sample's *key* ``(seed, stream, epoch, batch, position)``
so that the views do not depend on the number of workers, on which worker served the item, or on
the number of processes (DDP): a resumed or re-sharded run sees exactly the same samples.
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from singer_ssl.augment.chain import ramp_strength
from singer_ssl.core.errors import ConfigError
from singer_ssl.data.manifest import read_manifest
from singer_ssl.features import FeatureStore, segment_length
from singer_ssl.model.singer_model import OFFSET_SCALINGS, centre_offset

TRAIN_STREAM, VAL_STREAM = 0, 1  # the RNG key's stream field (training batches, fixed validation views)
FRONTEND_KEYS = ("sample_rate", "n_fft", "hop", "n_mels", "fmin", "fmax", "log_offset")
VIEWS = ("file", "clip")
UNLABELLED = -1


def features_path(features_dir: str | os.PathLike, name: str) -> Path:
    """``<features_dir>/<name>.h5``: the features of training dataset ``name``."""
    return Path(features_dir) / f"{name}.h5"


def segments_path(segments_dir: str | os.PathLike, name: str) -> Path:
    """``<segments_dir>/<name>``: the segment folder of training dataset ``name``."""
    return Path(segments_dir) / name


@dataclass
class SegmentTable:
    """All training segments of all training datasets, indexed 0..N-1 in dataset order.

    Attributes:
        names: training dataset names (in ``params.yaml`` order).
        stores: one :class:`~singer_ssl.features.FeatureStore` per dataset (lazy, picklable).
        audio_dirs: segment folder per dataset.
        dataset: (N,) dataset index of each segment.
        row: (N,) row of the segment in its dataset's HDF5.
        keys: (N,) manifest ``segment`` (``<singer>/<name>.wav``, relative to the dataset folder).
        singer: (N,) global singer id (``-1`` = unknown); ids index ``singer_names``.
        singer_names: ``"<dataset>/<singer>"`` for each id (sorted).
        source: (N,) global id of the recording (``"<dataset>/<recording>"``; the features' ``source``
            holds the manifest's ``recording``).
        attrs: front-end attributes (identical across datasets).
        mean, std: log-mel mean / standard deviation pooled over every value of every dataset.
        n_frames: frames T of the stored log-mels (the shortest over datasets).
        segment_seconds: segment duration (median of ``end_s - start_s`` over the manifests).
    """

    names: list[str]
    stores: list[Any]
    audio_dirs: list[Path]
    dataset: np.ndarray
    row: np.ndarray
    keys: list[str]
    singer: np.ndarray
    singer_names: list[str]
    source: np.ndarray
    attrs: dict[str, Any]
    mean: float
    std: float
    n_frames: int
    segment_seconds: float
    _groups: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def has_labels(self) -> bool:
        """True when at least two distinct singers are known."""
        return len(np.unique(self.singer[self.singer >= 0])) >= 2

    def source_groups(self) -> dict[int, np.ndarray]:
        """Source id -> indices of its segments (ascending)."""
        if not self._groups:
            order = np.argsort(self.source, kind="stable")
            bounds = np.flatnonzero(np.diff(self.source[order])) + 1
            for chunk in np.split(order, bounds):
                if len(chunk):
                    self._groups[int(self.source[chunk[0]])] = np.sort(chunk)
        return self._groups

    def audio_path(self, index: int) -> Path:
        """Path of segment ``index``'s wav file."""
        return self.audio_dirs[int(self.dataset[index])] / self.keys[index]


def load_segment_table(features_dir: str | os.PathLike, segments_dir: str | os.PathLike,
                       names: Sequence[str]) -> SegmentTable:
    """Read the metadata (keys, singers, sources, attrs, stats) of every training dataset ``names``:
    features ``<features_dir>/<name>.h5``, segments ``<segments_dir>/<name>/``.

    Cheap: reads the HDF5 string datasets, shapes and attrs and the manifests; no log-mels, no audio.
    Raises ConfigError naming the missing file / mismatching parameter.
    """
    if not names:
        raise ConfigError("no training dataset: add one under datasets.train in params.yaml")
    stores, dirs, rows, dsets, keys, singers, sources = [], [], [], [], [], [], []
    attrs0: dict[str, Any] | None = None
    sums, sq_sums, counts, frames, seconds = 0.0, 0.0, 0, [], []
    for d, name in enumerate(names):
        path = features_path(features_dir, name)
        if not path.exists():
            raise ConfigError(f"features of training dataset {name!r} not found at {path}; "
                              f"run `dvc repro features-train@{name}` first")
        store = FeatureStore(path)
        n = len(store)
        if n == 0:
            raise ConfigError(f"training dataset {name!r} has no segments ({path})")
        attrs = dict(store.attrs)
        missing = [k for k in FRONTEND_KEYS if k not in attrs]
        if missing:
            raise ConfigError(f"{path}: attrs lack front-end parameter(s) {missing}")
        if attrs0 is None:
            attrs0 = attrs
        else:
            for k in FRONTEND_KEYS:
                if not _same(attrs[k], attrs0[k]):
                    raise ConfigError(f"training datasets disagree on the front end: {k}={attrs[k]!r} in {name!r} "
                                      f"but {attrs0[k]!r} in {names[0]!r}; re-run the features stages")
        _, n_mels, t = store.shape
        values = n * n_mels * t
        mean, std = float(store.mean), float(store.std)
        sums += mean * values
        sq_sums += (std**2 + mean**2) * values
        counts += values
        frames.append(t)
        k, s = list(store.keys), list(store.singers)
        src = list(store.sources) or [""] * n
        if not (len(k) == len(s) == len(src) == n):
            raise ConfigError(f"{path}: key/singer/source lengths differ from the number of log-mels ({n})")
        keys += k
        singers += [f"{name}/{v}" if v else "" for v in s]
        sources += [f"{name}/{v}" if v else f"{name}/{kk}" for v, kk in zip(src, k)]
        rows.append(np.arange(n, dtype=np.int64))
        dsets.append(np.full(n, d, dtype=np.int64))
        stores.append(store)
        dirs.append(segments_path(segments_dir, name))
        seconds.append(_segment_seconds(segments_path(segments_dir, name), name, int(attrs["sample_rate"])))
        store.close()  # metadata stays cached; workers (re)open the file lazily in their own process
    assert attrs0 is not None
    singer_names = sorted({s for s in singers if s})
    singer_id = {s: i for i, s in enumerate(singer_names)}
    source_names = sorted(set(sources))
    source_id = {s: i for i, s in enumerate(source_names)}
    mean = sums / counts
    std = float(np.sqrt(max(sq_sums / counts - mean**2, 0.0)))
    if not std > 0:
        raise ConfigError(f"training features have zero variance (std {std}); check the features stage")
    return SegmentTable(
        names=list(names), stores=stores, audio_dirs=dirs,
        dataset=np.concatenate(dsets), row=np.concatenate(rows), keys=keys,
        singer=np.array([singer_id[s] if s else UNLABELLED for s in singers], dtype=np.int64),
        singer_names=singer_names,
        source=np.array([source_id[s] for s in sources], dtype=np.int64),
        attrs={k: _plain(v) for k, v in attrs0.items()}, mean=float(mean), std=std,
        n_frames=min(frames), segment_seconds=min(seconds),
    )


def training_centre_offset(table: SegmentTable, scaling: str, max_items: int = 1024) -> float:
    """The input-scaling offset of an item-centred ``scaling`` (``normalization.offset``): the mean over
    training segments of (item centre - item mean) (:func:`singer_ssl.model.singer_model.centre_offset`),
    from at most ``max_items`` segments evenly spaced over all datasets (deterministic; the built-in corpus
    is read whole). 0 for every other scaling (nothing read)."""
    if scaling not in OFFSET_SCALINGS or len(table) == 0:
        return 0.0
    picks = np.unique(np.linspace(0, len(table) - 1, min(len(table), max_items)).round().astype(np.int64))
    total, count = 0.0, 0
    for d, store in enumerate(table.stores):
        rows = table.row[picks[table.dataset[picks] == d]]
        for start in range(0, rows.size, 128):
            chunk = store.batch(rows[start:start + 128])[..., :table.n_frames]
            total += centre_offset(torch.from_numpy(chunk), scaling) * len(chunk)
            count += len(chunk)
    return total / count if count else 0.0


def _same(a: Any, b: Any) -> bool:
    a, b = _plain(a), _plain(b)
    if isinstance(a, float) or isinstance(b, float):
        try:
            return bool(np.isclose(float(a), float(b)))
        except (TypeError, ValueError):
            return False
    return a == b


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def _segment_seconds(folder: Path, name: str, sample_rate: int) -> float:
    """Common segment duration (s) of a dataset, from its manifest (see ``features.segment_length``)."""
    try:
        rows = read_manifest(folder, name)
        return segment_length(rows, sample_rate, str(folder / "manifest.csv")) / sample_rate
    except ValueError as e:
        raise ConfigError(str(e)) from e


def split_by_singer(table: SegmentTable, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Hold out ``val_fraction`` of the singers (seeded) -> (train indices, val indices, unit).

    ``round(val_fraction * n_singers)`` singers (at least 1 when ``val_fraction > 0``, at most all
    but one) go to validation. When singers are unknown the held-out unit is the source recording
    instead (``unit`` says which). ``val_fraction == 0`` -> empty validation set.
    """
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ConfigError(f"train.val_fraction must lie in [0, 1), got {val_fraction!r}")
    all_idx = np.arange(len(table))
    if val_fraction == 0:
        return all_idx, all_idx[:0], "singer"
    labelled = table.singer >= 0
    if table.has_labels and labelled.all():
        unit, groups = "singer", table.singer
    else:
        unit, groups = "source recording", table.source
    ids = np.unique(groups)
    n_val = min(max(1, int(round(val_fraction * len(ids)))), len(ids) - 1)
    if n_val < 1:
        raise ConfigError(f"train.val_fraction={val_fraction}: only one {unit} in the training data, "
                          "nothing left to train on after holding one out; set train.val_fraction: 0")
    rng = np.random.default_rng([int(seed), 0x5EED])
    val_ids = rng.choice(ids, size=n_val, replace=False)
    is_val = np.isin(groups, val_ids)
    return all_idx[~is_val], all_idx[is_val], unit


class ViewDataset(torch.utils.data.Dataset):
    """Map a sample spec to its two views; see the module docstring.

    ``dataset[spec]`` with ``spec = (index, label, *rng_key)`` returns
    ``(view1, view2, label)``: float32 arrays, (n_mels, crop_frames) log-mels in ``logmel`` mode or
    (crop_samples,) waveforms in ``wave`` mode. ``ramp_epochs`` > 0: training items (key stream
    ``TRAIN_STREAM``) of epoch ``e`` get the waveform chain at strength
    :func:`singer_ssl.augment.ramp_strength` ``(e, ramp_epochs)``; validation views always the full chain.
    """

    def __init__(self, table: SegmentTable, mode: str, views: str, crop_samples: int,
                 waveform_augment: Any = None, babble_pool: np.ndarray | None = None,
                 ramp_epochs: float = 0.0) -> None:
        if mode not in ("logmel", "wave"):
            raise ValueError(f"mode must be 'logmel' or 'wave', got {mode!r}")
        if views not in VIEWS:
            raise ConfigError(f"unknown augment.views {views!r}; valid choices: {', '.join(VIEWS)}")
        self.table = table
        self.groups = table.source_groups()
        self.mode = mode
        self.views = views
        self.sample_rate = int(table.attrs["sample_rate"])
        self.crop_samples = int(crop_samples)
        self.crop_frames = 1 + self.crop_samples // int(table.attrs["hop"])
        self.augment = waveform_augment
        self.babble_pool = None if babble_pool is None else np.asarray(babble_pool, dtype=np.int64)
        self.ramp_epochs = float(ramp_epochs)

    def __len__(self) -> int:
        return len(self.table)

    def partner(self, index: int, rng: np.random.Generator) -> int:
        """Another segment of the same source recording (``index`` itself when it is the only one)."""
        group = self.groups[int(self.table.source[index])]
        if len(group) < 2:
            return index
        others = group[group != index]
        return int(others[rng.integers(len(others))])

    def __getitem__(self, spec: Sequence[int]) -> tuple[np.ndarray, np.ndarray, int]:
        index, label, *key = spec
        rng = np.random.default_rng([int(k) for k in key])
        strength = 1.0
        if self.ramp_epochs > 0 and len(key) >= 3 and int(key[1]) == TRAIN_STREAM:  # (seed, stream, epoch, ...)
            strength = ramp_strength(int(key[2]), self.ramp_epochs)
        second = self.partner(index, rng) if self.views == "file" else index
        return self.view(index, rng, strength), self.view(second, rng, strength), int(label)

    def view(self, index: int, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
        """One random crop of segment ``index`` (augmented in ``wave`` mode, at ``strength``)."""
        if self.mode == "logmel":
            return self._logmel_crop(index, rng)
        wave = self._wave_crop(index, rng)
        if self.augment is not None:
            source = None if self.babble_pool is None else functools.partial(self.babble, index)
            kwargs = {} if strength == 1.0 else {"strength": strength}
            wave = np.asarray(self.augment(wave, rng, source=source, **kwargs), dtype=np.float32)
            if wave.shape != (self.crop_samples,):
                raise ValueError(f"waveform augmentation changed the crop length to {wave.shape}")
        return wave

    def babble(self, index: int, rng: np.random.Generator, count: int, n_samples: int) -> np.ndarray:
        """``(k, n_samples)`` crops of ``k = min(count, available)`` segments for the ``babble`` augmentation.

        Drawn without replacement from ``babble_pool`` (the training segments) among segments of a *known*
        singer other than segment ``index``'s and of another recording, so the babble never carries the
        item's own voice (an item of unknown singer gets only known singers' audio, none of its recording).
        """
        table, pool = self.table, self.babble_pool
        own = int(table.singer[index])
        keep = (table.singer[pool] >= 0) & (table.singer[pool] != own) & (table.source[pool] != table.source[index])
        candidates = pool[keep]
        k = min(int(count), candidates.size)
        picks = rng.choice(candidates, size=k, replace=False) if k else candidates[:0]
        return np.stack([self._wave_crop(int(i), rng, n_samples) for i in picks]) if k else \
            np.zeros((0, n_samples), dtype=np.float32)

    def _logmel_crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        table = self.table
        x = np.asarray(table.stores[int(table.dataset[index])][int(table.row[index])], dtype=np.float32)
        t = x.shape[-1]
        if t <= self.crop_frames:
            if t < self.crop_frames:  # shorter than the crop: repeat the last frame (validated upfront)
                x = np.pad(x, ((0, 0), (0, self.crop_frames - t)), mode="edge")
            return np.ascontiguousarray(x)
        start = int(rng.integers(0, t - self.crop_frames + 1))
        return np.ascontiguousarray(x[:, start : start + self.crop_frames])

    def _wave_crop(self, index: int, rng: np.random.Generator, crop_samples: int | None = None) -> np.ndarray:
        crop = self.crop_samples if crop_samples is None else int(crop_samples)
        path = self.table.audio_path(index)
        try:
            with sf.SoundFile(path) as f:
                if f.samplerate != self.sample_rate:
                    raise ValueError(f"{path}: sample rate {f.samplerate} Hz, but the features (front end) "
                                     f"use {self.sample_rate} Hz; re-run the segment stage")
                n = f.frames
                start = int(rng.integers(0, n - crop + 1)) if n > crop else 0
                f.seek(start)
                x = f.read(min(crop, n), dtype="float32", always_2d=True)
        except sf.LibsndfileError as e:
            raise ValueError(f"cannot read training segment {path}: {e}") from e
        x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
        if len(x) < crop:
            x = np.pad(x, (0, crop - len(x)))
        return np.ascontiguousarray(x, dtype=np.float32)


def collate_views(batch: list[tuple[np.ndarray, np.ndarray, int]]) -> dict[str, torch.Tensor]:
    """Stack samples -> ``{"x1": (B, ...), "x2": (B, ...), "labels": (B,) long}``."""
    x1 = torch.from_numpy(np.stack([b[0] for b in batch]))
    x2 = torch.from_numpy(np.stack([b[1] for b in batch]))
    labels = torch.tensor([b[2] for b in batch], dtype=torch.long)
    return {"x1": x1, "x2": x2, "labels": labels}


def worker_init(worker_id: int) -> None:
    """DataLoader worker setup: one torch thread per worker (the main process owns the cores for
    the model), numpy/random seeded from torch's per-worker seed (samples use their own keyed RNG)."""
    torch.set_num_threads(1)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
