"""Command line: singer-ssl embed|verify|score|preset|run|restore|compare|exps|summary (COMMAND --help for options).

    singer-ssl embed INPUT --model MODEL_DIR --out FILE
        INPUT is an audio file, a folder (every file under it whose extension is in
        singer_ssl.core.audio.AUDIO_EXTENSIONS, recursively) or a list file (any other file: one audio path
        per line, relative paths resolved against the list file's folder, blank lines and # comments
        ignored). Each file, of any length, is embedded as the mean of its non-overlapping windows of the
        model's segment length (singer_ssl.api). Keys: the path relative to a folder INPUT, the path as
        written in a list, the file name for one file. Singer label: the first folder of the key for a
        folder INPUT; otherwise (and for files directly in the folder) the name of the folder holding the
        file. The output format follows FILE's extension: .h5/.hdf5 (the pipeline's embedding store),
        .npz (arrays embedding (N, D), key, singer), .npy (the (N, D) matrix; keys and singers in
        FILE.keys.txt, "key<TAB>singer" per row), .txt/.ark.txt (Kaldi-style text, "key v1 v2 ... vD"
        per line; keys must hold no whitespace). The parent folder of FILE must exist. A folder is walked
        as the pipeline walks a dataset (hidden entries left out, links followed once) and files are
        skipped by the segment stage's whole-file rules (unreadable, empty, corrupt, truncated, NaN, digital
        silence, anti-phase channels, samples beyond +6 dBFS); every skip, unreadable folders included,
        is listed once on stderr and in FILE.skipped.csv (source,reason), and counted on the last line.
        Missing and unreadable files are found before the model is loaded. A clip shorter than the audio the
        model was trained on (its training views) is embedded with one warning naming it, also listed in
        FILE.notes.csv (source,note). Files are embedded in chunks through singer_ssl.api's embed_batch.
    singer-ssl verify A B --model MODEL_DIR [--threshold T] [--p-target P]
        Print the cosine score of two files' embeddings and the decision. With the calibration the train
        stage stored in MODEL_DIR/threshold.json (logistic regression on the held-out validation singers'
        pairs), also the log-likelihood ratio (natural log), and same singer when LLR >= log((1 - P) / P),
        the Bayes threshold at target prior P (default 0.01, the evaluation prior). Fallbacks: --threshold T
        on the cosine (overrides everything), else the stored EER threshold of the validation singers (a
        model folder without calibration). Both files are checked before the model is loaded.
        --score-norm snorm|asnorm scores the pair against the training singers' cohort the train stage stored
        (MODEL_DIR/cohort.json; singer_ssl.evaluation.backend) and decides with that score's calibration.
    singer-ssl score TRIALS --embeddings FILE.h5 [--representation embedding]
        Print EER (%), its threshold, and minDCF for a trial list (Torres et al. 2023 csv or Kaldi format),
        scored as the evaluate stage scores it (singer_ssl.evaluation.verification).
    singer-ssl preset NAME [--params params.yaml] [--write] | singer-ssl preset --list
        Print the -S overrides of a paper preset (presets/NAME.yaml), for
        dvc exp run $(singer-ssl preset torres2023); with --write, merge it into params.yaml.
    singer-ssl run [-S KEY=VALUE ...] [--preset NAME] [--queue] [--name NAME] [--check]
        dvc exp run with the overrides checked first against every stage's parameter checks (unknown keys
        with the closest valid one, unknown loss/encoder/preset names with the valid ones, wrong types;
        each value of a sweep such as -S loss=ntxent,dcl -S seed=range(1,4)): a bad override changes
        nothing. A failed or interrupted run leaves params.yaml byte-identical. Refused while another DVC
        process or singer-ssl run holds the repository; queue instead (--queue, then dvc queue start).
        --check only checks. (singer_ssl.experiment)
    singer-ssl restore
        Bring back the last committed state after any experiment or failure: params.yaml, dvc.lock, metrics/
        and plots/ from git's HEAD (a modified params.yaml is kept under .dvc/tmp/singer-ssl-restore/), then
        dvc checkout --force for the cached outputs (data/model, ...).
    singer-ssl compare [--exps FILE.json] [--reference LOSS] [--metric eer] [--plot FILE.png]
        Per test dataset, a Markdown table of the experiments DVC stores (dvc exp show --json, or FILE),
        grouped by (loss, encoder): mean ± std over seeds, 95 % t-interval, and the paired difference to
        the reference method over common seeds (singer_ssl.compare); the baselines beside them. --plot
        also draws it (.png, .svg, .pdf): means with intervals, random-init and MFCC baselines.
    singer-ssl exps [--exps FILE.json]
        The recommended table: one line per experiment DVC stores (loss, encoder, seed, steps, flags, EER,
        minDCF, MNR, probe accuracy, random-init and MFCC EER), per test dataset, within 120 columns; flags
        mark runs whose steps (s), training data (d) or test set (t) differ from most. Read live, the
        workspace row is left out while a run is in progress or when its metrics predate its params.yaml.
    singer-ssl summary [--metrics DIR]
        One line per test dataset of DIR (metrics/<dataset>_details.json: EER with its singer-level
        interval, minDCF, MNR, probe, random-init and MFCC EER), also after dvc repro restored evaluate
        from the cache.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from singer_ssl.core.allocator import keep_large_allocations

#: files read per ``embed_batch`` call of ``singer-ssl embed``
EMBED_CHUNK = 32
#: output extensions of ``embed`` -> format name
OUT_FORMATS = {".h5": "hdf5", ".hdf5": "hdf5", ".npz": "npz", ".npy": "npy", ".txt": "kaldi"}


class CliError(ValueError):
    """A bad command-line input: printed as one ``error:`` line, exit status 2."""


def audio_files(root: Path, problems: list[tuple[str, str]] | None = None) -> list[Path]:
    """The audio files under ``root`` as the pipeline's walk finds them (:func:`singer_ssl.data.layouts.walk_audio`:
    sorted, hidden entries left out, dangling links kept so that reading them reports them); folders that
    cannot be read are appended to ``problems`` as ``(relpath, reason)``."""
    from singer_ssl.data.layouts import walk_audio

    rels, bad = walk_audio(root)
    if problems is not None:
        problems.extend(bad)
    return [root / rel for rel in rels]


def is_audio_path(path: Path) -> bool:
    """Whether ``path``'s extension is one the pipeline reads (``AUDIO_EXTENSIONS``, any case)."""
    from singer_ssl.core.audio import AUDIO_EXTENSIONS

    return path.suffix[1:].lower() in AUDIO_EXTENSIONS


