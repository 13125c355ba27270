"""A tiny synthetic training set in the pipeline's on-disk layout, for tests, benchmarks and smoke runs.

:func:`make_training_set` writes ``<root>/data/segments/train/<name>/`` (wav segments, ``manifest.csv``,
``skipped.csv``, via :mod:`singer_ssl.data.manifest`'s writers) and ``<root>/data/features/train/<name>.h5``
(via :func:`singer_ssl.features.extract_features`, the features stage's own writer), i.e. exactly what
the segment and features stages produce. Each singer is a harmonic "voice" with its own spectral
envelope (timbre) and vibrato rate; each source recording sings a different note, cut into
consecutive segments, so singer identity is learnable and independent of pitch. :func:`pipeline_paths`
gives the train stage's paths under such a root.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from singer_ssl.data.manifest import write_manifest, write_skipped
from singer_ssl.features import extract_features
from singer_ssl.training.run import TrainPaths


def _voice(rng: np.random.Generator, f0: float, envelope: np.ndarray, vibrato_hz: float, n: int,
           sample_rate: int) -> np.ndarray:
    t = np.arange(n) / sample_rate
    phase_f0 = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * vibrato_hz * t))) / sample_rate
    x = np.zeros(n)
    for h, amp in enumerate(envelope, start=1):
        if h * f0 < sample_rate / 2:
            x += amp * np.sin(h * phase_f0 + rng.uniform(0, 2 * np.pi))
    x *= 0.3 / max(np.abs(x).max(), 1e-9)
    return (x + 0.003 * rng.standard_normal(n)).astype(np.float32)


def make_training_set(root: str | os.PathLike, name: str = "toy", *, n_singers: int = 6, sources_per_singer: int = 2,
                      segments_per_source: int = 3, seconds: float = 1.0, sample_rate: int = 8000,
                      n_fft: int = 256, hop: int = 64, n_mels: int = 16, labelled: bool = True,
                      seed: int = 0) -> dict[str, Path]:
    """Write a synthetic training dataset under ``root``; returns ``{"segments": dir, "features": h5}``.

    ``labelled=False`` leaves the manifest's ``singer`` column empty (a corpus without singer labels).
    """
    root = Path(root)
    seg_dir = root / "data" / "segments" / "train" / name
    feat_path = root / "data" / "features" / "train" / f"{name}.h5"
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    rows = []
    for s in range(n_singers):
        singer = f"singer{s:02d}"
        envelope = rng.uniform(0.05, 1.0, size=12) / np.arange(1, 13) ** rng.uniform(0.3, 1.5)
        vibrato = rng.uniform(4.0, 7.0)
        (seg_dir / singer).mkdir(parents=True, exist_ok=True)
        for k in range(sources_per_singer):
            f0 = 110.0 * 2 ** ((s % 7) / 7 + rng.integers(0, 12) / 12)
            audio = _voice(rng, f0, envelope, vibrato, n * segments_per_source, sample_rate)
            source = f"{singer}/song{k}.wav"
            for j in range(segments_per_source):
                segment = f"{singer}/song{k}_{j:03d}.wav"
                sf.write(seg_dir / segment, audio[j * n:(j + 1) * n], sample_rate, subtype="PCM_16")
                rows.append({"segment": segment, "singer": singer if labelled else "", "source": source,
                             "start_s": j * seconds, "end_s": (j + 1) * seconds, "dataset": name})
    write_manifest(seg_dir, rows)
    write_skipped(seg_dir, [])
    extract_features(seg_dir, feat_path, sample_rate=sample_rate, n_fft=n_fft, hop=hop, n_mels=n_mels,
                     dataset=name, progress=False)
    return {"segments": seg_dir, "features": feat_path}


def pipeline_paths(root: str | os.PathLike) -> TrainPaths:
    """The train stage's paths under ``root`` in the pipeline's layout (what ``dvc.yaml`` passes):
    ``data/features/train``, ``data/segments/train``, ``data/model``, ``data/checkpoints``, ``plots/train``."""
    root = Path(root)
    return TrainPaths.of(root / "data" / "features" / "train", root / "data" / "segments" / "train",
                         root / "data" / "model", root / "data" / "checkpoints", root / "plots" / "train")


#: Fonseca et al. 2021's published checkpoints (github.com/edufonseca/uclser20): file name -> the encoder and the
#: constructor kwargs whose state dict has exactly the file's layout (a plain OrderedDict: same keys in the same
#: order, shapes and dtypes, the 20-class FSDnoisy18k classifier included; checked against the real files).
PUBLISHED_LAYOUTS: dict[str, tuple[str, dict]] = {
    "VGG_best.pth": ("vgglike", {"embedding_dim": 512, "num_classes": 20, "pooling": "gapgmp"}),
    "CRNN_best.pth": ("crnn", {"n_mels": 96, "hidden": 64, "num_classes": 20}),
}


def write_published_checkpoint(path: str | os.PathLike, seed: int = 0) -> str:
    """Write a checkpoint with the layout of the published file named ``Path(path).name`` (a key of
    :data:`PUBLISHED_LAYOUTS`) and seeded random weights; returns the encoder name."""
    import torch

    from singer_ssl import encoders

    name, kwargs = PUBLISHED_LAYOUTS[Path(path).name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        torch.save(encoders.get(name, **kwargs).state_dict(), path)
    return name
