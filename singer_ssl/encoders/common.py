"""Small pieces shared by the encoders: input checks and layout conversion.

Every log-mel encoder takes ``(B, 1, F, T)`` (frequency x time, the layout of ``data/features``).
Encoders ported from Fonseca et al. 2021 (uclser20: VGG-like, CRNN, ResNet-18) were trained on
``batch x 1 x time x freq`` patches; :func:`to_time_freq` converts, so their published weights load
unchanged. All functions are TorchScript-compatible.
"""

from __future__ import annotations

import torch

LOGMEL = "logmel"
WAVEFORM = "waveform"


def check_logmel(x: torch.Tensor, name: str, n_mels: int, min_frames: int, min_mels: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is a log-mel batch (B, 1, F, T) the encoder can process.

    ``n_mels`` > 0 requires ``F == n_mels`` (encoders whose layer sizes depend on F); ``min_frames``
    and ``min_mels`` are the smallest T and F for which the pooling stack leaves at least one cell.
    Skipped while tracing (shapes are symbolic there; the traced graph stays check-free and warning-free).
    """
    if torch.jit.is_tracing():
        return
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(name + ": expected a log-mel batch (B, 1, F, T), got shape " + str(list(x.shape)))
    if n_mels > 0 and x.shape[2] != n_mels:
        raise ValueError(
            name + ": built for n_mels=" + str(n_mels) + " but the input has F=" + str(x.shape[2])
            + " mel bands (pass n_mels to the encoder)"
        )
    if x.shape[2] < min_mels:
        raise ValueError(name + ": needs at least " + str(min_mels) + " mel bands, got F=" + str(x.shape[2]))
    if x.shape[3] < min_frames:
        raise ValueError(name + ": needs at least " + str(min_frames) + " frames, got T=" + str(x.shape[3]))


def to_time_freq(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, F, T) -> (B, 1, T, F), the seed-004 (uclser20) tensor order."""
    return x.transpose(2, 3)
