"""Stage `train`: train the SSL encoder chosen by `loss` and `encoder` on every training dataset.

    python stages/train.py                                   # one process (CPU or one GPU)
    torchrun --nproc_per_node=4 stages/train.py              # DDP on 4 GPUs (or CPU processes)

Reads params.yaml, data/features/train/*.h5 and data/segments/train/*/; writes data/model/
(model.pt, model.ts, hyperparams.yaml) atomically, checkpoints in data/checkpoints/ (a rerun with
the same parameters resumes from the last one) and dvclive logs in plots/train/.
A short run is one override away: dvc exp run -S loss=ge2e -S train.max_steps=3
"""

from __future__ import annotations

import sys

from singer_ssl.core.params import ConfigError, load_params
from singer_ssl.training.loop import NonFiniteLoss
from singer_ssl.training.run import train


def main(argv: list[str]) -> int:
    if argv:
        print("usage: python stages/train.py   (all settings come from params.yaml)", file=sys.stderr)
        return 2
    try:
        params = load_params()
        train(params, root=".")
    except (ConfigError, NonFiniteLoss) as err:
        print(f"train: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
