"""scripts/shortcut_probe.py: the nuisance measurements and the grouped linear probes, on tiny synthetic data."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "shortcut_probe.py"
_spec = importlib.util.spec_from_file_location("shortcut_probe", _PATH)
sp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sp)


def test_rms_dbfs_and_median_f0_match_closed_forms():
    sr = 16000
    t = np.arange(sr) / sr
    sine = 0.5 * np.sin(2 * np.pi * 220.0 * t)
    assert sp.rms_dbfs(sine) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=1e-3)  # -9.03 dBFS
    assert sp.median_f0_semitones(sine, sr) == pytest.approx(-12.0, abs=0.1)  # 220 Hz = 440 Hz - 1 octave
    assert np.isnan(sp.median_f0_semitones(np.zeros(sr), sr))


def _data(seed: int = 0):
    """8 singers x 6 segments; a nuisance y that varies within and across singers, independent of the singer."""
    rng = np.random.default_rng(seed)
    singers = np.repeat(np.arange(8), 6)
    y = rng.normal(size=singers.size)
    noise = rng.normal(size=(singers.size, 10))
    return rng, singers, y, noise


def test_continuous_probe_reads_an_encoded_nuisance_and_not_an_absent_one():
    rng, singers, y, noise = _data()
    encoded = np.column_stack([noise, 3.0 * y])
    assert sp.probe_continuous(encoded, y, singers, folds=4) > 0.9
    assert sp.probe_continuous(noise, y, singers, folds=4) < 0.2  # held-out singers: nothing to read
    y_nan = y.copy()
    y_nan[:3] = np.nan  # unvoiced segments are left out, not an error
    assert sp.probe_continuous(encoded, y_nan, singers, folds=4) > 0.9


def test_grouped_split_blocks_reading_the_nuisance_off_the_singer():
    """A nuisance constant per singer (e.g. a recording level) in an embedding that only identifies the singer:
    a random split would memorise singer -> value; the split by singer cannot."""
    rng, singers, _, noise = _data(1)
    per_singer = rng.normal(size=8)
    y = per_singer[singers]
    identity = np.eye(8)[singers] + 0.01 * noise[:, :8]
    assert sp.probe_continuous(identity, y, singers, folds=4) < 0.2
    labels = np.where(per_singer[singers] > np.median(per_singer), 48000, 22050)
    assert sp.probe_categorical(identity, labels, singers, folds=4, seed=0) <= 0.75
    assert sp.probe_categorical(np.column_stack([noise, labels / 1e4]), labels, singers, folds=4, seed=0) == 1.0
