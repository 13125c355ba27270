"""Use a trained encoder in your own code: :func:`load_model` -> :class:`SingerEncoder`, and ``embed_files``.

``load_model(folder)`` needs only the model folder written by the train stage (``model.pt``,
``model.ts``, ``hyperparams.yaml``); no ``params.yaml`` is read. It returns a :class:`SingerEncoder`
(an ``nn.Module`` in eval mode on ``device``) with:

- ``embed_file(path)`` -> numpy ``(D,)``; ``embed_files(paths)`` -> numpy ``(N, D)``: any format the
  pipeline reads, any rate, mixed to mono (channel mean) and resampled with the pipeline's reader
  (:func:`singer_ssl.core.audio.load_mono`);
- ``embed(wave, sr)``: numpy or torch samples at ``sr`` Hz, 1-D ``(S,)``, a batch ``(B, S)`` or a
  soundfile stereo array ``(S, C)`` (see :meth:`SingerEncoder.embed` for the layout rule); the
  result has the input's type (numpy in -> numpy out, torch in -> torch out on the input's device);
- ``embed_batch(waves, sr)`` -> numpy ``(N, D)``: a list of N numpy arrays or torch tensors of *different*
  lengths (and sample rates: ``sr`` one rate or one per item), embedded in one call; row k equals
  ``embed(waves[k], sr[k])`` (windows of equal length share forward passes, nothing is padded, so no padding
  reaches the pooling); ``embed_files`` and ``singer-ssl embed`` go through it;
- ``embedding_dim`` (D), ``sample_rate`` (the model's rate, Hz), ``segment_seconds`` and ``window``
  (the window length in s and in samples at ``sample_rate``), ``trained_seconds`` (the shortest audio the
  model saw in training: its training views, ``crop_seconds``) and ``min_samples`` (the encoder's minimum
  input at ``sample_rate``; 1 unless the encoder declares one, e.g. SampleCNN's 59049).

Honest input handling: a clip shorter than ``trained_seconds`` is embedded with one ``UserWarning`` naming
it (``embed_batch(..., names=..., notes=...)`` also appends ``(name, reason)`` to ``notes``, which
``singer-ssl embed`` writes to its skipped/notes file); a clip shorter than ``min_samples`` is refused with
a ValueError naming it.

Every ``embed*`` method runs without autograd (outputs never require grad) and embeds audio of any
length the way the pipeline does: the waveform is cut into non-overlapping windows of the model's
segment length (4 s by default; the remainder is dropped unless the audio is shorter than one window,
in which case the whole audio is one window) and the window embeddings are averaged (arithmetic mean
of the un-normalised embeddings, then scored with cosine similarity as in Torres et al. 2023). So
``model.embed(*soundfile.read(path, dtype="float32"))`` equals ``model.embed_file(path)``.

``model(wave_batch)`` (``forward``) is the plain differentiable map ``(B, S at input_sr) -> (B, D)``
on one window per row, kept for fine-tuning and backward compatibility: no windowing, and its
output requires grad unless called under ``torch.no_grad()``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from singer_ssl.core.audio import AudioError, load_mono, resample, segment_samples, to_mono
from singer_ssl.core.device import resolve_device
from singer_ssl.core.errors import NonFiniteError
from singer_ssl.core.resample import Resample
from singer_ssl.model.folder import (  # noqa: F401 - the model-folder contract, re-exported
    MODEL_FILES,
    ModelFolderError,
    load_eager,
    load_torchscript,
    model_sample_rate,
    model_segment_seconds,
    read_hyperparams,
)

#: ``embed(..., layout=...)`` values: how a 2-D array is read
LAYOUTS = ("auto", "batch", "frames_channels", "channels_frames")
#: a 2-D array with at most this many columns (and more rows than columns) is soundfile's (frames, channels)
MAX_CHANNELS = 8


class SingerEncoder(nn.Module):
    """A trained singer encoder (see the module docstring); build it with :func:`load_model`.

    Attributes:
        sample_rate: the model's rate (Hz).
        input_sr: the rate ``forward`` expects (Hz); resampled (windowed sinc, on the device) when it
            differs from ``sample_rate``.
        embedding_dim: D, the size of every embedding.
        segment_seconds, window: the averaging window (s, and samples at ``sample_rate``).
        hyperparams: the folder's ``hyperparams.yaml``.
    """

    def __init__(self, model: nn.Module, hyperparams: dict[str, Any], input_sr: int | None = None,
                 batch_size: int = 32) -> None:
        super().__init__()
        self.hyperparams = hyperparams
        self.sample_rate = model_sample_rate(hyperparams)
        self.input_sr = self.sample_rate if input_sr is None else int(input_sr)
        self.segment_seconds = model_segment_seconds(hyperparams)
        self.window = segment_samples(self.segment_seconds, self.sample_rate)
        self.batch_size = int(batch_size)
        self.resample = Resample(self.input_sr, self.sample_rate)
        self.model = model
        self.embedding_dim = _embedding_dim(model, self.window)
        crop = hyperparams.get("crop_seconds")
        self.trained_seconds = min(float(crop), self.segment_seconds) if crop else self.segment_seconds
        encoder = getattr(model, "encoder", None)
        self.min_samples = int(getattr(encoder, "min_samples", 1) or 1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` float waveform at ``input_sr`` in [-1, 1] -> ``(B, D)`` (one window per row, differentiable)."""
        return self.model(self.resample(wave))

    @property
    def device(self) -> torch.device:
        """The device the weights live on."""
        return next(iter(self.model.parameters()), torch.empty(0)).device

    def embed(self, wave: np.ndarray | torch.Tensor, sr: int, layout: str = "auto") -> np.ndarray | torch.Tensor:
        """Embed waveform(s) at ``sr`` Hz (windowed mean, see the module docstring), without autograd.

        Args:
            wave: float samples in [-1, 1], numpy or torch (integer samples are refused: read with
                ``dtype="float32"``). Shapes:
                ``(S,)`` one mono signal -> ``(D,)``;
                ``(B, S)`` B mono signals of equal length -> ``(B, D)``;
                ``(S, C)`` one multi-channel signal as soundfile returns it (frames, channels), mixed to
                mono by the channel mean -> ``(D,)``.
            sr: sample rate of ``wave`` (Hz); resampled to ``sample_rate`` with soxr as the pipeline does.
            layout: how a 2-D array is read: ``"batch"`` (B, S); ``"frames_channels"`` (S, C), soundfile;
                ``"channels_frames"`` (C, S), torchaudio, also mixed to mono; ``"auto"`` (default):
                ``(S, C)`` when it has at most 8 columns and more rows than columns (soundfile's
                ``sf.read`` of a file with <= 8 channels), else ``(B, S)``. Pass ``layout`` explicitly
                for a batch of signals of <= 8 samples or for torchaudio's channels-first arrays.

        Returns:
            numpy float32 for a numpy input; a torch float32 tensor on ``wave``'s device for a torch
            input; ``(D,)`` for one signal, ``(B, D)`` for a batch.
        """
        is_torch = isinstance(wave, torch.Tensor)
        x = _as_float_array(wave)
        batch = _to_batch(x, layout)
        sr = _check_sr(sr)
        rows = [resample(row, sr, self.sample_rate) for row in batch]
        names = ["wave" if len(rows) == 1 else f"wave row {k}" for k in range(len(rows))]
        for row, name in zip(rows, names):
            self._check_length(len(row), name, None)
        out = self._embed_rows(rows, names)
        if layout_is_single(x, layout):
            out = out[0]
        return torch.from_numpy(out).to(wave.device) if is_torch else out

    def embed_file(self, path: str | os.PathLike, notes: list[tuple[str, str]] | None = None) -> np.ndarray:
        """Embed one audio file (any format the pipeline reads, any rate and channel count) -> numpy ``(D,)``.

        Raises :class:`singer_ssl.core.audio.AudioError` naming the file when it cannot be used; a clip
        shorter than ``trained_seconds`` warns (and is noted in ``notes``), see :meth:`embed_batch`.
        """
        return self.embed_files([path], notes)[0]

    def embed_files(self, paths: Iterable[str | os.PathLike], notes: list[tuple[str, str]] | None = None,
                    chunk: int = 32) -> np.ndarray:
        """Embed audio files -> numpy ``(N, D)``, rows in ``paths`` order (see :meth:`embed_file`), ``chunk``
        files per :meth:`embed_batch` call."""
        paths = [str(p) for p in paths]
        out = [self.embed_batch([load_mono(p, self.sample_rate) for p in paths[i:i + chunk]], self.sample_rate,
                                names=paths[i:i + chunk], notes=notes) for i in range(0, len(paths), chunk)]
        return np.concatenate(out) if out else np.zeros((0, self.embedding_dim), np.float32)

    def embed_batch(self, waves: Sequence[np.ndarray | torch.Tensor], sr: int | Sequence[int],
                    names: Sequence[str] | None = None, notes: list[tuple[str, str]] | None = None) -> np.ndarray:
        """Embed N signals of any lengths in one call -> numpy float32 ``(N, D)``.

        Args:
            waves: N float signals (numpy or torch), each 1-D ``(S,)`` mono or a soundfile ``(S, C)`` array
                (mixed to mono as :meth:`embed` does); lengths may differ.
            sr: the sample rate (Hz) of every signal, or one rate per signal; each is resampled to
                ``sample_rate`` with soxr as the pipeline does.
            names: a name per signal for the messages (default ``item <k>``).
            notes: when given, ``(name, reason)`` is appended for each signal shorter than ``trained_seconds``.

        Row k equals embedding signal k alone (:meth:`embed`): each signal is cut into its own windows (the
        whole signal when shorter than one window) and the windows of all signals that have the same length go
        through the model together; nothing is padded, so no padding reaches the pooling (max abs difference to
        one-at-a-time ~1e-7, float32 rounding).

        Raises:
            ValueError naming the signal when it is empty, not finite, not mono or (S, C), or shorter than the
            encoder's ``min_samples``.
        """
        waves = list(waves)
        rates = [sr] * len(waves) if isinstance(sr, (int, np.integer)) and not isinstance(sr, bool) else list(sr)
        if len(rates) != len(waves):
            raise ValueError(f"sr: expected one rate or {len(waves)} rates, got {len(rates)}")
        names = [f"item {k}" for k in range(len(waves))] if names is None else [str(n) for n in names]
        rows = []
        for wave, rate, name in zip(waves, rates, names):
            try:
                x = _as_float_array(wave)
                if not layout_is_single(x, "auto"):
                    raise ValueError(f"expected one signal (S,) or (S, C), got shape {tuple(x.shape)}")
                rows.append(resample(_to_batch(x, "auto")[0], _check_sr(rate), self.sample_rate))
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        for x, name in zip(rows, names):
            self._check_length(len(x), name, notes)
        return self._embed_rows(rows, names)

    def _check_length(self, n: int, name: str, notes: list[tuple[str, str]] | None) -> None:
        """ValueError below the encoder's minimum; one warning (and a note) below ``trained_seconds``."""
        seconds = n / self.sample_rate
        if n < self.min_samples:
            raise ValueError(f"{name}: {seconds:.3f} s is shorter than the encoder's minimum input "
                             f"({self.min_samples} samples = {self.min_samples / self.sample_rate:.2f} s)")
        if seconds < self.trained_seconds:
            reason = (f"short clip: {seconds:.2f} s, shorter than the {self.trained_seconds:g} s the model was "
                      f"trained on (embedded anyway; expect a less reliable embedding)")
            warnings.warn(f"{name}: {reason}", UserWarning, stacklevel=3)
            if notes is not None:
                notes.append((name, reason))

    def _embed_rows(self, rows: list[np.ndarray], names: Sequence[str]) -> np.ndarray:
        """Mono signals at ``sample_rate`` (any lengths) -> ``(N, D)`` float32: the mean over each signal's
        non-overlapping windows (the whole signal when shorter than one window; the remainder dropped).
        Windows of equal length are batched together, ``batch_size`` per forward pass.

        :class:`~singer_ssl.core.errors.NonFiniteError` naming the first signal (``names``) whose embedding holds
        NaN/inf: the weights overflow on this input, and no score is meaningful."""
        groups: dict[int, list[tuple[int, np.ndarray]]] = {}
        counts = np.zeros(len(rows))
        for k, x in enumerate(rows):
            s = len(x)
            n = 1 if s <= self.window else s // self.window
            width = s if s <= self.window else self.window
            counts[k] = n
            groups.setdefault(width, []).extend((k, w) for w in x[: n * width].reshape(n, width))
        sums = np.zeros((len(rows), self.embedding_dim), np.float64)
        dev = self.device
        with torch.no_grad():
            for width in sorted(groups):
                items = groups[width]
                for i in range(0, len(items), self.batch_size):
                    part = items[i:i + self.batch_size]
                    wins = np.ascontiguousarray(np.stack([w for _, w in part]), dtype=np.float32)
                    emb = self.model(torch.from_numpy(wins).to(dev)).float().cpu().numpy()
                    np.add.at(sums, np.array([k for k, _ in part]), emb)
        emb = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        bad = ~np.isfinite(emb)
        if bad.any():
            raise NonFiniteError(f"{names[int(np.flatnonzero(bad.any(1))[0])]}: the model gives NaN/inf embedding "
                                 f"values ({int(bad.sum())} of {emb.size}); nothing is returned")
        return emb


