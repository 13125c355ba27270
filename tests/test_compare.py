"""`singer-ssl compare` / `summary` (singer_ssl.compare) against independent numpy/scipy computations.

The fake input follows the JSON `dvc exp show --json` (dvc 3.x) printed for a throwaway repo with two
metrics files and `dvc exp run -S seed=.. -S loss=..`: baselines (the workspace, the commit) with
``data.params["params.yaml"].data``, ``data.metrics["metrics/<ds>.json"].data`` and ``experiments:
[{"revs": [state], "name", "executor"}]`` holding one state per experiment. ``metrics/<ds>.json`` is the
evaluate stage's flat headline file (built by ``singer_ssl.evaluation.run.headline``), or, for experiments
from before that split, the nested details (``nested=True``).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from singer_ssl import compare as cmp
from singer_ssl.cli import main
from singer_ssl.evaluation.run import headline

ROOT = Path(__file__).resolve().parents[1]
COUNTS = {"segments": 133, "singers": 8, "trials": 8644, "target_trials": 929}


def details(eer: float, mnr: float = 5.0, acc: float | None = 0.8, rinit: float = 25.0, trials: int = 8644,
            mfcc: float = 25.2) -> dict:
    """A details dict (``metrics/<ds>_details.json``) with these numbers."""
    m = {"embedding": {"eer": eer, "eer_threshold": 0.9, "min_dcf": 0.99, "mnr": mnr},
         "baselines": {"random_init": {"eer": rinit, "eer_std": 1.0, "inits": 3}, "mfcc": {"eer": mfcc}},
         "counts": {**COUNTS, "trials": trials}}
    if acc is not None:
        m["probe"] = {"acc": acc, "acc_std": 0.01, "runs": 5}
    return m


def metrics(*args, nested: bool = False, **kwargs) -> dict:
    """What ``dvc exp show`` holds for ``metrics/<ds>.json``: the headline (or the old nested file)."""
    d = details(*args, **kwargs)
    return d if nested else headline(d)


def state(rev: str, name: str | None, params: dict, per_ds: dict[str, dict] | None) -> dict:
    """One ExpState as dvc's ``dumpd`` writes it (a queued experiment: params, no metrics)."""
    data = {"rev": rev, "timestamp": "2026-11-29T07:56:07",
            "params": {"params.yaml": {"data": params}},
            "metrics": {f"metrics/{ds}.json": {"data": m} for ds, m in (per_ds or {}).items()},
            "deps": {}, "outs": {}, "meta": {}}
    return {"rev": rev, "name": name, "data": data, "error": None, "experiments": None}


def executor(per_ds: dict | None) -> dict | None:
    """The ExpRange executor dvc writes for a queued experiment (None for a finished one)."""
    if per_ds is not None:
        return None
    return {"state": "queued", "name": "dvc-task",
            "local": {"root": None, "log": None, "pid": None, "returncode": None, "task_id": "aa876bb"}}


def params(loss: str, seed: int, encoder: str = "audiontt2020", **extra) -> dict:
    return {"seed": seed, "loss": loss, "encoder": encoder,
            "datasets": {"test": {"builtin-test": {"path": "data/raw/builtin-test", "layout": "builtin"}}},
            "trials": {"n_pairs": 20000, "seed": 123}, **extra}


def exp_show(exps: list[tuple[str, dict, dict | None]]) -> list:
    """Workspace (= the newest experiment) + a commit whose ``experiments`` are ``exps`` (newest first)."""
    first_named = next(e for e in exps if e[2] is not None)
    ws = state("workspace", None, first_named[1], first_named[2])
    base = state("8b603d688173521ffe4e1d9883118f6fd6c4ab1a", "main", exps[-1][1], exps[-1][2])
    base["experiments"] = [{"revs": [state(f"{i:040x}", name, p, m)], "executor": executor(m), "name": name}
                           for i, (name, p, m) in enumerate(exps)]
    return [ws, base]


#: method -> seed -> EER on builtin-test
EER = {"ntxent": {1: 14.1, 2: 12.7, 3: 15.9}, "vicreg": {1: 30.2, 2: 36.9, 4: 33.3}}
MNR = {"ntxent": {1: 4.0, 2: 5.0, 3: 6.0}, "vicreg": {1: 9.0, 2: 11.0, 4: 16.0}}


