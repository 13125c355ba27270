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
    from singer_ssl.data.builtin_corpus import CorpusConfig
    from singer_ssl.embed import EmbedConfig
    from singer_ssl.training.config import TrainConfig

    names = available(ROOT / "presets")
    assert {"torres2023", "ge2e-singer", "semisupcon", "byol-a", "fonseca2021", "byol-laptop", "ranking"} <= set(names)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for n in names:
        tree = yaml.safe_load((ROOT / "presets" / f"{n}.yaml").read_text())
        merged = merge(params, tree)
        check_datasets(merged)
        TrainConfig.from_params(merged)  # the train stage's own checks (optimizer, schedule, encoder kwargs...)
        CorpusConfig.from_params(merged)
        for dataset in merged["datasets"]["test"]:
            EmbedConfig.from_params(merged, dataset)
        overrides(n, ROOT / "params.yaml", ROOT / "presets")  # expressible as -S flags


def test_presets_are_named_after_papers_only():
    """No numbered alias survives: an old numbered name is an unknown preset that lists the paper names."""
    pdir = ROOT / "presets"
    names = available(pdir)
    assert {"torres2023", "ge2e-singer", "semisupcon", "byol-a", "fonseca2021"} <= set(names)
    assert not any(n[:4] == "seed" for n in names)
    with pytest.raises(ConfigError, match="torres2023"):
        overrides("seed" + "000", ROOT / "params.yaml", pdir)


def test_unknown_preset_lists_the_valid_choices():
    with pytest.raises(ConfigError) as info:
        overrides("torres", ROOT / "params.yaml", ROOT / "presets")
    msg = str(info.value)
    assert "unknown preset 'torres'" in msg and "\n" not in msg
    assert msg.endswith("valid choices: " + ", ".join(available(ROOT / "presets")))
    assert "seed000" not in msg


@pytest.mark.parametrize("name", ["typo", "seed009"])
def test_cli_unknown_preset_prints_nothing_on_stdout_and_fails(name, capsys, monkeypatch):
    """``dvc exp run $(singer-ssl preset typo)`` must not start a default run: stdout stays empty."""
    from singer_ssl.cli import main

    monkeypatch.chdir(ROOT)
    rc = main(["preset", name])
    out = capsys.readouterr()
    assert rc != 0 and out.out == ""
    assert out.err.count("\n") == 1 and f"unknown preset {name!r}" in out.err
    assert all(n in out.err for n in available(ROOT / "presets"))
    assert main(["preset", "byol-a"]) == 0 and "-S" in capsys.readouterr().out  # the control: a known name prints


def test_every_preset_has_a_one_line_summary_naming_its_paper():
    from singer_ssl.presets import summary

    papers = {"torres2023": "Torres", "ge2e-singer": "GE2E", "semisupcon": "SemiSupCon", "byol-a": "BYOL-A",
              "fonseca2021": "Fonseca", "byol-laptop": "BYOL", "ranking": "not a paper"}
    for name in available(ROOT / "presets"):
        assert papers[name] in summary(name, ROOT / "presets")
