"""Command line: ``singer-ssl embed|score|preset``.

    singer-ssl embed AUDIO_DIR --model MODEL_DIR --out FILE.h5
        Embed every audio file under AUDIO_DIR whose extension is in singer_ssl.core.audio.AUDIO_EXTENSIONS
        (the formats the pipeline reads). Files of any length: the average of the embeddings of their
        non-overlapping windows of the model's segment length, see singer_ssl.api. Keys are paths
        relative to AUDIO_DIR; the singer label is the first folder of that path (empty when flat).
    singer-ssl score TRIALS --embeddings FILE.h5 [--representation embedding]
        Print EER (%), its threshold, and minDCF for a trial list (Torres et al. 2023 csv or Kaldi format),
        scored as the evaluate stage scores it (singer_ssl.evaluation.verification).
    singer-ssl preset NAME [--params params.yaml] [--write]
        Print the `-S` overrides of a paper preset (presets/NAME.yaml), for
        `dvc exp run $(singer-ssl preset torres2023)`; with --write, merge it into params.yaml.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def audio_files(root: Path) -> list[Path]:
    """Every file under ``root`` (recursively, sorted) whose extension is in ``AUDIO_EXTENSIONS`` (any case)."""
    from singer_ssl.core.audio import AUDIO_EXTENSIONS

    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix[1:].lower() in AUDIO_EXTENSIONS)


def _cmd_embed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from singer_ssl.api import embed_waveforms, load_model, model_window
    from singer_ssl.core.audio import AUDIO_EXTENSIONS, AudioError, load_mono
    from singer_ssl.evaluation.store import EmbeddingSet, write_embeddings

    root = Path(args.audio_dir)
    if not root.is_dir():
        print(f"error: {root} is not a directory", file=sys.stderr)
        return 2
    files = audio_files(root)
    if not files:
        print(f"error: no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}", file=sys.stderr)
        return 2
    model = load_model(args.model, device=args.device)
    window = model_window(model)
    keys, singers, embs, skipped = [], [], [], []
    for f in tqdm(files, desc="embed", disable=args.quiet):
        try:
            x = load_mono(f, model.sample_rate)
        except AudioError as err:
            skipped.append((f, str(err)))
            continue
        embs.append(next(embed_waveforms(model, [x], window)))
        rel = f.relative_to(root).as_posix()
        keys.append(rel)
        singers.append(rel.split("/")[0] if "/" in rel else "")
    if not embs:
        print(f"error: none of the {len(files)} files could be read", file=sys.stderr)
        return 1
    write_embeddings(args.out, EmbeddingSet(keys, singers, keys, {"embedding": np.stack(embs)}),
                     attrs={"model_dir": str(args.model)})
    print(f"embedded {len(keys)} files -> {args.out}" + (f"; skipped {len(skipped)} unreadable" if skipped else ""))
    for f, why in skipped:
        print(f"  skipped {f}: {why}", file=sys.stderr)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from singer_ssl.evaluation.store import read_embeddings
    from singer_ssl.evaluation.verification import load_trials, score_trials

    es = read_embeddings(args.embeddings)
    if args.representation not in es.vectors:
        print(f"error: {args.embeddings} has no {args.representation!r}; available: {', '.join(es.vectors)}",
              file=sys.stderr)
        return 2
    es.check()
    trials = load_trials(es, args.trials)
    r = score_trials(es.vectors[args.representation], trials, p_target=args.p_target)
    print(f"trials {len(trials.labels)} (target {int(trials.labels.sum())})  EER {r.eer:.2f}%  "
          f"threshold {r.threshold:.4f}  minDCF(p={args.p_target}) {r.min_dcf:.4f}")
    return 0


def _cmd_preset(args: argparse.Namespace) -> int:
    from singer_ssl.presets import apply_preset, overrides

    if args.write:
        apply_preset(args.name, args.params)
        print(f"merged preset {args.name!r} into {args.params}")
    else:
        print(" ".join(overrides(args.name, args.params)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="singer-ssl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("embed", help="embed a folder of audio files with a trained model")
    e.add_argument("audio_dir")
    e.add_argument("--model", required=True, help="model folder (e.g. data/model)")
    e.add_argument("--out", required=True, help="output HDF5 file")
    e.add_argument("--device", default="auto")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_cmd_embed)
    s = sub.add_parser("score", help="EER/minDCF of a trial list on stored embeddings")
    s.add_argument("trials")
    s.add_argument("--embeddings", required=True)
    s.add_argument("--representation", default="embedding")
    s.add_argument("--p-target", type=float, default=0.01)
    s.set_defaults(func=_cmd_score)
    r = sub.add_parser("preset", help="print or apply a paper preset's parameter overrides")
    r.add_argument("name")
    r.add_argument("--params", default="params.yaml")
    r.add_argument("--write", action="store_true")
    r.set_defaults(func=_cmd_preset)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