def two_methods() -> list:
    exps = [(f"{loss}-s{s}", params(loss, s), {"builtin-test": metrics(v, mnr=MNR[loss][s], acc=0.5 + s / 10)})
            for loss, seeds in EER.items() for s, v in seeds.items()]
    exps.append(("queued-one", params("byol", 1), None))
    return exps[::-1]


def table_rows(text: str) -> dict[str, dict[str, str]]:
    """method -> {column header: cell} of the Markdown table(s) in ``text``."""
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for ln in lines[1:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        out[cells[0]] = dict(zip(header, cells))
    return out


def ci95(x: np.ndarray) -> tuple[float, float]:
    return stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))


def test_runs_from_exp_show_dedups_and_skips_queued():
    runs, skipped = cmp.runs_from_exp_show(exp_show(two_methods()))
    assert sorted(r.name for r in runs) == sorted(f"{loss}-s{s}" for loss in EER for s in EER[loss])
    assert skipped == ["queued-one (queued)"]


def test_running_experiment_is_left_out():
    """A running experiment's metrics are not final: left out even when its files hold numbers."""
    show = exp_show(two_methods())
    running = state("f" * 40, "busy", params("byol", 1), {"builtin-test": metrics(40.0)})
    show[1]["experiments"].insert(0, {"revs": [running], "executor": {"state": "running", "name": "dvc-task"},
                                      "name": "busy"})
    runs, skipped = cmp.runs_from_exp_show(show)
    assert "busy" not in {r.name for r in runs} and "busy (running)" in skipped


