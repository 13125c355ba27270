"""Spectrogram augmentations on log-mel batches ``(B, 1, F, T)`` (torch, any device, train mode only).

Every augmentation is an ``nn.Module`` whose ``forward(x, generator)`` transforms each item of the batch
with its own random parameters, drawn on ``x.device`` from ``generator`` (a ``torch.Generator`` on that
device) or from torch's global RNG when ``generator`` is None. Everything is batched tensor code — no
per-item Python loop and no host synchronisation. :class:`SpectrogramAugment` chains the enabled ones in
the fixed order of :data:`SPECTROGRAM_NAMES`::

    mixup, mixback, random_resize_crop, linear_fader, compression, spec_augment, gaussian_noise_spec

which keeps BYOL-A's (mixup -> RRC -> linear fader) and Fonseca et al.'s (mix-back -> RRC -> compression ->
SpecAugment -> noise) orders. Each is applied per item with probability ``p`` (an item-wise coin; the
transformed value is computed for the whole batch and selected with ``torch.where``). In eval mode the
chain is the identity and the mixup memory bank is not updated.

Input domain. The chain expects what the encoder receives: the natural-log mel ``ln(mel + offset)``
*standardised* with the dataset's scalar mean and std (``FeatureStore.mean/std``), as BYOL-A standardises
before augmenting. The formulas below are written for ``x`` as given; what they mean:

- ``mixup`` (BYOL-A log-mixup-exp): ``y = log((1 - l) e^x + l e^z)``, ``l = ratio * U(0, 1)``, ``z`` a random
  past input from a FIFO memory bank (``bank_size`` items; the current batch is pushed after mixing; no
  mixing while the bank is empty). Computed with ``logaddexp`` (BYOL-A adds float32 eps inside the log:
  a difference of about eps / e^y, below 2e-5 for values above -5). On standardised input, as in BYOL-A, ``e^x`` is the
  mel power raised to ``1/std`` (scaled), not the power itself.
- ``mixback`` (Fonseca et al. 2021 ``mix_out_clip``): each item mixed with another random item of the batch,
  ``y = log((1 - l) e^x + l (E_x / E_b) e^b)``, ``l ~ U(0, max_ratio)``, ``E = sum e^(.)`` over the patch.
  Fonseca et al. 2021 wrote it with ``10^x`` on log10 mels; with natural-log input ``e^x`` is the same operation. On
  raw ln-mel it mixes powers exactly like Fonseca et al. 2021; on standardised input it mixes ``power^(1/std)``.
- ``random_resize_crop`` (BYOL-A): the item sits centred on a zero canvas of ``virtual_crop_scale`` x its
  size (1.0 x F, 1.5 x T); a crop of ``h = clip(int(U(freq_scale) F), 1, canvas_F)``, ``w = clip(int(
  U(time_scale) T), 1, canvas_T)`` at a uniform integer position is resized back to ``(F, T)``
  (``align_corners=True``, bicubic). Implemented with one ``grid_sample`` over the whole batch, which
  equals BYOL-A's crop + ``F.interpolate`` except at the crop border, where bicubic taps read the canvas
  instead of replicating the crop's edge (exact with ``interpolation: bilinear``). The zero canvas is the
  dataset mean on standardised input (as in BYOL-A) — on raw ln-mel it would be 0 = ln 1, a loud level.
- ``linear_fader`` (BYOL-A v2): adds a linear ramp over time from ``head`` to ``tail``, both
  ``gain * U(-1, 1)`` — a level fade of up to ``gain`` standardised units (``gain * std`` in ln-power).
- ``compression`` (Fonseca et al. 2021 ``Compander``): ``y = c x``, ``c ~ U(min_factor, max_factor)`` (0.75-1). On
  standardised input this scales the deviations from the dataset-mean level, a dynamic-range compression
  about the mean. (On raw log-mel, as in Fonseca et al. 2021, ``c ln P = ln P^c``: a power-law with fixed point at
  P = 1, i.e. it *raises* every quieter-than-full-scale bin — up to +19 dB for a -78 dB bin at c = 0.75.)
- ``spec_augment`` (Fonseca et al.'s variant of SpecAugment): ``n_freq_masks`` bands of width ``U{0 ..
  freq_width - 1}`` (uclser20's ``int(U(0, F))``) at uniform positions, same for time; filled with the
  item's minimum (``fill: min``; or ``mean``, ``zero``), computed before masking.
- ``gaussian_noise_spec`` (Fonseca et al. 2021 ``GaussNoise``): ``y = x + s N(0, 1)``, ``s ~ U(0, max_std)`` per item.

Cost on CPU (one thread, 2-core dev laptop) per batch of 32 x 1 x 128 x 259 (3 s at 44.1 kHz, hop 512),
p = 1: mixup 6 ms, mixback 10 ms, random_resize_crop 14 ms (bicubic; bilinear 7 ms), linear_fader 0.3 ms,
compression 0.2 ms, spec_augment 2 ms, gaussian_noise_spec 5 ms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from singer_ssl.augment.waveform import _require, merge_params
from singer_ssl.core.errors import ConfigError, choice_error

__all__ = ["SPECTROGRAM_NAMES", "SpectrogramAugment", "SpectrogramOp", "make_spectrogram_op"]


def _rand(x: Tensor, *shape: int, generator: torch.Generator | None) -> Tensor:
    """U(0, 1) float32 of ``shape`` on ``x.device``."""
    return torch.rand(shape, device=x.device, dtype=torch.float32, generator=generator)


def _per_item(values: Tensor, x: Tensor) -> Tensor:
    """Reshape a (B,) tensor to broadcast over ``x`` (B, ...)."""
    return values.view(-1, *([1] * (x.dim() - 1)))


class SpectrogramOp(nn.Module):
    """One spectrogram augmentation; subclasses set ``name``, ``defaults``, ``ranges`` and ``forward``."""

    name: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    ranges: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, **params: Any) -> None:
        super().__init__()
        full = {**self.defaults, **params}
        for key, value in full.items():
            setattr(self, key, value)
        self.params = full
        self.check()

    def check(self) -> None:
        """Raise ValueError for parameter values outside their domain."""

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:  # (B, C, F, T)
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())


class Mixup(SpectrogramOp):
    """BYOL-A log-mixup-exp with a FIFO memory bank of past inputs (``bank`` is a non-persistent buffer)."""

    name = "mixup"
    defaults = {"ratio": 0.4, "bank_size": 2048, "log_mixup_exp": True}

    def check(self) -> None:
        _require(0.0 <= self.ratio <= 1.0, f"ratio must lie in [0, 1], got {self.ratio}")
        _require(self.bank_size >= 1, f"bank_size must be >= 1, got {self.bank_size}")
        self.register_buffer("bank", torch.empty(0), persistent=False)
        self.filled = 0  # items stored (host-side counter: no device sync)
        self.next_slot = 0

    def reset(self) -> None:
        """Empty the memory bank."""
        self.bank = torch.empty(0, device=self.bank.device)
        self.filled = self.next_slot = 0

    def _push(self, x: Tensor) -> None:
        x = x.detach()
        if self.bank.shape[1:] != x.shape[1:] or self.bank.dtype != x.dtype or self.bank.device != x.device:
            self.bank = torch.zeros((self.bank_size, *x.shape[1:]), dtype=x.dtype, device=x.device)
            self.filled = self.next_slot = 0
        x = x[-self.bank_size:]
        n = x.shape[0]
        slots = (torch.arange(n, device=x.device) + self.next_slot) % self.bank_size
        self.bank[slots] = x
        self.next_slot = (self.next_slot + n) % self.bank_size
        self.filled = min(self.bank_size, self.filled + n)

    def forward(self, x, generator=None):
        out = x
        if self.filled > 0 and self.bank.shape[1:] == x.shape[1:] and self.bank.device == x.device:
            b = x.shape[0]
            index = (_rand(x, b, generator=generator) * self.filled).long().clamp_(max=self.filled - 1)
            z = self.bank[index].to(x.dtype)
            lam = _per_item(self.ratio * _rand(x, b, generator=generator), x).to(x.dtype)
            if self.log_mixup_exp:
                out = torch.logaddexp(torch.log1p(-lam) + x, torch.log(lam) + z)
            else:
                out = (1.0 - lam) * x + lam * z
        self._push(x)
        return out


class Mixback(SpectrogramOp):
    name = "mixback"
    defaults = {"max_ratio": 0.05}

    def check(self) -> None:
        _require(0.0 <= self.max_ratio < 1.0, f"max_ratio must lie in [0, 1), got {self.max_ratio}")

    def forward(self, x, generator=None):
        b = x.shape[0]
        if b < 2:
            return x
        shift = 1 + (_rand(x, b, generator=generator) * (b - 1)).long().clamp_(max=b - 2)
        partner = (torch.arange(b, device=x.device) + shift) % b
        back = x[partner]
        lam = _per_item(self.max_ratio * _rand(x, b, generator=generator), x).to(x.dtype)
        log_energy_ratio = torch.logsumexp(x.flatten(1), 1) - torch.logsumexp(back.flatten(1), 1)
        log_energy_ratio = _per_item(log_energy_ratio, x)
        return torch.logaddexp(torch.log1p(-lam) + x, torch.log(lam) + log_energy_ratio + back)


class RandomResizeCrop(SpectrogramOp):
    name = "random_resize_crop"
    defaults = {"virtual_crop_scale": (1.0, 1.5), "freq_scale": (0.6, 1.5), "time_scale": (0.6, 1.5),
                "interpolation": "bicubic"}
    INTERPOLATIONS: ClassVar[tuple[str, ...]] = ("bicubic", "bilinear", "nearest")

    def check(self) -> None:
        _require(min(self.virtual_crop_scale) >= 1.0, "virtual_crop_scale entries must be >= 1")
        _require(self.freq_scale[0] > 0 and self.time_scale[0] > 0, "freq_scale and time_scale must be > 0")
        if self.interpolation not in self.INTERPOLATIONS:
            raise choice_error("interpolation", self.interpolation, self.INTERPOLATIONS)

    def crop_params(self, x: Tensor, generator=None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-item integer crop ``(i, j, h, w)`` on the virtual canvas, as BYOL-A ``get_params``."""
        b, f, t = x.shape[0], x.shape[-2], x.shape[-1]
        canvas_f, canvas_t = int(f * self.virtual_crop_scale[0]), int(t * self.virtual_crop_scale[1])
        u = _rand(x, 4, b, generator=generator)
        lo_f, hi_f = self.freq_scale
        lo_t, hi_t = self.time_scale
        h = ((lo_f + (hi_f - lo_f) * u[0]) * f).long().clamp_(1, canvas_f)
        w = ((lo_t + (hi_t - lo_t) * u[1]) * t).long().clamp_(1, canvas_t)
        i = torch.minimum((u[2] * (canvas_f - h + 1)).long(), canvas_f - h)
        j = torch.minimum((u[3] * (canvas_t - w + 1)).long(), canvas_t - w)
        return i, j, h, w

    def resize_crop(self, x: Tensor, i: Tensor, j: Tensor, h: Tensor, w: Tensor) -> Tensor:
        """Resize each item's canvas crop ``(i, j, h, w)`` back to ``(F, T)`` with one ``grid_sample``."""
        f, t = x.shape[-2], x.shape[-1]
        canvas_f, canvas_t = int(f * self.virtual_crop_scale[0]), int(t * self.virtual_crop_scale[1])
        y0, x0 = (canvas_f - f) // 2, (canvas_t - t) // 2
        rows = torch.linspace(0.0, 1.0, f, device=x.device)  # r / (F - 1)
        cols = torch.linspace(0.0, 1.0, t, device=x.device)
        # input coordinates of output pixel (r, c): i + r (h-1)/(F-1) - y0, j + c (w-1)/(T-1) - x0
        src_r = (i - y0).float()[:, None] + rows[None, :] * (h - 1).float()[:, None]  # (B, F)
        src_c = (j - x0).float()[:, None] + cols[None, :] * (w - 1).float()[:, None]  # (B, T)
        gy = 2.0 * src_r / max(f - 1, 1) - 1.0
        gx = 2.0 * src_c / max(t - 1, 1) - 1.0
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (B, F, T, 2)
        return F.grid_sample(x, grid.to(x.dtype), mode=self.interpolation, padding_mode="zeros",
                             align_corners=True)

    def forward(self, x, generator=None):
        if x.shape[-2] < 2 or x.shape[-1] < 2:
            return x
        return self.resize_crop(x, *self.crop_params(x, generator))


