"""Presets become DVC -S flags; every shipped preset names real params."""

from pathlib import Path

import pytest
import yaml

from singer_ssl.core.errors import ConfigError
from singer_ssl.presets import available, merge, overrides

ROOT = Path(__file__).resolve().parents[1]


def test_overrides_flags(tmp_path):
    (tmp_path / "params.yaml").write_text("train: {lr: 0.001, batch_size: 32}\naugment: {waveform: {}}\n")
    pdir = tmp_path / "presets"
    pdir.mkdir()
    (pdir / "p.yaml").write_text("train: {lr: 1.0e-4}\naugment: {waveform: {gain: {p: 0.5}}}\nencoder: x\n")
    flags = overrides("p", tmp_path / "params.yaml", pdir)
    assert flags == ["-S", "train.lr=0.0001", "-S", "+augment.waveform.gain.p=0.5", "-S", "+encoder=x"]
    with pytest.raises(ConfigError, match="valid choices: p"):
        overrides("nope", tmp_path / "params.yaml", pdir)


def test_merge_is_deep():
    assert merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}, "d": 3}


def test_shipped_presets_validate():
    """Each shipped preset, merged into params.yaml, passes full validation."""
    from singer_ssl.core.params import check_datasets
    from singer_ssl.training.config import resolve_settings

    names = available(ROOT / "presets")
    assert {"seed000", "seed001", "seed002", "seed003", "seed004"} <= set(names)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for n in names:
        tree = yaml.safe_load((ROOT / "presets" / f"{n}.yaml").read_text())
        merged = merge(params, tree)
        check_datasets(merged)
        resolve_settings(merged)  # the train stage's own checks (optimizer, schedule, encoder kwargs...)
        overrides(n, ROOT / "params.yaml", ROOT / "presets")  # expressible as -S flags
