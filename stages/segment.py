"""Stage `segment`: flatten a dataset into mono, resampled, fixed-length segments per singer.

    python stages/segment.py <dataset> <dataset folder> <output folder> [--params params.yaml]

Reads ``datasets.<role>.<dataset>`` (its layout), ``audio.sample_rate`` and
``segment.{seconds, remainder, silence_db, workers}``; writes ``<output folder>`` atomically:
``<singer>/<name>.wav``, ``manifest.csv``, ``skipped.csv`` (see :mod:`singer_ssl.segment`).
dvc.yaml: ``python stages/segment.py <key> <datasets.<role>.<key>.path> data/segments/<role>/<key>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/segment.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.segment import SegmentConfig, run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = SegmentConfig.from_params(load_params(args.params), args.dataset)
    return run(cfg, args.src, args.out)


if __name__ == "__main__":
    sys.exit(stage_main("segment", main, ("dataset", "src", "out"), description=__doc__.split("\n\n")[0]))
