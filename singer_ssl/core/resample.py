"""Band-limited resampling as a torch module (device-agnostic, TorchScript-able).

Used by :func:`singer_ssl.api.load_model` so a user's waveform batch at ``input_sr`` can be fed to a
model trained at another rate, on the model's device and inside TorchScript. The stages resample
with soxr (``singer_ssl.core.audio``); this module is for batched tensors.

Method: polyphase windowed-sinc interpolation (the construction torchaudio's ``Resample`` uses with
``resampling_method="sinc_interp_hann"``): with g = gcd(orig, new), orig' = orig/g, new' = new/g,
the cut-off is ``rolloff * min(orig', new')`` (rolloff 0.99), the kernel half-width is
``lowpass_filter_width / cutoff`` input samples (width 64), windowed by a Hann window, and one
kernel per output phase is applied with a strided ``conv1d``. Output length = ceil(S * new / orig).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _sinc_kernels(orig: int, new: int, width: int, rolloff: float) -> tuple[torch.Tensor, int]:
    base = min(orig, new) * rolloff
    half = int(math.ceil(width * orig / base))
    idx = torch.arange(-half, half + orig, dtype=torch.float64)[None, :] / orig
    t = (-torch.arange(new, dtype=torch.float64)[:, None] / new + idx) * base
    t = t.clamp(-width, width)
    window = torch.cos(t * math.pi / width / 2) ** 2
    t = t * math.pi
    scale = base / orig
    kernels = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernels = kernels * window * scale
    return kernels[:, None, :].to(torch.float32), half


class Resample(nn.Module):
    """Resample (B, S) waveforms from ``orig_sr`` to ``new_sr`` (Hz); identity when equal.

    Shapes: (B, S) -> (B, ceil(S * new_sr / orig_sr)).
    """

    def __init__(self, orig_sr: int, new_sr: int, lowpass_filter_width: int = 64, rolloff: float = 0.99):
        super().__init__()
        g = math.gcd(int(orig_sr), int(new_sr))
        self.orig_sr = int(orig_sr)
        self.new_sr = int(new_sr)
        self.orig = int(orig_sr) // g
        self.new = int(new_sr) // g
        if self.orig != self.new:
            kernel, half = _sinc_kernels(self.orig, self.new, lowpass_filter_width, rolloff)
        else:
            kernel, half = torch.zeros(1, 1, 1), 0
        self.register_buffer("kernel", kernel, persistent=False)
        self.half = half

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.orig == self.new:
            return wave
        b, s = wave.shape
        x = F.pad(wave[:, None, :], (self.half, self.half + self.orig))
        y = F.conv1d(x, self.kernel.to(wave.dtype), stride=self.orig)  # (B, new, frames)
        y = y.transpose(1, 2).reshape(b, -1)
        target = int(math.ceil(self.new * s / self.orig))
        return y[:, :target]
