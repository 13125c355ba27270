"""Compare SSL methods across the experiments DVC stores, and summarise a run's metrics files.

:func:`load_exp_show` reads the JSON of ``dvc exp show --json`` (dvc 3.x: a list of baseline commits
and the workspace, each ``{"rev", "name", "data": {"params": {"params.yaml": {"data": {...}}},
"metrics": {"metrics/<dataset>.json": {"data": {...}}}, ...}, "experiments": [{"revs": [...]}]}``);
:func:`runs_from_exp_show` flattens it to one :class:`Run` per experiment (queued or failed ones,
which carry no metrics, are left out; the workspace and a baseline commit are kept unless they repeat
another entry's params and metrics exactly). What DVC stores per experiment is the flat headline file
``metrics/<dataset>.json`` (:data:`singer_ssl.evaluation.run.HEADLINE`: ``eer``, ``min_dcf``, ``mnr``,
``probe_acc``, ``random_init_eer``, ``mfcc_eer``, ``trials``); an experiment from before that file was
split from ``metrics/<dataset>_details.json`` is read through the same names (:func:`metric_value`).
DVC's metrics views hold numbers only, so the singer-level bootstrap interval (a list) does not reach
``dvc exp show``; the across-seed interval below takes its place.

:func:`compare` groups runs by method = (``loss``, ``encoder``), split into variants when runs of one
loss and encoder differ in another param (:func:`method_labels`: only runs that differ in nothing but the
seed are pooled as seeds), and, per test dataset, reports for each method the mean and sample standard
deviation (ddof 1) of a metric over seeds, the 95 % Student-t interval of that mean
(mean ± t(0.975, n-1) s / sqrt(n)), and the paired difference to a reference method over the seeds both
ran (same ``seed``, hence the same random-init baseline and training order), with its own t-interval.
Fewer than 2 values give no interval ("n=1, no interval"). Runs of a dataset whose test set differs from
the majority (``datasets.test.<name>``, ``trials``, ``segment`` params, the ``corpus`` params for a
built-in dataset, or the number of trials) are listed as not comparable and left out of that dataset's
table. The MFCC baseline (the same for every run of a test set) is given under the table; the random-init
baseline (one per encoder and seed) is a column.

:func:`plot` draws the same table: per dataset, each method's mean with its 95 % t-interval (a bare
point for n = 1), its random-init baseline as a grey cross, the MFCC baseline as a dashed line.
:func:`exps_table` is ``singer-ssl exps``: one line per experiment (loss, encoder, seed, steps, headline
metrics), within 120 columns, each run flagged where its steps, training data or test set differ from most runs
(:func:`run_flags`); :func:`compare` notes methods not trained like the reference (:func:`setting_differences`).
Read live (``dvc exp show`` in the current folder), the workspace row is left out while a run is in progress or
when its metrics are not of its params.yaml (:func:`stale_workspace`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: column label -> headline key of a metrics JSON (besides the compared metric)
EXTRA_COLUMNS = {"MNR %": "mnr", "probe acc": "probe_acc", "random-init EER %": "random_init_eer"}
#: headline counts that must agree for runs of one dataset to be compared
COUNT_KEYS = ("trials",)
#: the numbers ``singer-ssl exps`` shows per experiment (headline keys)
EXPS_COLUMNS = ("eer", "min_dcf", "mnr", "probe_acc", "random_init_eer", "mfcc_eer")
DASH = "—"


class CompareError(ValueError):
    """Unusable input of ``singer-ssl compare`` / ``summary`` (printed as one line)."""


@dataclass
class Run:
    """One experiment: its name, params (params.yaml) and metrics per test dataset."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, Any]]

    @property
    def method(self) -> str:
        return f"{self.params.get('loss', '?')} / {self.params.get('encoder', '?')}"

    @property
    def seed(self) -> Any:
        return self.params.get("seed")


@dataclass
class Stat:
    """Mean, sample std and 95 % t-interval of ``n`` values (std and interval None when n < 2)."""

    n: int
    mean: float
    std: float | None
    ci: tuple[float, float] | None


@dataclass
class MethodRow:
    method: str
    seeds: list[Any]
    metric: Stat | None
    extras: dict[str, float | None]
    paired: Stat | None
    missing: list[str] = field(default_factory=list)


