"""The waveform augmentation registry and chain: every op of :mod:`singer_ssl.augment.waveform` (the ops the
published systems use) and :mod:`singer_ssl.augment.channel` (the recording-channel ops), built from their
params-file entries and applied in one fixed order (:data:`WAVEFORM_NAMES`).

Kept apart from the op modules so that ``channel`` can build on ``waveform``'s classes without an import cycle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from singer_ssl.augment.channel import CHANNEL_OPS
from singer_ssl.augment.waveform import (
    BandPass,
    BandStop,
    ColoredNoise,
    Delay,
    FilterOneOf,
    Gain,
    GaussianNoise,
    GaussianSNR,
    HighPass,
    LowPass,
    PitchShift,
    PitchShiftPraat,
    PolarityInversion,
    SevenBandEQ,
    TimeMask,
    WaveformOp,
    merge_params,
)
from singer_ssl.core.errors import ConfigError, choice_error

_ORDER: tuple[type[WaveformOp], ...] = (
    GaussianNoise, PitchShiftPraat, Gain, PolarityInversion, ColoredNoise, GaussianSNR, FilterOneOf,
    BandPass, BandStop, HighPass, LowPass, SevenBandEQ, PitchShift, Delay, *CHANNEL_OPS, TimeMask,
)
WAVEFORM_OPS: dict[str, type[WaveformOp]] = {cls.name: cls for cls in _ORDER}
WAVEFORM_NAMES: tuple[str, ...] = tuple(WAVEFORM_OPS)


def make_waveform_op(where: str, name: str, raw: Mapping[str, Any] | None,
                     sample_rate: int) -> tuple[WaveformOp, float]:
    """Build one augmentation from its params-file entry ``{p, ...}``; returns ``(op, p)``."""
    if name not in WAVEFORM_OPS:
        raise choice_error("waveform augmentation", name, WAVEFORM_NAMES)
    cls = WAVEFORM_OPS[name]
    params = merge_params(where, {"p": 1.0, **cls.defaults}, raw, cls.ranges)
    p = params.pop("p")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"{where}.p = {p} is outside [0, 1]")
    try:
        op = cls(sample_rate, **params)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return op, p


def ramp_strength(epoch: int, ramp_epochs: float) -> float:
    """Augmentation curriculum (``augment.ramp_epochs``): the factor on the probability of each waveform
    augmentation in ``augment.ramp_augmentations`` (every one when that is empty) in training epoch ``epoch``
    (0-based), ``min(1, epoch / ramp_epochs)``; 1 when ``ramp_epochs`` is 0 (no ramp). Epoch 0 runs without the
    ramped entries, epoch ``ramp_epochs`` and later the full chain.

    Why: the full recording-channel chain on both views makes the pretext task hard to start on; from random
    weights a 2 x 16-view NT-Xent batch can sit at chance (loss ln 31) for 160+ steps, how long depending on the
    seed, while clean views are learnt within one epoch, and so is the chain without its coloured noise. Easy
    examples first, as in curriculum learning (Bengio et al., ICML 2009). The default ramps only the noise over
    one epoch; measured trade in docs/augment_ablation.md (identity learnt at every seed tried, less noise
    invariance).
    """
    if ramp_epochs < 0:
        raise ValueError(f"ramp_epochs must be >= 0, got {ramp_epochs}")
    return 1.0 if ramp_epochs == 0 else float(min(1.0, max(0, int(epoch)) / float(ramp_epochs)))


class WaveformAugment:
    """Chain of waveform augmentations, each applied with its probability, in :data:`WAVEFORM_NAMES` order.

    ``augment(x, rng)``: ``x`` mono ``(S,)`` (any float dtype), ``rng`` a ``np.random.Generator`` — the only
    randomness used, so equal generator states give equal outputs (seed it per worker/item).
    Returns a new float32 array ``(S,)``. Picklable (holds only numbers), for DataLoader workers.
    """

    def __init__(self, steps: Sequence[tuple[WaveformOp, float]], ramped: Sequence[str] | None = None) -> None:
        """``ramped``: the names of the augmentations whose probability ``strength`` scales (the curriculum's,
        ``augment.ramp_augmentations``); ``None`` or empty = every one."""
        rank = {name: i for i, name in enumerate(WAVEFORM_NAMES)}
        self.steps = sorted(((op, float(p)) for op, p in steps if p > 0), key=lambda s: rank[s[0].name])
        self.ramped: frozenset[str] | None = frozenset(ramped) if ramped else None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(op.name for op, _ in self.steps)

    def __call__(self, x: np.ndarray, rng: np.random.Generator, source: Any = None,
                 strength: float = 1.0) -> np.ndarray:
        """``source``: the babble source (:data:`singer_ssl.augment.channel.BabbleSource`, other singers' crops);
        ``strength`` in [0, 1] scales the probability of every augmentation in ``ramped`` (all without it;
        ``p * strength``; the curriculum of :func:`ramp_strength`): 1 = the chain as configured, 0 = those
        augmentations off."""
        x = np.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"waveform augmentation expects a mono (S,) array, got shape {x.shape}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"strength must lie in [0, 1], got {strength}")
        y = x.astype(np.float32, copy=True)
        for op, p in self.steps:
            if self.ramped is None or op.name in self.ramped:
                p = p * strength
            if p >= 1.0 or rng.random() < p:
                y = op(y, rng, source) if getattr(op, "needs_source", False) else op(y, rng)
        return y

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        inner = ", ".join(f"{op!r} p={p}" for op, p in self.steps)
        return f"WaveformAugment([{inner}])"
