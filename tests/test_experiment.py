"""`singer-ssl run` / `restore` (singer_ssl.experiment): overrides checked before DVC, params.yaml kept byte for
byte on failure, concurrent runs refused, and the restore command bringing back params.yaml, dvc.lock, the
metrics and plots a failed stage deleted and the cached outputs, on a small generated git + DVC project."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from singer_ssl import experiment as ex
from singer_ssl.cli import main
from singer_ssl.core.stage import RESTORE_ONE_LINER

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
DVC = Path(sys.executable).with_name("dvc")


def test_parse_override_follows_dvc_grammar():
    assert ex.parse_override("train.max_steps=50") == ex.Override("train.max_steps=50", "train.max_steps", "", 50)
    assert ex.parse_override("+a.b=x").mode == "+" and ex.parse_override("++a.b=1").mode == "++"
    assert ex.parse_override("~a.b") == ex.Override("~a.b", "a.b", "~")
    assert ex.parse_override("features.fmax=null").value is None
    assert ex.parse_override("x={mixup:{ratio:0.4},y:[1,2]}").value == {"mixup": {"ratio": 0.4}, "y": [1, 2]}
    for bad in ("loss", "=3", "a..b=1", "a=[1,"):
        with pytest.raises(ex.ExperimentError, match="-S "):
            ex.parse_override(bad)


def test_unknown_loss_encoder_and_key_name_the_valid_ones():
    with pytest.raises(ValueError, match="unknown loss 'vicreq'; valid choices: .*vicreg"):
        ex.check_overrides(PARAMS, ["loss=vicreq"])
    with pytest.raises(ValueError, match="unknown encoder 'vgg'; valid choices: .*vgglike"):
        ex.check_overrides(PARAMS, ["encoder=vgg"])
    with pytest.raises(ValueError, match=r"params.yaml has no train.max_step; did you mean train.max_steps\?") as e:
        ex.check_overrides(PARAMS, ["train.max_step=3"])
    assert "+train.max_step" not in str(e.value)  # not DVC's advice, which the train stage would then refuse
    with pytest.raises(ValueError, match="train.max_step: unknown parameter; valid keys of train"):
        ex.check_overrides(PARAMS, ["+train.max_step=3"])
    with pytest.raises(ValueError, match="train.max_steps: expected an integer >= 0, got 'abc'"):
        ex.check_overrides(PARAMS, ["train.max_steps=abc"])
    with pytest.raises(ValueError, match="already in params.yaml; set it with -S seed=2"):
        ex.check_overrides(PARAMS, ["+seed=2"])


def test_sweeps_are_checked_value_by_value():
    assert ex.expand_sweep("loss=ntxent,dcl,byol") == ["loss=ntxent", "loss=dcl", "loss=byol"]
    assert ex.expand_sweep("seed=range(1,4)") == ["seed=1", "seed=2", "seed=3"]
    assert ex.expand_sweep("seed=range(0,10,4)") == ["seed=0", "seed=4", "seed=8"]
    assert ex.expand_sweep("loss=choice(ntxent, dcl)") == ["loss=ntxent", "loss=dcl"]
    assert ex.expand_sweep("a=[1,2]") == ["a=[1,2]"] and ex.expand_sweep("a={x:1,y:2}") == ["a={x:1,y:2}"]
    assert ex.expand_sweep("a=[1,2],[3]") == ["a=[1,2]", "a=[3]"] and ex.expand_sweep("~a") == ["~a"]
    trees = ex.check_overrides(PARAMS, ["loss=ntxent,dcl,byol", "seed=range(1,3)"])  # the README's sweep form
    assert [(t["loss"], t["seed"]) for t in trees] == [(loss, s) for loss in ("ntxent", "dcl", "byol") for s in (1, 2)]
    with pytest.raises(ValueError, match=r"unknown loss 'vicreq'.*\(after -S loss=vicreq -S seed=1\)"):
        ex.check_overrides(PARAMS, ["loss=ntxent,vicreq", "seed=1,2"])
    with pytest.raises(ValueError, match="range"):
        ex.expand_sweep("seed=range(3,1)")


def test_valid_overrides_give_the_tree_dvc_would_write():
    (tree,) = ex.check_overrides(PARAMS, ["loss=vicreg", "train.max_steps=3", "~features.fmax",
                                       "+augment.spectrogram.mixup={ratio:0.4}", "train.max_steps=5"])
    expected = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    expected["loss"], expected["train"]["max_steps"] = "vicreg", 5  # the later override wins
    del expected["features"]["fmax"]
    expected["augment"]["spectrogram"] = {"mixup": {"ratio": 0.4}}
    file_steps = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))["train"]["max_steps"]
    assert file_steps != 5 and tree == expected and PARAMS["train"]["max_steps"] == file_steps  # input unmodified


def test_cli_check_and_unknown_preset(tmp_path, monkeypatch, capsys):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "presets", tmp_path / "presets")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--check", "-S", "loss=vicreg"]) == 0
    assert main(["run", "--check", "--preset", "torres", "-S", "seed=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown preset 'torres'; valid choices: ") and "torres2023" in err
    assert main(["run", "--check", "--preset", "torres2023", "-S", "loss=vicreq"]) == 2
    assert "unknown loss 'vicreq'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- run, fake dvc

def _fake_dvc(tmp_path: Path, rc: int) -> Path:
    """A ``dvc`` that records its arguments, rewrites params.yaml as DVC does, and exits ``rc``."""
    fake = tmp_path / "fake-dvc"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > called.txt\necho 'seed: 7' > params.yaml\nexit {rc}\n")
    fake.chmod(0o755)
    return fake


def _project_params(root: Path) -> bytes:
    (root / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    data = (ROOT / "params.yaml").read_bytes()
    (root / "params.yaml").write_bytes(data)
    return data


def test_failed_run_leaves_params_yaml_byte_identical(tmp_path, capsys):
    before = _project_params(tmp_path)
    rc = ex.run_experiment(["seed=7", "train.max_steps=3"], tmp_path, dvc=str(_fake_dvc(tmp_path, 1)))
    assert rc == 1 and (tmp_path / "params.yaml").read_bytes() == before
    assert (tmp_path / "called.txt").read_text().split() == ["exp", "run", "-S", "seed=7", "-S", "train.max_steps=3"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "singer-ssl restore" in err and RESTORE_ONE_LINER in err


def test_successful_run_keeps_dvcs_params(tmp_path):
    _project_params(tmp_path)
    assert ex.run_experiment(["seed=7"], tmp_path, dvc=str(_fake_dvc(tmp_path, 0)), queue=True, name="x") == 0
    assert (tmp_path / "params.yaml").read_text() == "seed: 7\n"
    assert (tmp_path / "called.txt").read_text().split() == ["exp", "run", "-S", "seed=7", "--queue", "--name", "x"]


def test_bad_override_never_calls_dvc(tmp_path):
    before = _project_params(tmp_path)
    with pytest.raises(ValueError, match="unknown loss"):
        ex.run_experiment(["loss=vicreq"], tmp_path, dvc=str(_fake_dvc(tmp_path, 0)))
    assert not (tmp_path / "called.txt").exists() and (tmp_path / "params.yaml").read_bytes() == before


def test_outside_a_dvc_project_nothing_is_done(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["restore"]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path.resolve()} is no DVC project (no .dvc folder); run this in " \
                                      "the project's root\n"
    assert list(tmp_path.iterdir()) == []  # no lock folder left behind


def _hold(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as DVC's zc.lockfile holds .dvc/tmp/lock during a run
    return fd


@pytest.mark.parametrize("lock", [ex.DVC_LOCK, ex.RUN_LOCK])
def test_second_run_is_refused_before_it_touches_params(tmp_path, lock):
    before = _project_params(tmp_path)
    fd = _hold(tmp_path / lock)
    try:
        with pytest.raises(ex.ExperimentError, match="--queue"):
            ex.run_experiment(["evaluate.bootstrap=250"], tmp_path, dvc=str(_fake_dvc(tmp_path, 0)))
        with pytest.raises(ex.ExperimentError, match=str(lock)):
            ex.restore(tmp_path, dvc=str(_fake_dvc(tmp_path, 0)))
    finally:
        os.close(fd)
    assert not (tmp_path / "called.txt").exists() and (tmp_path / "params.yaml").read_bytes() == before
    assert ex.busy(tmp_path) is None  # released: the next run may start


# ------------------------------------------------------------------------- a real git + DVC project

STEP = """import json, pathlib, sys, yaml
p = yaml.safe_load(open("params.yaml"))
pathlib.Path("data").mkdir(exist_ok=True)
pathlib.Path("data/model.txt").write_text(f"model of seed {p['seed']}\\n")
if p["seed"] == 7:
    sys.exit("error: evaluate: seed 7 fails")
