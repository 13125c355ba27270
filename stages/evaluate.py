"""Stage `evaluate`: metrics and plots of one test dataset from its stored embeddings.

    python stages/evaluate.py <dataset> <embeddings.h5> <trials.txt> <metrics.json> <plots dir>
        [<training embeddings dir> <model dir>] [--params FILE]

Reads ``evaluate.*`` (with ``probe`` and ``tsne``), the embedding file and the trial list; writes the
metrics JSON and the plot files (ROC/DET curves, score histogram, t-SNE, probe confusion, per-singer
mean embeddings), all computed and validated before the first file is written (see
:mod:`singer_ssl.evaluation.run`). With the embed-train stage's folder and the model folder (its
``threshold.json`` names the validation singers) also S-norm/AS-norm and calibrated scores
(:mod:`singer_ssl.evaluation.normalised`). dvc.yaml: ``python stages/evaluate.py <key>
data/embeddings/<key>.h5 data/trials/<key>.txt metrics/<key>.json plots/<key> data/embeddings/train
data/model``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/evaluate.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.evaluation.run import EvaluateConfig, run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = EvaluateConfig.from_params(load_params(args.params), args.dataset)
    return run(cfg, args.embeddings, args.trials, args.metrics, args.plots, args.train_embeddings, args.model)


if __name__ == "__main__":
    sys.exit(stage_main("evaluate", main, ("dataset", "embeddings", "trials", "metrics", "plots"),
                        description=__doc__.split("\n\n")[0], optional=("train_embeddings", "model")))
