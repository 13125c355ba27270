"""The whole params.yaml is validated before any stage does work (singer_ssl.validate, the `check` stage).

A hostile replay (issue 24) found typos that no stage reads (``train.lrr``, an unknown top-level key), empty
roles, a test set that is the training set and ``train.device: bogus`` accepted silently, and trials running
before train rejected ``seed: -1``. Each case here goes through :func:`validate_params` and the stage script;
the dvc.yaml structure (every stage behind the check's marker) is checked on the real file, and a real
``dvc repro`` on a copy (slow) shows that a bad parameter stops the run before any other stage.
"""

from __future__ import annotations

import copy
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.params import TOP_LEVEL_KEYS
from singer_ssl.core.stage import stage_main
from singer_ssl.presets import available, load_preset, merge
from singer_ssl.validate import validate_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


def _edit(change) -> dict:
    params = copy.deepcopy(PARAMS)
    change(params)
    return params


def test_the_committed_params_and_every_preset_are_valid():
    validate_params(PARAMS, base=ROOT)
    assert set(PARAMS) == set(TOP_LEVEL_KEYS)  # every documented section is present, nothing else
    for name in available():
        validate_params(merge(copy.deepcopy(PARAMS), load_preset(name)), base=ROOT)


CASES = [
    # (what, change, start of the one-line error)
    ("unknown top-level key", lambda p: p.update(trian={"lr": 1}), "trian: unknown top-level parameter; valid "
     "top-level keys: audio, augment, corpus"),
    ("unknown train key", lambda p: p["train"].update(lrr=0.1), "train.lrr: unknown parameter; valid keys of train:"),
    ("unknown corpus key", lambda p: p["corpus"].update(sedd=1), "corpus.sedd: unknown parameter"),
    ("unknown features key", lambda p: p["features"].update(nfft=1), "features.nfft: unknown parameter"),
    ("unknown evaluate key", lambda p: p["evaluate"].update(boot=1), "evaluate.boot: unknown parameter"),
    ("unknown embed key", lambda p: p["embed"].update(size=1), "embed.size: unknown parameter"),
    ("empty training role", lambda p: p["datasets"].update(train={}), "datasets.train: no train dataset"),
    ("empty test role", lambda p: p["datasets"].update(test={}), "datasets.test: no test dataset"),
    ("a dataset in both roles by name",
     lambda p: p["datasets"]["test"].update({"builtin-train": {"path": "elsewhere"}}),
     "dataset name 'builtin-train' appears under both train and test"),
    ("a dataset in both roles by folder",
     lambda p: p["datasets"]["test"].update(again={"path": "data/raw/builtin-train/", "layout": "builtin"}),
     "datasets.test.again: the same folder (data/raw/builtin-train/) as datasets.train.builtin-train"),
    ("bogus training device", lambda p: p["train"].update(device="bogus"), "train.device:"),
    ("negative seed", lambda p: p.update(seed=-1), "seed: expected an integer >= 0"),
    ("wrong type", lambda p: p["train"].update(lr="fast"), "train.lr: expected a number"),
    ("datasets not a mapping", lambda p: p.update(datasets=[1]), "datasets: expected a mapping"),
    ("loss typo", lambda p: p.update(loss="ntxnet"), "unknown loss 'ntxnet'; valid choices: byol"),
    ("encoder typo", lambda p: p.update(encoder="resnet"), "unknown encoder 'resnet'"),
    ("unselected loss section typo", lambda p: p["losses"].update(byoll={}), "losses.byoll: unknown loss; valid"),
    ("unselected encoder key typo", lambda p: p["encoders"]["crnn"].update(hiden=3), "crnn"),
    ("external trials for no test set", lambda p: p["trials"].update(external={"nope": "trials/x.txt"}),
     "trials.external.nope: not a test dataset"),
    ("bad augmentation", lambda p: p["augment"]["waveform"].update(gaussian_nosie={}), "unknown waveform "
     "augmentation"),
]


