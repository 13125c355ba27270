"""The full singer model: front end + input normalisation + encoder + projection head.

``SingerModel`` is what the train stage writes and what ``embed``/``singer_ssl.api`` load::

    waveform (B, S) at frontend.sample_rate, float in [-1, 1]
      -> LogMel (natural-log Slaney mel power, see :class:`singer_ssl.core.frontend.LogMel`)  (B, F, T)
      -> input scaling           ``dataset_std``: (x - mean) / std * gain, dataset-level scalars of the
                                 training features (buffers; gain 1 unless a published checkpoint's
                                 convention says otherwise); ``item_mean`` / ``item_peak`` / ``item_loud``
                                 (params.yaml default): each item centred on its own statistic
                                 (:func:`item_centre`), plus ``offset``, over std; ``none``: x unchanged
                                 (Torres et al. 2023 feed the raw log-mel to the encoder, whose own per-item
                                 scaling is x / max x)
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

#: how the log-mel is scaled before the encoder (``normalization.scaling`` in hyperparams.yaml)
INPUT_SCALINGS = ("dataset_std", "none", "item_mean", "item_peak", "item_loud")
#: the item-centred scalings whose centre lies above the item mean: ``normalization.offset`` adds the distance back
OFFSET_SCALINGS = ("item_peak", "item_loud")


def item_centre(logmel: torch.Tensor, scaling: str) -> torch.Tensor:
    """(B, F, T) log-mel -> (B, 1, 1) each item's own centre under an item-centred input scaling.

    ``item_mean``: the mean over frequency and time; ``item_peak``: the maximum; ``item_loud``: the mean of
    the item's loudest quarter of time-frequency bins (the top F*T // 4 values). Every centre moves with the
    log-mel under a waveform gain (which adds a constant), so the centred input is level-invariant. Additive
    noise fills the weak bins: on 2 s clips of built-in singing at 44.1 kHz, 10 dB of white noise moves the
    bins within 30 dB of the peak, after centring, by 6.1 natural-log units under ``item_mean``, 0.69 under
    ``item_loud`` and 0.01 under ``item_peak``, whose single-bin centre varies most across items (its
    distance to the item mean has a standard deviation of 0.93 vs 0.82 for ``item_loud``)."""
    if scaling == "item_mean":
        return logmel.mean(dim=(1, 2), keepdim=True)
    if scaling == "item_peak":
        return logmel.amax(dim=(1, 2), keepdim=True)
    if scaling == "item_loud":
        flat = logmel.flatten(1)
        k = max(1, flat.shape[1] // 4)
        return flat.topk(k, dim=1).values.mean(dim=1).view(-1, 1, 1)
    raise ValueError(f"not an item-centred input scaling: {scaling}")


def centre_offset(logmel: torch.Tensor, scaling: str) -> float:
    """Mean over the items of (centre - item mean): the constant that :meth:`SingerModel.normalize` adds
    back after an item-centred scaling so that the encoder input is zero-mean on average over the training
    features (the encoder's zero padding then sits at an average level, not at the peak). ``logmel``
    (N, F, T); 0 for ``item_mean`` by construction."""
    if logmel.shape[0] == 0:
        return 0.0
    centre = item_centre(logmel, scaling).flatten()
    return float((centre - logmel.mean(dim=(1, 2))).double().mean())
#: how the two views go through the encoder in training (``train.view_batching``)
VIEW_BATCHINGS = ("joint", "per_view")


class SingerModel(nn.Module):
    """Front end + normalisation + encoder + projection head (see the module docstring).

    Args:
        frontend: ``LogMel`` module (waveform -> (B, F, T) log-mel); ``None`` for waveform encoders.
        encoder: registry encoder with ``input_kind`` and ``embedding_dim``.
        head: projection head (B, D_emb) -> (B, D_proj).
        mean, std: dataset-level scalars of the training log-mels (ignored for waveform encoders).
        input_scaling: ``dataset_std`` ((x - mean) / std * gain), ``none`` (x unchanged) or an item centring,
            ((x - centre_item(x) + offset) / std * gain, :func:`item_centre`): ``item_mean`` (the item's mean
            over frequency and time), ``item_peak`` (its loudest bin) or ``item_loud`` (the mean of its loudest
            quarter of bins). A waveform gain adds a constant to the log-mel, so every centring makes the input
            invariant to the recording level; additive noise fills the weak bins and pulls the mean up (every
            voice bin shifts), barely moves the loudest quarter and leaves the peak (numbers in
            :func:`item_centre`; tests/test_item_mean_scaling.py).
        offset: added after an item centring (``item_peak``, ``item_loud``): the training features' mean
            distance between the centre and the item mean (:func:`centre_offset`), so the input is zero-mean
            on average; 0 keeps the plain centring (model folders written before it existed).
        gain: factor after the standardisation (1 = plain standardisation; a published checkpoint's
            input convention, e.g. Fonseca et al. 2021's sqrt(N), see :func:`singer_ssl.encoders.load_published`).
        view_batching: how the trainer passes the two views (``joint``: one batch of 2B, batch-norm
            statistics over both views; ``per_view``: each view separately, as Torres et al. 2023 and
            Fonseca et al. 2021); read by :class:`singer_ssl.training.loop.TrainUnit`, no effect on embeddings.
    """

    def __init__(self, frontend: nn.Module | None, encoder: nn.Module, head: nn.Module,
                 mean: float = 0.0, std: float = 1.0, input_scaling: str = "dataset_std", gain: float = 1.0,
                 view_batching: str = "joint", offset: float = 0.0) -> None:
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
        if input_scaling not in INPUT_SCALINGS:
            raise ConfigError(f"input scaling must be one of {', '.join(INPUT_SCALINGS)}, got {input_scaling!r}")
        if not float(gain) > 0 or (input_scaling == "none" and float(gain) != 1.0):
            raise ConfigError(f"normalisation gain must be > 0 (and 1 with input scaling 'none'), got {gain!r}")
        if view_batching not in VIEW_BATCHINGS:
            raise ConfigError(f"view batching must be one of {', '.join(VIEW_BATCHINGS)}, got {view_batching!r}")
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))
        self.input_scaling: str = input_scaling
        self.offset: float = float(offset)
        self.gain: float = float(gain)
        self.view_batching: str = view_batching
        self.embedding_dim: int = int(encoder.embedding_dim)

    def normalize(self, logmel: torch.Tensor) -> torch.Tensor:
        """(B, F, T) log-mel -> (B, 1, F, T) encoder input: standardised (times ``gain`` when it is not 1)
        with input scaling ``dataset_std``, each item's own mean log-mel subtracted instead of the dataset
        mean with ``item_mean`` (level invariance), its own maximum with ``item_peak`` (level and noise-floor
        invariance), the mean of its loudest quarter with ``item_loud`` (:func:`item_centre`; ``offset`` added
        back), unchanged with ``none``."""
        if self.input_scaling == "none":
            return logmel.unsqueeze(1)
        if self.input_scaling == "dataset_std":
            x = (logmel - self.mean) / self.std
        else:
            x = (logmel - item_centre(logmel, self.input_scaling) + self.offset) / self.std
        if self.gain != 1.0:
            x = x * self.gain
        return x.unsqueeze(1)

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