def test_table_matches_numpy_scipy(tmp_path, capsys):
    path = tmp_path / "exps.json"
    path.write_text(json.dumps(exp_show(two_methods())))
    assert main(["compare", "--exps", str(path)]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    ref, other = "ntxent / audiontt2020", "vicreg / audiontt2020"
    assert list(rows) == [ref, other]
    for loss, method in (("ntxent", ref), ("vicreg", other)):
        x = np.array(list(EER[loss].values()))
        row = rows[method]
        assert row["n seeds"] == "3"
        assert row["eer mean ± std"] == f"{x.mean():.2f} ± {x.std(ddof=1):.2f}"
        lo, hi = ci95(x)
        assert row["95 % CI of mean"] == f"[{lo:.2f}, {hi:.2f}]"
        assert row["MNR %"] == f"{np.mean(list(MNR[loss].values())):.2f}"
        assert row["probe acc"] == f"{np.mean([0.5 + s / 10 for s in EER[loss]]):.3f}"
        assert row["random-init EER %"] == "25.00"
    # paired over the common seeds 1 and 2 only (seed 3 / seed 4 ran for one method)
    d = np.array([EER["vicreg"][s] - EER["ntxent"][s] for s in (1, 2)])
    delta_col = f"Δ eer vs {ref} (paired)"
    assert rows[other][delta_col] == f"{d.mean():+.2f} (n=2)"
    lo, hi = ci95(d)
    assert rows[other]["95 % CI of Δ"] == f"[{lo:.2f}, {hi:.2f}]"
    assert rows[ref][delta_col] == "reference"
    assert "left out (queued, failed or without metrics): queued-one (queued)" in out
    assert "not comparable" not in out


def test_reference_option_and_metric():
    runs, _ = cmp.runs_from_exp_show(exp_show(two_methods()))
    (t,) = cmp.compare(runs, metric="mnr", reference="vicreg")
    assert t.reference == "vicreg / audiontt2020"
    row = next(r for r in t.rows if r.method.startswith("ntxent"))
    d = np.array([MNR["ntxent"][s] - MNR["vicreg"][s] for s in (1, 2)])
    assert row.paired.mean == pytest.approx(d.mean())
    assert row.paired.std == pytest.approx(d.std(ddof=1))
    acc = np.array([0.5 + s / 10 for s in EER["vicreg"]])
    d = np.array([0.5 + s / 10 - (0.5 + s / 10) for s in (1, 2)])
    for spelling in ("probe_acc", "probe.acc"):  # the headline key, or the details path of the same number
        (t,) = cmp.compare(runs, metric=spelling)
        row = table_rows(cmp.format_table(t, spelling))["vicreg / audiontt2020"]
        assert row["probe_acc mean ± std"] == f"{acc.mean():.3f} ± {acc.std(ddof=1):.3f}"
        assert row["Δ probe_acc vs ntxent / audiontt2020 (paired)"] == f"{d.mean():+.3f} (n=2)"
    with pytest.raises(cmp.CompareError, match="--reference byol"):
        cmp.compare(runs, reference="byol")


def test_single_seed_has_no_interval():
    exps = [("a", params("ntxent", 1), {"builtin-test": metrics(14.0)}),
            ("b", params("vicreg", 1), {"builtin-test": metrics(30.0)})]
    runs, _ = cmp.runs_from_exp_show(exp_show(exps))
    (t,) = cmp.compare(runs)
    rows = table_rows(cmp.format_table(t, "eer"))
    assert rows["ntxent / audiontt2020"]["95 % CI of mean"] == "n=1, no interval"
    assert rows["ntxent / audiontt2020"]["eer mean ± std"] == "14.00"
    other = rows["vicreg / audiontt2020"]
    assert other["Δ eer vs ntxent / audiontt2020 (paired)"] == "+16.00 (n=1)"
    assert other["95 % CI of Δ"] == "n=1, no interval"


def test_incomparable_trials_are_listed_and_excluded():
    exps = two_methods() + [("odd-trials", params("vicreg", 3), {"builtin-test": metrics(99.0, trials=500)})]
    runs, _ = cmp.runs_from_exp_show(exp_show(exps))
    (t,) = cmp.compare(runs)
    text = cmp.format_table(t, "eer")
    assert "not comparable (left out): odd-trials (trials 500 vs 8644)" in text
    rows = table_rows(text)
    x = np.array(list(EER["vicreg"].values()))
    assert rows["vicreg / audiontt2020"]["n seeds"] == "3"
    assert rows["vicreg / audiontt2020"]["eer mean ± std"] == f"{x.mean():.2f} ± {x.std(ddof=1):.2f}"


def test_other_test_set_params_are_not_comparable():
    p = params("vicreg", 9)
    p["datasets"]["test"]["builtin-test"]["path"] = "elsewhere"
    runs, _ = cmp.runs_from_exp_show(exp_show(two_methods() + [("moved", p, {"builtin-test": metrics(1.0)})]))
    (t,) = cmp.compare(runs)
    assert t.excluded == ["moved (params datasets.test.builtin-test differ)"]


def test_missing_metric_dash_and_named_once():
    exps = [("a1", params("ntxent", 1), {"builtin-test": metrics(14.0, acc=None)}),
            ("a2", params("ntxent", 2), {"builtin-test": metrics(15.0, acc=None)}),
            ("b1", params("vicreg", 1), {"builtin-test": metrics(30.0)})]
    runs, _ = cmp.runs_from_exp_show(exp_show(exps))
    text = cmp.format_table(cmp.compare(runs)[0], "eer")
    assert table_rows(text)["ntxent / audiontt2020"]["probe acc"] == "—"
    assert table_rows(text)["vicreg / audiontt2020"]["probe acc"] == "0.800"
    assert text.count("missing (—): probe_acc: a1, a2") == 1


def test_duplicate_seed_noted_and_the_newest_kept():
    exps = two_methods() + [("again", params("ntxent", 1), {"builtin-test": metrics(50.0)})]  # oldest: listed last
    runs, _ = cmp.runs_from_exp_show(exp_show(exps))
    (t,) = cmp.compare(runs)
    assert any("ntxent / audiontt2020: seed 1 ran more than once" in n and "left out again" in n for n in t.notes)
    row = next(r for r in t.rows if r.method.startswith("ntxent"))
    assert row.metric.mean == pytest.approx(np.mean(list(EER["ntxent"].values())))


def test_runs_that_differ_in_more_than_the_seed_are_separate_methods():
    """A sweep's short runs and a longer default run of the same objective are two rows (each pooled over its own
    seeds only); params that do not change the numbers (the invariance report, another objective's section, worker
    counts) split nothing; the default reference is the ntxent variant with the most seeds."""
    short = {"max_steps": 80}
    exps = [(f"ntxent-s{s}", params("ntxent", s, train=short, embed={"invariance": None},
                                    losses={"dcl": {"temperature": 0.1 * s}}, corpus={"workers": s}),
             {"builtin-test": metrics(EER["ntxent"][s])}) for s in (1, 2, 3)]
    exps += [(f"vicreg-s{s}", params("vicreg", s, train=short, embed={"invariance": {"segments_per_singer": 2}}),
              {"builtin-test": metrics(EER["vicreg"][s])}) for s in (1, 2)]
    exps.append(("default", params("ntxent", 123, train={"max_steps": 200}), {"builtin-test": metrics(11.0)}))
    runs, _ = cmp.runs_from_exp_show(exp_show(exps))
    (t,) = cmp.compare(runs)
    text = cmp.format_table(t, "eer")
    rows = table_rows(text)
    short_label, long_label = ("ntxent / audiontt2020 [train.max_steps=80]",
                               "ntxent / audiontt2020 [train.max_steps=200]")
    assert set(rows) == {short_label, long_label, "vicreg / audiontt2020"}, text
    x = np.array([EER["ntxent"][s] for s in (1, 2, 3)])
    assert rows[short_label]["n seeds"] == "3"
    assert rows[short_label]["eer mean ± std"] == f"{x.mean():.2f} ± {x.std(ddof=1):.2f}"
    assert rows[long_label]["n seeds"] == "1" and rows[long_label]["eer mean ± std"] == "11.00"
    assert t.reference == short_label  # 3 seeds beat 1
    d = np.array([EER["vicreg"][s] - EER["ntxent"][s] for s in (1, 2)])
    assert rows["vicreg / audiontt2020"][f"Δ eer vs {short_label} (paired)"] == f"{d.mean():+.2f} (n=2)"
    assert rows[long_label][f"Δ eer vs {short_label} (paired)"] == "no common seed"
    for spelling in ("ntxent", "ntxent / audiontt2020"):  # a loss, or loss / encoder: its best-sampled variant
        assert cmp.compare(runs, reference=spelling)[0].reference == short_label
    assert cmp.compare(runs, reference=long_label)[0].reference == long_label


def test_corpus_params_make_a_builtin_test_set_another_one():
    p = params("vicreg", 9, corpus={"n_test_singers": 300, "workers": 2})
    runs, _ = cmp.runs_from_exp_show(exp_show(two_methods() + [("large", p, {"builtin-test": metrics(20.0)})]))
    (t,) = cmp.compare(runs)
    assert t.excluded == ["large (params corpus differ)"]
    q = params("vicreg", 9, corpus={"workers": 7})  # the worker count does not change the corpus
    runs, _ = cmp.runs_from_exp_show(exp_show(two_methods() + [("busy", q, {"builtin-test": metrics(20.0)})]))
    assert cmp.compare(runs)[0].excluded == []


def test_plot_writes_png(tmp_path):
    path = tmp_path / "exps.json"
    path.write_text(json.dumps(exp_show(two_methods())))
    assert main(["compare", "--exps", str(path), "--plot", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dvc_failure_is_one_line(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "bin" / "dvc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'ERROR: you are not inside of a DVC repository' >&2\nexit 253\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr("sys.executable", str(tmp_path / "bin" / "python"))
    assert main(["compare"]) == 2
    err = capsys.readouterr().err
    assert err == "error: `dvc exp show --json` failed (exit 253): ERROR: you are not inside of a DVC repository\n"
    fake.unlink()
    monkeypatch.setattr("shutil.which", lambda _: None)
    assert main(["compare"]) == 2
    assert capsys.readouterr().err.startswith("error: dvc not found")
    (tmp_path / "bad.json").write_text("{")
    assert main(["compare", "--exps", str(tmp_path / "bad.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_summary_prints_the_numbers(tmp_path, capsys):
    m = details(13.882, mnr=4.912, acc=0.8723)
    m["embedding"]["eer_ci95"] = [12.9, 14.8]
    m["embedding"]["eer_ci95_singer"] = [8.25, 19.75]
    m["versus"] = {"random_init": {"eer_diff": -11.118, "eer_diff_ci95_singer": [-16.0, -6.5], "beaten": True},
                   "mfcc": {"eer_diff": -11.318, "eer_diff_ci95_singer": [-20.0, 0.5], "beaten": False}}
    (tmp_path / "b-set_details.json").write_text(json.dumps(m))  # the evaluate stage's pair of files
    (tmp_path / "b-set.json").write_text(json.dumps(headline(m)))
    old = details(20.0)
    old["embedding"]["eer_ci95"] = [19.0, 21.0]
    del old["baselines"]["mfcc"]
    (tmp_path / "a-set.json").write_text(json.dumps(old))  # a metrics folder from before the split
    assert main(["summary", "--metrics", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "a-set: EER 20.00% [trial-level 95 % CI 19.00, 21.00] minDCF 0.990 MNR 5.00% probe acc 0.800 "
        "(std 0.010) | random-init EER 25.00% (std 1.00, 3 inits) | mfcc EER —",
        "b-set: EER 13.88% [singer-level 95 % CI 8.25, 19.75] minDCF 0.990 MNR 4.91% probe acc 0.872 "
        "(std 0.010) | random-init EER 25.00% (std 1.00, 3 inits) | mfcc EER 25.20% | EER difference, singer-level "
        "95 % CI: vs random-init -11.12 [-16.00, -6.50] beaten, vs mfcc -11.32 [-20.00, +0.50] (not beaten)",
    ]
    assert main(["summary", "--metrics", str(tmp_path / "none")]) == 2


def test_headline_file_is_flat_ordered_and_copies_the_details():
    d = details(13.9, mnr=4.9, acc=0.86, rinit=30.2, mfcc=25.2)
    h = headline(d)
    assert list(h) == ["eer", "min_dcf", "mnr", "probe_acc", "random_init_eer", "mfcc_eer", "trials"]
    assert h == {"eer": 13.9, "min_dcf": 0.99, "mnr": 4.9, "probe_acc": 0.86, "random_init_eer": 30.2,
                 "mfcc_eer": 25.2, "trials": 8644}
    assert "probe_acc" not in headline(details(13.9, acc=None))  # a missing number stays missing


def test_old_nested_experiments_compare_like_headline_ones():
    """Experiments whose metrics/<ds>.json still holds the nested details give the same table."""
    def table(nested: bool) -> str:
        exps = [(f"{loss}-s{s}", params(loss, s), {"builtin-test": metrics(v, mnr=MNR[loss][s], nested=nested)})
                for loss, seeds in EER.items() for s, v in seeds.items()]
        runs, _ = cmp.runs_from_exp_show(exp_show(exps))
        return cmp.format_table(cmp.compare(runs)[0], "eer")

    assert table(True) == table(False)
    mixed = [("new", params("ntxent", 1), {"builtin-test": metrics(14.0)}),
             ("old", params("ntxent", 2), {"builtin-test": metrics(16.0, nested=True)})]
    (t,) = cmp.compare(cmp.runs_from_exp_show(exp_show(mixed))[0])
    assert not t.excluded and t.rows[0].metric.mean == pytest.approx(15.0)


def test_mfcc_baseline_under_the_table():
    text = cmp.format_table(cmp.compare(cmp.runs_from_exp_show(exp_show(two_methods()))[0])[0], "eer")
    assert "baseline MFCC mean+std: EER 25.20 %\n" in text


def test_exps_lists_each_experiment_within_120_columns(tmp_path, capsys):
    long = "a-very-long-experiment-name-that-would-not-fit-" * 2
    exps = [(n, {**p, "train": {"max_steps": 200}}, m) for n, p, m in two_methods()]
    exps += [(long, params("barlow", 5, encoder="ecapa_tdnn_with_a_long_name", train={"max_steps": 3}),
              {"builtin-test": metrics(21.5, mnr=7.25, acc=0.9, rinit=33.3, mfcc=25.2)})]
    path = tmp_path / "exps.json"
    path.write_text(json.dumps(exp_show(exps)))
    assert main(["exps", "--exps", str(path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 120
    assert lines[0] == "builtin-test" and lines[1].split() == ["experiment", "loss", "encoder", "seed", "steps",
                                                               "flags", "eer", "min_dcf", "mnr", "probe_acc",
                                                               "random_init_eer", "mfcc_eer"]
    cells = {ln.split()[0]: ln.split() for ln in lines[2:] if ln and not ln.startswith(("left out", "flag "))}
    assert cells["ntxent-s2"][1:] == ["ntxent", "audiontt2020", "2", "200", "-", f"{EER['ntxent'][2]:.2f}", "0.990",
                                      f"{MNR['ntxent'][2]:.2f}", "0.700", "25.00", "25.20"]
    cut = next(c for name, c in cells.items() if name.startswith("a-very"))
    assert cut[0].endswith("~") and cut[-8:] == ["3", "s", "21.50", "0.990", "7.25", "0.900", "33.30", "25.20"]
    assert f"flag s: {cmp.FLAGS['s']} differs from most runs" in lines and not any("flag d" in x for x in lines)
    assert len(cells) == 7 and "left out (queued, failed or without metrics): queued-one (queued)" in out


def test_workspace_label_is_whole_and_flags_mark_data_and_test_set():
    exps = [(f"e{s}", params("ntxent", s, train={"max_steps": 200}), {"builtin-test": metrics(14.0 + s)})
            for s in (1, 2, 3)]
    exps.insert(0, ("other-data", params("ntxent", 4, corpus={"n_train_singers": 8}, train={"max_steps": 200}),
                    {"builtin-test": metrics(20.0)}))
    exps.insert(0, ("other-test", params("ntxent", 5, train={"max_steps": 200}, trials={"n_pairs": 10}),
                    {"builtin-test": metrics(20.0, trials=10)}))
    own = params("ntxent", 6, train={"max_steps": 200})
    own["datasets"] = {**own["datasets"], "train": {"mine": {"path": "data/raw/mine"}}}
    exps.insert(0, ("own-train-set", own, {"builtin-test": metrics(20.0)}))
    runs, _ = cmp.runs_from_exp_show(exp_show(exps))
    by_name = dict(zip([r.name for r in runs], cmp.run_flags(runs, "builtin-test")))
    # other corpus params also regenerate the built-in test set: data and test set differ
    assert by_name == {"own-train-set": "d", "other-test": "t", "other-data": "dt", "e1": "", "e2": "", "e3": ""}
    ws = state("workspace", None, params("vicreg", 9), {"builtin-test": metrics(30.0)})
    assert cmp.runs_from_exp_show([ws])[0][0].name == "workspace"
    (text,) = cmp.exps_table(cmp.runs_from_exp_show([ws])[0], width=60).splitlines()[2:]
    assert text.split()[0] == "workspace"  # never cut to "workspa" or "works~", even in a narrow table


def test_compare_notes_methods_not_trained_like_the_reference():
    exps = [(f"n{s}", params("ntxent", s, train={"max_steps": 200}), {"builtin-test": metrics(14.0 + s)})
            for s in (1, 2)]
    exps += [(f"v{s}", params("vicreg", s, train={"max_steps": 3}), {"builtin-test": metrics(30.0 + s)})
             for s in (1, 2)]
    (t,) = cmp.compare(cmp.runs_from_exp_show(exp_show(exps))[0])
    text = cmp.format_table(t, "eer")
    assert ("note: vicreg / audiontt2020: not trained like the reference ntxent / audiontt2020: "
            "train.max_steps 3 vs 200\n") in text
    same = [e for e in exps if e[0].startswith("n")] + [(f"v{s}", params("vicreg", s, train={"max_steps": 200}),
                                                         {"builtin-test": metrics(30.0)}) for s in (1, 2)]
    assert "not trained like" not in cmp.format_table(cmp.compare(cmp.runs_from_exp_show(exp_show(same))[0])[0],
                                                      "eer")


def test_stale_workspace_against_dvc_lock():
    p = {"seed": 1, "train": {"max_steps": 3, "lr": 1e-3}, "evaluate": {"bootstrap": 10}}
    lock = {"stages": {
        "train": {"params": {"params.yaml": {"seed": 1, "train.max_steps": 3, "train.lr": "1e-03"}},
                  "outs": [{"path": "data/model", "md5": "aaa.dir"}]},
        "embed": {"deps": [{"path": "data/model", "md5": "aaa.dir"}], "params": {"params.yaml": {"seed": 1}},
                  "outs": [{"path": "data/emb.h5", "md5": "e1"}]},
        "evaluate": {"deps": [{"path": "data/emb.h5", "md5": "e1"}],
                     "params": {"params.yaml": {"evaluate": {"bootstrap": 10}}}}}}
    assert cmp.stale_workspace(p, lock) is None  # "1e-03" (pyyaml's reading of dvc.lock) is 1e-3
    assert cmp.stale_workspace({**p, "train": {"max_steps": 50, "lr": 1e-3}}, lock) == \
        "train.max_steps is 50 in params.yaml but 3 in dvc.lock (train)"
    lock["stages"]["train"]["outs"][0]["md5"] = "bbb.dir"  # train re-ran; embed and evaluate are of the old model
    assert cmp.stale_workspace(p, lock) == "embed ran on an older data/model than train wrote (dvc.lock)"


def test_committed_default_run_is_not_stale_and_an_edit_is_named():
    """The committed params.yaml and dvc.lock are of one run; editing one evaluate param makes them stale."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text(encoding="utf-8"))
    assert cmp.stale_workspace(params, lock) is None
    params["evaluate"]["bootstrap"] = 250
    assert cmp.stale_workspace(params, lock).startswith("evaluate.bootstrap is 250 in params.yaml but 1000 in "
                                                        "dvc.lock (evaluate@")


def test_drop_stale_workspace_reads_dvc_lock(tmp_path):
    runs = [cmp.Run("workspace", {"seed": 2}, {"x": {}}), cmp.Run("exp", {"seed": 1}, {"x": {}})]
    skipped: list[str] = []
    assert cmp.drop_stale_workspace(runs, skipped, tmp_path) == runs  # no dvc.lock: nothing to compare with
    (tmp_path / "dvc.lock").write_text("stages:\n  train:\n    params:\n      params.yaml:\n        seed: 1\n")
    assert [r.name for r in cmp.drop_stale_workspace(runs, skipped, tmp_path)] == ["exp"]
    assert skipped == ["workspace (its metrics are not of its params.yaml: seed is 2 in params.yaml but 1 in "
                       "dvc.lock (train))"]


def test_plot_axis_names_the_unit():
    assert cmp.axis_label("eer") == "eer (EER, %), mean over seeds"
    assert cmp.axis_label("embedding.mnr") == "mnr (MNR, %), mean over seeds"
    assert "0-1" in cmp.axis_label("min_dcf")


def test_plot_series_matches_the_table_and_baselines(tmp_path):
    runs, _ = cmp.runs_from_exp_show(exp_show(two_methods()))
    (t,) = cmp.compare(runs)
    d = cmp.plot_series(t, "eer")
    for i, loss in enumerate(("ntxent", "vicreg")):
        x = np.array(list(EER[loss].values()))
        lo, hi = ci95(x)
        assert d["means"][i] == pytest.approx(x.mean())
        assert d["err_lo"][i] == pytest.approx(x.mean() - lo) and d["err_hi"][i] == pytest.approx(hi - x.mean())
    assert d["random_init"] == [(25.0, 0), (25.0, 1)] and d["mfcc"] == pytest.approx(25.2)
    assert cmp.plot_series(t, "mnr")["mfcc"] is None  # EER baselines are not drawn on another metric's axis
    single = [("a", params("ntxent", 1), {"builtin-test": metrics(14.0)})]
    (t1,) = cmp.compare(cmp.runs_from_exp_show(exp_show(single))[0])
    d1 = cmp.plot_series(t1, "eer")
    assert d1["err_lo"] == [0.0] and d1["labels"] == ["ntxent / audiontt2020 (n=1, no interval)"]
    cmp.plot([t], "eer", tmp_path / "c.svg")
    assert b"<svg" in (tmp_path / "c.svg").read_bytes()[:400]
    with pytest.raises(cmp.CompareError, match="unknown image format 'xyz'"):
        cmp.plot([t], "eer", tmp_path / "c.xyz")
    assert not (tmp_path / "c.xyz").exists()


def test_workspace_left_out_while_a_run_is_in_progress(tmp_path):
    import fcntl
    import os

    runs = [cmp.Run("workspace", {"seed": 2}, {"x": {}})]
    lock = tmp_path / ".dvc" / "tmp" / "lock"
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as DVC holds it: the metrics on disk may be of the previous params
    try:
        skipped: list[str] = []
        assert cmp.drop_stale_workspace(runs, skipped, tmp_path) == []
        assert skipped[0].startswith("workspace (its metrics are not of its params.yaml: a run is in progress: ")
    finally:
        os.close(fd)
    assert cmp.drop_stale_workspace(runs, [], tmp_path) == runs
