"""Stage `features`: log-mel features of one dataset's segments into one HDF5 file.

    python stages/features.py <dataset> <segment folder> <output .h5> [--params params.yaml]

Reads ``audio.sample_rate`` and ``features.*``, the segment folder's ``manifest.csv`` and wavs;
writes the HDF5 file atomically (``logmel`` (N, n_mels, T), ``key``/``singer``/``source``, attrs =
front-end params + dataset mean/std; see :mod:`singer_ssl.features`).
dvc.yaml: ``python stages/features.py <key> data/segments/<role>/<key> data/features/<role>/<key>.h5``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/features.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.features import FeaturesConfig, run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = FeaturesConfig.from_params(load_params(args.params), args.dataset)
    return run(cfg, args.segments, args.out)


if __name__ == "__main__":
    sys.exit(stage_main("features", main, ("dataset", "segments", "out"), description=__doc__.split("\n\n")[0]))
