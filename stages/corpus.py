"""Stage `corpus`: synthesise the built-in multi-singer singing corpus.

    python stages/corpus.py [--params params.yaml] [--out data/raw]

Reads ``params.yaml`` section ``corpus`` (seed, n_train_singers, n_test_singers, songs_per_singer,
min_seconds, max_seconds, sample_rates, stereo_fraction, workers; see :mod:`singer_ssl.data.builtin_corpus`) and
writes ``<out>/builtin-train`` and ``<out>/builtin-test``, each atomically (built in a temporary
sibling, renamed when complete), each with ``singers.csv`` and ``corpus.json`` at its root. Same
params -> byte-identical files, whatever ``workers``. Prints a one-line summary; a bad parameter
exits with status 1 and a message naming it, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/corpus.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import ConfigError, load_params  # noqa: E402
from singer_ssl.data.builtin_corpus import CorpusConfig, generate_corpus  # noqa: E402


def summary_line(summary: dict, out: Path) -> str:
    """``corpus: builtin-train 24 singers, 144 songs (34.2 min); ... in 18.6 s -> data/raw``."""
    parts = [
        f"{name} {d['singers']} singers, {d['songs']} songs ({d['audio_seconds'] / 60:.1f} min)"
        for name, d in summary["datasets"].items()
    ]
    return f"corpus: {'; '.join(parts)} in {summary['seconds']:.1f} s -> {out}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="parameter file (section `corpus`)")
    ap.add_argument("--out", default="data/raw", type=Path, help="folder receiving the two datasets")
    args = ap.parse_args(argv)
    try:
        # Only `corpus` matters here: the other sections are validated by the stages that use them.
        params = load_params(args.params)
        config = CorpusConfig.from_dict(params.get("corpus") or {})
    except (ConfigError, TypeError) as e:
        print(f"corpus: {e}", file=sys.stderr)
        return 1
    summary = generate_corpus(args.out, config=config)
    print(summary_line(summary, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
