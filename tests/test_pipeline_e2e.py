"""End to end: the real DVC pipeline on a reduced built-in corpus, in a temporary clone.

1. `dvc exp run -S ...` (reduced config) runs every stage; outputs and metrics schema are checked,
   and the trained default (NT-Xent) encoder beats the random-init baseline on builtin-test.
2. A second `dvc repro` runs nothing.
3. `dvc exp run $(singer-ssl preset byol-laptop)` (a method switch) re-runs only train, embed, embed-train and
   evaluate, `dvc metrics diff` shows the changed EER (`--all`: with the baselines; `dvc metrics show`
   within 120 columns), and the trained BYOL encoder beats the random-init baseline on builtin-test.
4. A two-method x two-seed sweep (four short experiments) and `singer-ssl compare` on it: each method's
   short runs one row, n=2, means equal to those of the per-run metrics; the longer runs rows of their own.
"""

from __future__ import annotations

import csv
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
HANG_GUARD_S = 3 * 3600  # seconds: a guard against a hung process only; no test fails for being slow
pytestmark = pytest.mark.slow

# Reduced but real: every stage runs its production code path.
REDUCED = {
    "features.n_mels": 64,
    "trials.n_pairs": 3000,
    "train.max_steps": 80,
    "train.steps_per_epoch": 40,
    "train.checkpoint_every": 40,
    "encoders.audiontt2020.embedding_dim": 256,
    "evaluate.bootstrap": 200,
    "evaluate.mnr_queries": 300,
    "evaluate.tsne.max_points": 300,
    "evaluate.probe.max_epochs": 100,
    "corpus.n_test_singers": 8,  # builtin-test as before the default grew: 8 singers x 6 songs
    "corpus.test_songs_per_singer": 6,
    "corpus.n_ood_singers": 4,  # the out-of-domain test set (builtin-ood), small
    "embed.invariance.segments_per_singer": 1,
    "embed.random_inits": 2,
    "evaluate.probe.runs": 2,
}
# a few steps and light evaluation, for runs that check what re-runs rather than what is learnt
SHORT = ["-S", "train.max_steps=4", "-S", "train.steps_per_epoch=2", "-S", "train.checkpoint_every=2",
         "-S", "evaluate.probe.runs=1", "-S", "evaluate.probe.max_epochs=20", "-S", "evaluate.bootstrap=20",
         "-S", "evaluate.mnr_queries=100", "-S", "evaluate.tsne.max_points=30", "-S", "embed.random_inits=1",
         "-S", "embed.invariance=null"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return env


def _run(args: list[str], cwd: Path) -> str:
    """Run ``args``; the timeout only guards against a hung process (3 h), never a speed check."""
    p = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"{' '.join(args)} failed ({p.returncode}):\n{out[-6000:]}"
    return out


def _all_stages_run(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


def _stages_run(out: str) -> set[str]:
    """Stages DVC ran, the always-changed ones left out: ``check`` validates params.yaml and ``scan-*`` re-list the
    raw folders at every repro, in seconds; their unchanged outputs keep everything after them cached."""
    return {s for s in _all_stages_run(out) if not s.startswith("scan-") and s != "check"}


def clone_project(dst: Path, keep: tuple[str, ...] = ()) -> Path:
    """A fresh git repository at ``dst`` holding this checkout's files without its data, metrics and plots
    (except the paths starting with one of ``keep``), committed."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file() and (not rel.startswith(("data/", "metrics/", "plots/")) or any(map(rel.startswith, keep))):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    for rel in ("data", "metrics", "plots"):
        (dst / rel).mkdir(parents=True, exist_ok=True)
    _run(["git", "init", "-q"], dst)
    _run(["git", "add", "-A"], dst)
    _run(["git", "commit", "-qm", "init"], dst)
    return dst


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return clone_project(tmp_path_factory.mktemp("e2e") / "repo")


@pytest.fixture(scope="module")
def first_run(project: Path) -> str:
    args = ["dvc", "exp", "run"]
    for k, v in REDUCED.items():
        args += ["-S", f"{k}={v}"]
    return _run(args, project)


def test_full_pipeline_outputs(project: Path, first_run: str):
    ran = _stages_run(first_run)
    assert {"scan-train@builtin-train", "scan-test@builtin-test", "scan-test@builtin-ood"} <= _all_stages_run(first_run)
    assert {"corpus", "segment-train@builtin-train", "segment-test@builtin-test", "features-train@builtin-train",
            "features-test@builtin-test", "trials@builtin-test", "train", "embed@builtin-test",
            "evaluate@builtin-test"} <= ran
    assert (project / "data/segments/test/builtin-test/manifest.csv").exists()
    with h5py.File(project / "data/features/test/builtin-test.h5") as f:
        assert f["logmel"].shape[1] == 64 and f["logmel"].shape[0] == len(f["key"])
    for name in ("model.pt", "model.ts", "hyperparams.yaml"):
        assert (project / "data/model" / name).exists()
    head = json.loads((project / "metrics/builtin-test.json").read_text())
    m = json.loads((project / "metrics/builtin-test_details.json").read_text())
    # the headline file DVC shows is flat and copies the details' numbers, baselines included
    assert head == {"eer": m["embedding"]["eer"], "min_dcf": m["embedding"]["min_dcf"], "mnr": m["embedding"]["mnr"],
                    "probe_acc": m["probe"]["acc"], "random_init_eer": m["baselines"]["random_init"]["eer"],
                    "mfcc_eer": m["baselines"]["mfcc"]["eer"], "trials": m["counts"]["trials"]}
    rows = list(csv.DictReader(open(project / "data/segments/test/builtin-test/manifest.csv", encoding="utf-8")))
    assert all(r["recording"] == r["source"] for r in rows)  # a built-in song is one file: one recording
    for rep in ("embedding", "projection"):
        assert set(m[rep]) >= {"eer", "eer_ci95", "eer_threshold", "min_dcf", "mnr"}
        assert m[rep]["eer_ci95"][0] <= m[rep]["eer"] <= m[rep]["eer_ci95"][1]
    assert 0 <= m["probe"]["acc"] <= 1 and 0 <= m["probe"]["bacc"] <= 1
    for base in ("random_init", "mfcc"):
        assert set(m["baselines"][base]) >= {"eer", "min_dcf", "mnr", "probe"}
    assert m["counts"]["singers"] == 8 and m["counts"]["trials"] > 1000
    assert {"segment-test@builtin-ood", "embed@builtin-ood", "evaluate@builtin-ood"} <= ran
    assert (project / "metrics/builtin-ood.json").exists()
    assert len({p.name for p in (project / "data/raw/builtin-ood").iterdir() if p.is_dir()}) == 4
    for plot in ("roc.csv", "det.csv", "scores.png", "tsne.csv", "tsne.png", "confusion.csv", "singer_means.csv"):
        assert (project / "plots/builtin-test" / plot).stat().st_size > 0
    ood = json.loads((project / "metrics/builtin-ood_details.json").read_text())
    for name, d in (("builtin-test", m), ("builtin-ood", ood)):
        print(f"\nreduced first run, {name}: EER {d['embedding']['eer']:.2f} vs random-init "
              f"{d['baselines']['random_init']['eer']:.2f}, mfcc {d['baselines']['mfcc']['eer']:.2f}; {d['versus']}")
    # The trained encoder (default loss) clearly beats the same encoder with random weights.
    assert m["embedding"]["eer"] < m["baselines"]["random_init"]["eer"] - 3.0, m


def test_second_repro_is_noop(project: Path, first_run: str):
    lock = (project / "dvc.lock").read_bytes()
    out = _run(["dvc", "repro"], project)
    assert not _stages_run(out), out  # only the raw-folder listings ran, and found nothing new
    assert (project / "dvc.lock").read_bytes() == lock
    status = _run(["dvc", "status"], project)
    named = re.findall(r"^(\S+):$", status, flags=re.M)
    assert all(n.startswith("scan-") or n == "check" for n in named) and "changed outs" not in status, status


@pytest.fixture(scope="module")
def byol_run(project: Path, first_run: str) -> str:
    """`dvc exp run $(singer-ssl preset byol-laptop)` from the committed first run (ntxent, seed 123): a method
    switch, and the sweep's (byol, 123) run."""
    from singer_ssl.presets import overrides

    _run(["git", "add", "-A"], project)
    _run(["git", "commit", "-qm", "first run"], project)
    flags = overrides("byol-laptop", project / "params.yaml", project / "presets")
    return _run(["dvc", "exp", "run", *flags, "-S", "train.max_steps=120", "-S", "embed.invariance=null"], project)


def test_method_switch_reruns_only_the_training_half_and_byol_learns(project: Path, byol_run: str):
    """The BYOL preset changes only train-stage params: train, embed and evaluate re-run, nothing before them;
    `dvc metrics diff` shows the changed EER (`--all`: with the baselines; `dvc metrics show` within 120 columns);
    the trained BYOL encoder beats the random-init baseline on builtin-test."""
    assert _stages_run(byol_run) == {"train", "embed@builtin-test", "evaluate@builtin-test", "embed@builtin-ood",
                                     "evaluate@builtin-ood", "embed-train@builtin-train"}, byol_run
    diff = json.loads(_run(["dvc", "metrics", "diff", "--json"], project))
    changed = diff["metrics/builtin-test.json"]
    assert "eer" in changed and changed["eer"]["diff"] != 0
    # `--all` (the README's invocation) keeps the baselines, which a method switch may leave unchanged
    every = json.loads(_run(["dvc", "metrics", "diff", "--all", "--json"], project))["metrics/builtin-test.json"]
    assert {"eer", "random_init_eer", "mfcc_eer"} <= set(every)
    shown = _run(["dvc", "metrics", "show"], project)
    assert max(len(line) for line in shown.splitlines()) <= 120, shown
    m = json.loads((project / "metrics/builtin-test_details.json").read_text())
    hp = yaml.safe_load((project / "data/model/hyperparams.yaml").read_text())
    assert hp["loss"]["name"] == "byol" and hp["training"]["monitor"] == "eer"
    print(f"\nbyol-laptop 120 steps, builtin-test: EER {m['embedding']['eer']:.2f} vs random-init "
          f"{m['baselines']['random_init']['eer']:.2f} (versus: {m['versus']['random_init']})")
    assert m["embedding"]["eer"] < m["baselines"]["random_init"]["eer"] - 3.0, m


def test_two_methods_two_seeds_compare(project: Path, byol_run: str, tmp_path: Path):
    """A two-method x two-seed sweep and `singer-ssl compare` on it: four short experiments, (ntxent, byol-laptop)
    x seeds (123, 7). Each method's short runs form one row with n=2 whose mean equals that of the per-run metrics
    read straight from `dvc exp show --json`; the longer first run (ntxent, 123) and BYOL run (byol, 123) differ
    in more than the seed, so they are rows of their own (n=1), not a third seed."""
    from singer_ssl.compare import metric_value
    from singer_ssl.presets import overrides

    for preset in (None, "byol-laptop"):
        for seed in (123, 7):
            _run(["git", "checkout", "params.yaml"], project)  # the first run's config (exp run left the last one's)
            flags = overrides(preset, project / "params.yaml", project / "presets") if preset else []
            _run(["dvc", "exp", "run", *flags, "-S", f"seed={seed}", *SHORT], project)
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], project))
    exps_json = tmp_path / "exps.json"
    exps_json.write_text(json.dumps(shown))
    found: dict[tuple[str, int, int], dict] = {}  # (loss, seed, max_steps) -> metrics files
    for base in shown:
        entries = [base] + [st for rng in base.get("experiments") or [] for st in rng["revs"]]
        for st in entries:
            p = (st.get("data") or {}).get("params", {}).get("params.yaml", {}).get("data")
            if p and st["data"].get("metrics"):
                found.setdefault((p["loss"], p["seed"], p["train"]["max_steps"]), st["data"]["metrics"])
    assert set(found) == {(loss, seed, 4) for loss in ("ntxent", "byol") for seed in (123, 7)} | {
        ("ntxent", 123, 80), ("byol", 123, 120)}, sorted(found)
    out = _run([sys.executable, "-m", "singer_ssl.cli", "compare", "--exps", str(exps_json),
                "--plot", str(tmp_path / "cmp.png")], project)
    assert (tmp_path / "cmp.png").stat().st_size > 0
    for dataset in ("builtin-test", "builtin-ood"):
        table = out.split(f"### {dataset}")[1].split("###")[0]
        rows = {ln.split("|")[1].strip(): [c.strip() for c in ln.strip("|").split("|")]
                for ln in table.splitlines() if ln.startswith("| ") and "n seeds" not in ln}
        assert len(rows) == 4, table
        for loss, long_steps in (("ntxent", 80), ("byol", 120)):
            (short,) = [m for m in rows if m.startswith(f"{loss} / audiontt2020 [") and "train.max_steps=4" in m]
            (long,) = [m for m in rows if m.startswith(f"{loss} / audiontt2020 [") and
                       f"train.max_steps={long_steps}" in m]
            assert rows[short][1] == "2" and rows[long][1] == "1", table  # n seeds
            eers = [metric_value(found[(loss, s, 4)][f"metrics/{dataset}.json"]["data"], "eer") for s in (123, 7)]
            assert rows[short][2].split(" ± ")[0] == f"{sum(eers) / 2:.2f}", (rows[short], eers)
        assert "not comparable" not in table
    exps = _run([sys.executable, "-m", "singer_ssl.cli", "exps", "--exps", str(exps_json)], project)
    assert max(len(line) for line in exps.splitlines()) <= 120, exps
