"""Stage `check`: validate the whole params file before any other stage runs.

    python stages/check.py <output marker> [--params params.yaml]

Reads every section of ``params.yaml`` (:func:`singer_ssl.validate.validate_params`: unknown keys anywhere,
empty dataset roles, a dataset in both roles, every stage's typed config) and writes a one-line marker file
with fixed content, atomically. dvc.yaml: ``python stages/check.py data/check/params.ok``, ``always_changed``,
and every other stage depends on the marker, so a bad parameter stops ``dvc repro`` before any work while an
unchanged (fixed-content) marker re-runs nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/check.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.io import write_text  # noqa: E402
from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.validate import validate_params  # noqa: E402


def main(args: argparse.Namespace) -> str:
    validate_params(load_params(args.params), base=Path(args.params).resolve().parent)
    write_text(args.out, "params valid\n")
    return f"check: {args.params} valid"


if __name__ == "__main__":
    sys.exit(stage_main("check", main, ("out",), description=__doc__.split("\n\n")[0]))