class LinearFader(SpectrogramOp):
    name = "linear_fader"
    defaults = {"gain": 1.0}

    def check(self) -> None:
        _require(self.gain >= 0, f"gain must be >= 0, got {self.gain}")

    def forward(self, x, generator=None):
        b, t = x.shape[0], x.shape[-1]
        ends = self.gain * (2.0 * _rand(x, 2, b, generator=generator) - 1.0)  # head, tail
        pos = torch.linspace(0.0, 1.0, t, device=x.device) if t > 1 else torch.zeros(1, device=x.device)
        ramp = ends[0][:, None] + (ends[1] - ends[0])[:, None] * pos[None, :]  # (B, T)
        return x + ramp.view(b, *([1] * (x.dim() - 2)), t).to(x.dtype)


class Compression(SpectrogramOp):
    name = "compression"
    defaults = {"min_factor": 0.75, "max_factor": 1.0}
    ranges = (("min_factor", "max_factor"),)

    def check(self) -> None:
        _require(self.min_factor > 0, f"min_factor must be > 0, got {self.min_factor}")

    def forward(self, x, generator=None):
        c = self.min_factor + (self.max_factor - self.min_factor) * _rand(x, x.shape[0], generator=generator)
        return x * _per_item(c, x).to(x.dtype)


class SpecAugment(SpectrogramOp):
    name = "spec_augment"
    defaults = {"freq_width": 20, "n_freq_masks": 2, "time_width": 20, "n_time_masks": 2, "fill": "min"}
    FILLS: ClassVar[tuple[str, ...]] = ("min", "mean", "zero")

    def check(self) -> None:
        for key in ("freq_width", "n_freq_masks", "time_width", "n_time_masks"):
            _require(getattr(self, key) >= 0, f"{key} must be >= 0, got {getattr(self, key)}")
        if self.fill not in self.FILLS:
            raise choice_error("fill", self.fill, self.FILLS)

    def masks(self, x: Tensor, size: int, width: int, count: int, generator=None) -> Tensor:
        """(B, size) bool: union of ``count`` runs of width ``U{0..width-1}`` (clipped to ``size``)."""
        b = x.shape[0]
        if count == 0 or width == 0:
            return torch.zeros(b, size, dtype=torch.bool, device=x.device)
        u = _rand(x, 2, b, count, generator=generator)
        widths = torch.clamp((u[0] * width).long(), max=size)
        starts = (u[1] * (size - widths + 1)).long()
        starts = torch.minimum(starts, size - widths)
        idx = torch.arange(size, device=x.device)[None, None, :]
        inside = (idx >= starts[..., None]) & (idx < (starts + widths)[..., None])
        return inside.any(dim=1)

    def forward(self, x, generator=None):
        b, f, t = x.shape[0], x.shape[-2], x.shape[-1]
        fmask = self.masks(x, f, self.freq_width, self.n_freq_masks, generator)
        tmask = self.masks(x, t, self.time_width, self.n_time_masks, generator)
        mask = fmask[:, :, None] | tmask[:, None, :]  # (B, F, T)
        mask = mask.view(b, *([1] * (x.dim() - 3)), f, t)
        if self.fill == "min":
            value = _per_item(x.flatten(1).amin(dim=1), x)
        elif self.fill == "mean":
            value = _per_item(x.flatten(1).mean(dim=1), x)
        else:
            value = torch.zeros((), dtype=x.dtype, device=x.device)
        return torch.where(mask, value, x)


