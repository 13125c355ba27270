"""Stage `embed`: embed every segment of a test dataset once, plus the baselines.

    python stages/embed.py <test-dataset>

Reads data/model/ and data/features/test/<dataset>.h5 (and the segments' audio for waveform
encoders or embed.degrade_16k); writes data/embeddings/<dataset>.h5 atomically.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from singer_ssl.core.params import load_params, test_dataset
from singer_ssl.embed import embed_dataset


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python stages/embed.py <test-dataset>", file=sys.stderr)
        return 2
    name = argv[0]
    params = load_params()
    test_dataset(params, name, "embed")
    t0 = time.perf_counter()
    out = Path("data/embeddings") / f"{name}.h5"
    es = embed_dataset(
        features=Path("data/features/test") / f"{name}.h5",
        segments=Path("data/segments/test") / name,
        model_dir=Path("data/model"),
        out=out,
        seed=int(params.get("seed", 0)),
        **params.get("embed", {}),
    )
    dims = ", ".join(f"{k} {v.shape[1]}-d" for k, v in es.vectors.items())
    print(f"{name}: embedded {len(es.keys)} segments ({dims}) in {time.perf_counter() - t0:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (ValueError, FileNotFoundError) as err:  # ConfigError, bad trials/embeddings/model folder
        print(f"error: embed {' '.join(sys.argv[1:])}: {err}", file=sys.stderr)
        sys.exit(1)
