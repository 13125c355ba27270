"""Mutation check: does a listed source mutation make the tests that cover it fail?

    python scripts/mutation_check.py                         # every mutation of scripts/mutations.yaml
    python scripts/mutation_check.py --only beaten-lower-end crop-last-start
    python scripts/mutation_check.py --list my.yaml --repo /path/to/checkout --no-baseline

Copies the repository once into a temporary folder (the files ``git ls-files -co --exclude-standard`` lists:
tracked and untracked-but-not-ignored, so no ``data/`` or ``.venv``), checks that the listed tests pass there
unmutated (the baseline), then for each mutation replaces its ``original`` snippet (which must occur exactly once
in ``file``) by ``replacement``, runs ``python -m pytest -q -x <tests>`` in the copy and restores the file.
A mutation is *killed* when pytest reports failing tests (exit status 1), *survived* when they all pass (0) and
an *error* otherwise (snippet missing or ambiguous, collection error, interrupted run). Prints one line per
mutation and a score; the exit status is 0 only when every mutation was killed.

A developer tool (minutes: one pytest run per mutation); no test or CI job runs it on this repository.
The list format (``scripts/mutations.yaml``)::

    - id: beaten-lower-end                 # unique, short
      file: singer_ssl/evaluation/run.py   # relative to the repository root
      original: '"beaten": bool(hi < 0.0)' # exact text, once in the file
      replacement: '"beaten": bool(lo < 0.0)'
      tests: [tests/test_blind_spots.py::test_beaten_only_when_the_upper_bound_is_below_zero]
      why: beaten decided from the wrong end of the interval

The idea is DeMillo, Lipton & Sayward 1978 ("Hints on test data selection"); tools such as mutmut generate
mutations blindly, this list holds hand-picked ones that each name the behaviour a test must guard.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("id", "file", "original", "replacement", "tests", "why")
SKIP_DIRS = {".git", ".venv", ".dvc", "data", "__pycache__", ".pytest_cache", ".ruff_cache"}


class MutationListError(ValueError):
    """The mutation list is malformed (one line naming the entry and the problem)."""


@dataclass(frozen=True)
class Mutation:
    id: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    why: str = ""


def load_mutations(path: Path) -> list[Mutation]:
    """Parse and check the list: every entry has id, file, original, replacement and tests; ids are unique."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise MutationListError(f"{path}: cannot read the mutation list: {' '.join(str(err).split())}") from None
    if not isinstance(raw, list) or not raw:
        raise MutationListError(f"{path}: expected a non-empty list of mutations")
    out: list[Mutation] = []
    for n, entry in enumerate(raw):
        where = f"{path}: entry {n + 1}"
        if not isinstance(entry, dict):
            raise MutationListError(f"{where}: expected a mapping with keys {', '.join(KEYS)}")
        unknown = sorted(set(entry) - set(KEYS))
        missing = [k for k in KEYS[:5] if k not in entry]
        if unknown or missing:
            raise MutationListError(f"{where}: unknown keys {unknown}, missing keys {missing}; "
                                    f"valid: {', '.join(KEYS)}")
        tests = entry["tests"]
        if isinstance(tests, str):
            tests = [tests]
        if not tests or not all(isinstance(t, str) for t in tests):
            raise MutationListError(f"{where} ({entry['id']}): tests must be a non-empty list of pytest node ids")
        if entry["original"] == entry["replacement"]:
            raise MutationListError(f"{where} ({entry['id']}): replacement equals original")
        out.append(Mutation(str(entry["id"]), str(entry["file"]), str(entry["original"]), str(entry["replacement"]),
                            tuple(tests), str(entry.get("why", ""))))
    ids = [m.id for m in out]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise MutationListError(f"{path}: duplicate ids {dup}")
    return out


