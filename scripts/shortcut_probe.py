"""What does a frozen embedding encode besides the singer? Linear probes for recording nuisances.

    python scripts/shortcut_probe.py builtin-test    # data/embeddings/builtin-test.h5, data/segments/test/builtin-test
    python scripts/shortcut_probe.py builtin-ood --raw data/raw/builtin-ood --folds 4

For each segment of a test set it measures, independently of any model,

- ``sample_rate`` and ``channels`` of the source file (soundfile header of ``<raw>/<source>``),
- ``f0_st``: median F0 of the segment in semitones re 440 Hz (Praat's pitch tracker through parselmouth,
  voiced frames only; the song key / pitch range),
- ``level_db``: RMS level of the segment in dBFS (a recording constant),

and fits cross-validated linear probes on each embedding of the file (trained model, random-init baseline,
MFCC baseline): ``LogisticRegression`` for the categorical nuisances (balanced accuracy; chance
1 / classes), ``Ridge`` (alpha by inner grouped CV) for the continuous ones (R^2 on held-out folds;
0 = predicting the mean; strongly negative = the probe extrapolates wildly to new singers). The nuisance
probes are split by singer (``GroupKFold`` over singers): a probe cannot read the nuisance off singer identity and
must generalise to unseen singers. The singer probe (accuracy, chance 1 / singers) is split by source
recording, as the evaluate stage's linear probe. Features are standardised inside each fold.

A high nuisance score for the trained embedding above the random-init one means training made the nuisance
linearly readable: a shortcut the SSL objective found (two views of one recording share it). Prints a
Markdown table; ``--json`` writes the numbers too.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from singer_ssl.evaluation.store import read_embeddings

#: embedding matrices probed (name in the table -> dataset in the embedding file)
EMBEDDINGS = {"trained": "embedding", "random-init": "baseline/random_init/embedding",
              "MFCC": "baseline/mfcc/embedding"}
CATEGORICAL = ("sample_rate", "channels")
CONTINUOUS = ("f0_st", "level_db")
#: ridge penalties tried (inner grouped CV)
ALPHAS = tuple(float(a) for a in np.logspace(-1, 6, 8))


def median_f0_semitones(audio: np.ndarray, sample_rate: int) -> float:
    """Median F0 (semitones re 440 Hz) of the voiced frames of a mono float signal (Praat autocorrelation
    pitch, 75-1000 Hz); NaN when no frame is voiced."""
    import parselmouth

    pitch = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=float(sample_rate)).to_pitch(
        pitch_floor=75.0, pitch_ceiling=1000.0)
    f0 = pitch.selected_array["frequency"]
    f0 = f0[f0 > 0]
    return float(12.0 * np.log2(np.median(f0) / 440.0)) if f0.size else float("nan")


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level in dB re full scale (a full-scale square wave = 0 dBFS); -inf-safe with a 1e-12 floor."""
    return float(20.0 * np.log10(max(float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))), 1e-12)))


