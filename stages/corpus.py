"""Stage `corpus`: synthesise the built-in multi-singer singing corpus.

    python stages/corpus.py <output folder> [--params params.yaml]

Reads ``corpus.*`` (see :mod:`singer_ssl.data.builtin_corpus`) and writes
``<output folder>/builtin-train``, ``<output folder>/builtin-test`` and the out-of-domain
``<output folder>/builtin-ood`` (Klatt synthesis, :mod:`singer_ssl.data.ood_corpus`), each
atomically, each with ``singers.csv`` and ``corpus.json`` at its root. Same params -> byte-identical files, whatever
``corpus.workers``. A bad parameter fails, naming it, before anything is written.
dvc.yaml: ``python stages/corpus.py data/raw``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/corpus.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import load_params  # noqa: E402
from singer_ssl.core.stage import stage_main  # noqa: E402
from singer_ssl.data.builtin_corpus import CorpusConfig, run  # noqa: E402


def main(args: argparse.Namespace) -> str:
    cfg = CorpusConfig.from_params(load_params(args.params))
    return run(cfg, args.out)


if __name__ == "__main__":
    sys.exit(stage_main("corpus", main, ("out",), description=__doc__.split("\n\n")[0]))
