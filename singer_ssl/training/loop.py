"""One optimisation step, validation, and the distributed plumbing of the trainer.

Step (per process, on its slice of the global batch)::

    x1, x2 (b, ...) -> x = cat(x1, x2) on the device                         (2b, S) or (2b, F, T)
    wave -> LogMel (float32, no grad; log-mel encoders only)                 (2b, F, T)
    standardise with the dataset mean/std -> spectrogram augmentations       (2b, 1, F, T)
    [momentum teacher] teacher projections t1, t2 (no grad)
    TrainUnit (DDP-wrapped when distributed): encoder + head + objective     loss, z1, z2
    (loss * world_size).backward(); [clip]; optimiser step (Adam or SGD, scheduled lr);
    [momentum teacher] EMA update of every (online, momentum) pair

**What the objective declares** (:mod:`singer_ssl.losses.base`) drives the step; no objective is named
here: ``needs_labels`` -> labels are passed; ``momentum_tau`` set -> the trainer keeps a momentum copy
of the model (the teacher), passes ``targets=(t1, t2)`` and, after each optimiser step, updates the pairs
``[(model, teacher), *objective.momentum_pairs()]`` with τ on the cosine schedule from ``momentum_tau``
to 1 over the planned steps (solo-learn's ``BaseMomentumMethod``: the method lists its momentum pairs,
the base runs the update).

**Why ``loss * world_size``.** The objectives all-gather the projections and evaluate the loss on
the global batch, so every process gets the same value, and the gather's backward hands each process
only the gradient of *its* rows (:mod:`singer_ssl.losses.distributed`). Each process's parameter
gradient is therefore its share of the full-batch gradient, and the shares sum to it; DDP however
*averages* gradients over processes, so the loss is multiplied by the world size first. The
objective's own parameters (BYOL predictor, COLA's W, GE2E's w and b) are inside the DDP module too
and follow the same rule (GE2E scales its gathered-batch parameters with ``local_share``). Result:
W processes with batch b give the same loss and gradients as 1 process with batch W*b
(``tests/test_train.py::test_ddp_matches_single_process``).

With ``train.view_batching: joint`` (default) both views go through the encoder in one pass of 2b
items (batch-norm statistics over both views, as SimCLR); with ``per_view`` each view is passed
separately (student and teacher), so batch-norm statistics are per view, as the Torres et al. 2023
and Fonseca et al. 2021 code (:func:`project_views`). Either way it is one ``TrainUnit`` forward per
backward, as DDP needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from singer_ssl.losses import Objective, distributed, ema_update, momentum_copy, tau_schedule
from singer_ssl.model.singer_model import SingerModel
from singer_ssl.training.monitors import alignment, batch_monitors, eer_percent, pair_scores, uniformity


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names the step."""

    def __init__(self, step: int, value: float, note: str = ""):
        self.step, self.value = step, value
        super().__init__(f"loss is {value} at step {step + 1}: training diverged" + (f"; {note}" if note else ""))


