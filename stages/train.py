"""Stage `train`: train the SSL encoder chosen by `loss` and `encoder` on every training dataset.

    python stages/train.py <features dir> <segments dir> <model dir> <checkpoints dir> <plots dir> [--params P]
    torchrun --nproc_per_node=4 stages/train.py ...       # DDP on 4 GPUs (or CPU processes), same arguments

Reads ``seed``, ``loss``, ``losses.<loss>``, ``encoder``, ``encoders.<encoder>``, ``head``, ``augment``,
``train`` and ``datasets.train`` (:class:`singer_ssl.training.config.TrainConfig`), the features
``<features dir>/<name>.h5`` and segments ``<segments dir>/<name>/``; writes ``<model dir>`` (model.pt,
model.ts, hyperparams.yaml) atomically, ``<checkpoints dir>/last.pt`` (an interrupted run resumes
from it if params, data and code are unchanged), dvclive logs in ``<plots dir>`` (:mod:`singer_ssl.training.run`).
dvc.yaml: ``python stages/train.py data/features/train data/segments/train data/model data/checkpoints plots/train``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/train.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.training.config import TrainConfig  # noqa: E402
from singer_ssl.training.loop import NonFiniteLoss  # noqa: E402
from singer_ssl.training.run import run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = TrainConfig.from_params(load_params(args.params))
    try:
        return run(cfg, args.features, args.segments, args.model, args.checkpoints, args.plots)
    except NonFiniteLoss as err:  # a diverged run is the parameters' fault: one line, exit status 1
        raise ValueError(str(err)) from None


if __name__ == "__main__":
    sys.exit(stage_main("train", main, ("features", "segments", "model", "checkpoints", "plots"),
                        description=__doc__.split("\n\n")[0]))