class GaussianNoiseSpec(SpectrogramOp):
    name = "gaussian_noise_spec"
    defaults = {"max_std": 0.01}

    def check(self) -> None:
        _require(self.max_std >= 0, f"max_std must be >= 0, got {self.max_std}")

    def forward(self, x, generator=None):
        std = self.max_std * _rand(x, x.shape[0], generator=generator)
        noise = torch.randn(x.shape, device=x.device, dtype=torch.float32, generator=generator)
        return x + (_per_item(std, x) * noise).to(x.dtype)


_ORDER: tuple[type[SpectrogramOp], ...] = (
    Mixup, Mixback, RandomResizeCrop, LinearFader, Compression, SpecAugment, GaussianNoiseSpec,
)
SPECTROGRAM_OPS: dict[str, type[SpectrogramOp]] = {cls.name: cls for cls in _ORDER}
SPECTROGRAM_NAMES: tuple[str, ...] = tuple(SPECTROGRAM_OPS)


def make_spectrogram_op(where: str, name: str, raw: Mapping[str, Any] | None) -> tuple[SpectrogramOp, float]:
    """Build one augmentation from its params-file entry ``{p, ...}``; returns ``(module, p)``."""
    if name not in SPECTROGRAM_OPS:
        raise choice_error("spectrogram augmentation", name, SPECTROGRAM_NAMES)
    cls = SPECTROGRAM_OPS[name]
    params = merge_params(where, {"p": 1.0, **cls.defaults}, raw, cls.ranges)
    p = params.pop("p")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{where}.p = {p} is outside [0, 1]")
    try:
        op = cls(**params)
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return op, p


