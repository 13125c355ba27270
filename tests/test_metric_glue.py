"""Glue between stages: one number, read at every boundary it crosses, is the same number.

On the committed metrics files (the evaluate stage's pair ``metrics/<set>.json`` + ``metrics/<set>_details.json``):
the headline file holds the details' numbers; ``dvc metrics show`` reads the headline numbers; ``singer-ssl
summary`` prints the details' numbers; ``singer-ssl compare`` and ``singer-ssl exps`` on a ``dvc exp show`` of
that workspace print the same numbers; the details' ``versus`` block agrees with its own EERs. Each expected
string is re-derived here from the JSON with Python's formatting, not with the code under test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from singer_ssl.cli import main
from singer_ssl.evaluation.run import HEADLINE, headline

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
TEST_SETS = sorted(PARAMS["datasets"]["test"])


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


HEAD = {ds: _json(ROOT / "metrics" / f"{ds}.json") for ds in TEST_SETS}
DETAILS = {ds: _json(ROOT / "metrics" / f"{ds}_details.json") for ds in TEST_SETS}


def _at(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("ds", TEST_SETS)
def test_headline_file_holds_the_details_numbers(ds):
    """metrics/<set>.json is exactly the flat copy of the details the evaluate stage writes (every HEADLINE key,
    in order, the same float; ``eer_norm`` only when the run normalised scores), and the details' paired
    differences agree with their own EERs."""
    head, d = HEAD[ds], DETAILS[ds]
    assert list(head) == list(headline(d)) and head == headline(d)
    optional = {"eer_norm"} if "eer_norm" not in d["embedding"] else set()
    assert list(head) == [k for k in HEADLINE if k not in optional]
    for key in head:
        assert head[key] == _at(d, HEADLINE[key]), key
    rinit = d["baselines"]["random_init"]
    assert rinit["eer"] == pytest.approx(sum(rinit["per_init"]["eer"]) / len(rinit["per_init"]["eer"]))
    for base in ("random_init", "mfcc"):
        v = d["versus"][base]
        lo, hi = v["eer_diff_ci95_singer"]
        assert v["eer_diff"] == pytest.approx(d["embedding"]["eer"] - d["baselines"][base]["eer"], abs=1e-9)
        assert v["beaten"] == (hi < 0) and lo <= v["eer_diff"] <= hi


def test_dvc_metrics_show_reads_the_headline_numbers():
    """`dvc metrics show --json` (the metrics dvc.yaml declares) returns the headline files' numbers."""
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc not installed")
    proc = subprocess.run([dvc, "metrics", "show", "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=3 * 3600)
    if proc.returncode != 0:
        pytest.skip(f"dvc metrics show failed here (not a DVC checkout?): {proc.stderr.strip()[-200:]}")
    shown = json.loads(proc.stdout)[""]["data"]
    assert {Path(p).stem: v["data"] for p, v in shown.items()} == HEAD


def test_summary_prints_the_details_numbers(capsys):
    """`singer-ssl summary --metrics metrics` prints each set's EER, its singer-level interval, minDCF, MNR, probe
    accuracy, both baselines and the paired differences: the details' numbers at the printed precision."""
    assert main(["summary", "--metrics", str(ROOT / "metrics")]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert sorted(lines) == TEST_SETS
    for ds in TEST_SETS:
        d, line = DETAILS[ds], lines[ds]
        e, base = d["embedding"], d["baselines"]
        lo, hi = e["eer_ci95_singer"]
        for piece in (f"EER {e['eer']:.2f}% [singer-level 95 % CI {lo:.2f}, {hi:.2f}]",
                      f"minDCF {e['min_dcf']:.3f}", f"MNR {e['mnr']:.2f}%", f"probe acc {d['probe']['acc']:.3f}",
                      f"random-init EER {base['random_init']['eer']:.2f}%", f"mfcc EER {base['mfcc']['eer']:.2f}%"):
            assert piece in line, (piece, line)
        for key, label in (("random_init", "random-init"), ("mfcc", "mfcc")):
            v = d["versus"][key]
            a, b = v["eer_diff_ci95_singer"]
            assert f"vs {label} {v['eer_diff']:+.2f} [{a:+.2f}, {b:+.2f}]" in line, line


def _exp_show(tmp_path: Path, head: dict[str, dict]) -> Path:
    """A `dvc exp show --json` of this workspace (params.yaml and the metrics DVC shows), dvc 3.x layout."""
    data = {"rev": "workspace", "timestamp": None, "params": {"params.yaml": {"data": PARAMS}},
            "metrics": {f"metrics/{ds}.json": {"data": m} for ds, m in head.items()}, "deps": {}, "outs": {},
            "meta": {}}
    path = tmp_path / "exps.json"
    path.write_text(json.dumps([{"rev": "workspace", "name": None, "data": data, "error": None,
                                 "experiments": None}]))
    return path


def test_compare_and_exps_print_the_headline_numbers(tmp_path: Path, capsys):
    """`singer-ssl compare` (one run: its mean is its value) and `singer-ssl exps` show the headline numbers."""
    exps = _exp_show(tmp_path, HEAD)
    assert main(["compare", "--exps", str(exps)]) == 0
    out = capsys.readouterr().out
    for ds in TEST_SETS:
        h = HEAD[ds]
        block = out.split(f"### {ds}\n", 1)[1].split("###", 1)[0]
        row = next(ln for ln in block.splitlines() if ln.startswith(f"| {PARAMS['loss']} / {PARAMS['encoder']} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1:3] == ["1", f"{h['eer']:.2f}"]
        assert cells[4:7] == [f"{h['mnr']:.2f}", f"{h['probe_acc']:.3f}", f"{h['random_init_eer']:.2f}"]
        assert f"baseline MFCC mean+std: EER {h['mfcc_eer']:.2f} %" in block
    assert main(["exps", "--exps", str(exps)]) == 0
    blocks = capsys.readouterr().out.strip().split("\n\n")
    for block in blocks:
        ds, header, row = block.splitlines()
        values = dict(zip(header.split(), row.split()))
        h = HEAD[ds]
        assert values["eer"] == f"{h['eer']:.2f}" and values["mnr"] == f"{h['mnr']:.2f}"
        assert values["min_dcf"] == f"{h['min_dcf']:.3f}" and values["probe_acc"] == f"{h['probe_acc']:.3f}"
        assert values["random_init_eer"] == f"{h['random_init_eer']:.2f}"
        assert values["mfcc_eer"] == f"{h['mfcc_eer']:.2f}"
    assert sorted(b.splitlines()[0] for b in blocks) == TEST_SETS
