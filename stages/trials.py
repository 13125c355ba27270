"""Stage `trials`: verification trial pairs for one dataset.

    python stages/trials.py <dataset>

Reads ``data/segments/<role>/<dataset>/manifest.csv`` and ``trials.{n_pairs, seed, cross_recording,
external}`` (``trials.seed: null`` falls back to the top-level ``seed``); writes
``data/trials/<dataset>.txt`` atomically, one ``label,key1,key2`` line per trial (Torres et al.'s format).

With ``trials.external.<dataset>: path`` the given list (Torres et al. 2023 csv or Kaldi ``enroll test
target|nontarget``, auto-detected) is validated against the manifest (unknown keys, single class)
and written normalised instead of generating one. Otherwise :func:`singer_ssl.trials.generate_trials`
draws ``n_pairs`` trials: half positives, never a file with itself, positives across recordings when
a singer has several, no repeated pairs.

Errors (exit status 1, one line): unknown dataset, missing/empty manifest, an invalid external list,
or a dataset where one class of trial cannot exist (one singer; no singer with two segments).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/trials.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.params import ConfigError, dataset_spec, load_params  # noqa: E402
from singer_ssl.data.layouts import DatasetError, read_manifest  # noqa: E402
from singer_ssl.trials import (  # noqa: E402
    TrialsError,
    generate_trials,
    load_external_trials,
    summarize_trials,
    write_trials,
)

TRIAL_KEYS = ("n_pairs", "seed", "cross_recording", "external")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python stages/trials.py <dataset>", file=sys.stderr)
        return 2
    name = argv[0]
    try:
        params = load_params()  # needs no model/loss registries
        role, _ = dataset_spec(params, name)
        cfg = dict(params.get("trials") or {})
        unknown = sorted(set(cfg) - set(TRIAL_KEYS))
        if unknown:
            raise ConfigError(f"trials: unknown key(s) {', '.join(unknown)}; valid: {', '.join(TRIAL_KEYS)}")
        external = cfg.get("external") or {}
        if not isinstance(external, dict):
            raise ConfigError("trials.external: expected a mapping {<dataset>: path/to/trials.txt}")
        rows = read_manifest(Path("data/segments") / role / name)
        if not rows:
            raise DatasetError(f"dataset {name!r}: the manifest lists no segments; no trials possible")
        keys = [r["segment"] for r in rows]
        out = Path("data/trials") / f"{name}.txt"
        if external.get(name):
            trials = load_external_trials(external[name], keys, dataset=name)
            how = f"external list {external[name]}"
        else:
            seed = cfg.get("seed")
            seed = int(params.get("seed", 0) if seed is None else seed)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trials = generate_trials(keys, [r["singer"] for r in rows], [r["source"] for r in rows],
                                         n_pairs=int(cfg.get("n_pairs", 20000)), seed=seed,
                                         cross_recording=bool(cfg.get("cross_recording", True)))
            for w in caught:
                print(f"warning: {name}: {w.message}", file=sys.stderr)
            how = f"generated, seed {seed}"
        write_trials(out, trials)
    except (ConfigError, DatasetError, TrialsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    s = summarize_trials(trials, {r["segment"]: r["singer"] for r in rows},
                         {r["segment"]: r["source"] for r in rows})
    print(f"{name}: {s['trials']} trials ({s['positives']} target, {s['negatives']} non-target; "
          f"{s['singers']} singers; {s['same_recording_positives']} same-recording targets; {how}) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
