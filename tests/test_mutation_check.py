"""scripts/mutation_check.py on a tiny fake repository (the real list is a developer tool, never run by tests).

The fake repository holds one module and one test of it: a mutation the test notices is killed, one it cannot
notice survives (exit status 1), a snippet that is not in the file is an error, and the original file is back
after each mutation (the next one sees it unchanged).
"""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
mc = importlib.util.module_from_spec(spec)
sys.modules["mutation_check"] = mc  # dataclasses look their module up there
spec.loader.exec_module(mc)


def _fake_repo(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "m.py").write_text("def add_one(x):\n    return x + 1\n\n\ndef unused(x):\n    return x * 2\n")
    (root / "tests").mkdir()
    (root / "tests" / "test_m.py").write_text("from pkg.m import add_one\n\n\ndef test_add_one():\n"
                                              "    assert add_one(1) == 2\n")
    return root


def _entry(mid: str, original: str, replacement: str) -> dict:
    return {"id": mid, "file": "pkg/m.py", "original": original, "replacement": replacement,
            "tests": ["tests/test_m.py"], "why": mid}


def test_killed_survived_and_error(tmp_path: Path):
    repo = _fake_repo(tmp_path / "repo")
    listing = tmp_path / "mutations.yaml"
    listing.write_text(yaml.safe_dump([
        _entry("off-by-one", "return x + 1", "return x + 2"),
        _entry("untested", "return x * 2", "return x * 3"),
        _entry("missing", "return x - 1", "return x"),
        _entry("after-restore", "return x + 1", "return x - 1"),  # sees the original again
    ]))
    out = io.StringIO()
    results = mc.check(mc.load_mutations(listing), repo, out=out)
    assert results == {"off-by-one": "killed", "untested": "survived", "missing": "error", "after-restore": "killed"}
    text = out.getvalue()
    assert "baseline: 1 listed tests pass unmutated" in text and "score: 2/4 mutations killed" in text
    assert "occurs 0 times in pkg/m.py" in text
    assert (repo / "pkg" / "m.py").read_text().count("return x + 1") == 1  # the repository itself is never touched
    assert mc.main(["--list", str(listing), "--repo", str(repo), "--only", "off-by-one"]) == 0
    assert mc.main(["--list", str(listing), "--repo", str(repo), "--only", "untested", "--no-baseline"]) == 1


def test_failing_baseline_and_bad_lists(tmp_path: Path, capsys):
    repo = _fake_repo(tmp_path / "repo")
    (repo / "tests" / "test_m.py").write_text("def test_broken():\n    assert False\n")
    listing = tmp_path / "m.yaml"
    listing.write_text(yaml.safe_dump([_entry("off-by-one", "return x + 1", "return x + 2")]))
    out = io.StringIO()
    assert mc.check(mc.load_mutations(listing), repo, out=out) == {"off-by-one": "error"}
    assert "fail without any mutation" in out.getvalue()
    for bad, message in (([{"id": "x"}], "missing keys"), ({"a": 1}, "non-empty list"),
                         ([_entry("a", "x", "y"), _entry("a", "x", "z")], "duplicate ids")):
        listing.write_text(yaml.safe_dump(bad))
        with pytest.raises(mc.MutationListError, match=message):
            mc.load_mutations(listing)
        assert mc.main(["--list", str(listing), "--repo", str(repo)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: mutation_check: ")


def test_the_repository_list_is_well_formed():
    """Every listed snippet occurs exactly once in its file and every listed test file exists (no run)."""
    mutations = mc.load_mutations(ROOT / "scripts" / "mutations.yaml")
    assert len(mutations) >= 7
    for m in mutations:
        assert (ROOT / m.file).read_text(encoding="utf-8").count(m.original) == 1, m.id
        for t in m.tests:
            assert (ROOT / t.split("::")[0]).is_file(), (m.id, t)
