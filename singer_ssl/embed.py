"""The embed stage: embed a test dataset once with the trained encoder and the baselines.

:class:`EmbedConfig` validates ``seed`` and ``embed.*``; :func:`run` writes one embedding file
(layout in :mod:`singer_ssl.evaluation.store`) holding, for every segment of the features file:
the trained model's embedding and projection, the random-init baseline (``embed.random_inits``
initialisations) and the MFCC baseline (:mod:`singer_ssl.evaluation.baselines`) and, with
``embed.degrade_16k``, the embeddings of the audio degraded to 16 kHz (Torres et al.'s ``-du``:
down-sample to 16 kHz and back with soxr before the front end) and, with ``embed.invariance``, the
trained embedding of a few segments per singer after each controlled transform (pitch shift, gain, noise,
band-pass, reverb, 16 kHz round trip: :mod:`singer_ssl.augment.controlled`) for the evaluate stage's
invariance report (:mod:`singer_ssl.evaluation.invariance`).

All encoders run batched in eval mode under ``torch.inference_mode`` on the configured device.
Log-mel encoders read the stored features (no audio decoding); waveform encoders, and the 16 kHz
degradation, read the segments' audio (:func:`singer_ssl.core.audio.load_mono`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from singer_ssl.augment.controlled import InvarianceConfig, Transform, select_rows
from singer_ssl.core.device import resolve_device
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.frontend import FRONT_END_KEYS
from singer_ssl.core.params import bool_param, dataset_spec, device_param, int_param, section, test_dataset
from singer_ssl.evaluation.baselines import mfcc_embeddings, random_init_model
from singer_ssl.evaluation.store import EmbeddingSet, write_embeddings
from singer_ssl.model.folder import load_eager, read_hyperparams

#: the keys of the ``embed`` section
EMBED_KEYS = ("batch_size", "device", "degrade_16k", "random_inits", "invariance")
DEGRADED_SR = 16000  # Hz, the rate of the ``degrade_16k`` round trip


@dataclass(frozen=True)
class EmbedConfig:
    """The embed stage's parameters: ``seed`` (random-init baseline) and ``embed.*``.

    ``batch_size`` segments per forward pass; ``device`` ``auto`` (CUDA when available), ``cpu``,
    ``cuda`` or ``cuda:N``; ``degrade_16k`` also embeds the audio down-sampled to 16 kHz and back;
    ``random_inits`` random initialisations of the random-init baseline (seeds ``seed``, ``seed + 1``, ...);
    ``invariance`` the invariance report's plan (``None``: off, also when ``embed.invariance`` is absent).
    """

    dataset: str
    seed: int = 0
    batch_size: int = 64
    device: str = "auto"
    degrade_16k: bool = False
    random_inits: int = 3
    invariance: InvarianceConfig | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any], dataset: str, role: str = "test") -> EmbedConfig:
        """Validate ``seed``, ``embed.*`` and that ``dataset`` is a dataset of ``role``; ConfigError otherwise.

        ``role="train"`` (the embed-train stage: the training data's embeddings, the evaluate stage's score
        normalisation cohort and calibration trials) turns the invariance report and ``degrade_16k`` off.
        Reads no other section, so a bad ``train:`` or ``augment:`` never stops this stage.
        """
        if role == "train":
            kind, _ = dataset_spec(params, dataset)
            if kind != "train":
                raise ConfigError(f"dataset {dataset!r} is a {kind} dataset; embed-train runs on training datasets")
        else:
            test_dataset(params, dataset, "embed")
        sec = section(params, "embed", EMBED_KEYS)
        full = role != "train"  # the training data's embeddings need neither the 16 kHz copy nor the invariance
        return cls(
            dataset=dataset,
            seed=int_param(params.get("seed", 0), "seed", minimum=0),
            batch_size=int_param(sec.get("batch_size", 64), "embed.batch_size", minimum=1),
            device=device_param(sec.get("device", "auto"), "embed.device"),
            degrade_16k=full and bool_param(sec.get("degrade_16k", False), "embed.degrade_16k"),
            random_inits=int_param(sec.get("random_inits", 3), "embed.random_inits", minimum=1),
            invariance=InvarianceConfig.from_mapping(sec.get("invariance")) if full else None,
        )


def run(cfg: EmbedConfig, features_path: str | os.PathLike, segments_dir: str | os.PathLike,
        model_dir: str | os.PathLike, out_path: str | os.PathLike) -> str:
    """Embed ``features_path`` (segments' audio under ``segments_dir``) with the model in ``model_dir``.

    Writes ``out_path`` atomically and returns the stage's summary line.
    """
    t0 = time.perf_counter()
    es = embed_dataset(features_path, segments_dir, model_dir, out_path, seed=cfg.seed, batch_size=cfg.batch_size,
                       device=cfg.device, degrade_16k=cfg.degrade_16k, random_inits=cfg.random_inits,
                       invariance=cfg.invariance)
    dims = ", ".join(f"{k} {v.shape[1]}-d" for k, v in es.vectors.items() if "/init" not in k)
    inv = (f"; {len(es.invariance_rows)} segments x {len(es.invariance)} invariance transforms"
           if es.invariance else "")
    return (f"{cfg.dataset}: embedded {len(es.keys)} segments ({dims}; {cfg.random_inits} random inits{inv}) "
            f"in {time.perf_counter() - t0:.1f} s -> {out_path}")


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def _read_waves(seg_dir: Path, keys: list[str], sr: int, degrade_16k: bool) -> np.ndarray:
    """The segments ``keys`` as mono float32 ``(B, samples)`` at ``sr`` Hz (optionally via 16 kHz)."""
    from singer_ssl.core import audio

    waves = []
    for k in keys:
        x = audio.load_mono(seg_dir / k, sr)
        if degrade_16k:
            n = len(x)
            x = audio.resample(audio.resample(x, sr, DEGRADED_SR), DEGRADED_SR, sr)
            x = np.pad(x[:n], (0, max(0, n - len(x))))
        waves.append(x)
    return np.stack(waves).astype(np.float32)


@torch.inference_mode()
def _embed_model(model, store, seg_dir: Path, batch_size: int, dev, from_wave: bool, degrade_16k: bool, label: str):
    sr = int(model.frontend_sample_rate) if hasattr(model, "frontend_sample_rate") else None
    embs, projs = [], []
    for sl in tqdm(list(_batches(len(store), batch_size)), desc=f"embed {label}", leave=False, disable=None):
        if from_wave:
            x = torch.from_numpy(_read_waves(seg_dir, store.keys[sl], sr, degrade_16k)).to(dev)
            h, z = model.embed_wave(x)
        else:
            x = torch.from_numpy(np.stack([store[i] for i in range(sl.start, sl.stop)])).to(dev).float()
            h, z = model.embed_logmel(x)
        embs.append(h.float().cpu().numpy())
        projs.append(z.float().cpu().numpy())
    return np.concatenate(embs), np.concatenate(projs)


@torch.inference_mode()
def _embed_transformed(model, seg_dir: Path, keys: list[str], rows: np.ndarray, transforms: tuple[Transform, ...],
                       seed: int, batch_size: int, dev) -> dict[str, np.ndarray]:
    """Trained embedding (K, D) of the segments ``rows`` after each transform: ``{spec: matrix}``.

    Each segment's audio is read once at the front end's rate and transformed with ``seed`` and its row
    number (:meth:`singer_ssl.augment.controlled.Transform.apply`), then embedded through the waveform path.
    """
    from singer_ssl.core import audio

    sr = int(model.frontend_sample_rate)
    out: dict[str, list[np.ndarray]] = {t.spec: [] for t in transforms}
    for sl in tqdm(list(_batches(len(rows), batch_size)), desc="embed invariance", leave=False, disable=None):
        waves = [audio.load_mono(seg_dir / keys[r], sr) for r in rows[sl]]
        for t in transforms:
            x = np.stack([t.apply(w, sr, seed=seed, item=int(r)) for w, r in zip(waves, rows[sl])])
            out[t.spec].append(model.embed_wave(torch.from_numpy(x).to(dev))[0].float().cpu().numpy())
    return {spec: np.concatenate(v) for spec, v in out.items()}


def embed_dataset(
    features: str | os.PathLike,
    segments: str | os.PathLike,
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    degrade_16k: bool = False,
    random_inits: int = 3,
    invariance: InvarianceConfig | None = None,
) -> EmbeddingSet:
    """Embed every item of ``features`` with the model in ``model_dir`` and the baselines; write ``out``.

    Vectors (N rows, the features file's order): ``embedding``/``projection`` of the trained model,
    ``baseline/random_init/{embedding,projection}`` (same architecture, ``torch.manual_seed(seed)``: the
    weights training starts from), ``baseline/random_init/init<k>/{embedding,projection}`` for
    ``k = 1 .. random_inits - 1`` (``torch.manual_seed(seed + k)``), ``baseline/mfcc/embedding`` and, with
    ``degrade_16k``, ``degraded_16k/{embedding,projection}``. The file's ``random_init_seeds`` attribute lists
    the seeds in that order. With ``invariance``, the ``invariance`` group holds the trained embedding of
    :func:`~singer_ssl.augment.controlled.select_rows` (seeded by ``seed``) after each of its transforms.
    """
    from singer_ssl.features import FeatureStore

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if int(random_inits) < 1:
        raise ValueError(f"random_inits must be >= 1, got {random_inits}")
    dev = resolve_device(device)
    store = FeatureStore(features)
    if len(store) == 0:
        raise ValueError(f"{features}: no segments to embed (empty dataset)")
    seg_dir = Path(segments)
    hp = read_hyperparams(model_dir)
    model = load_eager(model_dir, dev)
    model.frontend_sample_rate = int(hp["frontend"]["sample_rate"])
    from_wave = getattr(model.encoder, "input_kind", "logmel") == "waveform"
    if not from_wave:
        check_frontend(store.attrs, hp["frontend"], features, model_dir)

    vectors: dict[str, np.ndarray] = {}
    vectors["embedding"], vectors["projection"] = _embed_model(
        model, store, seg_dir, batch_size, dev, from_wave, False, "trained")
    seeds = random_init_seeds(seed, random_inits)
    for k, init_seed in enumerate(seeds):
        random_model = random_init_model(hp, init_seed, dev)
        random_model.frontend_sample_rate = model.frontend_sample_rate
        prefix = "baseline/random_init" + (f"/init{k}" if k else "")
        vectors[f"{prefix}/embedding"], vectors[f"{prefix}/projection"] = _embed_model(
            random_model, store, seg_dir, batch_size, dev, from_wave, False, f"random-init {k + 1}/{len(seeds)}")
        del random_model
    vectors["baseline/mfcc/embedding"] = mfcc_embeddings(store[i] for i in range(len(store)))
    if degrade_16k:
        d_emb, d_proj = _embed_model(model, store, seg_dir, batch_size, dev, True, True, "degraded 16k")
        vectors["degraded_16k/embedding"] = d_emb
        vectors["degraded_16k/projection"] = d_proj
    es = EmbeddingSet(list(store.keys), list(store.singers), list(store.sources), vectors)
    if invariance is not None:
        es.invariance_rows = select_rows(np.asarray(es.singers), np.asarray(es.sources),
                                         invariance.segments_per_singer, seed)
        es.invariance = _embed_transformed(model, seg_dir, es.keys, es.invariance_rows, invariance.transforms,
                                           seed, batch_size, dev)
        es.training_chain = training_chain(hp)
    write_embeddings(out, es, attrs={"model_dir": str(model_dir), "features": str(features),
                                     "random_init_seeds": np.asarray(seeds, dtype=np.int64)})
    return es


def training_chain(hp: dict[str, Any]) -> tuple[str, ...]:
    """The waveform augmentations the model was trained with (``augment.waveform`` entries with ``p > 0``).

    Read from the model folder's hyperparameters (``augment``, written by the train stage); a folder without
    them (e.g. an imported model) gives ``()``: every invariance transform then counts as held-out.
    """
    from singer_ssl.augment import enabled

    return tuple(enabled((hp.get("augment") or {}).get("waveform")))


def random_init_seeds(seed: int, random_inits: int) -> list[int]:
    """Seeds of the random-init baseline's initialisations: ``seed, seed + 1, ..., seed + random_inits - 1``.

    The first is the global ``seed`` itself, so initialisation 0 holds the weights training starts from.
    """
    return [int(seed) + k for k in range(int(random_inits))]


def _resolved_front_end(frontend: dict[str, Any]) -> dict[str, Any]:
    """``frontend`` with ``fmax: null`` resolved to ``sample_rate / 2`` (as the features stage stores it)."""
    out = dict(frontend)
    if out.get("fmax") is None and "sample_rate" in out:
        out["fmax"] = float(out["sample_rate"]) / 2.0
    return out


def check_frontend(attrs: dict[str, Any], frontend: dict[str, Any], features: str | os.PathLike,
                   model_dir: str | os.PathLike) -> None:
    """The stored features must come from the front end the model was trained with.

    Compares every key of :data:`singer_ssl.core.frontend.FRONT_END_KEYS` present on both sides
    (``fmax: null`` taken as ``sample_rate / 2``); ValueError naming the first that differs.
    """
    attrs, frontend = _resolved_front_end(attrs), _resolved_front_end(frontend)
    for k in FRONT_END_KEYS:
        if k in frontend and k in attrs and float(attrs[k]) != float(frontend[k]):
            raise ValueError(
                f"{features} was extracted with {k}={attrs[k]} but the model in {model_dir} expects "
                f"{k}={frontend[k]}; re-run the features stage with the model's front end"
            )