class SpectrogramAugment(nn.Module):
    """Chain of spectrogram augmentations in :data:`SPECTROGRAM_NAMES` order, each with per-item prob ``p``.

    ``forward(x, generator=None)``: ``x`` (B, 1, F, T) (or (B, F, T)) log-mel, any float dtype and device;
    returns the same shape and dtype (half/bfloat16 inputs are processed in float32). Identity in eval mode.
    ``generator``: optional ``torch.Generator`` on ``x.device``; equal generator states and inputs (and
    mixup bank) give equal outputs.
    """

    def __init__(self, steps: Sequence[tuple[SpectrogramOp, float]]) -> None:
        super().__init__()
        rank = {name: i for i, name in enumerate(SPECTROGRAM_NAMES)}
        steps = sorted(((op, float(p)) for op, p in steps if p > 0), key=lambda s: rank[s[0].name])
        self.ops = nn.ModuleList([op for op, _ in steps])
        self.probs = [p for _, p in steps]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.ops)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not self.training or len(self.ops) == 0:
            return x
        if x.dim() not in (3, 4) or (x.dim() == 4 and x.shape[1] != 1):
            raise ValueError(f"spectrogram augmentation expects (B, 1, F, T) or (B, F, T), got {tuple(x.shape)}")
        squeeze = x.dim() == 3
        dtype = x.dtype
        y = x.unsqueeze(1) if squeeze else x
        if y.dtype not in (torch.float32, torch.float64):
            y = y.float()
        for op, p in zip(self.ops, self.probs):
            out = op(y, generator)
            if p < 1.0:
                keep = _rand(y, y.shape[0], generator=generator) < p
                out = torch.where(_per_item(keep, y), out, y)
            y = out
        y = y.to(dtype)
        return y.squeeze(1) if squeeze else y

    def extra_repr(self) -> str:
        return f"p={self.probs}"