def project_views(model: SingerModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder input of both views (2b, ...) -> projections (z1, z2), each (b, D_proj): one pass of 2b
    items (``model.view_batching == "joint"``) or one pass per view (``"per_view"``)."""
    b = x.shape[0] // 2
    if getattr(model, "view_batching", "joint") == "per_view":
        return model.embed_encoder_input(x[:b])[1], model.embed_encoder_input(x[b:])[1]
    _, proj = model.embed_encoder_input(x)
    return proj[:b], proj[b:]


class TrainUnit(nn.Module):
    """What DDP wraps: the model (encoder + head) and the objective, on prepared encoder inputs.

    ``forward(x (2b, ...), labels (b,) | None, targets (t1, t2) | None) -> (loss, z1, z2)``.
    """

    def __init__(self, model: SingerModel, objective: Objective) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None,
                targets: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z1, z2 = project_views(self.model, x)
        kwargs = {}
        if labels is not None:
            kwargs["labels"] = labels
        if targets is not None:
            kwargs["targets"] = targets
        return self.objective(z1, z2, **kwargs), z1, z2


@dataclass
class StepResult:
    loss: float
    z1: torch.Tensor
    z2: torch.Tensor
    tau: float | None = None


def step_seed(seed: int, step: int, rank: int, stream: int = 0) -> int:
    """Seed of the per-step torch generator for the spectrogram augmentations."""
    return int(np.random.SeedSequence([int(seed), int(step), int(rank), int(stream)]).generate_state(1)[0])


class Trainer:
    """Holds the modules of a run and performs training steps and validation passes.

    Args:
        unit: model + objective (wrapped in DDP here when ``world_size > 1``).
        optimizer: over ``unit.parameters()``.
        device: training device.
        spec_augment: spectrogram augmentation module (log-mel encoders; ``None`` = none).
        teacher: the momentum teacher when the objective declares ``momentum_tau``; ``None`` = a fresh
            momentum copy of ``unit.model`` (pass one to restore or inspect it). Ignored otherwise.
        total_steps: planned number of optimiser steps (τ schedule).
        amp: bf16 autocast (CUDA only).
        grad_clip: max total gradient norm (``None`` = no clipping).
        monitor_shift: roll of the in-batch negatives (1; ``utterances`` for GE2E batches).
        seed, rank, world_size: for the per-step generators and DDP.

    Labels and the teacher follow the objective's declarations (``needs_labels``, ``momentum_tau``).
    """

    def __init__(self, unit: TrainUnit, optimizer: torch.optim.Optimizer, device: torch.device, *,
                 spec_augment: nn.Module | None = None, teacher: SingerModel | None = None,
                 total_steps: int = 1, amp: bool = False, grad_clip: float | None = None,
                 monitor_shift: int = 1, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.unit = unit
        self.optimizer = optimizer
        self.device = device
        self.spec_augment = spec_augment
        objective = unit.objective
        self.momentum_tau: float | None = objective.momentum_tau
        self.teacher: nn.Module | None = None
        if self.momentum_tau is not None:
            self.teacher = teacher if teacher is not None else momentum_copy(unit.model)
        self.total_steps = int(total_steps)
        self.amp = bool(amp) and device.type == "cuda"
        self.grad_clip = grad_clip
        self.needs_labels = bool(objective.needs_labels)
        self.monitor_shift = int(monitor_shift)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        if world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.net: nn.Module = DistributedDataParallel(unit, device_ids=ids, static_graph=True)
        else:
            self.net = unit
        self._generator = torch.Generator(device=device) if spec_augment is not None else None

    @property
    def model(self) -> SingerModel:
        return self.unit.model

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def inputs(self, batch: dict[str, torch.Tensor], augment_seed: int | None) -> torch.Tensor:
        """Encoder input for both views: (2b, 1, F, T) standardised log-mel, or (2b, S) waveform."""
        # each view goes to the device from its own (pinned) loader buffer, then the copies are joined there
        x = torch.cat([batch["x1"].to(self.device, non_blocking=True), batch["x2"].to(self.device, non_blocking=True)])
        model = self.model
        if not model.uses_logmel:
            return x.float()
        with torch.no_grad():
            if x.dim() == 2:  # waveform crops -> log-mel, batched on the device (float32, outside autocast)
                x = model.frontend(x)
            x = model.normalize(x.float())
            if self.spec_augment is not None and augment_seed is not None:
                assert self._generator is not None
                self._generator.manual_seed(augment_seed)
                x = self.spec_augment(x, self._generator)
        return x

    def _labels(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        return batch["labels"].to(self.device, non_blocking=True) if self.needs_labels else None

    def _targets(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.teacher is None:
            return None
        with torch.no_grad(), self._autocast():
            t1, t2 = project_views(self.teacher, x)
        return t1.float(), t2.float()

    def train_step(self, batch: dict[str, torch.Tensor], step: int) -> StepResult:
        """One optimiser step on this process's slice of global batch ``step`` (0-based).

        Raises :class:`NonFiniteLoss` before touching the weights when the loss is not finite.
        """
        self.net.train()
        if self.spec_augment is not None:
            self.spec_augment.train()
        x = self.inputs(batch, step_seed(self.seed, step, self.rank))
        labels = self._labels(batch)
        targets = self._targets(x)
        with self._autocast():
            loss, z1, z2 = self.net(x, labels, targets)
        self.optimizer.zero_grad(set_to_none=True)
        (loss * self.world_size).backward()
        # read the loss (a host-device sync) only once the backward pass is queued; the weights are untouched
        value = float(loss.detach())
        if not math.isfinite(value):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(step, value)
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.unit.parameters(), float(self.grad_clip))
        self.optimizer.step()
        tau = None
        if self.teacher is not None:
            tau = tau_schedule(step, self.total_steps, float(self.momentum_tau))
            for online, momentum in self.momentum_pairs():
                ema_update(momentum, online, tau)
        return StepResult(value, z1.detach(), z2.detach(), tau)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, momentum) pairs moved by the EMA after each step: the model and its teacher, then the
        objective's own (``Objective.momentum_pairs``)."""
        if self.teacher is None:
            return []
        return [(self.model, self.teacher), *self.unit.objective.momentum_pairs()]

    def monitors(self, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, float]:
        """In-batch EER (%), alignment, uniformity on the global batch (collective under DDP)."""
        z1, z2 = distributed.gather(z1.float()), distributed.gather(z2.float())
        return batch_monitors(z1, z2, self.monitor_shift)

    @torch.no_grad()
    def validate(self, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
        """Mean loss and monitors over fixed validation batches (eval mode, no augmentation on the
        device; every process must call it)."""
        unit = self.unit
        unit.eval()
        if self.teacher is not None:
            self.teacher.eval()
        losses, sizes, all_labels, all_scores, aligns, unifs = [], [], [], [], [], []
        try:
            for batch in batches:
                x = self.inputs(batch, None)
                with self._autocast():
                    loss, z1, z2 = unit(x, self._labels(batch), self._targets(x))
                z1, z2 = distributed.gather(z1.float()), distributed.gather(z2.float())
                losses.append(float(loss))
                sizes.append(len(z1))
                lab, sc = pair_scores(z1, z2, self.monitor_shift)
                all_labels.append(lab)
                all_scores.append(sc)
                aligns.append(alignment(z1, z2))
                unifs.append(uniformity(z1, z2))
        finally:
            unit.train()
            if self.teacher is not None:
                self.teacher.train()
        if not losses:
            return {}
        w = np.asarray(sizes, dtype=np.float64)
        return {
            "loss": float(np.average(losses, weights=w)),
            "eer": eer_percent(np.concatenate(all_labels), np.concatenate(all_scores)),
            "alignment": float(np.average(aligns, weights=w)),
            "uniformity": float(np.average(unifs, weights=w)),
        }