pathlib.Path("metrics").mkdir(exist_ok=True)
pathlib.Path("plots/set").mkdir(parents=True, exist_ok=True)
json.dump({"eer": p["seed"] / 10}, open("metrics/set.json", "w"))
pathlib.Path("plots/set/det.csv").write_text(f"fpr,fnr\\n0,{p['seed']}\\n")
"""


def _sh(root: Path, *cmd: str) -> str:
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture
def project(tmp_path, monkeypatch):
    """git + DVC project: params.yaml as the repository's, one stage writing a cached output (data/model.txt)
    and git-tracked cache-free metrics and plots, as the evaluate stage does; the default run committed."""
    if shutil.which("git") is None or not DVC.exists():
        pytest.skip("git and dvc needed")
    for var, val in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
                     "GIT_COMMITTER_EMAIL": "t@example.org", "DVC_NO_ANALYTICS": "1"}.items():
        monkeypatch.setenv(var, val)
    root = tmp_path / "proj"
    root.mkdir()
    (root / "params.yaml").write_bytes((ROOT / "params.yaml").read_bytes())
    (root / "step.py").write_text(STEP)
    stage = {"cmd": f"{sys.executable} step.py", "deps": ["step.py"], "params": ["seed"],
             "outs": ["data/model.txt"], "metrics": [{"metrics/set.json": {"cache": False}}],
             "plots": [{"plots/set/det.csv": {"cache": False}}]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"evaluate": stage}}))
    _sh(root, "git", "init", "-q", "-b", "main")
    _sh(root, str(DVC), "init", "-q")
    _sh(root, str(DVC), "repro", "-q")
    _sh(root, "git", "add", "-A")
    _sh(root, "git", "commit", "-q", "-m", "default run")
    return root


def _clean(root: Path) -> None:
    assert _sh(root, "git", "status", "--porcelain") == ""
    assert "up to date" in _sh(root, str(DVC), "status")


def test_failed_then_finished_experiment_restore_everything(project):
    committed = {p: (project / p).read_bytes() for p in ("params.yaml", "dvc.lock", "metrics/set.json",
                                                         "plots/set/det.csv", "data/model.txt")}
    # a failing stage: DVC deleted the tracked metrics and plots before running it, and rewrote data/model.txt
    assert ex.run_experiment(["seed=7"], project, dvc=str(DVC)) != 0
    assert (project / "params.yaml").read_bytes() == committed["params.yaml"]
    assert not (project / "metrics/set.json").exists() and not (project / "plots/set/det.csv").exists()
    lines = ex.restore(project, dvc=str(DVC))
    assert lines[-1].startswith("dvc:")
    assert {p: (project / p).read_bytes() for p in committed} == committed
    _clean(project)
    # a finished experiment rewrote params.yaml, dvc.lock, metrics, plots and the cached output
    assert ex.run_experiment(["seed=5"], project, dvc=str(DVC)) == 0
    assert (project / "metrics/set.json").read_text() != committed["metrics/set.json"].decode()
    assert yaml.safe_load((project / "params.yaml").read_text())["seed"] == 5
    lines = ex.restore(project, dvc=str(DVC))
    kept = next(line for line in lines if line.startswith("kept the modified params.yaml as "))
    assert yaml.safe_load((project / kept.split(" as ")[1]).read_text())["seed"] == 5  # nothing lost
    assert {p: (project / p).read_bytes() for p in committed} == committed
    _clean(project)


def test_every_uncached_output_is_one_restore_brings_back():
    """DVC's cache holds no copy of a ``cache: false`` output, so only git can restore it: each must lie under a
    folder the restore command checks out (metrics/, plots/). A git-ignored uncached output (data/checkpoints was
    one) keeps the hash of the last experiment's run, and dvc status then plans a retrain after any restore."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    uncached = []
    for stage in stages.values():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in body.get(kind) or []:
                if isinstance(entry, dict):
                    uncached += [path for path, opts in entry.items() if (opts or {}).get("cache") is False]
    folders = [p for p in ex.RESTORE_PATHS if not p.endswith((".yaml", ".lock"))]
    assert uncached and all(p.split("/")[0] in folders for p in uncached), uncached


