"""SemiSupCon: supervised contrastive loss on a batch mixing labelled and unlabelled items (SemiSupCon).

Reference: Pliploop/SemiSupCon (Guinot, Quinton & Fazekas, ISMIR 2024): ``SSNTXent`` loss
(``models/losses/semisupconloss.py``), ``MixedDataLoader`` (``dataloading/mixed_dataloader.py``).

Loss: :mod:`singer_ssl.losses.supcon` (L_out over the 2N views, τ = 0.1, mean over all 2N anchors)
with SSNTXent's ``-log(p + 1e-6)`` per positive pair (``eps = 1e-6``; p is the softmax probability of
the pair over the anchor's 2N - 1 others), as ``semisupconloss.py`` computes it. Labels are integer
singer ids with ``-1`` for an unlabelled item: an unlabelled item's only positive is its other view; a
labelled item's positives are its other view and both views of every
other item with the same singer id.

Batch composition (the sampler's job; options under ``losses.semisupcon.batch``):

- ``p_s`` (``supervised_data_p``): fraction of the training items whose label is kept
  (:func:`select_labelled`, a seeded uniform draw over items as in SemiSupCon; the rest form the
  unlabelled pool together with any item whose singer is unknown).
- ``b_s`` (``intrabatch_supervised_p``): fraction of each batch drawn from the labelled pool
  (:func:`semisup_batch_counts`: ``floor(B·b_s)`` labelled + the rest unlabelled, as SemiSupCon).

``p_s = 0`` or ``b_s = 0`` gives pure SSL (the loss reduces to NT-Xent); ``b_s = 1`` gives a fully
supervised batch (SupCon). SemiSupCon recommends ``p_s = 1``; its experiments use ``b_s = 0.5``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from singer_ssl.losses.supcon import SupConLoss


def _fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"semisupcon: {name} must be a number in [0, 1], got {value!r}")
    return float(value)


def semisup_batch_counts(batch_size: int, b_s: float, p_s: float = 1.0) -> tuple[int, int]:
    """Return ``(n_labelled, n_unlabelled)`` items of a batch of ``batch_size`` (SemiSupCon's rule).

    ``n_labelled = floor(batch_size · b_s)`` (SemiSupCon: ``int(batch_size * in_batch_supervised_percentage)``),
    ``n_unlabelled = batch_size - n_labelled``; with ``p_s = 0`` (no labelled pool) all items are
    unlabelled. Raises ValueError on a batch size < 1 or fractions outside [0, 1].
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"semisupcon: batch_size must be an integer >= 1, got {batch_size!r}")
    b_s = _fraction(b_s, "b_s")
    p_s = _fraction(p_s, "p_s")
    n_labelled = 0 if p_s == 0.0 else int(math.floor(batch_size * b_s + 1e-9))
    return n_labelled, batch_size - n_labelled


def select_labelled(singers: Sequence[Any], p_s: float, seed: int) -> set[int]:
    """Indices of the items whose singer label is kept: ``floor(N·p_s)`` items, uniform without
    replacement from a ``numpy`` generator seeded with ``seed`` (SemiSupCon: random permutation of the
    labelled set, first ``int(N·p_s)`` kept). ``singers`` holds one label per item (``None`` = no
    label; such items are never selected). Deterministic for a given seed.
    """
    p_s = _fraction(p_s, "p_s")
    candidates = np.array([i for i, s in enumerate(singers) if s is not None], dtype=np.int64)
    n_keep = int(math.floor(len(candidates) * p_s + 1e-9))
    rng = np.random.default_rng(seed)
    return {int(i) for i in rng.permutation(candidates)[:n_keep]}


class SemiSupConLoss(SupConLoss):
    """SSNTXent on a mixed batch; labels with ``-1`` are unlabelled (see the module docstring).

    Args:
        temperature: τ (SemiSupCon configs: 0.1).
    """

    sampler = "semisupervised"
    eps = 1e-6  # SSNTXent: -log(exp s_ip / sum_a exp s_ia + 1e-6)
    batch_defaults = {"p_s": 1.0, "b_s": 0.5}

    @staticmethod
    def validate_batch(batch: dict[str, Any]) -> None:
        _fraction(batch["p_s"], "batch.p_s")
        _fraction(batch["b_s"], "batch.b_s")
