"""The two reference points every trained encoder is compared with, computed by the embed stage.

- **random-init**: the trained model's architecture (same hyperparameters, same front end and
  normalisation) with freshly initialised weights, seeded. It shows how much of the score the
  architecture and front end give before any training. One initialisation's score varies a lot with
  its seed, so the embed stage draws ``embed.random_inits`` of them (seeds ``seed``, ``seed + 1``, ...;
  the first is the one training starts from) and the evaluate stage reports their mean and spread.
- **MFCC**: a handcrafted embedding, the mean and standard deviation over time of the first 20 MFCCs
  of the stored log-mel spectrogram (no learning at all).

Their vectors are stored under ``baseline/random_init/...`` (further initialisations under
``baseline/random_init/init<k>/...``) and ``baseline/mfcc/embedding`` in the
embedding file (:mod:`singer_ssl.evaluation.store`) and scored like the trained embedding.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

N_MFCC = 20  # MFCCs kept by the handcrafted baseline (librosa's default)


def random_init_model(hparams: dict[str, Any], seed: int, device: torch.device) -> torch.nn.Module:
    """The model described by ``hparams`` with random weights: ``torch.manual_seed(seed)``, then build.

    Seeds torch's global generator (as the embed stage always has), so the weights depend only on
    ``seed`` and the architecture. Returned in eval mode on ``device``.
    """
    from singer_ssl.model.folder import build_model

    torch.manual_seed(seed)
    return build_model(hparams).to(device).eval()


def mfcc_stats(logmel: np.ndarray, n_mfcc: int = N_MFCC) -> np.ndarray:
    """Handcrafted baseline embedding: mean and std over time of the first ``n_mfcc`` MFCCs.

    MFCC = orthonormal DCT-II of the natural-log mel spectrogram along frequency (librosa's
    convention). Shapes: logmel (n_mels, T) -> (2 * n_mfcc,).
    """
    from scipy.fft import dct

    c = dct(np.asarray(logmel, dtype=np.float64), type=2, norm="ortho", axis=0)[:n_mfcc]
    return np.concatenate([c.mean(axis=1), c.std(axis=1)]).astype(np.float32)


def mfcc_embeddings(logmels: Iterable[np.ndarray], n_mfcc: int = N_MFCC) -> np.ndarray:
    """:func:`mfcc_stats` of each log-mel ``(n_mels, T)``: ``(N, 2 * n_mfcc)`` float32."""
    return np.stack([mfcc_stats(x, n_mfcc) for x in logmels])