def repo_files(repo: Path) -> list[str]:
    """Files to copy: git's tracked and untracked-but-not-ignored ones, or (no git) everything outside SKIP_DIRS."""
    if (repo / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo, capture_output=True,
                                text=True, check=True).stdout.splitlines()
        return [f for f in listed if (repo / f).is_file()]
    return [str(p.relative_to(repo)) for p in repo.rglob("*")
            if p.is_file() and not SKIP_DIRS & set(p.relative_to(repo).parts)]


def copy_repo(repo: Path, dst: Path) -> None:
    for rel in repo_files(repo):
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)


def run_tests(copy: Path, tests: tuple[str, ...], extra: list[str]) -> tuple[int, str]:
    """``python -m pytest -q -x <tests>`` in ``copy`` (its own sources first on the path); (status, last line)."""
    env = {**os.environ, "PYTHONPATH": str(copy) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *extra, *tests],
                          cwd=copy, env=env, capture_output=True, text=True)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return proc.returncode, lines[-1] if lines else ""


def apply(copy: Path, m: Mutation) -> str:
    """Apply ``m`` in ``copy``; returns the original text of the file (to restore). MutationListError if the
    snippet is missing or ambiguous."""
    path = copy / m.file
    if not path.is_file():
        raise MutationListError(f"{m.id}: file {m.file} not found")
    text = path.read_text(encoding="utf-8")
    count = text.count(m.original)
    if count != 1:
        raise MutationListError(f"{m.id}: the original snippet occurs {count} times in {m.file} (needs exactly 1)")
    path.write_text(text.replace(m.original, m.replacement), encoding="utf-8")
    return text


def check(mutations: list[Mutation], repo: Path, *, baseline: bool = True, extra: list[str] | None = None,
          out=sys.stdout) -> dict[str, str]:
    """Run every mutation; returns ``{id: killed | survived | error}`` (and prints one line each)."""
    extra = list(extra or [])
    results: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mutation-check-") as tmp:
        copy = Path(tmp) / "repo"
        copy_repo(repo, copy)
        if baseline:
            tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
            status, last = run_tests(copy, tests, extra)
            if status != 0:
                print(f"baseline: the listed tests fail without any mutation ({last}); fix them first", file=out)
                return {m.id: "error" for m in mutations}
            print(f"baseline: {len(tests)} listed tests pass unmutated ({last})", file=out, flush=True)
        for m in mutations:
            try:
                text = apply(copy, m)
            except MutationListError as err:
                results[m.id] = "error"
                print(f"ERROR     {m.id}: {err}", file=out, flush=True)
                continue
            try:
                status, last = run_tests(copy, m.tests, extra)
            finally:
                (copy / m.file).write_text(text, encoding="utf-8")
            verdict = {1: "killed", 0: "survived"}.get(status, "error")
            results[m.id] = verdict
            print(f"{verdict.upper():9} {m.id}: {m.why or m.file} ({last})", file=out, flush=True)
    killed = sum(v == "killed" for v in results.values())
    print(f"score: {killed}/{len(results)} mutations killed", file=out)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/mutation_check.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", type=Path, default=ROOT / "scripts" / "mutations.yaml", help="the mutation list")
    ap.add_argument("--repo", type=Path, default=ROOT, help="repository to copy and mutate (default: this one)")
    ap.add_argument("--only", nargs="+", metavar="ID", help="run only these mutation ids")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the listed tests")
    ap.add_argument("--pytest-arg", action="append", default=[], metavar="ARG", help="extra pytest argument")
    args = ap.parse_args(argv)
    try:
        mutations = load_mutations(args.list)
        if args.only:
            unknown = sorted(set(args.only) - {m.id for m in mutations})
            if unknown:
                raise MutationListError(f"unknown mutation ids {unknown}; valid: {', '.join(m.id for m in mutations)}")
            mutations = [m for m in mutations if m.id in args.only]
    except MutationListError as err:
        print(f"error: mutation_check: {err}", file=sys.stderr)
        return 2
    results = check(mutations, args.repo.resolve(), baseline=not args.no_baseline, extra=args.pytest_arg)
    return 0 if all(v == "killed" for v in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
