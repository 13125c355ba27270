"""Use a trained encoder in your own code: ``load_model`` and ``embed_files``.

``load_model(folder)`` needs only the model folder written by the train stage (``model.pt``,
``model.ts``, ``hyperparams.yaml``); no ``params.yaml`` is read. It returns a module mapping a
waveform batch (B, samples) at ``input_sr`` Hz to embeddings (B, D), in eval mode on ``device``.

``embed_files`` embeds audio files of any length: each file is mixed to mono, resampled to the
model's rate, cut into non-overlapping windows of the model's segment length (4 s by default; the
remainder is dropped unless the file is shorter than one window, in which case the whole file is
one window) and the window embeddings are averaged (arithmetic mean of the un-normalised
embeddings, then scored with cosine similarity as in Torres et al. 2023).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from singer_ssl.core.device import resolve_device
from singer_ssl.core.resample import Resample
from singer_ssl.model.folder import (  # noqa: F401 - the model-folder contract, re-exported
    MODEL_FILES,
    ModelFolderError,
    load_eager,
    model_sample_rate,
    model_segment_seconds,
    read_hyperparams,
)


class _Embedder(nn.Module):
    """Resample (when needed) then embed: (B, samples at input_sr) -> (B, D)."""

    def __init__(self, model: nn.Module, resample: nn.Module):
        super().__init__()
        self.resample = resample
        self.model = model

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.model(self.resample(wave))


def load_model(
    path: str | os.PathLike,
    input_sr: int | None = None,
    device: str | torch.device | None = None,
    torchscript: bool = False,
) -> nn.Module:
    """Load a trained singer-ssl encoder from a model folder.

    Args:
        path: folder written by the train stage (``data/model`` in the pipeline).
        input_sr: sample rate (Hz) of the waveforms you will pass; resampled (windowed sinc, on
            the device) to the model's rate when it differs. ``None`` = the model's rate.
        device: ``"cuda"``, ``"cpu"``, or ``None``/``"auto"`` (CUDA when available).
        torchscript: load ``model.ts`` (no singer_ssl model code needed) instead of rebuilding
            the eager model from ``hyperparams.yaml`` + ``model.pt``.

    Returns:
        ``nn.Module`` in eval mode: ``(B, samples) float waveform in [-1, 1] -> (B, D)``
        embeddings (e.g. D = 1000 for EfficientNet-B0). Attributes ``sample_rate`` (the model's)
        and ``input_sr``.
    """
    hp = read_hyperparams(path)
    dev = resolve_device(device)
    sr = model_sample_rate(hp)
    if torchscript:
        ts = Path(path) / "model.ts"
        if not ts.exists():
            raise ModelFolderError(f"{ts} is missing")
        model = torch.jit.load(str(ts), map_location=dev).eval()
    else:
        model = load_eager(path, dev)
    in_sr = sr if input_sr is None else int(input_sr)
    out = _Embedder(model, Resample(in_sr, sr)).to(dev).eval()
    out.sample_rate = sr
    out.input_sr = in_sr
    out.hyperparams = hp
    return out


def _windows(wave: np.ndarray, win: int) -> np.ndarray:
    if len(wave) <= win:
        return wave[None, :]
    n = len(wave) // win
    return wave[: n * win].reshape(n, win)


def embed_waveforms(
    model: nn.Module, waves: Iterable[np.ndarray], window: int, batch_size: int = 32
) -> Iterator[np.ndarray]:
    """Yield one averaged embedding (D,) per mono waveform (already at the model's rate)."""
    dev = next(iter(model.buffers()), torch.empty(0)).device
    for wave in waves:
        wins = _windows(np.asarray(wave, dtype=np.float32), window)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(wins), batch_size):
                outs.append(model(torch.from_numpy(np.ascontiguousarray(wins[i : i + batch_size])).to(dev)))
        yield torch.cat(outs).float().mean(0).cpu().numpy()


def embed_files(
    files: Iterable[str | os.PathLike],
    model_dir: str | os.PathLike,
    device: str | torch.device | None = None,
    batch_size: int = 32,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(path, embedding (D,))`` for each readable audio file (see module docstring).

    Unreadable files raise :class:`singer_ssl.core.audio.AudioError` naming the file.
    """
    from singer_ssl.core.audio import load_mono

    model = load_model(model_dir, device=device)
    window = model_window(model)
    for f in files:
        (emb,) = embed_waveforms(model, [load_mono(f, model.sample_rate)], window, batch_size)
        yield str(f), emb


def model_window(model: nn.Module) -> int:
    """Samples per embedding window of a :func:`load_model` module: segment seconds x its sample rate."""
    return int(round(model_segment_seconds(model.hyperparams) * model.sample_rate))
