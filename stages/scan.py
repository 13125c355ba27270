"""Stage `scan`: the content listing of a raw dataset folder (the segment stage's dependency).

    python stages/scan.py <dataset> <dataset folder> <output listing.csv> [--params params.yaml]

Reads ``datasets.<role>.<dataset>`` (its layout); writes ``<output listing.csv>`` atomically: one
``path,bytes,md5,problem`` row per matching file and per unreadable entry (see :mod:`singer_ssl.scan`).
dvc.yaml: ``python stages/scan.py <key> <datasets.<role>.<key>.path> data/listings/<role>/<key>.csv``
(``always_changed``: DVC cannot hash a raw folder holding dangling links or loops).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/scan.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.scan import ScanConfig, run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = ScanConfig.from_params(load_params(args.params), args.dataset)
    return run(cfg, args.src, args.out)


if __name__ == "__main__":
    sys.exit(stage_main("scan", main, ("dataset", "src", "out"), description=__doc__.split("\n\n")[0]))
