"""HEAR 2021 entry point: a singer-ssl model folder as a HEAR-API module (Turian et al. 2022, "HEAR: Holistic
Evaluation of Audio Representations", the ``hear-validator`` common API).

    from singer_ssl import hear
    model = hear.load_model("data/model")                       # any folder written by the train stage
    scene = hear.get_scene_embeddings(audio, model)             # (n_sounds, D)
    emb, ts = hear.get_timestamp_embeddings(audio, model)       # (n_sounds, T, D), (n_sounds, T) in ms

``audio`` is a float32 torch tensor ``(n_sounds, n_samples)`` in [-1, 1] at ``model.sample_rate`` Hz
(HEAR resamples every task to the rate the module declares). Windowing is the pipeline's
(:mod:`singer_ssl.api`): non-overlapping windows of the model's segment length ``W = model.window``
samples (4 s by default), the remainder dropped; audio shorter than one window is one window of its
own length. Window ``k`` covers samples ``[k W, (k + 1) W)`` and its timestamp is its centre,
``(k + 1/2) W / sample_rate * 1000`` ms, so timestamps are spaced ``W / sample_rate * 1000`` ms apart;
``T = max(1, n_samples // W)``. The scene embedding is the mean of the window embeddings (the
embedding ``model.embed`` and the CLI return). Outputs are on the input's device, float32, without
autograd. ``scene_embedding_size == timestamp_embedding_size == model.embedding_dim``.
"""

from __future__ import annotations

import os

import torch

from singer_ssl.api import SingerEncoder
from singer_ssl.api import load_model as _load_encoder

#: the model folder ``load_model("")`` uses unless ``SINGER_SSL_MODEL`` names another
DEFAULT_MODEL_DIR = "data/model"


def load_model(model_file_path: str = "", device: str | torch.device | None = None) -> SingerEncoder:
    """HEAR ``load_model``: the :class:`singer_ssl.api.SingerEncoder` of a model folder, in eval mode.

    Args:
        model_file_path: the model folder (``data/model``); ``""`` = ``$SINGER_SSL_MODEL`` or ``data/model``.
        device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).

    Returns:
        the encoder with HEAR's attributes ``sample_rate`` (Hz), ``scene_embedding_size`` and
        ``timestamp_embedding_size`` (both D) added.
    """
    path = model_file_path or os.environ.get("SINGER_SSL_MODEL") or DEFAULT_MODEL_DIR
    model = _load_encoder(path, device=device)
    model.scene_embedding_size = model.embedding_dim
    model.timestamp_embedding_size = model.embedding_dim
    return model


def _check_audio(audio: torch.Tensor) -> torch.Tensor:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2 or not audio.is_floating_point():
        shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise ValueError(f"audio: expected a float tensor (n_sounds, n_samples), got {shape}")
    if audio.shape[1] == 0:
        raise ValueError("audio: expected at least one sample per sound, got n_samples = 0")
    return audio


def get_timestamp_embeddings(audio: torch.Tensor, model: SingerEncoder) -> tuple[torch.Tensor, torch.Tensor]:
    """HEAR ``get_timestamp_embeddings``: one embedding per window (see the module docstring).

    Args:
        audio: ``(n_sounds, n_samples)`` float32 at ``model.sample_rate``.
        model: from :func:`load_model`.

    Returns:
        ``(embeddings (n_sounds, T, D), timestamps (n_sounds, T))``: window embeddings and window
        centres in milliseconds.
    """
    audio = _check_audio(audio)
    n, s = audio.shape
    w = model.window
    width, t = (s, 1) if s <= w else (w, s // w)
    wins = audio[:, : t * width].reshape(n * t, width).to(model.device, torch.float32)
    with torch.no_grad():
        outs = [model.model(wins[i : i + model.batch_size]).float() for i in range(0, len(wins), model.batch_size)]
    emb = torch.cat(outs).reshape(n, t, -1).to(audio.device)
    centres = (torch.arange(t, dtype=torch.float64) + 0.5) * width / model.sample_rate * 1000.0
    return emb, centres.to(torch.float32).expand(n, t).clone().to(audio.device)


def get_scene_embeddings(audio: torch.Tensor, model: SingerEncoder) -> torch.Tensor:
    """HEAR ``get_scene_embeddings``: ``(n_sounds, n_samples)`` -> ``(n_sounds, D)``, the mean of the window
    embeddings (equal to ``model.embed(audio, model.sample_rate)``)."""
    emb, _ = get_timestamp_embeddings(audio, model)
    return emb.mean(1)
