"""scripts/augment_ablation.py: the generated table carries each run's numbers (recomputed here from fabricated
details files), the no-channel variant disables exactly the channel entries, bad arguments are one-line errors."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from singer_ssl import augment

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("augment_ablation", ROOT / "scripts" / "augment_ablation.py")
ablation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation)


def details(eer, rinit, mfcc, ref, inv, seen):
    groups = {"seen": [s for s in inv if s in seen], "held_out": [s for s in inv if s not in seen]}
    worst = {g: (max(inv[s] for s in specs) - ref if specs else None) for g, specs in groups.items()}
    return {"embedding": {"eer": eer}, "baselines": {"random_init": {"eer": rinit}, "mfcc": {"eer": mfcc}},
            "invariance": {"reference_eer": ref, "eer": inv, "groups": groups, "max_increase": worst}}


def write_run(folder: Path, per_set: dict) -> Path:
    folder.mkdir(parents=True)
    for name, d in per_set.items():
        (folder / f"{name}_details.json").write_text(json.dumps(d))
    (folder / f"{next(iter(per_set))}.json").write_text("{}")  # a headline file: not a details file, ignored
    return folder


def cells(text: str, section: str, label: str) -> list[str]:
    """The cells of row ``label`` in the ``## section`` table."""
    block = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    for line in block.splitlines():
        parts = [c.strip() for c in line.strip("|").split("|")]
        if parts[0] == label:
            return parts[1:]
    raise AssertionError(f"no row {label!r} in {section}")


def test_table_is_generated_from_the_runs_details(tmp_path):
    inv_d = {"white_noise:10": 12.4, "reverb:0.5": 11.0, "blue_noise:10": 15.3}
    inv_n = {"white_noise:10": 16.3, "reverb:0.5": 10.9, "blue_noise:10": 19.0}
    seen_d = ("white_noise:10", "reverb:0.5")
    a = write_run(tmp_path / "a", {"builtin-test": details(10.5, 30.1, 26.0, 10.2, inv_d, seen_d),
                                   "builtin-ood": details(20.0, 35.0, 33.0, 19.5, inv_d, seen_d)})
    no_chan = details(11.0, 30.1, 26.0, 11.0, inv_n, ("white_noise:10",))
    no_chan["versus"] = {"random_init": {"eer_diff": -19.1, "beaten": True},
                         "mfcc": {"eer_diff": -0.4, "beaten": False}}
    b = write_run(tmp_path / "b", {"builtin-test": no_chan})
    out = tmp_path / "docs" / "ablation.md"
    assert ablation.main(["table", "--run", f"default={a}", "--run", f"no_channel={b}", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| figure | default | no_channel |" in text
    assert cells(text, "builtin-test", "EER") == ["10.5", "11.0"]
    assert cells(text, "builtin-test", "MFCC EER") == ["26.0", "26.0"]
    # increases recomputed from the fabricated numbers, with each run's own seen / held-out mark
    assert cells(text, "builtin-test", "Δ white_noise:10") == [f"{12.4 - 10.2:+.1f} s", f"{16.3 - 11.0:+.1f} s"]
    assert cells(text, "builtin-test", "Δ reverb:0.5") == [f"{11.0 - 10.2:+.1f} s", f"{10.9 - 11.0:+.1f} h"]
    assert cells(text, "builtin-test", "worst seen Δ") == [f"{12.4 - 10.2:+.1f}", f"{16.3 - 11.0:+.1f}"]
    assert cells(text, "builtin-test", "worst held-out Δ") == [f"{15.3 - 10.2:+.1f}", f"{19.0 - 11.0:+.1f}"]
    assert cells(text, "builtin-ood", "EER") == ["20.0", "—"]  # a set the second run lacks
    # the paired comparison: the run's own versus block (a run without one shows a dash)
    assert cells(text, "builtin-test", "EER vs random-init (paired)") == ["—", "-19.1 beaten"]
    assert cells(text, "builtin-test", "EER vs MFCC (paired)") == ["—", "-0.4 not beaten"]


def test_no_channel_variant_disables_exactly_the_channel_entries():
    waveform = yaml.safe_load((ROOT / "params.yaml").read_text())["augment"]["waveform"]
    args = ablation.overrides("no_channel", waveform)
    assert ablation.overrides("default", waveform) == []
    disabled = {a.split(".")[2] for a in args[1::2]}
    assert args[::2] == ["-S"] * len(disabled) and all(a.endswith(".p=0") for a in args[1::2])
    chain = {n: dict(v, p=0) if n in disabled else v for n, v in waveform.items()}
    names = set(augment.build_waveform(chain, 44100).names)
    assert names == {"gain", "time_mask"}  # what is left of the default chain: no channel model at all
    assert {"room_reverb", "babble", "music_bed", "band_limit", "mp3_compression"} <= disabled


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(SystemExit, match="NAME=FOLDER"):
        ablation.main(["table", "--run", str(tmp_path)])
    with pytest.raises(SystemExit, match="no \\*_details.json"):
        ablation.main(["table", "--run", f"x={tmp_path}"])
    with pytest.raises(ValueError, match="unknown variant"):
        ablation.overrides("nope", {})
