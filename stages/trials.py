"""Stage `trials`: verification trial pairs for one test dataset.

    python stages/trials.py <dataset> <manifest.csv> <listing.csv> <output .txt> [--params params.yaml]

Reads the dataset's ``manifest.csv``, its scan listing (byte-identical copies: ``duplicate_of``, kept out
of the trials), ``trials.{n_pairs, seed, cross_recording, external}`` and
the top-level ``seed`` (when ``trials.seed`` is null); writes one ``label,key1,key2`` line per trial
(Torres et al.'s format) atomically: the list ``trials.external.<dataset>`` names, validated, or a
generated one (see :mod:`singer_ssl.trials`).
dvc.yaml: ``python stages/trials.py <key> data/segments/test/<key>/manifest.csv data/listings/test/<key>.csv
data/trials/<key>.txt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/trials.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.scan import read_duplicates  # noqa: E402
from singer_ssl.trials import TrialsConfig, run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = TrialsConfig.from_params(load_params(args.params), args.dataset)
    return run(cfg, args.manifest, args.out, read_duplicates(args.listing))


if __name__ == "__main__":
    sys.exit(stage_main("trials", main, ("dataset", "manifest", "listing", "out"),
                        description=__doc__.split("\n\n")[0]))