@pytest.mark.parametrize("what, change, message", CASES, ids=[c[0] for c in CASES])
def test_every_bad_parameter_is_one_line_naming_it(what, change, message):
    with pytest.raises(ConfigError) as err:
        validate_params(_edit(change), base=ROOT)
    text = str(err.value)
    assert "\n" not in text and message in text, (what, text)


def test_validation_walks_every_section_before_the_stage_that_reads_it():
    """``seed: -1`` (read by trials and train) and a train-only typo both fail in the check, whatever the order
    the stages would run in: the check does not stop at the sections the first stage reads."""
    for change in (lambda p: p.update(seed=-1), lambda p: p["train"].update(max_stepz=3),
                   lambda p: p["head"].update(dimm=3)):
        with pytest.raises(ConfigError):
            validate_params(_edit(change), base=ROOT)


def test_check_stage_script(tmp_path: Path, monkeypatch, capsys):
    """stages/check.py: valid params -> the fixed marker and one summary line; a bad one -> `error: check: ...`,
    exit status 1, and no marker (so nothing after the check runs)."""
    monkeypatch.syspath_prepend(str(ROOT))
    stage = importlib.import_module("stages.check")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(PARAMS), encoding="utf-8")
    marker = tmp_path / "data" / "check" / "params.ok"

    def cli() -> int:
        return stage_main("check", stage.main, ("out",), argv=[str(marker), "--params", str(tmp_path / "params.yaml")])

    assert cli() == 0 and marker.read_text() == "params valid\n"
    first = marker.read_bytes()
    assert capsys.readouterr().out.strip().endswith("params.yaml valid")
    assert cli() == 0 and marker.read_bytes() == first  # fixed content: nothing after the check re-runs
    marker.unlink()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(_edit(lambda p: p["train"].update(lrr=1))))
    assert cli() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: check: train.lrr: unknown parameter; valid keys of train")
    assert not marker.exists()


def test_every_stage_waits_for_the_check():
    """dvc.yaml: `check` always runs, tracks every param, and every other stage depends on its marker (so trials
    cannot run before a train-param error is found)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    check = stages.pop("check")
    assert check["always_changed"] is True and check["params"] == [{"params.yaml": None}]
    assert check["outs"] == ["data/check/params.ok"] and check["cmd"].split()[1] == "stages/check.py"
    for name, body in stages.items():
        deps = body.get("do", body)["deps"]
        assert "data/check/params.ok" in deps, name


@pytest.mark.slow
def test_dvc_repro_stops_at_the_check_before_any_stage(tmp_path: Path):
    """Real DVC on a copy of the project: a typo no stage reads (``train.lrr``) and ``seed: -1`` each stop
    ``dvc repro`` in the check with the one-line error; no other stage runs (checked by DVC's log and outputs)."""
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")
    if dvc is None or shutil.which("git") is None:
        pytest.skip("dvc or git not installed")
    proj = tmp_path / "proj"
    proj.mkdir()
    for name in ("dvc.yaml", "stages", "singer_ssl", "trials"):
        src = ROOT / name
        (shutil.copytree(src, proj / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, proj / name))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(proj), "DVC_NO_ANALYTICS": "1"}

    def sh(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=proj, env=env, capture_output=True, text=True, timeout=3 * 3600)

    assert sh("git", "init", "-q").returncode == 0 and sh(dvc, "init", "-q").returncode == 0
    for change, message in ((lambda p: p["train"].update(lrr=1), "error: check: train.lrr: unknown parameter"),
                            (lambda p: p.update(seed=-1), "error: check: seed: expected an integer >= 0")):
        (proj / "params.yaml").write_text(yaml.safe_dump(_edit(change)), encoding="utf-8")
        run = sh(dvc, "repro")
        out = run.stdout + run.stderr
        assert run.returncode != 0 and message in out, out
        assert "Running stage 'check'" in out and out.count("Running stage") == 1, out
        assert not (proj / "data" / "raw").exists() and not (proj / "data" / "check" / "params.ok").exists()
