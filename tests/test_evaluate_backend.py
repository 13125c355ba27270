"""The evaluate stage's back-end glue: training-data embeddings -> per-representation cohort (training singers,
validation singers left out) and calibration (validation-singer pairs), checked against independent
computations on fabricated files; the channel-shortcut block; the headline keys."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from singer_ssl.core.params import load_params
from singer_ssl.evaluation import backend, metrics
from singer_ssl.evaluation.run import EvaluateConfig
from singer_ssl.evaluation.run import run as evaluate_run
from singer_ssl.evaluation.store import EmbeddingSet, read_embeddings, write_embeddings

ROOT = Path(__file__).resolve().parents[1]
DATASET = "builtin-test"
NAMES = ("embedding", "projection", "baseline/random_init/embedding", "baseline/random_init/projection",
         "baseline/random_init/init1/embedding", "baseline/random_init/init1/projection", "baseline/mfcc/embedding")


def _set(params: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(params)
    *path, last = dotted.split(".")
    node = out
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def _file(path: Path, n_singers: int, prefix: str, seed: int, offset: float = 2.0) -> None:
    """An embed-stage file: singers x 3 recordings x 2 segments; every matrix = offset + singer centre + noise."""
    rng = np.random.default_rng(seed)
    keys, singers, sources = [], [], []
    for s in range(n_singers):
        for r in range(3):
            for k in range(2):
                keys.append(f"{prefix}{s}/rec{r}_{k}.wav")
                singers.append(f"{prefix}{s}")
                sources.append(f"{prefix}{s}/rec{r}.wav")
    codes = np.repeat(np.arange(n_singers), 6)
    vectors = {}
    for name in NAMES:
        centres = rng.normal(size=(n_singers, 6))
        vectors[name] = (offset + centres[codes] + 0.7 * rng.normal(size=(len(keys), 6))).astype(np.float32)
    write_embeddings(path, EmbeddingSet(keys, singers, sources, vectors))


def _trials(path: Path, keys: list[str]) -> None:
    rng = np.random.default_rng(1)
    lines = []
    for _ in range(400):
        a, b = rng.choice(len(keys), size=2, replace=False)
        lines.append(f"{int(keys[a].split('/')[0] == keys[b].split('/')[0])},{keys[a]},{keys[b]}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def files(tmp_path):
    test, trials, train, model = tmp_path / "test.h5", tmp_path / "trials.txt", tmp_path / "train", tmp_path / "model"
    _file(test, 6, "t", 0)
    _trials(trials, read_embeddings(test).keys)
    train.mkdir()
    model.mkdir()
    _file(train / "set-a.h5", 8, "a", 1)
    _file(train / "set-b.h5", 4, "b", 2)
    val = ["set-a/a0", "set-b/b3", "set-a/a5"]
    (model / "threshold.json").write_text(json.dumps({"eer_threshold": 0.5, "val_singers": val}))
    return test, trials, train, model, val


def _cfg(method: str = "asnorm", top_n: int = 4) -> EvaluateConfig:
    p = load_params(ROOT / "params.yaml")
    p = _set(_set(_set(p, "evaluate.bootstrap", 20), "evaluate.probe.max_epochs", 3), "evaluate.tsne.max_points", 20)
    p = _set(_set(p, "evaluate.score_norm.method", method), "evaluate.score_norm.top_n", top_n)
    p = _set(p, "evaluate.probe.runs", 1)
    return EvaluateConfig.from_params(p, DATASET)


def test_backend_blocks_equal_an_independent_computation(tmp_path, files):
    from sklearn.linear_model import LogisticRegression

    test, trials, train, model, val = files
    cfg = _cfg("asnorm", 4)
    line = evaluate_run(cfg, test, trials, tmp_path / "m.json", tmp_path / "plots", train, model)
    m = json.loads((tmp_path / "m_details.json").read_text())
    es = read_embeddings(test)
    index = {k: i for i, k in enumerate(es.keys)}
    rows = [r.split(",") for r in trials.read_text().split()]
    labels = np.array([int(r[0]) for r in rows])
    i1, i2 = np.array([index[r[1]] for r in rows]), np.array([index[r[2]] for r in rows])
    a, b = read_embeddings(train / "set-a.h5"), read_embeddings(train / "set-b.h5")
    for name, block in (("embedding", m["embedding"]), ("baseline/mfcc/embedding", m["baselines"]["mfcc"])):
        x = np.concatenate([a.vectors[name], b.vectors[name]]).astype(np.float64)
        sing = np.array([f"set-a/{s}" for s in a.singers] + [f"set-b/{s}" for s in b.singers])
        train_rows = ~np.isin(sing, val)
        # cohort by hand: one mean per training singer that is not a validation singer; training mean of those rows
        cohort = np.stack([x[sing == s].mean(0) for s in sorted(set(sing[train_rows]))])
        mean = x[train_rows].mean(0)
        assert block["score_norm"]["cohort_singers"] == 12 - 3 and block["score_norm"]["top_n"] == 4
        for method in ("snorm", "asnorm"):
            s = backend.normalize_scores(es.vectors[name], i1, i2, cohort, mean, method, 4)
            assert block["score_norm"][method]["eer"] == pytest.approx(metrics.eer(labels, s)[0])
        assert block["eer_norm"] == block["score_norm"]["asnorm"]["eer"]
        # calibration: every pair of validation-singer segments, AS-norm scores, vs scikit-learn
        v = np.flatnonzero(~train_rows)
        p, q = np.triu_indices(len(v), k=1)
        lab = (sing[v[p]] == sing[v[q]]).astype(int)
        fit = backend.normalize_scores(x, v[p], v[q], cohort, mean, "asnorm", 4)
        lr = LogisticRegression(C=np.inf, class_weight="balanced", tol=1e-12, max_iter=10000).fit(fit[:, None], lab)
        cal = block["calibration"]
        assert (cal["score"], cal["trials"], cal["singers"]) == ("asnorm", len(lab), 3)
        assert cal["scale"] == pytest.approx(float(lr.coef_[0, 0]), rel=1e-4)
        assert cal["offset"] == pytest.approx(float(lr.intercept_[0]), rel=1e-4, abs=1e-5)
        llr = cal["scale"] * backend.normalize_scores(es.vectors[name], i1, i2, cohort, mean, "asnorm", 4) + cal[
            "offset"]
        accept = llr >= np.log(99.0)  # Bayes threshold at p_target 0.01
        direct = (0.01 * np.mean(~accept[labels == 1]) + 0.99 * np.mean(accept[labels == 0])) / 0.01
        assert cal["act_dcf"] == pytest.approx(direct)
        assert cal["cllr"] == pytest.approx(backend.cllr(llr, labels))
    # the random-init baseline: the mean over its initialisations, each with its own cohort
    assert "score_norm" in m["baselines"]["random_init"] and "versus_norm" in m
    head = json.loads((tmp_path / "m.json").read_text())
    assert head["eer_norm"] == m["embedding"]["eer_norm"]
    assert list(head) == ["eer", "min_dcf", "mnr", "probe_acc", "random_init_eer", "mfcc_eer", "eer_norm", "trials"]
    assert m["baselines"]["mfcc"]["eer_norm"] == m["baselines"]["mfcc"]["score_norm"]["asnorm"]["eer"]
    assert "AS-norm EER" in line and "channel:" in line


def test_method_none_calibrates_the_cosine_and_reports_both_norms(tmp_path, files):
    test, trials, train, model, _ = files
    evaluate_run(_cfg("none"), test, trials, tmp_path / "m.json", tmp_path / "plots", train, model)
    m = json.loads((tmp_path / "m_details.json").read_text())
    assert m["embedding"]["calibration"]["score"] == "cosine"
    assert {"snorm", "asnorm"} <= set(m["embedding"]["score_norm"]) and "eer_norm" not in m["embedding"]
    assert "versus_norm" not in m and "eer_norm" not in json.loads((tmp_path / "m.json").read_text())
    # the glue to scripts/scoring_report.py: its table reads what the evaluate stage writes
    import importlib.util

    spec = importlib.util.spec_from_file_location("scoring_report", ROOT / "scripts" / "scoring_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    text = report.report(tmp_path)
    e = m["embedding"]
    assert (f"| trained encoder | {e['eer']:.2f} | {e['score_norm']['snorm']['eer']:.2f} | "
            f"{e['score_norm']['asnorm']['eer']:.2f} |") in text
    assert f"Cllr {e['calibration']['cllr']:.3f}" in text


def test_without_validation_singers_no_calibration_and_the_whole_training_set_is_the_cohort(tmp_path, files):
    test, trials, train, _, _ = files
    evaluate_run(_cfg("snorm"), test, trials, tmp_path / "m.json", tmp_path / "plots", train, tmp_path / "none")
    m = json.loads((tmp_path / "m_details.json").read_text())
    assert m["embedding"]["score_norm"]["cohort_singers"] == 12 and "calibration" not in m["embedding"]


def test_test_singers_are_never_in_the_cohort(tmp_path, files):
    """Adding the test singers' own embeddings to the training folder changes the normalised EER: proof that
    the cohort is read from that folder only (and so, in the pipeline, from the training data)."""
    test, trials, train, model, _ = files
    evaluate_run(_cfg(), test, trials, tmp_path / "m.json", tmp_path / "plots", train, model)
    before = json.loads((tmp_path / "m_details.json").read_text())["embedding"]["score_norm"]
    (train / "set-c.h5").write_bytes(test.read_bytes())
    evaluate_run(_cfg(), test, trials, tmp_path / "m.json", tmp_path / "plots", train, model)
    after = json.loads((tmp_path / "m_details.json").read_text())["embedding"]["score_norm"]
    assert after["cohort_singers"] == before["cohort_singers"] + 6
    assert after["snorm"]["eer"] != before["snorm"]["eer"]


def test_channel_block_is_written(tmp_path, files):
    test, trials, _, _, _ = files
    evaluate_run(_cfg("none"), test, trials, tmp_path / "m.json", tmp_path / "plots")
    m = json.loads((tmp_path / "m_details.json").read_text())
    assert m["channel"]["pairs"] == {"same_recording": 6 * 3, "cross_recording": 6 * 12}
    assert m["channel"]["eer"] == pytest.approx(m["embedding"]["eer"])
    assert "score_norm" not in m["embedding"]


def test_missing_training_embeddings_are_one_error_and_nothing_is_written(tmp_path, files):
    test, trials, _, model, _ = files
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no training-data embedding files"):
        evaluate_run(_cfg(), test, trials, tmp_path / "m.json", tmp_path / "plots", tmp_path / "empty", model)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "plots").exists()
