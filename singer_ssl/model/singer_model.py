"""The full singer model: front end + input normalisation + encoder + projection head.

``SingerModel`` is what the train stage writes and what ``embed``/``singer_ssl.api`` load::

    waveform (B, S) at frontend.sample_rate, float in [-1, 1]
      -> LogMel (natural-log Slaney mel power, see :class:`singer_ssl.features.LogMel`)  (B, F, T)
      -> (x - mean) / std        dataset-level scalars of the training features (buffers)
      -> encoder (B, 1, F, T)                                                               (B, D_emb)
      -> projection head (L2-normalised)                                                    (B, D_proj)

For waveform encoders (``encoder.input_kind == "waveform"``, e.g. SampleCNN) the front end and the
normalisation are skipped: the encoder takes (B, S) directly.

The model folder (``data/model/``) holds ``model.pt`` (state dict of ``SingerModel``, front-end
buffers included), ``model.ts`` (TorchScript of ``forward``: waveform -> embedding) and
``hyperparams.yaml``, which describes everything needed to rebuild the model without
``params.yaml``::

    library: {name: singer-ssl, version: 0.1.0}
    frontend: {sample_rate, n_fft, hop, n_mels, fmin, fmax, log_offset, center, window, mel}
    normalization: {mean, std}              # scalars applied to the log-mel before the encoder
    encoder: {name, kwargs: {...}, input_kind, embedding_dim}
    head: {kind, in_dim, dim, hidden}
    loss: {name, kwargs: {...}, batch: {...} | null}
    segment_seconds: 4.0                    # length of the training segments (embedding window)
    crop_seconds: 3.0                       # length of each training view
    seed: 123
    augment: {...}                          # as trained (informative)
    train: {...}                            # as trained (informative)
    datasets: [names of the training datasets]

Only ``frontend``, ``normalization``, ``encoder`` and ``head`` are needed by :func:`build_model`.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

import singer_ssl
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.io import atomic_path

FRONTEND_KEYS = ("sample_rate", "n_fft", "hop", "n_mels", "fmin", "fmax", "log_offset")
FRONTEND_FIXED = {"center": True, "window": "hann", "mel": "slaney"}


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


# ----------------------------------------------------------------------------------------------
# hyperparams.yaml


def encoder_kwargs(params: dict[str, Any], n_mels: int | None = None) -> dict[str, Any]:
    """Constructor kwargs of ``params['encoder']`` from ``params['encoders'][name]``.

    ``n_mels`` is filled in from the front end for the encoders whose layer sizes depend on the
    number of mel bands (``encoders.get_for_features``' rule); a contradicting explicit value raises
    ConfigError.
    """
    from singer_ssl import encoders

    name = params["encoder"]
    kwargs = dict((params.get("encoders") or {}).get(name) or {})
    if n_mels is not None and "n_mels" in encoders.accepted_params(name):
        if "n_mels" in kwargs and int(kwargs["n_mels"]) != int(n_mels):
            raise ConfigError(f"encoders.{name}.n_mels={kwargs['n_mels']} contradicts the features' n_mels={n_mels}")
        kwargs["n_mels"] = int(n_mels)
    return kwargs


def hyperparams_from_params(params: dict[str, Any], feature_attrs: dict[str, Any], mean: float, std: float,
                            segment_seconds: float | None = None,
                            datasets: list[str] | None = None) -> dict[str, Any]:
    """Build the ``hyperparams.yaml`` mapping (schema in the module docstring).

    Args:
        params: the whole ``params.yaml`` tree (``loss``, ``encoder``, ``losses``, ``encoders``,
            ``head``, ``augment``, ``train``, ``seed``).
        feature_attrs: attrs of the training features HDF5 (every front-end parameter).
        mean, std: normalisation scalars (pooled over the training features).
        segment_seconds: training segment length in seconds (the embedding window).
        datasets: names of the training datasets.
    """
    from singer_ssl import encoders

    missing = [k for k in FRONTEND_KEYS if k not in feature_attrs]
    if missing:
        raise ConfigError(f"feature attrs lack front-end parameter(s) {missing}; re-run the features stage")
    frontend = {k: _plain(feature_attrs[k]) for k in FRONTEND_KEYS}
    for k, v in FRONTEND_FIXED.items():
        frontend[k] = _plain(feature_attrs.get(k, v))
    if frontend["fmax"] is not None and float(frontend["fmax"]) <= 0:
        frontend["fmax"] = None  # HDF5 attrs cannot hold None; writers may store 0 / -1 for "sr / 2"
    name = params["encoder"]
    kwargs = encoder_kwargs(params, frontend["n_mels"])
    encoder = encoders.get(name, **kwargs)
    head = dict(params.get("head") or {})
    loss_name = params["loss"]
    loss_params = dict((params.get("losses") or {}).get(loss_name) or {})
    batch = loss_params.pop("batch", None)
    return {
        "library": {"name": "singer-ssl", "version": singer_ssl.__version__},
        "frontend": frontend,
        "normalization": {"mean": float(mean), "std": float(std)},
        "encoder": {"name": name, "kwargs": _plain(kwargs), "input_kind": str(encoder.input_kind),
                    "embedding_dim": int(encoder.embedding_dim)},
        "head": {"kind": head.get("kind", "silu_linear"), "in_dim": int(encoder.embedding_dim),
                 "dim": int(head.get("dim", 128)), "hidden": int(head.get("hidden", 512))},
        "loss": {"name": loss_name, "kwargs": _plain(loss_params), "batch": _plain(batch)},
        "segment_seconds": None if segment_seconds is None else float(segment_seconds),
        "crop_seconds": _plain((params.get("augment") or {}).get("crop_seconds")),
        "seed": _plain(params.get("seed")),
        "augment": _plain(params.get("augment")),
        "train": _plain(params.get("train")),
        "datasets": list(datasets or []),
    }


def _plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain Python types (YAML-safe)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def build_model(hparams: dict[str, Any]) -> SingerModel:
    """Rebuild a (randomly initialised) :class:`SingerModel` from a hyperparams mapping.

    Uses ``frontend``, ``normalization``, ``encoder`` and ``head``; load ``model.pt`` into the
    result for the trained weights (:func:`load_model_folder` does both).
    """
    from singer_ssl import encoders
    from singer_ssl.features import LogMel
    from singer_ssl.model.heads import make_head

    for key in ("frontend", "encoder", "head"):
        if key not in hparams:
            raise ConfigError(f"hyperparams lack the {key!r} section")
    enc = hparams["encoder"]
    encoder = encoders.get(enc["name"], **dict(enc.get("kwargs") or {}))
    frontend = LogMel.from_attrs(hparams["frontend"]) if encoder.input_kind == "logmel" else None
    head_cfg = hparams["head"]
    head = make_head(head_cfg.get("kind", "silu_linear"), int(encoder.embedding_dim),
                     int(head_cfg.get("dim", 128)), int(head_cfg.get("hidden", 512)))
    norm = hparams.get("normalization") or {}
    return SingerModel(frontend, encoder, head, float(norm.get("mean", 0.0)), float(norm.get("std", 1.0)))


def load_model_folder(folder: str | os.PathLike, device: str | torch.device = "cpu"
                      ) -> tuple[SingerModel, dict[str, Any]]:
    """Load ``hyperparams.yaml`` + ``model.pt`` of a model folder -> (model in eval mode, hparams).

    Delegates to :func:`singer_ssl.api.load_eager`, which names the culprit when a file is missing or
    the weights do not match the hyperparameters.
    """
    from singer_ssl.api import load_eager, read_hyperparams

    return load_eager(folder, device), read_hyperparams(folder)


# ----------------------------------------------------------------------------------------------
# export


def to_torchscript(model: SingerModel, sample_rate: int, example_seconds: float = 2.0,
                   atol: float = 1e-4) -> torch.jit.ScriptModule:
    """TorchScript of ``model.forward`` (waveform -> embedding), checked against eager on CPU.

    ``torch.jit.script`` is tried first (any input length); if the encoder is not scriptable the
    model is traced instead. Either way the exported module must reproduce the eager embeddings
    on two input lengths (``example_seconds`` and 1.5 x that), else ``RuntimeError``.
    """
    model = copy.deepcopy(model).cpu().eval()
    n = max(int(round(example_seconds * sample_rate)), 4096)
    gen = torch.Generator().manual_seed(0)
    examples = [0.1 * torch.randn(2, n, generator=gen), 0.1 * torch.randn(2, int(1.5 * n), generator=gen)]
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; model.ts is in the contract
            warnings.simplefilter("ignore", DeprecationWarning)
            exported: torch.jit.ScriptModule = torch.jit.script(model)
        how = "scripted"
    except Exception as script_error:  # noqa: BLE001 - fall back to tracing, reported if that fails too
        try:
            with torch.no_grad():
                exported = torch.jit.trace(model, examples[0], check_trace=False)
            how = "traced"
            warnings.warn(f"encoder is not scriptable ({str(script_error).splitlines()[0]}); model.ts is traced",
                          stacklevel=2)
        except Exception as trace_error:
            raise RuntimeError(f"cannot export the model to TorchScript: script failed ({script_error}); "
                               f"trace failed ({trace_error})") from trace_error
    with torch.no_grad():
        for x in examples:
            ref = model(x)
            got = exported(x)
            scale = max(1.0, float(ref.abs().max()))
            if got.shape != ref.shape or not torch.allclose(got, ref, atol=atol * scale, rtol=1e-4):
                raise RuntimeError(f"{how} TorchScript model differs from the eager model on input {tuple(x.shape)}"
                                   f" (max abs diff {float((got - ref).abs().max()):.3g})")
    return exported


def save_model_folder(model: SingerModel, hparams: dict[str, Any], out_dir: str | os.PathLike) -> Path:
    """Write ``model.pt``, ``model.ts`` and ``hyperparams.yaml`` into ``out_dir`` atomically.

    The folder is assembled in a temporary sibling and renamed over ``out_dir`` only when all three
    files were written (an existing folder is replaced as a whole).
    """
    out_dir = Path(out_dir)
    sample_rate = int(hparams["frontend"]["sample_rate"])
    seconds = float(hparams.get("segment_seconds") or 2.0)
    cpu_model = copy.deepcopy(model).cpu().eval()
    scripted = to_torchscript(cpu_model, sample_rate, example_seconds=min(seconds, 4.0))
    with atomic_path(out_dir, is_dir=True) as tmp:
        torch.save(cpu_model.state_dict(), tmp / "model.pt")
        scripted.save(str(tmp / "model.ts"))
        (tmp / "hyperparams.yaml").write_text(yaml.safe_dump(_plain(hparams), sort_keys=False), encoding="utf-8")
    return out_dir