@dataclass
class DatasetTable:
    dataset: str
    reference: str
    rows: list[MethodRow]
    excluded: list[str]
    missing: list[str]
    notes: list[str]
    mfcc: Stat | None = None  # the MFCC baseline's EER over the compared runs (one test set: one value)


def get_path(tree: Any, dotted: str) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; None when any level is missing."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def metric_value(metrics: dict[str, Any], key: str) -> Any:
    """``key`` of a headline metrics dict: a flat key (``eer``, ``probe_acc``), else a dotted path; an
    experiment whose ``metrics/<dataset>.json`` still holds the nested details is read through
    :data:`~singer_ssl.evaluation.run.HEADLINE` (``eer`` -> ``embedding.eer``); None when missing."""
    from singer_ssl.evaluation.run import HEADLINE

    if key in metrics:
        return metrics[key]
    if key in HEADLINE:
        return get_path(metrics, HEADLINE[key])
    return get_path(metrics, key)


def t_stat(values: list[float]) -> Stat:
    """Mean, sample std (ddof 1) and the 95 % Student-t interval of the mean of ``values`` (n >= 1)."""
    from scipy import stats

    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return Stat(n, mean, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
    return Stat(n, mean, std, (mean - half, mean + half))


def _file_data(files: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v["data"] for k, v in (files or {}).items() if isinstance(v, dict) and isinstance(v.get("data"), dict)}


def runs_from_exp_show(entries: Any) -> tuple[list[Run], list[str]]:
    """Runs of a ``dvc exp show --json`` list (experiments first, then baselines and the workspace,
    duplicates of the same params and metrics dropped) and the names of the entries left out: queued,
    running or failed experiments (their executor state), and entries with an error or no metrics."""
    if not isinstance(entries, list):
        raise CompareError("not the output of `dvc exp show --json` (expected a JSON list)")
    found: list[tuple[str, dict, str | None]] = []
    for base in entries:
        if not isinstance(base, dict):
            raise CompareError("not the output of `dvc exp show --json` (list items must be objects)")
        for rng in base.get("experiments") or []:
            executor = (rng.get("executor") or {}).get("state")  # queued | running | failed | success
            for state in rng.get("revs") or []:
                name = state.get("name") or rng.get("name") or str(state.get("rev", "?"))[:7]
                found.append((name, state, executor))
    for base in entries:
        rev = str(base.get("rev", "?"))
        found.append((base.get("name") or (rev if rev == "workspace" else rev[:7]), base, None))
    runs, skipped, seen = [], [], set()
    for name, state, executor in found:
        data = state.get("data") or {}
        params = _file_data(data.get("params")).get("params.yaml", {})
        metrics = {Path(path).stem: m for path, m in _file_data(data.get("metrics")).items()}
        if state.get("error") or not metrics or executor in ("queued", "running", "failed"):
            skipped.append(f"{name} ({executor})" if executor else name)
            continue
        key = json.dumps([params, metrics], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        runs.append(Run(name, params, metrics))
    return runs, skipped


def load_exp_show(path: str | os.PathLike | None = None) -> Any:
    """The parsed JSON of ``path``, or of ``dvc exp show --json`` run in the current folder."""
    if path is not None:
        try:
            return json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise CompareError(f"cannot read {path}: {err}") from None
    from singer_ssl.experiment import ExperimentError, dvc_executable

    try:
        dvc = dvc_executable()
    except ExperimentError:
        raise CompareError("dvc not found (install it, or pass --exps FILE.json from `dvc exp show --json`)") from None
    proc = subprocess.run([dvc, "exp", "show", "--json"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise CompareError(f"`dvc exp show --json` failed (exit {proc.returncode}): {why}")
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        raise CompareError(f"`dvc exp show --json` printed no JSON: {err}") from None


def _norm(v: Any) -> Any:
    """A param value as DVC's two writers agree on it: numeric strings (pyyaml reads dvc.lock's ``1e-08`` as a
    string) as floats, containers element-wise."""
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


def _first_difference(key: str, a: Any, b: Any) -> tuple[str, Any, Any] | None:
    """The first dotted key under ``key`` where ``a`` and ``b`` differ (:func:`_norm`), with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            found = _first_difference(f"{key}.{k}", a.get(k), b.get(k))
            if found is not None:
                return found
        return None
    return None if _norm(a) == _norm(b) else (key, a, b)


def stale_workspace(params: dict[str, Any], lock: Any) -> str | None:
    """Why the workspace's metrics are not the results of its ``params`` (params.yaml), or None.

    ``lock`` is the parsed ``dvc.lock``: the metrics on disk are what its stages last wrote. They are stale when
    a param a stage recorded differs from params.yaml (``dvc exp run -S`` writes params.yaml first, dvc.lock
    stage by stage as each finishes), or when the stages are not of one run: a stage's recorded dep hash differs
    from the hash another stage recorded for that path as its out (train re-ran, embed and evaluate not yet).
    """
    stages = (lock or {}).get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        return None
    outs = {o["path"]: (name, o.get("md5")) for name, st in stages.items() for o in (st or {}).get("outs") or []
            if isinstance(o, dict) and "path" in o}
    # the check stage records the whole params.yaml: visited last, so a difference names the stage that uses it
    for name, st in sorted(stages.items(), key=lambda item: (item[0] == "check", item[0])):
        st = st or {}
        for key, value in sorted(((st.get("params") or {}).get("params.yaml") or {}).items()):
            found = _first_difference(key, get_path(params, key), value)
            if found is not None:
                where, now, then = found
                return (f"{where} is {json.dumps(now, default=str)} in params.yaml but "
                        f"{json.dumps(then, default=str)} in dvc.lock ({name})")
        for dep in st.get("deps") or []:
            made = outs.get(dep.get("path")) if isinstance(dep, dict) else None
            if made is not None and made[0] != name and made[1] != dep.get("md5"):
                return f"{name} ran on an older {dep['path']} than {made[0]} wrote (dvc.lock)"
    return None


def drop_stale_workspace(runs: list[Run], skipped: list[str], root: str | os.PathLike = ".") -> list[Run]:
    """``runs`` without the workspace row when its metrics are not of its params (:func:`stale_workspace` on
    ``root/dvc.lock``, or a run in progress: :func:`singer_ssl.experiment.busy`); the reason goes to ``skipped``."""
    from singer_ssl.experiment import busy

    ws = next((r for r in runs if r.name == "workspace"), None)
    if ws is None:
        return runs
    lock_path = Path(root) / "dvc.lock"
    why = busy(Path(root))
    if why is not None:
        why = f"a run is in progress: {why}"
    elif lock_path.exists():
        import yaml

        try:
            why = stale_workspace(ws.params, yaml.safe_load(lock_path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as err:
            why = f"cannot read {lock_path}: {' '.join(str(err).split())}"
    if why is None:
        return runs
    skipped.append(f"workspace (its metrics are not of its params.yaml: {why})")
    return [r for r in runs if r is not ws]


#: params that set how long a run trains, and what it trains on: runs that differ in them are flagged
STEP_KEYS = ("train.max_steps", "train.epochs", "train.steps_per_epoch")
DATA_KEYS = ("datasets.train", "corpus")
#: ``singer-ssl exps``'s flag letters: what differs from most runs of the table
FLAGS = {"s": f"steps ({', '.join(STEP_KEYS)})", "d": f"training data ({', '.join(DATA_KEYS)})",
         "t": "test set (datasets.test.<set>, trials, segment, corpus, trial count)"}


def _setting(run: Run, keys: tuple[str, ...]) -> dict[str, Any]:
    out = {k: get_path(run.params, k) for k in keys}
    if isinstance(out.get("corpus"), dict):  # workers do not change the corpus
        out["corpus"] = {k: v for k, v in out["corpus"].items() if k != "workers"}
    return out


def setting_differences(run: Run, ref: Run) -> list[str]:
    """The step and data params in which ``run`` differs from ``ref``, as ``key value vs reference-value``."""
    a, b = _setting(run, STEP_KEYS + DATA_KEYS), _setting(ref, STEP_KEYS + DATA_KEYS)
    return [f"{k} {_shown(json.dumps(a[k], default=str))} vs {_shown(json.dumps(b[k], default=str))}"
            for k in STEP_KEYS + DATA_KEYS if _norm(a[k]) != _norm(b[k])]


def run_flags(runs: list[Run], dataset: str) -> list[str]:
    """Per run of ``dataset``, the :data:`FLAGS` letters of what differs from the most common value among them
    (steps, training data, test set :func:`test_set_signature`); ``""`` when nothing does."""
    keys = {"s": lambda r: _setting(r, STEP_KEYS), "d": lambda r: _setting(r, DATA_KEYS),
            "t": lambda r: test_set_signature(r, dataset)}
    flags = [""] * len(runs)
    for letter, of in keys.items():
        values = [json.dumps(_norm(of(r)), sort_keys=True, default=str) for r in runs]
        common = Counter(values).most_common(1)[0][0]
        flags = [f + letter if v != common else f for f, v in zip(flags, values)]
    return flags


def metric_path(metric: str) -> str:
    """The key ``--metric`` names: a headline key (``eer``, ``mnr``, ``probe_acc``, ...) as given; the old
    spellings ``probe.acc`` / ``embedding.<key>`` of the same numbers map to their headline key."""
    from singer_ssl.evaluation.run import HEADLINE

    return next((k for k, dotted in HEADLINE.items() if metric == dotted), metric)


def test_set_signature(run: Run, dataset: str) -> str:
    """What must agree for two runs' numbers on ``dataset`` to be comparable (params of the test set
    and trials, segment params, the corpus params that generate a built-in test set, counts). A null
    ``trials.seed`` (trials follow the top-level seed) is kept as null, so seeds stay comparable with each other."""
    p = run.params
    m = run.metrics[dataset]
    ds = get_path(p, f"datasets.test.{dataset}")
    builtin = isinstance(ds, dict) and (ds.get("layout") or ds.get("preset")) == "builtin"
    corpus = {k: v for k, v in (p.get("corpus") or {}).items() if k != "workers"} if builtin else None
    sig = {"dataset": ds, "trials": p.get("trials"), "segment": p.get("segment"), "corpus": corpus,
           "counts": {k: metric_value(m, k) for k in COUNT_KEYS}}
    return json.dumps(sig, sort_keys=True, default=str)


def _describe_difference(run: Run, ref: Run, dataset: str) -> str:
    a, b = json.loads(test_set_signature(run, dataset)), json.loads(test_set_signature(ref, dataset))
    for key in ("counts", "dataset", "trials", "segment", "corpus"):
        if a[key] != b[key]:
            if key == "counts":
                ca, cb = a["counts"], b["counts"]
                return ", ".join(f"{k} {ca[k]} vs {cb[k]}" for k in COUNT_KEYS if ca[k] != cb[k])
            return f"params {key if key != 'dataset' else 'datasets.test.' + dataset} differ"
    return "test set differs"


def _flat(tree: Any, prefix: str = "") -> dict[str, str]:
    if not isinstance(tree, dict):
        return {prefix: json.dumps(tree, sort_keys=True, default=str)}
    out: dict[str, str] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


#: params that never change a run's headline numbers, so never split a method into variants: the invariance report
#: (its own metrics block) and worker counts (documented as not changing the output)
NEUTRAL_PARAMS = ("embed.invariance", "corpus.workers", "segment.workers", "features.workers")


def _relevant_params(run: Run) -> dict[str, str]:
    """``run``'s params (dotted -> JSON value) that may change its numbers, besides ``seed``, ``loss`` and
    ``encoder``: :data:`NEUTRAL_PARAMS` and the sections of other objectives and encoders (``losses.<other>``,
    ``encoders.<other>``, which the train stage does not read) are left out."""
    loss, encoder = str(run.params.get("loss")), str(run.params.get("encoder"))
    out = {}
    for key, value in _flat(run.params).items():
        parts = key.split(".")
        if key in ("seed", "loss", "encoder") or any(key == n or key.startswith(n + ".") for n in NEUTRAL_PARAMS):
            continue
        if len(parts) > 1 and ((parts[0] == "losses" and parts[1] != loss)
                               or (parts[0] == "encoders" and parts[1] != encoder)):
            continue
        out[key] = value
    return out


def _shown(value: str | None) -> str:
    if value is None:
        return "unset"
    return value[1:-1] if value.startswith('"') and value.endswith('"') else value


def method_labels(runs: list[Run]) -> list[str]:
    """The method of each run: ``loss / encoder``, plus ``[key=value, ...]`` for every param (other than the seed
    and :data:`NEUTRAL_PARAMS`) whose value differs between runs of that loss and encoder. Only runs that differ in
    nothing but the seed are pooled as seeds of one method: a sweep's 80-step runs and a 200-step default run of
    the same objective are two rows, not one method with a mixed spread."""
    flats = [_relevant_params(r) for r in runs]
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(runs):
        groups.setdefault(r.method, []).append(i)
    labels = [r.method for r in runs]
    for base, idx in groups.items():
        keys = sorted(k for k in set().union(*(flats[i] for i in idx)) if len({flats[i].get(k) for i in idx}) > 1)
        if keys:
            for i in idx:
                labels[i] = f"{base} [{', '.join(f'{k}={_shown(flats[i].get(k))}' for k in keys)}]"
    return labels


def default_reference(methods: list[str], n_seeds: dict[str, int] | None = None) -> str:
    """An ``ntxent`` method (with any encoder) when present, else any; among them the one with the most seeds,
    then the first alphabetically."""
    ordered = sorted(methods, key=lambda m: (-(n_seeds or {}).get(m, 0), m))
    return next((m for m in ordered if m.split(" / ")[0] == "ntxent"), ordered[0])


def dataset_table(runs: list[Run], dataset: str, metric: str, reference: str | None) -> DatasetTable:
    """The comparison of the runs that evaluated ``dataset`` (module docstring)."""
    path = metric_path(metric)
    present = [r for r in runs if dataset in r.metrics]
    sigs = [test_set_signature(r, dataset) for r in present]
    common = Counter(sigs).most_common(1)[0][0]
    ref_run = present[sigs.index(common)]
    excluded = [f"{r.name} ({_describe_difference(r, ref_run, dataset)})" for r, s in zip(present, sigs) if s != common]
    kept = [r for r, s in zip(present, sigs) if s == common]
    notes: list[str] = []
    by_method: dict[str, dict[Any, Run]] = {}
    for r, label in zip(kept, method_labels(kept)):  # newest first in dvc's listing: a (method, seed)'s first run
        seeds = by_method.setdefault(label, {})
        if r.seed in seeds:
            notes.append(f"{label}: seed {r.seed} ran more than once; kept {seeds[r.seed].name}, left out {r.name}")
        else:
            seeds[r.seed] = r
    n_seeds = {m: len(seeds) for m, seeds in by_method.items()}
    ref = reference if reference is not None else default_reference(list(by_method), n_seeds)
    if ref not in by_method:  # a loss name, or "loss / encoder" of a method split into variants
        matches = [m for m in by_method if ref in (m.split(" / ")[0], m.split(" [")[0])]
        if not matches:
            raise CompareError(f"--reference {ref}: no such method on {dataset} "
                               f"(methods: {', '.join(sorted(by_method))})")
        ref = default_reference(matches, n_seeds)
    missing: dict[str, list[str]] = {}

    def value(r: Run, p: str) -> float | None:
        v = metric_value(r.metrics[dataset], p)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            missing.setdefault(p, []).append(r.name)
            return None
        return float(v)

    ref_vals = {s: value(r, path) for s, r in by_method[ref].items()}
    rows = []
    for method, seeds in sorted(by_method.items(), key=lambda kv: (kv[0] != ref, kv[0])):
        vals = {s: value(r, path) for s, r in seeds.items()}
        got = [v for v in vals.values() if v is not None]
        extras = {}
        for label, p in EXTRA_COLUMNS.items():
            xs = [x for x in (value(r, p) for r in seeds.values()) if x is not None]
            extras[label] = math.fsum(xs) / len(xs) if xs else None
        diffs = [vals[s] - ref_vals[s] for s in sorted(vals, key=str)
                 if s in ref_vals and vals[s] is not None and ref_vals[s] is not None]
        paired = t_stat(diffs) if diffs and method != ref else None
        rows.append(MethodRow(method, sorted(seeds, key=str), t_stat(got) if got else None, extras, paired))
    ref_run = next(iter(by_method[ref].values()))
    for method, seeds in sorted(by_method.items()):
        diffs = sorted({d for r in seeds.values() for d in setting_differences(r, ref_run)})
        if method != ref and diffs:
            notes.append(f"{method}: not trained like the reference {ref}: {', '.join(diffs)}")
    mfcc = [x for x in (value(r, "mfcc_eer") for ms in by_method.values() for r in ms.values()) if x is not None]
    miss = [f"{p}: {', '.join(sorted(set(names)))}" for p, names in sorted(missing.items())]
    return DatasetTable(dataset, ref, rows, excluded, miss, notes, t_stat(mfcc) if mfcc else None)


def _num(x: float | None, digits: int = 2) -> str:
    return DASH if x is None else f"{x:.{digits}f}"


def _interval(s: Stat | None, digits: int = 2) -> str:
    if s is None:
        return DASH
    if s.ci is None:
        return "n=1, no interval"
    return f"[{s.ci[0]:.{digits}f}, {s.ci[1]:.{digits}f}]"


def digits(path: str) -> int:
    """Decimals shown for a metric: 3 for fractions and costs (accuracy, minDCF), 2 for percentages."""
    return 3 if path.rsplit(".", 1)[-1] in ("acc", "bacc", "min_dcf", "probe_acc") else 2


def format_table(t: DatasetTable, metric: str) -> str:
    """Markdown of one dataset's comparison, with the excluded runs, missing metrics and notes below."""
    name, reference = metric_path(metric), t.reference
    k = digits(name)
    lines = [f"### {t.dataset}", "",
             f"| method | n seeds | {name} mean ± std | 95 % CI of mean | "
             + " | ".join(EXTRA_COLUMNS) + f" | Δ {name} vs {reference} (paired) | 95 % CI of Δ |",
             "|---" * (6 + len(EXTRA_COLUMNS)) + "|"]
    for r in t.rows:
        m = r.metric
        ms = DASH if m is None else (f"{m.mean:.{k}f}" + (f" ± {m.std:.{k}f}" if m.std is not None else ""))
        extras = " | ".join(_num(r.extras[c], 3 if c == "probe acc" else 2) for c in EXTRA_COLUMNS)
        if r.method == reference:
            delta, dci = "reference", DASH
        elif r.paired is None:
            delta, dci = "no common seed", DASH
        else:
            delta, dci = f"{r.paired.mean:+.{k}f} (n={r.paired.n})", _interval(r.paired, k)
        lines.append(f"| {r.method} | {len(r.seeds)} | {ms} | {_interval(m, k)} | {extras} | {delta} | {dci} |")
    lines.append("")
    if t.mfcc is not None:
        spread = f" (std {t.mfcc.std:.2f} over {t.mfcc.n} runs)" if t.mfcc.std else ""
        lines.append(f"baseline MFCC mean+std: EER {t.mfcc.mean:.2f} %{spread}")
    for e in t.excluded:
        lines.append(f"not comparable (left out): {e}")
    for m in t.missing:
        lines.append(f"missing ({DASH}): {m}")
    for n in t.notes:
        lines.append(f"note: {n}")
    return "\n".join(lines).rstrip() + "\n"


def compare(runs: list[Run], metric: str = "eer", reference: str | None = None) -> list[DatasetTable]:
    """One :class:`DatasetTable` per test dataset found in ``runs`` (sorted by name)."""
    if not runs:
        raise CompareError("no finished experiments with metrics (run `dvc exp run` first)")
    datasets = sorted({d for r in runs for d in r.metrics})
    return [dataset_table(runs, d, metric, reference) for d in datasets]


def plot_series(t: DatasetTable, metric: str) -> dict[str, Any]:
    """What :func:`plot` draws for one dataset: ``labels``, ``means``, ``err_lo``/``err_hi`` (distances from
    the mean to the 95 % t-interval's ends; 0 for n = 1), ``random_init`` (``[(x, row)]``, each method's
    random-init EER) and ``mfcc`` (the MFCC baseline's EER or None); baselines only when ``metric`` is the EER."""
    rows = [r for r in t.rows if r.metric is not None]
    eer = metric_path(metric) == "eer"
    rand = [(r.extras.get("random-init EER %"), y) for y, r in enumerate(rows)] if eer else []
    return {
        "labels": [f"{r.method} (n={r.metric.n}{', no interval' if r.metric.ci is None else ''})" for r in rows],
        "means": [r.metric.mean for r in rows],
        "err_lo": [r.metric.mean - r.metric.ci[0] if r.metric.ci else 0.0 for r in rows],
        "err_hi": [r.metric.ci[1] - r.metric.mean if r.metric.ci else 0.0 for r in rows],
        "random_init": [(x, y) for x, y in rand if x is not None],
        "mfcc": t.mfcc.mean if eer and t.mfcc is not None else None,
    }


#: the unit of each headline metric (axis labels)
UNITS = {"eer": "EER, %", "mnr": "MNR, %", "random_init_eer": "EER, %", "mfcc_eer": "EER, %",
         "min_dcf": "normalised detection cost, 0-1", "probe_acc": "accuracy, fraction 0-1"}


def axis_label(metric: str) -> str:
    """The compare plot's axis label: the metric, its unit, and what is drawn (``eer (EER, %), mean over seeds``)."""
    name = metric_path(metric)
    unit = UNITS.get(name)
    return f"{name} ({unit}), mean over seeds" if unit else f"{name}, mean over seeds"


def plot(tables: list[DatasetTable], metric: str, out: str | os.PathLike) -> None:
    """The comparison as a figure, written atomically to ``out`` (format from its suffix: .png, .svg, .pdf).

    One panel per test dataset (:func:`plot_series`): per method (y) its mean over seeds (x) with the 95 %
    t-interval as error bar (none for n = 1, labelled so); when the compared metric is the EER, each
    method's random-init baseline (mean over its seeds) as a grey cross and the MFCC baseline as a dashed line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from singer_ssl.core.io import atomic_path

    suffix = Path(out).suffix.lstrip(".").lower() or "png"
    supported = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    if suffix not in supported:
        raise CompareError(f"--plot {out}: unknown image format {suffix!r}; use one of {', '.join(sorted(supported))}")
    height = 0.8 * max(len(t.rows) for t in tables) + 2.6
    fig, axes = plt.subplots(1, len(tables), figsize=(7 * len(tables), height), squeeze=False)
    handles: dict[str, Any] = {}
    for ax, t in zip(axes[0], tables):
        d = plot_series(t, metric)
        ys = list(range(len(d["means"])))
        handles["mean over seeds, 95 % t-interval"] = ax.errorbar(d["means"], ys, xerr=[d["err_lo"], d["err_hi"]],
                                                                  fmt="o", capsize=4)
        ax.set_yticks(ys, [textwrap.fill(label, 36) for label in d["labels"]])  # variants: [key=value] wraps
        ax.set_ylim(len(ys) - 0.5, -0.5)  # the reference method on top
        if d["random_init"]:
            handles["same encoder, random weights"] = ax.plot(*zip(*d["random_init"]), "x", color="grey",
                                                              markersize=8)[0]
        if d["mfcc"] is not None:
            handles["MFCC baseline"] = ax.axvline(d["mfcc"], color="tab:red", linestyle="--")
        ax.set_xlabel(axis_label(metric))
        ax.set_title(textwrap.fill(f"{t.dataset} (reference: {t.reference})", 60), fontsize="medium")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles), fontsize="small",
               frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format=suffix, dpi=120)
    plt.close(fig)


def _cell(x: Any, key: str) -> str:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return DASH
    return f"{x:.{digits(key)}f}"


#: ``singer-ssl exps``'s text columns (left-aligned, the first three cut with ``~`` when the line is too wide)
EXPS_TEXT = ("experiment", "loss", "encoder", "seed", "steps", "flags")


def _line(cells: Any, widths: list[int]) -> str:
    """Text columns (:data:`EXPS_TEXT`) left-aligned and cut with ``~`` to their width, numbers right-aligned."""
    out = []
    for i, (c, w) in enumerate(zip(cells, widths)):
        c = c if len(c) <= w else c[:w - 1] + "~"
        out.append(c.ljust(w) if i < len(EXPS_TEXT) else c.rjust(w))
    return "  ".join(out).rstrip()


def steps_cell(run: Run) -> str:
    """The training length a run asked for: ``train.max_steps``, else ``<epochs> ep`` (max_steps null)."""
    steps = get_path(run.params, "train.max_steps")
    if steps is not None:
        return str(steps)
    epochs = get_path(run.params, "train.epochs")
    return f"{epochs} ep" if epochs is not None else "?"


def exps_table(runs: list[Run], width: int = 120) -> str:
    """``singer-ssl exps``: per test dataset, one line per experiment (name, loss, encoder, seed, steps,
    :func:`run_flags` and :data:`EXPS_COLUMNS`), plain aligned text no wider than ``width`` (long names are cut
    with ``~``, never below their header's width, so ``workspace`` is whole), and the meaning of any flag below
    the block."""
    if not runs:
        raise CompareError("no finished experiments with metrics (run `dvc exp run` first)")
    head = (*EXPS_TEXT, *EXPS_COLUMNS)
    blocks = []
    for dataset in sorted({d for r in runs for d in r.metrics}):
        present = [r for r in runs if dataset in r.metrics]
        flags = run_flags(present, dataset)
        lines = [[r.name, str(r.params.get("loss", "?")), str(r.params.get("encoder", "?")), str(r.seed),
                  steps_cell(r), f or "-", *(_cell(metric_value(r.metrics[dataset], k), k) for k in EXPS_COLUMNS)]
                 for r, f in zip(present, flags)]
        widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
        spare = width - (sum(widths) + 2 * (len(head) - 1))
        for i in range(3):  # cut the name, loss and encoder columns (in that order) until the line fits
            if spare >= 0:
                break
            cut = min(-spare, widths[i] - max(len(head[i]), 6))
            if cut > 0:
                widths[i] -= cut
                spare += cut
        legend = [f"flag {k}: {what} differs from most runs" for k, what in FLAGS.items() if any(k in f for f in flags)]
        blocks.append("\n".join([dataset, _line(head, widths), *(_line(x, widths) for x in lines), *legend]))
    return "\n\n".join(blocks) + "\n"


def summary_line(dataset: str, m: dict[str, Any]) -> str:
    """One line of a dataset's metrics (the details dict, or a headline dict when no details file exists):
    EER with its singer-level 95 % interval (trial-level when there is no singer-level one), minDCF, MNR,
    probe accuracy, random-init and MFCC EER, and the paired differences to both baselines when the details hold
    them (``versus``); missing values "—"."""
    e = m.get("embedding") or {}
    ci, kind = e.get("eer_ci95_singer"), "singer-level"
    if not ci:
        ci, kind = e.get("eer_ci95"), "trial-level"
    ci_s = f" [{kind} 95 % CI {ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""
    p = m.get("probe") or {}
    probe = _num(metric_value(m, "probe_acc"), 3) + (f" (std {p['acc_std']:.3f})"
                                                     if p.get("acc_std") is not None else "")
    r = get_path(m, "baselines.random_init") or {}
    r_eer = metric_value(m, "random_init_eer")
    rinit = _num(r_eer) + ("%" if r_eer is not None else "")
    if r.get("eer_std") is not None:
        rinit += f" (std {r['eer_std']:.2f}, {r.get('inits', '?')} inits)"
    mfcc, eer = metric_value(m, "mfcc_eer"), metric_value(m, "eer")
    from singer_ssl.evaluation.run import versus_line

    versus = f" | {versus_line(m)}" if m.get("versus") else ""
    return (f"{dataset}: EER {_num(eer)}%{ci_s} minDCF {_num(metric_value(m, 'min_dcf'), 3)} "
            f"MNR {_num(metric_value(m, 'mnr'))}% probe acc {probe} | random-init EER {rinit} | "
            f"mfcc EER {_num(mfcc)}{'%' if mfcc is not None else ''}{versus}")


def summary(metrics_dir: str | os.PathLike) -> list[str]:
    """:func:`summary_line` per dataset of ``metrics_dir`` (sorted by name): ``<dataset>_details.json`` when
    present, else ``<dataset>.json`` (the headline file, or a whole metrics file of an older run)."""
    from singer_ssl.evaluation.run import DETAILS_SUFFIX

    files = [f for f in sorted(Path(metrics_dir).glob("*.json")) if not f.stem.endswith(DETAILS_SUFFIX)]
    if not files:
        raise CompareError(f"no metrics files in {metrics_dir}; run `dvc repro` first")
    out = []
    for f in files:
        details = f.with_name(f"{f.stem}{DETAILS_SUFFIX}.json")
        src = details if details.exists() else f
        try:
            m = json.loads(src.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise CompareError(f"cannot read {src}: {err}") from None
        out.append(summary_line(f.stem, m if isinstance(m, dict) else {}))
    return out