def embed_inputs(source: Path, problems: list[tuple[str, str]] | None = None) -> list[tuple[Path, str, str]]:
    """``(file, key, singer)`` rows of an ``embed`` INPUT (a file, a folder or a list file; module docstring);
    unreadable folders of a folder INPUT are appended to ``problems``."""
    if source.is_dir():
        rows = []
        for f in audio_files(source, problems):
            key = f.relative_to(source).as_posix()
            rows.append((f, key, key.split("/")[0] if "/" in key else source.resolve().name))
        if not rows:
            raise CliError(f"no audio files under {source}")
        return rows
    if not source.is_file():
        raise CliError(f"{source} does not exist")
    if is_audio_path(source):
        return [(source, source.name, source.resolve().parent.name)]
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"{source} is neither audio nor a readable list of paths ({err})") from None
    rows = []
    for line in lines:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            f = Path(entry) if os.path.isabs(entry) else source.parent / entry
            rows.append((f, entry, f.resolve().parent.name))
    if not rows:
        raise CliError(f"the list {source} names no files")
    return rows


def output_format(out: Path) -> str:
    """The format of an ``embed`` output path from its extension; CliError for a path that cannot be written."""
    if out.is_dir():
        raise CliError(f"--out {out} is a folder; give a file name")
    name = out.name.lower()
    fmt = "kaldi" if name.endswith(".ark.txt") else OUT_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise CliError(f"--out {out}: unknown extension; use one of .h5 .hdf5 .npz .npy .txt .ark.txt")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"--out {out}: folder {parent} does not exist (create it first)")
    if not os.access(parent, os.W_OK):
        raise CliError(f"--out {out}: folder {parent} is not writable")
    return fmt


