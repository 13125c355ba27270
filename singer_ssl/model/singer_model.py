"""The full singer model: front end + input normalisation + encoder + projection head.

``SingerModel`` is what the train stage writes and what ``embed``/``singer_ssl.api`` load::

    waveform (B, S) at frontend.sample_rate, float in [-1, 1]
      -> LogMel (natural-log Slaney mel power, see :class:`singer_ssl.core.frontend.LogMel`)  (B, F, T)
      -> (x - mean) / std        dataset-level scalars of the training features (buffers)
      -> encoder (B, 1, F, T)                                                               (B, D_emb)
      -> projection head (L2-normalised)                                                    (B, D_proj)

For waveform encoders (``encoder.input_kind == "waveform"``, e.g. SampleCNN) the front end and the
normalisation are skipped: the encoder takes (B, S) directly.

The model folder that holds it (``model.pt``, ``model.ts``, ``hyperparams.yaml``) is
:mod:`singer_ssl.model.folder`.
"""

from __future__ import annotations

import torch
from torch import nn

from singer_ssl.core.errors import ConfigError


class SingerModel(nn.Module):
    """Front end + normalisation + encoder + projection head (see the module docstring).

    Args:
        frontend: ``LogMel`` module (waveform -> (B, F, T) log-mel); ``None`` for waveform encoders.
        encoder: registry encoder with ``input_kind`` and ``embedding_dim``.
        head: projection head (B, D_emb) -> (B, D_proj).
        mean, std: dataset-level scalars of the training log-mels (ignored for waveform encoders).
    """

    def __init__(self, frontend: nn.Module | None, encoder: nn.Module, head: nn.Module,
                 mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.input_kind: str = str(encoder.input_kind)
        if self.input_kind not in ("logmel", "waveform"):
            raise ConfigError(f"encoder input_kind must be 'logmel' or 'waveform', got {self.input_kind!r}")
        self.uses_logmel: bool = self.input_kind == "logmel"
        if self.uses_logmel and frontend is None:
            raise ConfigError("a log-mel encoder needs a front end (LogMel)")
        self.frontend = frontend if (frontend is not None and self.uses_logmel) else nn.Identity()
        self.encoder = encoder
        self.head = head
        if not std > 0:
            raise ConfigError(f"normalisation std must be > 0, got {std!r}")
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.embedding_dim: int = int(encoder.embedding_dim)

    def normalize(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, F, T) log-mel -> standardised (B, 1, F, T) encoder input."""
        return ((logmel - self.mean) / self.std).unsqueeze(1)

    def encode(self, wave: torch.Tensor) -> torch.Tensor:
        """Waveform (B, S) -> embedding (B, D_emb) (front end applied for log-mel encoders)."""
        if self.uses_logmel:
            return self.encoder(self.normalize(self.frontend(wave)))
        return self.encoder(wave)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """User-facing API: waveform (B, S) float in [-1, 1] at the front end's rate -> (B, D_emb)."""
        return self.encode(wave)

    @torch.jit.unused
    def embed_normalized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised log-mel (B, 1, F, T) (the output of :meth:`normalize`, possibly augmented)
        -> (embedding (B, D_emb), projection (B, D_proj))."""
        emb = self.encoder(x)
        return emb, self.head(emb)

    @torch.jit.unused
    def embed_logmel(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Un-normalised log-mel (B, F, T) (as stored in the features HDF5) -> (embedding, projection)."""
        if not self.uses_logmel:
            raise ValueError("this model's encoder takes waveforms; use embed_wave")
        return self.embed_normalized(self.normalize(logmel))

    @torch.jit.unused
    def embed_wave(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveform (B, S) -> (embedding (B, D_emb), projection (B, D_proj))."""
        emb = self.encode(wave)
        return emb, self.head(emb)

    @torch.jit.unused
    def embed_encoder_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the trainer feeds: standardised log-mel (B, 1, F, T) for log-mel encoders, else
        waveform (B, S) -> (embedding, projection)."""
        return self.embed_normalized(x) if self.uses_logmel else self.embed_wave(x)
