"""Stage `embed-train`: embed every segment of a training dataset with the trained encoder and the baselines.

    python stages/embed_train.py <dataset> <model dir> <features.h5> <segments dir> <out.h5> [--params FILE]

The same embedding code and file layout as the embed stage (:mod:`singer_ssl.embed`, ``role="train"``: no
16 kHz copy, no invariance report). The evaluate stage takes the per-singer means of these embeddings as the
score-normalisation cohort and the validation singers' pairs as calibration trials
(:mod:`singer_ssl.evaluation.normalised`). dvc.yaml: ``python stages/embed_train.py <key> data/model
data/features/train/<key>.h5 data/segments/train/<key> data/embeddings/train/<key>.h5``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/embed_train.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.embed import EmbedConfig, run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = EmbedConfig.from_params(load_params(args.params), args.dataset, role="train")
    return run(cfg, args.features, args.segments, args.model, args.out)


if __name__ == "__main__":
    sys.exit(stage_main("embed-train", main, ("dataset", "model", "features", "segments", "out"),
                        description=__doc__.split("\n\n")[0]))
