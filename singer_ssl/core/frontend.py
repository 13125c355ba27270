"""The log-mel front end: one definition for the features stage, the model and TorchScript export.

Front end (Torres et al.'s, ``singer_identity/model.py``): power mel spectrogram with n_fft 2048, hop 512,
128 Slaney mels (Slaney area norm), periodic Hann window, ``center=True`` with reflect padding, then
the natural log ``log(mel + 1e-8)``. Computed as nnAudio's ``MelSpectrogram`` computes it.

**Sample rate.** Torres et al. 2023 built ``nnAudio.features.MelSpectrogram`` without ``sr``, so its filterbank was
designed for nnAudio's default 22.05 kHz but applied to 44.1 kHz STFT bins: its 128 filters nominally
span 0-11.025 kHz but really cover 0-22.05 kHz, every centre frequency doubled (in the published code).
Here the sample rate is always passed explicitly (``audio.sample_rate``), so ``fmin``/``fmax`` and
the mel centres are the physical frequencies they claim to be. Features are therefore not
interchangeable with Torres et al.'s pretrained weights; that is deliberate.

Two implementations with the same output (tested: max |Δ log-mel| <= 1e-3 wherever mel power > 1e-6,
against nnAudio and against ``librosa.feature.melspectrogram``):

- :class:`LogMel` — ``torch.stft`` + the mel projection with the filterbank nnAudio itself builds
  (``nnAudio.utils.get_mel``, the function behind ``MelSpectrogram.mel_basis``, so the two cannot
  drift). TorchScript-able (it sits inside the exported ``model.ts``) and the fast CPU path: nnAudio's
  STFT is a conv1d against 2 x 1025 x 2048 kernels, ~3x slower on CPU. Two measured CPU speed-ups
  (2-core EPYC, benchmarks/README.md): (1) the mel projection runs band by band — each group of 16
  filters only over the bins where one of them is non-zero — skipping ~87 % of the filterbank's
  zeros (0.9 -> 0.25 ms per 4 s clip, same sums); (2) a batch is transformed in sub-batches of about
  one 4 s clip at 44.1 kHz, whose frames and spectrum (~3 MB each) stay in cache: ~4x faster than one
  32-clip STFT on this memory-bound machine.
- :class:`NnAudioLogMel` — nnAudio's ``MelSpectrogram`` (+ the same log); what the features stage uses
  on CUDA.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from nnAudio.utils import get_mel
from torch import nn

# Front-end attributes written to every features file (and to the model's hyperparams).
FRONT_END_KEYS = ("sample_rate", "n_fft", "hop", "n_mels", "fmin", "fmax", "log_offset")
FIXED_ATTRS = {"center": True, "window": "hann", "mel": "slaney", "pad_mode": "reflect", "power": 2.0,
               "log": "natural"}
# CPU sub-batch budget (samples): one 4 s clip at 44.1 kHz (176,400 samples) per STFT call.
_CPU_CHUNK_SAMPLES = 1 << 18


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """Slaney-scale, Slaney-area-normalised mel filterbank (n_mels, n_fft // 2 + 1), float32.

    Built by ``nnAudio.utils.get_mel`` with ``htk=False, norm=1`` (a clone of librosa's
    ``filters.mel``), exactly the ``mel_basis`` buffer of ``nnAudio.features.MelSpectrogram``.
    """
    basis = get_mel(int(sample_rate), int(n_fft), int(n_mels), float(fmin),
                    None if fmax is None else float(fmax), htk=False, norm=1)
    return torch.as_tensor(np.asarray(basis, dtype=np.float32))


def front_end_params(sample_rate: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 128,
                     fmin: float = 0.0, fmax: float | None = None,
                     log_offset: float = 1e-8) -> dict[str, Any]:
    """The front end's parameters as plain Python values, ``fmax`` resolved (``None`` -> sample_rate / 2).

    Validates them (ValueError naming the parameter) so a bad ``params.yaml`` fails before any work.
    """
    sample_rate, n_fft, hop, n_mels = int(sample_rate), int(n_fft), int(hop), int(n_mels)
    fmin = float(fmin)
    fmax = sample_rate / 2.0 if fmax is None else float(fmax)
    for name, value in (("sample_rate", sample_rate), ("n_fft", n_fft), ("hop", hop), ("n_mels", n_mels)):
        if value <= 0:
            raise ValueError(f"features: {name} must be a positive integer, got {value}")
    if not 0.0 <= fmin < fmax <= sample_rate / 2.0:
        raise ValueError(f"features: need 0 <= fmin < fmax <= sample_rate/2 = {sample_rate / 2.0}, "
                         f"got fmin={fmin}, fmax={fmax}")
    if not log_offset > 0:
        raise ValueError(f"features: log_offset must be > 0, got {log_offset}")
    return {"sample_rate": sample_rate, "n_fft": n_fft, "hop": hop, "n_mels": n_mels, "fmin": fmin,
            "fmax": fmax, "log_offset": float(log_offset)}


#: the fewest frames a stored log-mel segment may have: the largest ``min_length`` of the log-mel encoders
#: (audiontt2020, crnn, vgglike: 8 frames; singer_ssl.encoders), so one features file fits every encoder
MIN_FRAMES = 8


def hz_to_mel_slaney(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale (Slaney 1998, Auditory Toolbox; librosa's ``htk=False``): linear below 1 kHz
    (200/3 Hz per mel), logarithmic above (27 mels per factor 6.4 of frequency)."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(hz, 1e-300) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, linear)


def mel_to_hz_slaney(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel_slaney`."""
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), (200.0 / 3.0) * mel)


