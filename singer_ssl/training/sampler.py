"""Batch samplers: which segments (and labels) form each *global* batch, per epoch, seeded.

A sampler's :meth:`~BatchPlan.batches` ``(epoch)`` yields the epoch's global batches as arrays of
``(index, label)`` rows; it is a pure function of ``(seed, epoch)``. :class:`BatchStream` (the
DataLoader's ``batch_sampler``) walks the epochs from a given ``(epoch, batch)`` position, attaches
each sample's RNG key ``(seed, stream, epoch, batch, position)`` and keeps only this rank's
contiguous slice ``[rank * b, (rank + 1) * b)`` of every global batch (``b = B / world_size``), so the
objective's all-gather (rank order) rebuilds exactly the global batch of a 1-process run.

Samplers (the kind an objective declares as ``Objective.sampler``, options from ``losses.<name>.batch``;
:func:`make_batches` builds the one asked for, :func:`check_batch_options` checks it against
``train.batch_size`` before any work):

- :class:`RandomBatches` (``random``): uniform without replacement over the pool, a fresh permutation whenever
  the previous one is used up; labels = singer ids (used by SupCon, ignored by SSL objectives).
- :class:`SingerBatches` (``singers``, GE2E): ``singers`` distinct singers x ``utterances`` distinct segments
  each, singer-major (``[s0u0, s0u1, ..., s1u0, ...]``), singers drawn among those with at least
  ``utterances`` segments.
- :class:`SemiSupervisedBatches` (``semisupervised``, SemiSupCon, Guinot et al. 2024): a fixed labelled pool keeps the
  singer labels of a seeded fraction ``p_s`` of the segments; ``round(b_s * B)`` items of every
  batch come from that pool with their labels, the rest from all segments with label ``-1``; the
  batch order is then shuffled so that every rank gets a mix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from singer_ssl.core.errors import ConfigError, choice_error
from singer_ssl.losses import SAMPLERS, select_labelled, semisup_batch_counts
from singer_ssl.training.data import TRAIN_STREAM, UNLABELLED


class BatchPlan:
    """Base class: ``batch_size`` global items per batch, ``steps_per_epoch`` batches per epoch."""

    batch_size: int
    one_pass: int  # batches in one pass over the pool
    group_size: int = 1  # consecutive items that share a label by construction (monitor negatives)

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def batches(self, epoch: int, n_batches: int, stream: int = TRAIN_STREAM) -> Iterator[np.ndarray]:
        """Yield ``n_batches`` arrays (batch_size, 2) of ``(index, label)`` for ``epoch``."""
        raise NotImplementedError

    def _rng(self, stream: int, epoch: int, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0xBA7C, stream, epoch, salt])


def _cycle(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` items: concatenated fresh permutations of ``pool``."""
    reps = math.ceil(n / len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


class RandomBatches(BatchPlan):
    """Uniform random batches over ``pool`` (labels = ``labels[index]``)."""

    def __init__(self, pool: np.ndarray, labels: np.ndarray, batch_size: int, seed: int) -> None:
        super().__init__(seed)
        if len(pool) < batch_size:
            raise ConfigError(f"batch size {batch_size} is larger than the {len(pool)} segments available")
        self.pool = np.asarray(pool, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.one_pass = len(pool) // batch_size

    def batches(self, epoch: int, n_batches: int, stream: int = TRAIN_STREAM) -> Iterator[np.ndarray]:
        order = _cycle(self.pool, n_batches * self.batch_size, self._rng(stream, epoch))
        for b in range(n_batches):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield np.stack([idx, self.labels[idx]], axis=1)


class SingerBatches(BatchPlan):
    """GE2E batches: ``singers`` x ``utterances`` (singer-major), labels = singer ids."""

    def __init__(self, pool: np.ndarray, labels: np.ndarray, singers: int, utterances: int, seed: int,
                 what: str = "training") -> None:
        super().__init__(seed)
        pool = np.asarray(pool, dtype=np.int64)
        by_singer: dict[int, np.ndarray] = {}
        for s in np.unique(labels[pool]):
            if s >= 0:
                members = pool[labels[pool] == s]
                if len(members) >= utterances:
                    by_singer[int(s)] = members
        if len(by_singer) < singers:
            raise ConfigError(
                f"ge2e needs {singers} singers with at least {utterances} segments each in every batch, but the "
                f"{what} set has only {len(by_singer)} such singers; lower losses.ge2e.batch.singers/utterances"
            )
        self.by_singer = by_singer
        self.singer_ids = np.array(sorted(by_singer), dtype=np.int64)
        self.singers, self.utterances = int(singers), int(utterances)
        self.batch_size = self.singers * self.utterances
        self.group_size = self.utterances
        self.one_pass = max(1, sum(len(v) for v in by_singer.values()) // self.batch_size)

    def batches(self, epoch: int, n_batches: int, stream: int = TRAIN_STREAM) -> Iterator[np.ndarray]:
        rng = self._rng(stream, epoch)
        for _ in range(n_batches):
            rows = []
            for s in rng.choice(self.singer_ids, size=self.singers, replace=False):
                members = self.by_singer[int(s)]
                idx = rng.choice(members, size=self.utterances, replace=False)
                rows.append(np.stack([idx, np.full(self.utterances, s)], axis=1))
            yield np.concatenate(rows)


class SemiSupervisedBatches(BatchPlan):
    """SemiSupCon batches: labelled items (pool of kept labels) + unlabelled items (``-1``), shuffled.

    Counts and the labelled pool follow :func:`singer_ssl.losses.semisup_batch_counts` and
    :func:`singer_ssl.losses.select_labelled` (SemiSupCon's rules: ``floor(B * b_s)`` labelled items,
    ``floor(N * p_s)`` labelled segments).
    """

    def __init__(self, pool: np.ndarray, labels: np.ndarray, batch_size: int, p_s: float, b_s: float,
                 seed: int) -> None:
        super().__init__(seed)
        pool = np.asarray(pool, dtype=np.int64)
        if len(pool) < batch_size:
            raise ConfigError(f"batch size {batch_size} is larger than the {len(pool)} segments available")
        self.labels = np.asarray(labels, dtype=np.int64)
        pool_labels = [int(v) if v >= 0 else None for v in self.labels[pool]]
        kept = sorted(select_labelled(pool_labels, p_s, self.seed))
        self.labelled = pool[np.asarray(kept, dtype=np.int64)]
        self.pool = pool
        self.batch_size = int(batch_size)
        n_lab, _ = semisup_batch_counts(self.batch_size, b_s, p_s)
        self.n_labelled = n_lab if len(self.labelled) else 0
        self.one_pass = len(pool) // batch_size

    def batches(self, epoch: int, n_batches: int, stream: int = TRAIN_STREAM) -> Iterator[np.ndarray]:
        n_lab, n_unl = self.n_labelled, self.batch_size - self.n_labelled
        lab = _cycle(self.labelled, n_batches * n_lab, self._rng(stream, epoch, 1)) if n_lab else np.zeros(0, np.int64)
        unl = _cycle(self.pool, n_batches * n_unl, self._rng(stream, epoch, 2)) if n_unl else np.zeros(0, np.int64)
        rng = self._rng(stream, epoch, 3)
        for b in range(n_batches):
            li = lab[b * n_lab : (b + 1) * n_lab]
            ui = unl[b * n_unl : (b + 1) * n_unl]
            rows = np.concatenate([np.stack([li, self.labels[li]], axis=1),
                                   np.stack([ui, np.full(len(ui), UNLABELLED)], axis=1)])
            yield rows[rng.permutation(len(rows))]


def check_batch_options(kind: str, options: Mapping[str, Any], batch_size: int, loss: str) -> None:
    """Check sampler ``kind``'s options against ``train.batch_size`` (no data needed); ConfigError.

    ``singers`` batches hold exactly ``singers x utterances`` items, so ``train.batch_size`` must equal it.
    """
    if kind not in SAMPLERS:
        raise choice_error(f"sampler of loss {loss!r}", kind, SAMPLERS)
    if kind == "singers":
        b = options["singers"] * options["utterances"]
        if batch_size != b:
            raise ConfigError(
                f"{loss} batches hold losses.{loss}.batch.singers x utterances = {options['singers']} x "
                f"{options['utterances']} = {b} items, but train.batch_size is {batch_size}; "
                f"set train.batch_size={b} or change losses.{loss}.batch")


def has_labelled_rows(kind: str, options: Mapping[str, Any], batch_size: int) -> bool:
    """Whether the batches of sampler ``kind`` carry singer labels (a semi-supervised mix may have none)."""
    if kind == "semisupervised":
        return semisup_batch_counts(batch_size, options["b_s"], options["p_s"])[0] > 0
    return True


def make_batches(kind: str, options: Mapping[str, Any], pool: np.ndarray, labels: np.ndarray, batch_size: int,
                 seed: int, what: str = "training", loss: str = "") -> BatchPlan:
    """The :class:`BatchPlan` of sampler ``kind`` (``random`` | ``singers`` | ``semisupervised``) over ``pool``.

    For ``validation`` singer batches, fewer held-out singers than a training batch are accepted: all the
    eligible ones are used (at least 2).
    """
    if kind == "singers":
        singers, utterances = int(options["singers"]), int(options["utterances"])
        if what == "validation":  # fewer held-out singers than a training batch: use them all
            eligible = sum(1 for s in np.unique(labels[pool]) if s >= 0 and np.sum(labels[pool] == s) >= utterances)
            singers = min(singers, eligible)
            if singers < 2:
                raise ConfigError(
                    f"{loss} validation needs >= 2 held-out singers with >= {utterances} segments, found "
                    f"{eligible}; raise train.val_fraction or set it to 0")
        return SingerBatches(pool, labels, singers, utterances, seed, what)
    if kind == "semisupervised":
        return SemiSupervisedBatches(pool, labels, batch_size, options["p_s"], options["b_s"], seed)
    if kind == "random":
        return RandomBatches(pool, labels, batch_size, seed)
    raise choice_error("sampler", kind, SAMPLERS)


class BatchStream:
    """The DataLoader ``batch_sampler``: this rank's slices of the global batches, with RNG keys.

    Yields lists of sample specs ``(index, label, seed, stream, epoch, batch, position)`` for steps
    ``start_step .. stop_step - 1``; step ``s`` is batch ``s % steps_per_epoch`` of epoch
    ``s // steps_per_epoch``.
    """

    def __init__(self, plan: BatchPlan, steps_per_epoch: int, start_step: int, stop_step: int,
                 rank: int = 0, world_size: int = 1, stream: int = TRAIN_STREAM) -> None:
        if plan.batch_size % world_size:
            raise ConfigError(f"the global batch ({plan.batch_size}) must be divisible by the number of "
                              f"processes ({world_size})")
        self.plan = plan
        self.steps_per_epoch = int(steps_per_epoch)
        self.start_step, self.stop_step = int(start_step), int(stop_step)
        self.rank, self.world_size = int(rank), int(world_size)
        self.stream = stream

    def __len__(self) -> int:
        return max(0, self.stop_step - self.start_step)

    def __iter__(self) -> Iterator[list[tuple[int, ...]]]:
        spe = self.steps_per_epoch
        step = self.start_step
        local = self.plan.batch_size // self.world_size
        lo = self.rank * local
        while step < self.stop_step:
            epoch, first = divmod(step, spe)
            for b, rows in enumerate(self.plan.batches(epoch, spe, self.stream)):
                if b < first:
                    continue
                yield [(int(i), int(lab), self.plan.seed, self.stream, epoch, b, lo + p)
                       for p, (i, lab) in enumerate(rows[lo : lo + local])]
                step += 1
                if step >= self.stop_step:
                    return


def fixed_batches(plan: BatchPlan, n_batches: int, rank: int = 0, world_size: int = 1,
                  stream: int = TRAIN_STREAM) -> list[list[tuple[int, ...]]]:
    """Materialise ``n_batches`` batches of epoch 0 (validation: the same views every epoch)."""
    return list(BatchStream(plan, n_batches, 0, n_batches, rank, world_size, stream))
