"""Process-level plumbing of a training run: torchrun/DDP setup, rank-0 decisions, RNG seeding and
deterministic algorithms."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from singer_ssl.core.device import resolve_device
from singer_ssl.training.checkpoint import rng_state


@dataclass
class Dist:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its node);
    ``owns_group`` when :func:`init_distributed` created the process group (and must destroy it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes."""
        return self.rank == 0


def init_distributed(device_spec: str) -> Dist:
    """Join the process group described by torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (nccl on
    CUDA, gloo on CPU); a single process when ``WORLD_SIZE`` is unset or 1."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = resolve_device(device_spec).type == "cuda"
    if use_cuda:
        torch.cuda.set_device(local)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local, True)


def broadcast_flag(flag: bool, dist_info: Dist) -> bool:
    """Rank 0's decision, on every rank."""
    if dist_info.world_size == 1:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def all_rng_states(dist_info: Dist) -> list[dict[str, Any]]:
    """Every process's RNG states (rank order; collective under DDP)."""
    state = rng_state()
    if dist_info.world_size == 1:
        return [state]
    out: list[Any] = [None] * dist_info.world_size
    dist.all_gather_object(out, state)
    return out


@contextmanager
def deterministic_mode(enabled: bool, device: torch.device) -> Iterator[None]:
    """``torch.use_deterministic_algorithms`` (warn-only) + deterministic cuDNN, restored on exit."""
    prev = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if enabled:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    else:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev[0], warn_only=prev[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev[2], prev[3]


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
