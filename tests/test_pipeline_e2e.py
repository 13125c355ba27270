"""End to end: the real DVC pipeline on a reduced built-in corpus, in a temporary clone.

1. `dvc exp run -S ...` (reduced config) runs every stage; outputs and metrics schema are checked,
   and the trained default (NT-Xent) encoder beats the random-init baseline on builtin-test.
2. A second `dvc repro` runs nothing.
3. `dvc exp run -S loss=vicreg` re-runs only train, embed and evaluate, and `dvc metrics diff`
   shows the changed EER.
4. `dvc exp run $(singer-ssl preset byol-laptop)`: the trained BYOL encoder beats the random-init
   baseline on builtin-test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Reduced but real: every stage runs its production code path.
REDUCED = {
    "features.n_mels": 64,
    "trials.n_pairs": 3000,
    "train.max_steps": 120,
    "train.steps_per_epoch": 40,
    "train.checkpoint_every": 40,
    "encoders.audiontt2020.embedding_dim": 256,
    "evaluate.bootstrap": 200,
    "evaluate.mnr_queries": 300,
    "evaluate.tsne.max_points": 300,
    "evaluate.probe.max_epochs": 100,
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return env


def _run(args: list[str], cwd: Path, timeout: int = 900) -> str:
    p = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(args)} failed ({p.returncode}):\n{out[-6000:]}"
    return out


def _stages_run(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    dst = tmp_path_factory.mktemp("e2e") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("data/", "metrics/", "plots/")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    for rel in ("data", "metrics", "plots"):
        (dst / rel).mkdir(exist_ok=True)
    _run(["git", "init", "-q"], dst)
    _run(["git", "add", "-A"], dst)
    _run(["git", "commit", "-qm", "init"], dst)
    return dst


@pytest.fixture(scope="module")
def first_run(project: Path) -> str:
    args = ["dvc", "exp", "run"]
    for k, v in REDUCED.items():
        args += ["-S", f"{k}={v}"]
    return _run(args, project, timeout=1500)


def test_full_pipeline_outputs(project: Path, first_run: str):
    ran = _stages_run(first_run)
    assert {"corpus", "segment-train@builtin-train", "segment-test@builtin-test", "features-train@builtin-train",
            "features-test@builtin-test", "trials@builtin-test", "train", "embed@builtin-test",
            "evaluate@builtin-test"} <= ran
    assert (project / "data/segments/test/builtin-test/manifest.csv").exists()
    with h5py.File(project / "data/features/test/builtin-test.h5") as f:
        assert f["logmel"].shape[1] == 64 and f["logmel"].shape[0] == len(f["key"])
    for name in ("model.pt", "model.ts", "hyperparams.yaml"):
        assert (project / "data/model" / name).exists()
    m = json.loads((project / "metrics/builtin-test.json").read_text())
    for rep in ("embedding", "projection"):
        assert set(m[rep]) >= {"eer", "eer_ci95", "eer_threshold", "min_dcf", "mnr"}
        assert m[rep]["eer_ci95"][0] <= m[rep]["eer"] <= m[rep]["eer_ci95"][1]
    assert 0 <= m["probe"]["acc"] <= 1 and 0 <= m["probe"]["bacc"] <= 1
    for base in ("random_init", "mfcc"):
        assert set(m["baselines"][base]) >= {"eer", "min_dcf", "mnr", "probe"}
    assert m["counts"]["singers"] == 8 and m["counts"]["trials"] > 1000
    for plot in ("roc.csv", "det.csv", "scores.png", "tsne.csv", "tsne.png", "confusion.csv", "singer_means.csv"):
        assert (project / "plots/builtin-test" / plot).stat().st_size > 0
    # The trained encoder (default loss) clearly beats the same encoder with random weights.
    assert m["embedding"]["eer"] < m["baselines"]["random_init"]["eer"] - 3.0, m


def test_second_repro_is_noop(project: Path, first_run: str):
    out = _run(["dvc", "repro"], project)
    assert not _stages_run(out), out
    assert "up to date" in _run(["dvc", "status"], project)


def test_loss_switch_reruns_only_training_half(project: Path, first_run: str):
    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "byol baseline"], project)
    out = _run(["dvc", "exp", "run", "-S", "loss=vicreg"], project, timeout=1200)
    assert _stages_run(out) == {"train", "embed@builtin-test", "evaluate@builtin-test"}, out
    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], project))
    changed = diff["metrics/builtin-test.json"]
    assert "embedding.eer" in changed and changed["embedding.eer"]["diff"] != 0


def test_trained_byol_beats_random_init(project: Path, first_run: str):
    from singer_ssl.presets import overrides

    flags = overrides("byol-laptop", project / "params.yaml", project / "presets")
    out = _run(["dvc", "exp", "run", *flags, "-S", "train.max_steps=200"], project, timeout=1500)
    assert "train" in _stages_run(out), out
    m = json.loads((project / "metrics/builtin-test.json").read_text())
    hp = yaml.safe_load((project / "data/model/hyperparams.yaml").read_text())
    assert hp["loss"]["name"] == "byol" and hp["training"]["monitor"] == "eer"
    assert m["embedding"]["eer"] < m["baselines"]["random_init"]["eer"] - 3.0, m
