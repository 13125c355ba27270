"""Replay the hostile-input cases of tests/test_hostile.py and print README's reliability table.

    python scripts/hostile_report.py [--cases]

Each case (tests/test_hostile.py ``CASES``) runs in a fresh temporary folder and gives a verdict:
clean (skip recorded with its reason, or a one-line error naming the culprit; inputs byte-identical;
nothing stale), crash (a traceback instead of a one-line error), silent (bad input accepted without a
trace) or lost (an input modified, an output half-written or deleted). Prints a Markdown table of the
counts per group (``--cases``: also one line per case). The DVC-level replay (DVC's own hashing of
dataset folders, ``dvc status`` after editing an external trial list) is the slow test
``tests/test_hostile.py::test_dvc_hostile``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("clean", "crash", "silent", "lost")


def run_cases() -> list[tuple[str, str, str]]:
    """``[(group, case name, verdict)]`` for every case, in the order tests/test_hostile.py lists them."""
    sys.path.insert(0, str(ROOT))
    from tests.test_hostile import CASES

    out = []
    for c in CASES:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                verdict = c.run(Path(tmp))
            except Exception as err:  # noqa: BLE001 - the case's own helpers failed: count it as a crash
                verdict = f"crash: {type(err).__name__}: {err}"
        out.append((c.group, c.name, verdict))
    return out


def table(results: list[tuple[str, str, str]]) -> str:
    """Markdown table: one row per group and a total row, columns tried / clean / crash / silent / lost."""
    groups: dict[str, Counter] = {}
    for group, _, verdict in results:
        groups.setdefault(group, Counter())[verdict.split(":", 1)[0]] += 1
    lines = ["| cases | tried | " + " | ".join(KINDS) + " |", "|---|" + "---:|" * (len(KINDS) + 1)]
    total: Counter = Counter()
    for group, counts in groups.items():
        total.update(counts)
        lines.append(f"| {group} | {sum(counts.values())} | " + " | ".join(str(counts[k]) for k in KINDS) + " |")
    lines.append(f"| **all** | {sum(total.values())} | " + " | ".join(str(total[k]) for k in KINDS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", action="store_true", help="also print one line per case with its verdict")
    args = ap.parse_args(argv)
    results = run_cases()
    print(table(results))
    if args.cases:
        print()
        for group, name, verdict in results:
            print(f"- {group}: {name}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