def empty_mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                      fmax: float | None = None) -> list[tuple[int, float, float]]:
    """The mel filters of :func:`mel_filterbank` that hold no FFT bin: ``[(filter, low Hz, high Hz)]``.

    Filter ``m`` is a triangle over ``(f[m], f[m + 2])``, ``f`` being ``n_mels + 2`` points evenly spaced on
    the Slaney mel scale from ``fmin`` to ``fmax`` (librosa's ``filters.mel``, which nnAudio clones); its
    weights are non-zero exactly at the bins ``k * sample_rate / n_fft`` (``k = 0 .. n_fft // 2``) strictly
    inside that interval, so it is empty (all zeros: a constant ``log(log_offset)`` feature row) when none is.
    """
    top = sample_rate / 2.0 if fmax is None else float(fmax)
    edges = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(float(fmin)), hz_to_mel_slaney(top), int(n_mels) + 2))
    bins = np.linspace(0.0, sample_rate / 2.0, 1 + int(n_fft) // 2)
    # bins strictly inside (lo, hi): the count of bins < hi minus the count of bins <= lo
    inside = np.searchsorted(bins, edges[2:], side="left") - np.searchsorted(bins, edges[:-2], side="right")
    return [(int(m), float(edges[m]), float(edges[m + 2])) for m in np.flatnonzero(inside <= 0)]


def n_frames(n_samples: int, hop: int, n_fft: int = 2048) -> int:
    """Frames of a centred STFT (``n_fft // 2`` padding each side): ``1 + n_samples // hop`` for even
    ``n_fft`` (e.g. 176,400 samples, hop 512 -> 345)."""
    return 1 + (int(n_samples) + 2 * (int(n_fft) // 2) - int(n_fft)) // int(hop)


def band_groups(basis: torch.Tensor, group: int = 16) -> list[tuple[int, int, int, int]]:
    """``(first_mel, end_mel, first_bin, end_bin)`` for consecutive groups of ``group`` filters: the
    bin range outside which every filter of the group is zero (at least one bin wide)."""
    out = []
    for g0 in range(0, basis.shape[0], group):
        g1 = min(g0 + group, basis.shape[0])
        bins = torch.nonzero(basis[g0:g1].abs().sum(0) > 0).flatten()
        lo, hi = (int(bins.min()), int(bins.max()) + 1) if bins.numel() else (0, 1)
        out.append((g0, g1, lo, hi))
    return out


def _params_from_mapping(attrs: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in ("sample_rate", "n_fft", "hop", "n_mels") if k not in attrs]
    if missing:
        raise ValueError(f"front-end attributes lack {', '.join(missing)} (have: {', '.join(sorted(attrs))})")
    get = {k: attrs[k] for k in FRONT_END_KEYS if k in attrs}
    fmax = get.get("fmax")
    return front_end_params(
        sample_rate=int(get["sample_rate"]), n_fft=int(get["n_fft"]), hop=int(get["hop"]),
        n_mels=int(get["n_mels"]), fmin=float(get.get("fmin", 0.0)),
        fmax=None if fmax is None else float(fmax), log_offset=float(get.get("log_offset", 1e-8)))


class LogMel(nn.Module):
    """Waveform (B, S) float in [-1, 1] -> natural-log mel power (B, n_mels, 1 + S // hop).

    ``log(mel_basis @ |STFT(x)|^2 + log_offset)`` with a periodic Hann window of ``n_fft`` samples,
    ``center=True`` reflect padding and the Slaney mel filterbank of :func:`mel_filterbank` designed for
    ``sample_rate``; equals ``log(nnAudio.features.MelSpectrogram(sr=sample_rate, ...)(x) + log_offset)``.
    Input of any float dtype is computed in float32 (run it outside autocast); output is float32.
    Needs ``S > n_fft // 2`` (reflect padding). Scriptable with ``torch.jit.script``. The window and
    filterbank are non-persistent buffers: they follow from the parameters and stay out of state dicts.
    """

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 128,
                 fmin: float = 0.0, fmax: float | None = None, log_offset: float = 1e-8):
        super().__init__()
        # Plain int/float attributes: TorchScript infers their types (no class annotations, which
        # `from __future__ import annotations` would turn into strings it cannot resolve).
        p = front_end_params(sample_rate, n_fft, hop, n_mels, fmin, fmax, log_offset)
        self.sample_rate = p["sample_rate"]
        self.n_fft = p["n_fft"]
        self.hop = p["hop"]
        self.n_mels = p["n_mels"]
        self.fmin = p["fmin"]
        self.fmax = p["fmax"]
        self.log_offset = p["log_offset"]
        self.chunk_samples = _CPU_CHUNK_SAMPLES
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        basis = mel_filterbank(self.sample_rate, self.n_fft, self.n_mels, self.fmin, self.fmax)
        self.register_buffer("mel_basis", basis, persistent=False)
        self.band_groups = band_groups(basis)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> LogMel:
        """Build from a features file's attrs or a hyperparams dict (extra keys ignored)."""
        return cls(**_params_from_mapping(attrs))

    @torch.jit.unused
    def params(self) -> dict[str, Any]:
        """The constructor arguments (``fmax`` resolved), e.g. for ``hyperparams.yaml``."""
        return {k: getattr(self, k) for k in FRONT_END_KEYS}

    def _logmel(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, pad_mode="reflect",
                          return_complex=True)  # (B, F, T), stored frame-major
        ri = torch.view_as_real(spec.transpose(1, 2))  # (B, T, F, 2), contiguous
        power = ri[..., 0].square() + ri[..., 1].square()  # (B, T, F)
        # Mel projection band by band: each group of filters only touches its own bins, so the
        # zeros of the (very sparse) filterbank are skipped (~8x fewer multiply-adds, same sums).
        parts: list[torch.Tensor] = []
        for g0, g1, lo, hi in self.band_groups:
            parts.append(torch.matmul(power[:, :, lo:hi], self.mel_basis[g0:g1, lo:hi].t()))
        mel = torch.cat(parts, -1)  # (B, T, n_mels)
        return torch.log(mel + self.log_offset).transpose(1, 2).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError("LogMel expects a (batch, samples) waveform tensor")
        x = x.float()
        if x.device.type != "cpu" or x.shape[0] <= 1:
            return self._logmel(x)
        step = max(1, self.chunk_samples // max(1, x.shape[1]))
        if step >= x.shape[0]:
            return self._logmel(x)
        parts: list[torch.Tensor] = []
        for i in range(0, x.shape[0], step):
            parts.append(self._logmel(x[i:i + step]))
        return torch.cat(parts, 0)


class NnAudioLogMel(nn.Module):
    """nnAudio's ``MelSpectrogram`` with the sample rate passed, then ``log(mel + log_offset)``.

    Same contract and output as :class:`LogMel` (the GPU path of the features stage); not scriptable.
    """

    def __init__(self, sample_rate: int, n_fft: int = 2048, hop: int = 512, n_mels: int = 128,
                 fmin: float = 0.0, fmax: float | None = None, log_offset: float = 1e-8):
        super().__init__()
        from nnAudio.features import MelSpectrogram

        p = front_end_params(sample_rate, n_fft, hop, n_mels, fmin, fmax, log_offset)
        self.log_offset = p["log_offset"]
        self.mel = MelSpectrogram(sr=p["sample_rate"], n_fft=p["n_fft"], win_length=None, n_mels=p["n_mels"],
                                  hop_length=p["hop"], window="hann", center=True, pad_mode="reflect",
                                  power=2.0, htk=False, fmin=p["fmin"], fmax=p["fmax"], norm=1,
                                  trainable_mel=False, trainable_STFT=False, verbose=False)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> NnAudioLogMel:
        return cls(**_params_from_mapping(attrs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError("NnAudioLogMel expects a (batch, samples) waveform tensor")
        return torch.log(self.mel(x.float()) + self.log_offset)


def make_extractor(device: torch.device, **params: Any) -> nn.Module:
    """The stage's extractor on ``device``: nnAudio on CUDA, :class:`LogMel` elsewhere (eval mode)."""
    cls = NnAudioLogMel if torch.device(device).type == "cuda" else LogMel
    return cls(**params).to(device).eval()
