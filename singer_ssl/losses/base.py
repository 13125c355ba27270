"""What every objective shares: the base class, input checks, labels, full-precision evaluation.

An objective is an ``nn.Module`` whose ``forward(z1, z2, labels=None, **kw)`` takes the two views'
projections ``z1, z2`` of shape (B, D) and returns a scalar tensor. It DECLARES what the training loop
has to provide; the loop reads these declarations and knows no objective by name:

- ``needs_labels``: pass integer singer ids ``labels`` (B,) (a global singer -> id map, identical on
  every rank; ``-1`` = unlabelled where the objective allows it).
- ``sampler`` + ``batch_defaults``: the batch composition: the sampler kind (``random`` = any batch of
  items; ``singers`` = S singers x U utterances, GE2E; ``semisupervised`` = labelled/unlabelled mix,
  SemiSupCon) and the default options of that sampler (``losses.<name>.batch`` overrides them;
  checked by :meth:`Objective.validate_batch`).
- ``momentum_tau`` (instance attribute): τ₀ of a momentum teacher, ``None`` = no teacher. When set,
  the loop keeps an EMA copy of the model (encoder + head), passes its projections of the two views as
  ``targets=(t1, t2)``, and after every optimiser step moves each (online, momentum) pair — the model
  and its copy, plus the objective's own :meth:`Objective.momentum_pairs` — by
  θ_m ← τ θ_m + (1 - τ) θ_o with τ on the cosine schedule from τ₀ to 1 (:mod:`singer_ssl.losses.momentum`;
  the pattern of solo-learn's ``BaseMomentumMethod.momentum_pairs``). BYOL sets it; MoCo or DINO
  would too, without a change to the loop.
- ``selection_metric``: the validation metric that picks the kept weights under ``train.select: auto``:
  ``val_loss``, or ``val_eer`` for a moving target (the loss against a teacher that changes every step is
  not comparable across epochs).
- ``param_lr_scale`` (instance attribute): the optimiser runs the objective's own parameters at
  ``train.lr`` times this (1 by default).

Objectives raise plain ``ValueError`` on invalid hyperparameters (torch only, as lightly's losses); the
registry (:func:`singer_ssl.losses.get`) names the ``losses.<name>`` section in the message.

Objectives are evaluated in float32 with autocast disabled, whatever the caller's AMP setting:
log-sum-exps over hundreds of bf16 logits lose too much precision.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

#: batch samplers an objective may ask for (``Objective.sampler``), built by :mod:`singer_ssl.training.sampler`
SAMPLERS = ("random", "singers", "semisupervised")
#: validation metrics that may select the kept weights (``Objective.selection_metric``)
SELECTION_METRICS = ("val_loss", "val_eer")


class Objective(nn.Module):
    """Base class of the SSL objectives: the declarations the loop reads (see the module docstring)."""

    needs_labels: ClassVar[bool] = False
    #: batch composition: sampler kind (one of SAMPLERS) and its default options
    sampler: ClassVar[str] = "random"
    batch_defaults: ClassVar[dict[str, Any]] = {}
    #: weights kept under ``train.select: auto`` (val_eer for a moving target)
    selection_metric: ClassVar[str] = "val_loss"
    #: τ₀ of the momentum teacher (an EMA copy of the model); None = no teacher
    momentum_tau: float | None = None
    #: learning-rate multiplier of the objective's own parameters (BYOL predictor, COLA W, GE2E w, b)
    param_lr_scale: float = 1.0

    @property
    def needs_teacher(self) -> bool:
        """True when the objective regresses targets of a momentum teacher (``momentum_tau`` set)."""
        return self.momentum_tau is not None

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, momentum) module pairs the objective owns, EMA-updated by the loop after each step
        together with (model, teacher). None by default (BYOL's teacher is the model's copy only)."""
        return []

    @staticmethod
    def validate_batch(batch: dict[str, Any]) -> None:
        """Check the sampler options (already merged with ``batch_defaults``); raise ValueError."""


def full_precision(forward: Callable) -> Callable:
    """Decorate ``forward(self, z1, z2, ...)``: check the views, cast to float32, disable autocast."""

    @functools.wraps(forward)
    def wrapper(self, z1: torch.Tensor, z2: torch.Tensor, *args, **kwargs):
        check_views(z1, z2, type(self).__name__)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            return forward(self, z1.float(), z2.float(), *args, **kwargs)

    return wrapper


def check_views(z1: torch.Tensor, z2: torch.Tensor, who: str = "loss") -> None:
    """Raise ValueError unless ``z1`` and ``z2`` are finite-shaped (B, D) tensors of equal shape."""
    if not (isinstance(z1, torch.Tensor) and isinstance(z2, torch.Tensor)):
        raise ValueError(f"{who}: z1 and z2 must be tensors, got {type(z1).__name__}, {type(z2).__name__}")
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            f"{who}: z1 and z2 must both have shape (B, D); got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 1 or z1.shape[1] < 1:
        raise ValueError(f"{who}: empty batch {tuple(z1.shape)}")


def require_batch(n: int, who: str, minimum: int = 2) -> None:
    """Raise ValueError when the (global) batch has fewer than ``minimum`` items."""
    if n < minimum:
        raise ValueError(f"{who}: needs a batch of at least {minimum} items, got {n}")


def as_labels(labels: Any, batch_size: int, device: torch.device, who: str) -> torch.Tensor | None:
    """Return ``labels`` as a long tensor (B,) on ``device`` (``None`` passes through).

    Accepts an integer tensor, an integer numpy array or a sequence of ints. Strings are refused: ids
    must come from one global singer -> id map so that they agree across processes.
    """
    if labels is None:
        return None
    if isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iu":
            raise ValueError(f"{who}: labels must be integer singer ids, got dtype {labels.dtype}")
        labels = torch.from_numpy(labels.astype(np.int64))
    if isinstance(labels, torch.Tensor):
        t = labels
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{who}: labels must be integer singer ids, got dtype {t.dtype}")
    else:
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
            raise ValueError(f"{who}: labels must be a tensor or a sequence of ints")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
            raise ValueError(f"{who}: labels must be integer singer ids (map singer names to ints first)")
        t = torch.tensor(list(labels), dtype=torch.long)
    if t.ndim != 1 or t.shape[0] != batch_size:
        raise ValueError(f"{who}: labels must have shape ({batch_size},), got {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.long)


def positive(value: float, name: str, who: str) -> float:
    """Return ``float(value)`` if it is a positive number, else raise ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {name} must be a positive number, got {value!r}") from None
    if not v > 0:
        raise ValueError(f"{who}: {name} must be > 0, got {value!r}")
    return v


def non_negative(value: float, name: str, who: str) -> float:
    """Return ``float(value)`` if it is >= 0, else raise ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: {name} must be a number >= 0, got {value!r}") from None
    if not v >= 0:
        raise ValueError(f"{who}: {name} must be >= 0, got {value!r}")
    return v


def positive_int(value: Any, name: str, who: str) -> int:
    """Return ``value`` if it is an int >= 1, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: {name} must be an integer >= 1, got {value!r}")
    return value