def measure(segments_dir: Path, raw_dir: Path, keys: list[str]) -> dict[str, np.ndarray]:
    """Per-key nuisance values (arrays aligned with ``keys``) from the segment files and the raw sources."""
    import soundfile as sf

    manifest = segments_dir / "manifest.csv"
    with open(manifest, newline="") as f:
        rows = {r["segment"]: r for r in csv.DictReader(f)}
    out: dict[str, list[float]] = {k: [] for k in CATEGORICAL + CONTINUOUS}
    for key in keys:
        if key not in rows:
            raise KeyError(f"{manifest}: no row for embedded segment {key!r}")
        info = sf.info(str(raw_dir / rows[key]["source"]))
        out["sample_rate"].append(info.samplerate)
        out["channels"].append(info.channels)
        audio, sr = sf.read(str(segments_dir / key), dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        out["f0_st"].append(median_f0_semitones(mono, sr))
        out["level_db"].append(rms_dbfs(mono))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def _codes(values: np.ndarray) -> np.ndarray:
    return np.unique(values, return_inverse=True)[1]


def probe_categorical(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> float:
    """Cross-validated balanced accuracy of a logistic-regression probe x -> y, folds split by ``groups``;
    NaN when y has one class or fewer than 2 groups."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = _codes(y)
    n_groups = len(np.unique(groups))
    if len(np.unique(y)) < 2 or n_groups < 2:
        return float("nan")
    pred = np.empty_like(y)
    for train, test in GroupKFold(n_splits=min(folds, n_groups)).split(x, y, groups):
        if len(np.unique(y[train])) < 2:
            pred[test] = y[train][0]
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
        pred[test] = clf.fit(x[train], y[train]).predict(x[test])
    return float(balanced_accuracy_score(y, pred))


def _ridge(x_train: np.ndarray, y_train: np.ndarray, alpha: float):
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(x_train, y_train)


def probe_continuous(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int) -> float:
    """Cross-validated R^2 (pooled over held-out folds) of a ridge probe x -> y, folds split by ``groups``;
    the ridge alpha of each outer fold is chosen by an inner ``GroupKFold`` on its training singers (a
    leave-one-out choice would reward reading the singer). Rows with a NaN target are left out; NaN when
    fewer than 3 groups or a constant target."""
    from sklearn.model_selection import GroupKFold

    ok = np.isfinite(y)
    x, y, groups = x[ok], y[ok], groups[ok]
    n_groups = len(np.unique(groups))
    if n_groups < 3 or np.var(y) == 0:
        return float("nan")
    pred = np.empty_like(y)
    for train, test in GroupKFold(n_splits=min(folds, n_groups)).split(x, y, groups):
        inner = GroupKFold(n_splits=min(3, len(np.unique(groups[train]))))
        best, best_err = ALPHAS[0], np.inf
        for alpha in ALPHAS:
            err = sum(float(np.sum((y[train][b] - _ridge(x[train][a], y[train][a], alpha).predict(x[train][b])) ** 2))
                      for a, b in inner.split(x[train], y[train], groups[train]))
            if err < best_err:
                best, best_err = alpha, err
        pred[test] = _ridge(x[train], y[train], best).predict(x[test])
    return float(1.0 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def run(embeddings: Path, segments_dir: Path, raw_dir: Path, folds: int, seed: int) -> dict:
    """Probe scores {embedding name: {target: score}} plus the chance levels and per-target summaries."""
    es = read_embeddings(embeddings)
    nuisance = measure(segments_dir, raw_dir, es.keys)
    singers = np.asarray(es.singers)
    sources = np.asarray(es.sources)
    scores: dict[str, dict[str, float]] = {}
    for name, dataset in EMBEDDINGS.items():
        if dataset not in es.vectors:
            continue
        x = es.vectors[dataset].astype(np.float64)
        row = {t: probe_categorical(x, nuisance[t], singers, folds, seed) for t in CATEGORICAL}
        row.update({t: probe_continuous(x, nuisance[t], singers, folds) for t in CONTINUOUS})
        row["singer"] = probe_categorical(x, singers, sources, folds, seed)
        scores[name] = row
    chance = {t: 1.0 / len(np.unique(nuisance[t])) for t in CATEGORICAL}
    chance.update({t: 0.0 for t in CONTINUOUS})
    chance["singer"] = 1.0 / len(np.unique(singers))
    summary = {t: {"mean": float(np.nanmean(nuisance[t])), "std": float(np.nanstd(nuisance[t])),
                   "distinct": int(len(np.unique(nuisance[t][np.isfinite(nuisance[t])])))}
               for t in CATEGORICAL + CONTINUOUS}
    return {"n_segments": len(es.keys), "n_singers": int(len(np.unique(singers))), "folds": folds,
            "scores": scores, "chance": chance, "nuisance": summary}


def markdown(name: str, result: dict) -> str:
    """The probe scores as a Markdown table (rows: embeddings, columns: targets; chance on the last row)."""
    cols = list(CATEGORICAL) + list(CONTINUOUS) + ["singer"]
    head = {"sample_rate": "sample rate (bal. acc.)", "channels": "channels (bal. acc.)",
            "f0_st": "median F0 (R^2)", "level_db": "RMS level (R^2)", "singer": "singer (bal. acc.)"}
    lines = [f"{name}: {result['n_segments']} segments, {result['n_singers']} singers, {result['folds']}-fold "
             "CV (nuisances split by singer, singer split by recording)", "",
             "| embedding | " + " | ".join(head[c] for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    rows = dict(result["scores"], chance=result["chance"])
    for emb, row in rows.items():
        lines.append(f"| {emb} | " + " | ".join("n/a" if not np.isfinite(row[c]) else f"{row[c]:.2f}" for c in cols)
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="test dataset name (data/embeddings/<dataset>.h5)")
    parser.add_argument("--embeddings", type=Path, help="embedding file (default data/embeddings/<dataset>.h5)")
    parser.add_argument("--segments", type=Path, help="segment folder (default data/segments/test/<dataset>)")
    parser.add_argument("--raw", type=Path, help="raw dataset folder with the sources (default data/raw/<dataset>)")
    parser.add_argument("--folds", type=int, default=4, help="cross-validation folds (>= 2)")
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    embeddings = args.embeddings or Path("data/embeddings") / f"{args.dataset}.h5"
    segments = args.segments or Path("data/segments/test") / args.dataset
    raw = args.raw or Path("data/raw") / args.dataset
    try:
        if args.folds < 2:
            raise ValueError(f"--folds must be >= 2, got {args.folds}")
        result = run(embeddings, segments, raw, args.folds, args.seed)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: shortcut_probe {args.dataset}: {msg}", file=sys.stderr)
        return 1
    print(markdown(args.dataset, result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
