"""Stage `embed`: embed every segment of a test dataset once, plus the baselines.

    python stages/embed.py <dataset> <model folder> <features.h5> <segments folder> <out.h5> [--params params.yaml]

Reads ``seed`` and ``embed.{batch_size, device, degrade_16k, random_inits, invariance}``, the model folder,
the dataset's features file (and its segments' audio for waveform encoders, ``embed.degrade_16k`` or
``embed.invariance``); writes the
embedding file atomically (see :mod:`singer_ssl.embed`, layout in :mod:`singer_ssl.evaluation.store`).
dvc.yaml: ``python stages/embed.py <key> data/model data/features/test/<key>.h5 data/segments/test/<key>
data/embeddings/<key>.h5``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/embed.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.embed import EmbedConfig, run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = EmbedConfig.from_params(load_params(args.params), args.dataset)
    return run(cfg, args.features, args.segments, args.model, args.out)


if __name__ == "__main__":
    sys.exit(stage_main("embed", main, ("dataset", "model", "features", "segments", "out"),
                        description=__doc__.split("\n\n")[0]))
