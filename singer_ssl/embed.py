"""Embed a test dataset once: trained encoder, random-init baseline, handcrafted baseline.

All encoders run batched in eval mode under ``torch.inference_mode`` on the available device.
Log-mel encoders read the stored features (no audio decoding); waveform encoders, and the optional
16 kHz degradation (Torres et al.'s ``-du``: down-sample to 16 kHz and back with soxr before the front
end), read the segments' audio.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from singer_ssl.core.device import resolve_device
from singer_ssl.evaluation.store import EmbeddingSet, mfcc_stats, write_embeddings
from singer_ssl.model.folder import load_eager, read_hyperparams


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for i in range(0, n, batch_size):
        yield slice(i, min(n, i + batch_size))


def _read_waves(seg_dir: Path, keys: list[str], sr: int, degrade_16k: bool) -> np.ndarray:
    from singer_ssl.core import audio

    waves = []
    for k in keys:
        x, file_sr = audio.read_audio(seg_dir / k)
        x = audio.resample(audio.to_mono(x), file_sr, sr)
        if degrade_16k:
            n = len(x)
            x = audio.resample(audio.resample(x, sr, 16000), 16000, sr)
            x = np.pad(x[:n], (0, max(0, n - len(x))))
        waves.append(x)
    return np.stack(waves).astype(np.float32)


@torch.inference_mode()
def _embed_model(model, store, seg_dir: Path, batch_size: int, dev, from_wave: bool, degrade_16k: bool, label: str):
    sr = int(model.frontend_sample_rate) if hasattr(model, "frontend_sample_rate") else None
    embs, projs = [], []
    for sl in tqdm(list(_batches(len(store), batch_size)), desc=f"embed {label}", leave=False):
        if from_wave:
            x = torch.from_numpy(_read_waves(seg_dir, store.keys[sl], sr, degrade_16k)).to(dev)
            h, z = model.embed_wave(x)
        else:
            x = torch.from_numpy(np.stack([store[i] for i in range(sl.start, sl.stop)])).to(dev).float()
            h, z = model.embed_logmel(x)
        embs.append(h.float().cpu().numpy())
        projs.append(z.float().cpu().numpy())
    return np.concatenate(embs), np.concatenate(projs)


def embed_dataset(
    features: str | os.PathLike,
    segments: str | os.PathLike,
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    degrade_16k: bool = False,
) -> EmbeddingSet:
    """Embed every item of ``features`` with the model in ``model_dir`` and the baselines; write ``out``."""
    from singer_ssl.features import FeatureStore
    from singer_ssl.model.folder import build_model

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
        _check_frontend(store.attrs, hp["frontend"], features, model_dir)

    torch.manual_seed(seed)
    random_model = build_model(hp).to(dev).eval()
    random_model.frontend_sample_rate = model.frontend_sample_rate

    vectors: dict[str, np.ndarray] = {}
    vectors["embedding"], vectors["projection"] = _embed_model(
        model, store, seg_dir, batch_size, dev, from_wave, False, "trained")
    r_emb, r_proj = _embed_model(random_model, store, seg_dir, batch_size, dev, from_wave, False, "random-init")
    vectors["baseline/random_init/embedding"] = r_emb
    vectors["baseline/random_init/projection"] = r_proj
    vectors["baseline/mfcc/embedding"] = np.stack([mfcc_stats(store[i]) for i in range(len(store))])
    if degrade_16k:
        d_emb, d_proj = _embed_model(model, store, seg_dir, batch_size, dev, True, True, "degraded 16k")
        vectors["degraded_16k/embedding"] = d_emb
        vectors["degraded_16k/projection"] = d_proj
    es = EmbeddingSet(list(store.keys), list(store.singers), list(store.sources), vectors)
    write_embeddings(out, es, attrs={"model_dir": str(model_dir), "features": str(features)})
    return es


def _check_frontend(attrs: dict, frontend: dict, features, model_dir) -> None:
    """The stored features must come from the front end the model was trained with."""
    for k in ("sample_rate", "n_fft", "hop", "n_mels"):
        if k in frontend and k in attrs and float(attrs[k]) != float(frontend[k]):
            raise ValueError(
                f"{features} was extracted with {k}={attrs[k]} but the model in {model_dir} expects "
                f"{k}={frontend[k]}; re-run the features stage with the model's front end"
            )