def write_output(out: Path, fmt: str, keys: list[str], singers: list[str], embs: np.ndarray,
                 model_dir: str) -> None:
    """Write ``embs`` (N, D) with their keys in ``fmt`` (module docstring), atomically."""
    from singer_ssl.core.io import atomic_path, write_text

    if fmt == "hdf5":
        from singer_ssl.evaluation.store import EmbeddingSet, write_embeddings

        write_embeddings(out, EmbeddingSet(keys, singers, keys, {"embedding": embs}), attrs={"model_dir": model_dir})
    elif fmt == "npz":
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, embedding=embs.astype(np.float32), key=np.array(keys), singer=np.array(singers))
    elif fmt == "npy":
        with atomic_path(out) as tmp, open(tmp, "wb") as fh:
            np.save(fh, embs.astype(np.float32))
        write_text(Path(f"{out}.keys.txt"), "".join(f"{k}\t{s}\n" for k, s in zip(keys, singers)))
    else:
        write_text(out, "".join(f"{k} {' '.join(f'{v:.8g}' for v in row)}\n" for k, row in zip(keys, embs)))


def _cmd_embed(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from singer_ssl.api import load_model
    from singer_ssl.core.audio import AudioError, load_mono
    from singer_ssl.core.errors import NonFiniteError
    from singer_ssl.core.io import write_csv

    out = Path(args.out)
    fmt = output_format(out)
    problems: list[tuple[str, str]] = []
    rows = embed_inputs(Path(args.input), problems)
    if fmt == "kaldi":
        bad = next((k for _, k, _ in rows if any(c.isspace() for c in k)), None)
        if bad is not None:
            raise CliError(f"key {bad!r} contains whitespace, which Kaldi-style text cannot hold; write .h5 or .npz")
    skipped = list(problems)
    present = []
    for row in rows:  # before the model loads: a missing or unreadable file costs no model load
        why = unreadable(row[0])
        if why:
            skipped.append((row[1], why))
        else:
            present.append(row)
    model = load_model(args.model, device=args.device) if present else None
    keys, singers, embs, notes = [], [], [], []
    chunk: list[tuple[np.ndarray, str, str]] = []

    def flush() -> None:
        if chunk:
            try:
                embs.append(model.embed_batch([x for x, _, _ in chunk], model.sample_rate,
                                              names=[k for _, k, _ in chunk], notes=notes))
            except NonFiniteError as err:  # no NaN/inf embedding is ever written
                raise CliError(f"{err} (nothing written to {out})") from None
            keys.extend(k for _, k, _ in chunk)
            singers.extend(s for _, _, s in chunk)
            chunk.clear()

    for f, key, singer in tqdm(present, desc="embed", disable=args.quiet):
        try:  # the segment stage's whole-file skip rules (strict), then the model's windowed mean
            x = load_mono(f, model.sample_rate, strict=True)
        except AudioError as err:
            skipped.append((key, err.reason))
            continue
        if len(x) < model.min_samples:  # the encoder cannot embed it: a recorded skip, not an error
            skipped.append((key, f"{len(x) / model.sample_rate:.3f} s is shorter than the encoder's minimum input "
                                 f"({model.min_samples} samples)"))
            continue
        chunk.append((x, key, singer))
        if len(chunk) == EMBED_CHUNK:
            flush()
    flush()
    for key, why in skipped:
        print(f"skipped {key}: {why}", file=sys.stderr)
    report = Path(f"{out}.skipped.csv")
    write_csv(report, ("source", "reason"), skipped)  # always written: no stale report of an earlier run
    write_csv(Path(f"{out}.notes.csv"), ("source", "note"), notes)
    if not embs:
        print(f"error: none of the {len(rows)} files could be used (reasons in {report})", file=sys.stderr)
        return 1
    write_output(out, fmt, keys, singers, np.concatenate(embs), str(args.model))
    print(f"embedded {len(keys)} files -> {out}"
          + (f"; skipped {len(skipped)} unreadable or unusable (reasons in {report})" if skipped else "")
          + (f"; {len(notes)} short clip(s) noted in {out}.notes.csv" if notes else ""))
    return 0


def unreadable(path: Path) -> str:
    """Why ``path`` cannot be read as a file ("" when it can), worded as the reader's skips (``unreadable: ...``):
    checked before any model is loaded."""
    if not path.exists():
        return "unreadable: no such file" + (" (dangling link)" if path.is_symlink() else "")
    if not path.is_file():
        return "unreadable: not a file"
    if not os.access(path, os.R_OK):
        return "unreadable: permission denied"
    return ""


def _cmd_verify(args: argparse.Namespace) -> int:
    from singer_ssl.api import load_model
    from singer_ssl.evaluation.backend import bayes_threshold, normalize_pair
    from singer_ssl.model.folder import COHORT_FILE, THRESHOLD_FILE, read_cohort, read_threshold

    for f in (args.a, args.b):  # before the model loads: a missing file costs no model load
        why = unreadable(Path(f))
        if why:
            raise CliError(f"{f}: {why}")
    if not 0.0 < args.p_target < 1.0:
        raise CliError(f"--p-target: expected a probability in (0, 1), got {args.p_target}")
    if args.threshold is not None and args.score_norm != "none":
        raise CliError("--threshold is a cosine threshold; it cannot be combined with --score-norm")
    stored = read_threshold(args.model) if args.threshold is None else None
    where = Path(args.model) / THRESHOLD_FILE
    norm = None
    if args.score_norm != "none":  # S-norm / AS-norm against the folder's training-singer cohort
        found = read_cohort(args.model)
        cal = ((stored or {}).get("calibration_norm") or {}).get(args.score_norm)
        if found is None or not cal:
            raise CliError(f"--score-norm {args.score_norm}: {args.model} stores no {COHORT_FILE} with its "
                           f"calibration (a model folder from before cohorts were stored); use --score-norm none")
        norm = (found, cal)
    model = load_model(args.model, device=args.device)
    a, b = model.embed_file(args.a), model.embed_file(args.b)
    score = float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
    if not np.isfinite(score):  # finite embeddings whose norms overflow float32
        raise CliError(f"the score of {args.a} and {args.b} is {score} (embedding norms overflow); no decision")
    print(f"score {score:.4f}")
    cal = (stored or {}).get("calibration") or {}
    if norm is not None:
        (cohort, mean), cal = norm
        score = normalize_pair(a, b, cohort, mean, args.score_norm, int(cal.get("top_n", 100)))
        print(f"{args.score_norm} score {score:.4f} (cohort of {len(cohort)} training singers)")
    if "scale" in cal and "offset" in cal:  # the calibrated decision
        llr = float(cal["scale"]) * score + float(cal["offset"])
        at = bayes_threshold(args.p_target)
        print(f"llr {llr:.3f}")
        print(f"{'same singer' if llr >= at else 'different singers'} (LLR {llr:.3f} vs Bayes threshold {at:.3f} at "
              f"p_target {args.p_target:g}; calibration from {where}, fitted on "
              f"{stored.get('source', 'validation data')})")
        return 0
    if args.threshold is not None:
        threshold, origin = args.threshold, "--threshold"
    elif stored is not None:  # the documented fallback: the validation singers' EER threshold
        threshold = stored["eer_threshold"]
        origin = (f"{where}: EER {float(stored.get('eer', float('nan'))):.2f}% on "
                  f"{stored.get('source', 'validation data')}")
    else:
        print(f"no decision: {args.model} stores no EER threshold (no {THRESHOLD_FILE}: a model folder from "
              "before thresholds were stored, or trained without validation singers); pass --threshold, e.g. "
              "embedding.eer_threshold of metrics/<dataset>_details.json")
        return 0
    verdict = "same singer" if score >= threshold else "different singers"
    print(f"{verdict} (threshold {threshold:.4f} from {origin})")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from singer_ssl.core.errors import NonFiniteError
    from singer_ssl.evaluation.store import read_embeddings
    from singer_ssl.evaluation.verification import load_trials, score_trials

    es = read_embeddings(args.embeddings)
    if args.representation not in es.vectors:
        raise CliError(f"{args.embeddings} has no {args.representation!r}; available: {', '.join(es.vectors)}")
    es.check(args.embeddings)
    trials = load_trials(es, args.trials)
    try:
        r = score_trials(es.vectors[args.representation], trials, p_target=args.p_target)
    except NonFiniteError as e:
        raise NonFiniteError(f"{args.embeddings}: {e}") from None
    print(f"trials {len(trials.labels)} (target {int(trials.labels.sum())})  EER {r.eer:.2f}%  "
          f"threshold {r.threshold:.4f}  minDCF(p={args.p_target}) {r.min_dcf:.4f}")
    return 0


def _cmd_preset(args: argparse.Namespace) -> int:
    from singer_ssl.presets import apply_preset, available, overrides, summary

    if args.list:
        names = available()
        width = max(map(len, names), default=0)
        print("\n".join(f"{name:<{width}}  {summary(name)}".rstrip() for name in names))
        return 0
    if args.name is None:
        raise CliError("preset: give a preset NAME or --list")
    if args.write:
        apply_preset(args.name, args.params)
        print(f"merged preset {args.name!r} into {args.params}")
    else:
        print(" ".join(overrides(args.name, args.params)))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from singer_ssl.core.params import load_params
    from singer_ssl.experiment import check_overrides, run_experiment

    if args.check:
        texts = list(args.set)
        if args.preset is not None:
            from singer_ssl.presets import overrides

            texts = overrides(args.preset)[1::2] + texts
        trees = check_overrides(load_params(), texts)
        print(f"ok: {len(trees)} experiment(s), every parameter valid"
              + (f": -S {' -S '.join(texts)}" if texts else ""))
        return 0
    return run_experiment(args.set, preset=args.preset, queue=args.queue, name=args.name)


def _cmd_restore(args: argparse.Namespace) -> int:
    from singer_ssl.experiment import restore

    print("\n".join(restore()))
    return 0


def _runs(exps: str | None) -> tuple[list, list[str]]:
    """The experiments of ``--exps FILE`` or, live, of ``dvc exp show`` here without a stale workspace row."""
    from singer_ssl.compare import drop_stale_workspace, load_exp_show, runs_from_exp_show

    runs, skipped = runs_from_exp_show(load_exp_show(exps))
    return (runs if exps is not None else drop_stale_workspace(runs, skipped)), skipped


def _cmd_compare(args: argparse.Namespace) -> int:
    from singer_ssl.compare import compare, format_table, plot

    runs, skipped = _runs(args.exps)
    tables = compare(runs, metric=args.metric, reference=args.reference)
    print("\n".join(format_table(t, args.metric) for t in tables), end="")
    if skipped:
        print(f"\nleft out (queued, failed or without metrics): {', '.join(skipped)}")
    if args.plot:
        plot(tables, args.metric, args.plot)
        print(f"plot -> {args.plot}")
    return 0


def _cmd_exps(args: argparse.Namespace) -> int:
    from singer_ssl.compare import exps_table

    runs, skipped = _runs(args.exps)
    print(exps_table(runs), end="")
    if skipped:
        print(f"\nleft out (queued, failed or without metrics): {', '.join(skipped)}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from singer_ssl.compare import summary

    print("\n".join(summary(args.metrics)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``singer-ssl`` argument parser (every option has a help text)."""
    p = argparse.ArgumentParser(prog="singer-ssl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    device = {"default": "auto", "help": "auto (CUDA when available), cpu, cuda or cuda:N (default: auto)"}
    e = sub.add_parser("embed", help="embed an audio file, a folder or a list of files with a trained model",
                       description="Embed audio files with a trained model (see singer-ssl --help for keys, "
                                   "singer labels and output formats).")
    e.add_argument("input", help="an audio file, a folder of audio files, or a text file listing one path per line")
    e.add_argument("--model", required=True, help="model folder written by the train stage (e.g. data/model)")
    e.add_argument("--out", required=True,
                   help="output file; its extension picks the format: .h5/.hdf5, .npz, .npy, .txt/.ark.txt "
                        "(Kaldi-style text); its folder must exist")
    e.add_argument("--device", **device)
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_embed)
    v = sub.add_parser("verify", help="cosine score of two recordings (and the decision when a threshold is known)")
    v.add_argument("a", help="first audio file")
    v.add_argument("b", help="second audio file")
    v.add_argument("--model", required=True, help="model folder written by the train stage (e.g. data/model)")
    v.add_argument("--threshold", type=float, default=None,
                   help="decision threshold on the cosine score (e.g. embedding.eer_threshold of "
                        "metrics/<dataset>_details.json); "
                        "default: the EER threshold stored in the model folder's threshold.json")
    v.add_argument("--p-target", type=float, default=0.01,
                   help="target prior of the Bayes decision on the calibrated LLR (default: 0.01, the evaluation "
                        "prior evaluate.p_target); used when the model folder stores a calibration")
    v.add_argument("--score-norm", choices=("none", "snorm", "asnorm"), default="none",
                   help="score the pair with S-norm or AS-norm against the training singers' cohort stored in the "
                        "model folder (cohort.json) and decide with its own calibration (default: none, the cosine)")
    v.add_argument("--device", **device)
    v.set_defaults(func=_cmd_verify)
    s = sub.add_parser("score", help="EER/minDCF of a trial list on stored embeddings")
    s.add_argument("trials", help="trial list: Torres et al. 2023 csv (label,enroll,test) or Kaldi "
                                  "(enroll test target|nontarget)")
    s.add_argument("--embeddings", required=True, help="HDF5 embedding file (from singer-ssl embed or the pipeline)")
    s.add_argument("--representation", default="embedding",
                   help="matrix to score, e.g. embedding or projection (default: embedding)")
    s.add_argument("--p-target", type=float, default=0.01, help="target prior of minDCF (default: 0.01)")
    s.set_defaults(func=_cmd_score)
    r = sub.add_parser("preset", help="list, print or apply a paper preset's parameter overrides")
    r.add_argument("name", nargs="?", default=None, help="preset name (see --list)")
    r.add_argument("--list", action="store_true",
                   help="print the available presets, one per line: name, paper, description")
    r.add_argument("--params", default="params.yaml",
                   help="params file to compare with or write (default: params.yaml)")
    r.add_argument("--write", action="store_true", help="merge the preset into --params instead of printing it")
    r.set_defaults(func=_cmd_preset)
    u = sub.add_parser("run", help="dvc exp run with the -S overrides checked first; params.yaml kept on failure")
    u.add_argument("-S", "--set-param", dest="set", action="append", default=[], metavar="KEY=VALUE",
                   help="override as in dvc exp run -S (repeatable): key=value, +key=value adds a key, ~key deletes")
    u.add_argument("--preset", default=None, help="apply a paper preset's overrides first (singer-ssl preset --list)")
    u.add_argument("--queue", action="store_true",
                   help="queue the experiment (dvc exp run --queue) instead of running it; run the queue with "
                        "dvc queue start [-j N]")
    u.add_argument("--name", "-n", default=None, help="experiment name (dvc exp run --name)")
    u.add_argument("--check", action="store_true", help="only check the overrides; run nothing")
    u.set_defaults(func=_cmd_run)
    b = sub.add_parser("restore", help="bring back the last committed params.yaml, dvc.lock, metrics/, plots/ and "
                                       "DVC outputs (after a failed or finished experiment)")
    b.set_defaults(func=_cmd_restore)
    c = sub.add_parser("compare", help="compare SSL methods over the experiments DVC stores (mean, intervals, "
                                       "paired differences over seeds)")
    c.add_argument("--exps", default=None,
                   help="JSON written by dvc exp show --json (default: run it in the current folder)")
    c.add_argument("--reference", default=None,
                   help="method the paired differences are taken to: a loss name or 'loss / encoder' "
                        "(default: ntxent when present, else the first method alphabetically)")
    c.add_argument("--metric", default="eer",
                   help="metric compared: a key of metrics/<dataset>.json (eer, min_dcf, mnr, probe_acc, "
                        "random_init_eer, mfcc_eer; default: eer)")
    c.add_argument("--plot", default=None,
                   help="also write the table as a figure (.png, .svg or .pdf): means with 95 %% intervals per "
                        "method, random-init and MFCC baselines")
    c.set_defaults(func=_cmd_compare)
    x = sub.add_parser("exps", help="one line per DVC experiment: loss, encoder, seed, headline metrics "
                                    "(within 120 columns)")
    x.add_argument("--exps", default=None,
                   help="JSON written by dvc exp show --json (default: run it in the current folder)")
    x.set_defaults(func=_cmd_exps)
    m = sub.add_parser("summary", help="one summary line per test dataset of metrics/")
    m.add_argument("--metrics", default="metrics",
                   help="folder of <dataset>.json / <dataset>_details.json files (default: metrics)")
    m.set_defaults(func=_cmd_summary)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``singer-ssl`` with ``argv``; returns the exit status (bad input: one ``error:`` line, 2)."""
    args = build_parser().parse_args(argv)
    keep_large_allocations()  # large CPU tensors reuse heap pages (singer_ssl.core.allocator)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:  # CliError, ConfigError, AudioError, ModelFolderError
        print(f"error: {str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