def layout_is_single(x: np.ndarray, layout: str) -> bool:
    """Whether ``embed`` returns one ``(D,)`` vector for array ``x`` read with ``layout`` (else ``(B, D)``)."""
    return x.ndim == 1 or _layout_of(x, layout) != "batch"


def _layout_of(x: np.ndarray, layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout != "auto":
        return layout
    rows, cols = x.shape
    return "frames_channels" if cols <= MAX_CHANNELS and rows > cols else "batch"


def _to_batch(x: np.ndarray, layout: str) -> np.ndarray:
    """1-D or 2-D samples -> ``(B, S)`` mono rows (channels mixed down by their mean)."""
    if x.ndim == 1:
        return x[None]
    kind = _layout_of(x, layout)
    if kind == "frames_channels":
        return to_mono(x.T)[None]
    if kind == "channels_frames":
        return to_mono(x)[None]
    return x


def _as_float_array(wave: Any) -> np.ndarray:
    """numpy/torch samples -> float32 numpy, 1-D or 2-D, non-empty and finite (ValueError/TypeError otherwise)."""
    if isinstance(wave, torch.Tensor):
        if wave.is_floating_point():
            wave = wave.detach().to("cpu", torch.float32).numpy()
        else:
            raise ValueError(f"expected float samples in [-1, 1], got a {wave.dtype} tensor")
    if not isinstance(wave, np.ndarray):
        raise TypeError(f"expected a numpy array or a torch tensor of samples, got {type(wave).__name__}")
    if not np.issubdtype(wave.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got {wave.dtype} (read with dtype='float32')")
    if wave.ndim not in (1, 2):
        raise ValueError(f"expected samples shaped (S,), (B, S) or (S, C), got shape {tuple(wave.shape)}")
    if wave.size == 0:
        raise ValueError(f"expected audio samples, got an empty array of shape {tuple(wave.shape)}")
    if not np.isfinite(wave).all():
        raise ValueError("the waveform contains NaN or inf samples")
    return wave.astype(np.float32, copy=False)


def _check_sr(sr: Any) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise ValueError(f"sr: expected the sample rate in Hz (an integer > 0), got {sr!r}")
    return int(sr)


def _embedding_dim(model: nn.Module, window: int) -> int:
    """D: the model's ``embedding_dim`` attribute, else the width of one forward pass on silence."""
    dim = getattr(model, "embedding_dim", None)
    if isinstance(dim, int):
        return dim
    dev = next(iter(model.parameters()), torch.empty(0)).device
    with torch.no_grad():
        return int(model(torch.zeros(1, window, device=dev)).shape[-1])


def load_model(
    path: str | os.PathLike,
    input_sr: int | None = None,
    device: str | torch.device | None = None,
    torchscript: bool = False,
    batch_size: int = 32,
) -> SingerEncoder:
    """Load a trained singer-ssl encoder from a model folder.

    Args:
        path: folder written by the train stage (``data/model`` in the pipeline).
        input_sr: sample rate (Hz) ``model(wave_batch)`` expects; ``None`` = the model's rate. The
            ``embed*`` methods take the rate of each input instead.
        device: ``"cuda"``, ``"cpu"``, or ``None``/``"auto"`` (CUDA when available).
        torchscript: load ``model.ts`` (no singer_ssl model code needed) instead of rebuilding
            the eager model from ``hyperparams.yaml`` + ``model.pt``.
        batch_size: windows per forward pass in the ``embed*`` methods.

    Returns:
        :class:`SingerEncoder` in eval mode (``embedding_dim``, ``sample_rate``, ``embed``,
        ``embed_file``, ``embed_files``; ``model(wave_batch)`` as before).

    Raises:
        ModelFolderError: one line naming the file and key when the folder is incomplete, malformed or
            inconsistent (:func:`singer_ssl.model.folder.load_eager` / ``load_torchscript``).
        ValueError: ``input_sr`` is not a positive integer.
    """
    if input_sr is not None and (isinstance(input_sr, bool) or not isinstance(input_sr, (int, np.integer))
                                 or input_sr <= 0):
        raise ValueError(f"input_sr: expected the input sample rate in Hz (an integer > 0) or None, got {input_sr!r}")
    hp = read_hyperparams(path)
    dev = resolve_device(device)
    model = load_torchscript(path, dev) if torchscript else load_eager(path, dev)
    return SingerEncoder(model, hp, input_sr, batch_size).to(dev).eval()


def embed_files(
    files: Iterable[str | os.PathLike],
    model_dir: str | os.PathLike,
    device: str | torch.device | None = None,
    batch_size: int = 32,
    skipped: list[tuple[str, str]] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(path, embedding numpy (D,))`` per file: :meth:`SingerEncoder.embed_file` streamed.

    Unreadable files raise :class:`singer_ssl.core.audio.AudioError` naming the file. With a ``skipped``
    list, files are instead checked by the segment stage's whole-file rules (``load_mono(strict=True)``:
    unreadable, corrupt, digital silence, anti-phase channels, samples beyond +6 dBFS) and each unusable
    one is appended as ``(path, reason)`` and left out, as ``singer-ssl embed`` does.
    """
    model = load_model(model_dir, device=device, batch_size=batch_size)
    for f in files:
        if skipped is None:
            yield str(f), model.embed_file(f)
            continue
        try:
            x = load_mono(f, model.sample_rate, strict=True)
        except AudioError as err:
            skipped.append((str(f), err.reason))
            continue
        yield str(f), model.embed(x, model.sample_rate)
