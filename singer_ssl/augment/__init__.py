"""Data augmentations for SSL training: waveform (numpy, in DataLoader workers) and spectrogram (torch).

``params.yaml`` section ``augment``::

    augment:
      views: file | clip       # how the trainer draws the two views (file: two crops of one recording)
      crop_seconds: 3.0        # length of each view
      ramp_epochs: 0           # curriculum: the ramped probabilities x min(1, epoch / ramp_epochs) (0 = none)
      ramp_augmentations: []   # the waveform augmentations it ramps ([] = all; params.yaml: [colored_noise])
      waveform:    {<name>: {p: <prob>, <param>: <value>, ...}, ...}   # see WAVEFORM_NAMES
      spectrogram: {<name>: {p: <prob>, <param>: <value>, ...}, ...}   # see SPECTROGRAM_NAMES

Each entry is applied with probability ``p`` (default 1; 0 disables it); omitted parameters take the
defaults listed on each augmentation class (``defaults``). The order of application is fixed (the order of
:data:`WAVEFORM_NAMES` / :data:`SPECTROGRAM_NAMES`), not the order in the file. Unknown keys, names or
parameters, ``p`` outside [0, 1] and inverted ``min_*``/``max_*`` ranges raise
:class:`singer_ssl.core.errors.ConfigError` naming the culprit and the valid choices.

API: :func:`validate`, :func:`build_waveform` -> :class:`WaveformAugment` (callable ``(x (S,), rng) ->
(S,)``, picklable), :func:`build_spectrogram` -> :class:`SpectrogramAugment` (``nn.Module``, forward
``(B, 1, F, T) -> (B, 1, F, T)``; standardised log-mel expected, see :mod:`.spectrogram`).
Semantics, references and per-augmentation cost: :mod:`.waveform`, :mod:`.channel` (the recording-channel
chain: room, babble, music, band-limit, codecs, clipping; the default) and :mod:`.spectrogram` docstrings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from singer_ssl.augment.chain import WAVEFORM_NAMES, WAVEFORM_OPS, WaveformAugment, make_waveform_op, ramp_strength
from singer_ssl.augment.spectrogram import (
    SPECTROGRAM_NAMES,
    SPECTROGRAM_OPS,
    SpectrogramAugment,
    make_spectrogram_op,
)
from singer_ssl.core.errors import ConfigError, choice_error

__all__ = [
    "NAMES", "WAVEFORM_NAMES", "SPECTROGRAM_NAMES", "SECTION_KEYS", "VIEWS",
    "validate", "build_waveform", "build_spectrogram", "defaults", "enabled",
    "WaveformAugment", "SpectrogramAugment", "ramp_strength",
]

NAMES: tuple[str, ...] = WAVEFORM_NAMES + SPECTROGRAM_NAMES
SECTION_KEYS: tuple[str, ...] = ("views", "crop_seconds", "ramp_epochs", "ramp_augmentations", "waveform",
                                 "spectrogram")
VIEWS: tuple[str, ...] = ("file", "clip")
_NOMINAL_SAMPLE_RATE = 44100  # for validation only; parameters do not depend on it


def _entries(where: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    if cfg is None:
        return {}
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: expected a mapping {{name: {{p: ..., ...}}}}, got {cfg!r}")
    return dict(cfg)


def _check_names(where: str, entries: Mapping[str, Any], valid: tuple[str, ...], domain: str) -> None:
    for name in entries:
        if name not in valid:
            other = WAVEFORM_NAMES if domain == "spectrogram" else SPECTROGRAM_NAMES
            hint = f" ({name!r} is a {'waveform' if domain == 'spectrogram' else 'spectrogram'} augmentation)" \
                if name in other else ""
            err = choice_error(f"{domain} augmentation in {where}", name, valid)
            raise ConfigError(f"{err}{hint}")


def build_waveform(cfg_waveform: Mapping[str, Any] | None, sample_rate: int,
                   ramped: Sequence[str] | None = None) -> WaveformAugment:
    """Waveform chain from ``augment.waveform`` (``{name: {p, ...}}``) for audio at ``sample_rate`` Hz;
    ``ramped``: ``augment.ramp_augmentations`` (the entries the curriculum scales; empty or None = all)."""
    where = "augment.waveform"
    entries = _entries(where, cfg_waveform)
    _check_names(where, entries, WAVEFORM_NAMES, "waveform")
    return WaveformAugment([make_waveform_op(f"{where}.{n}", n, raw, sample_rate) for n, raw in entries.items()],
                           ramped=ramped)


def _check_ramped(value: Any) -> None:
    """``augment.ramp_augmentations``: a list of waveform augmentation names (:data:`WAVEFORM_NAMES`). A name
    the chain does not hold ramps nothing (so a preset's own chain can inherit the default's list)."""
    where = "augment.ramp_augmentations"
    if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) for n in value):
        raise ConfigError(f"{where}: expected a list of waveform augmentation names ([] = all), got {value!r}")
    for name in value:
        if name not in WAVEFORM_NAMES:
            raise choice_error(f"{where} entry", name, WAVEFORM_NAMES)


def build_spectrogram(cfg_spectrogram: Mapping[str, Any] | None) -> SpectrogramAugment:
    """Spectrogram chain (``nn.Module``) from ``augment.spectrogram`` (``{name: {p, ...}}``)."""
    where = "augment.spectrogram"
    entries = _entries(where, cfg_spectrogram)
    _check_names(where, entries, SPECTROGRAM_NAMES, "spectrogram")
    return SpectrogramAugment([make_spectrogram_op(f"{where}.{n}", n, raw) for n, raw in entries.items()])


def validate(cfg: Mapping[str, Any] | None) -> None:
    """Check the whole ``augment`` section; raise ConfigError naming the first problem and the choices."""
    if cfg is None:
        return
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"augment: expected a mapping with keys {', '.join(SECTION_KEYS)}, got {cfg!r}")
    for key in cfg:
        if key not in SECTION_KEYS:
            raise choice_error("augment key", key, SECTION_KEYS)
    if "views" in cfg and cfg["views"] not in VIEWS:
        raise choice_error("augment.views", cfg["views"], VIEWS)
    if "crop_seconds" in cfg:
        value = cfg["crop_seconds"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigError(f"augment.crop_seconds: expected a positive number of seconds, got {value!r}")
    if "ramp_epochs" in cfg:
        value = cfg["ramp_epochs"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"augment.ramp_epochs: expected a number of epochs >= 0 (0 = no ramp), got {value!r}")
    if "ramp_augmentations" in cfg:
        _check_ramped(cfg["ramp_augmentations"])
    build_waveform(cfg.get("waveform"), _NOMINAL_SAMPLE_RATE)
    build_spectrogram(cfg.get("spectrogram"))


def enabled(cfg: Mapping[str, Any] | None) -> list[str]:
    """Names of augmentation entries with ``p > 0`` (``p`` defaults to 1), in the file's order."""
    out = []
    for name, entry in (cfg or {}).items():
        p = (entry or {}).get("p", 1.0) if isinstance(entry, Mapping) else 1.0
        if p and float(p) > 0:
            out.append(name)
    return out


def defaults(name: str) -> dict[str, Any]:
    """Default parameters of augmentation ``name`` (without ``p``, whose default is 1)."""
    if name in WAVEFORM_OPS:
        return dict(WAVEFORM_OPS[name].defaults)
    if name in SPECTROGRAM_OPS:
        return dict(SPECTROGRAM_OPS[name].defaults)
    raise choice_error("augmentation", name, NAMES)