WAIT = """import pathlib, time
pathlib.Path("started").write_text("")
while not pathlib.Path("go").exists():  # the test lets the stage finish once it has looked at the lock
    time.sleep(0.05)
pathlib.Path("out.txt").write_text("done\\n")
"""


def test_real_dvc_run_holds_the_lock_a_second_run_is_refused(project):
    """While a real ``dvc exp run`` works, :func:`busy` sees DVC's lock and a second run is refused before it
    touches params.yaml (the first run's ``-S seed=5`` stays the only change); then the lock is free again."""
    import time

    (project / "wait.py").write_text(WAIT)
    stages = yaml.safe_load((project / "dvc.yaml").read_text())
    stages["stages"]["wait"] = {"cmd": f"{sys.executable} wait.py", "deps": ["wait.py"], "outs": ["out.txt"]}
    (project / "dvc.yaml").write_text(yaml.safe_dump(stages))
    _sh(project, "git", "add", "-A")
    _sh(project, "git", "commit", "-q", "-m", "wait stage")
    first = subprocess.Popen([str(DVC), "exp", "run", "-S", "seed=5", "wait"], cwd=project,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 3 * 3600  # a guard against a hang only
        while not (project / "started").exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run ended before its stage"
            time.sleep(0.05)
        during = (project / "params.yaml").read_bytes()
        assert "another DVC process runs a stage: pid " in (ex.busy(project) or "")
        with pytest.raises(ex.ExperimentError, match="another DVC process"):
            ex.run_experiment(["evaluate.bootstrap=250"], project, dvc=str(DVC))
        assert (project / "params.yaml").read_bytes() == during
        (project / "go").write_text("")
        assert first.wait(timeout=3 * 3600) == 0
    finally:
        (project / "go").write_text("")
        first.wait(timeout=3 * 3600)
    assert ex.busy(project) is None
    assert yaml.safe_load((project / "params.yaml").read_text())["evaluate"]["bootstrap"] == 1000


def test_stage_lock_table_counts_live_processes_only(tmp_path):
    import json

    (tmp_path / ex.DVC_RWLOCK).parent.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a finished child: its pid is free (a kill -9 leaves such entries behind)
    table = {"write": {"data/model": {"pid": dead.pid, "cmd": "dvc exp run"}}, "read": {}}
    (tmp_path / ex.DVC_RWLOCK).write_text(json.dumps(table))
    assert ex.stage_lock_holder(tmp_path) is None and ex.busy(tmp_path) is None
    table["read"] = {"data/features": [{"pid": os.getppid(), "cmd": "dvc repro"}]}
    (tmp_path / ex.DVC_RWLOCK).write_text(json.dumps(table))
    assert ex.stage_lock_holder(tmp_path) == f"pid {os.getppid()} (dvc repro)"
    (tmp_path / ex.DVC_RWLOCK).write_text("{not json")
    assert ex.stage_lock_holder(tmp_path) is None
