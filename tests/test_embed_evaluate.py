"""EmbedConfig / EvaluateConfig validation, the embed/evaluate shims, and the one trial-scoring path."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from singer_ssl.cli import main as cli
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.params import load_params
from singer_ssl.embed import EmbedConfig, check_frontend
from singer_ssl.evaluation import metrics, verification
from singer_ssl.evaluation.probe import probe_singer_id
from singer_ssl.evaluation.run import EvaluateConfig, ProbeConfig, TsneConfig, random_init_names
from singer_ssl.evaluation.run import run as evaluate_run
from singer_ssl.evaluation.store import EmbeddingSet, write_embeddings

ROOT = Path(__file__).resolve().parents[1]
DATASET = "builtin-test"


@pytest.fixture()
def params() -> dict:
    return load_params(ROOT / "params.yaml")


def _set(params: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(params)
    *path, last = dotted.split(".")
    node = out
    for key in path:
        node = node.setdefault(key, {})
    node[last] = value
    return out


def test_configs_from_the_repository_params(params):
    e = EmbedConfig.from_params(params, DATASET)
    assert (e.dataset, e.seed, e.batch_size, e.device, e.degrade_16k, e.random_inits) == (
        DATASET, 123, 64, "auto", False, 3)
    v = EvaluateConfig.from_params(params, DATASET)
    assert (v.p_target, v.c_miss, v.c_fa, v.bootstrap, v.mnr_queries, v.mnr_negatives, v.seed) == (
        0.01, 1.0, 1.0, 1000, 1000, 512, 123)
    assert v.probe == ProbeConfig(lr=1e-3, weight_decay=1e-8, max_epochs=200, patience=10, batch_size=200,
                                  val_fraction=0.15, test_fraction=0.25, device="cpu", runs=5)
    assert v.tsne == TsneConfig(perplexity=30.0, max_points=2000)


def test_defaults_when_the_sections_are_absent(params):
    bare = {"datasets": params["datasets"]}
    assert EmbedConfig.from_params(bare, DATASET) == EmbedConfig(DATASET, seed=0, batch_size=64, device="auto",
                                                                 degrade_16k=False, random_inits=3)
    assert EvaluateConfig.from_params(bare, DATASET) == EvaluateConfig(DATASET)


@pytest.mark.parametrize("dotted, value, message", [
    ("embed.batch_size", 0, "embed.batch_size: expected an integer >= 1, got 0"),
    ("embed.batch_size", "64", "embed.batch_size: expected an integer >= 1, got '64'"),
    ("embed.batch_size", True, "embed.batch_size: expected an integer >= 1, got True"),
    ("embed.degrade_16k", "yes", "embed.degrade_16k: expected true or false, got 'yes'"),
    ("embed.device", "gpu", "embed.device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
    ("embed.batchsize", 8, "embed.batchsize: unknown parameter; valid keys of embed: batch_size, degrade_16k, device, "
                           "invariance, random_inits"),
    ("embed.random_inits", 0, "embed.random_inits: expected an integer >= 1, got 0"),
    ("embed.random_inits", 1.5, "embed.random_inits: expected an integer >= 1, got 1.5"),
    ("seed", "abc", "seed: expected an integer >= 0, got 'abc'"),
])
def test_embed_config_rejects(params, dotted, value, message):
    with pytest.raises(ConfigError) as err:
        EmbedConfig.from_params(_set(params, dotted, value), DATASET)
    assert str(err.value) == message


def test_embed_section_must_be_a_mapping(params):
    with pytest.raises(ConfigError, match=r"^embed: expected a mapping"):
        EmbedConfig.from_params({**params, "embed": [1, 2]}, DATASET)


@pytest.mark.parametrize("dotted, value, message", [
    ("evaluate.p_target", 1.5, "evaluate.p_target: expected a number > 0.0 and < 1.0, got 1.5"),
    ("evaluate.c_miss", 0, "evaluate.c_miss: expected a number > 0.0, got 0"),
    ("evaluate.bootstrap", 0, "evaluate.bootstrap: expected an integer >= 1, got 0"),
    ("evaluate.mnr_negatives", 2.5, "evaluate.mnr_negatives: expected an integer >= 1, got 2.5"),
    ("evaluate.seed", -1, "evaluate.seed: expected an integer >= 0, got -1"),
    ("evaluate.p_targt", 0.01, "evaluate.p_targt: unknown parameter; valid keys of evaluate: bootstrap, c_fa, "
                               "c_miss, mnr_negatives, mnr_queries, p_target, probe, score_norm, seed, tsne"),
    ("evaluate.score_norm.method", "znorm", "evaluate.score_norm.method: expected one of none, snorm, asnorm, "
                                           "got 'znorm'"),
    ("evaluate.score_norm.top_n", 1, "evaluate.score_norm.top_n: expected an integer >= 2, got 1"),
    ("evaluate.probe.patience", 0, "evaluate.probe.patience: expected an integer >= 1, got 0"),
    ("evaluate.probe.patiense", 3, "evaluate.probe.patiense: unknown parameter; valid keys of evaluate.probe: "
                                   "batch_size, device, lr, max_epochs, patience, runs, test_fraction, "
                                   "val_fraction, weight_decay"),
    ("evaluate.probe.runs", 0, "evaluate.probe.runs: expected an integer >= 1, got 0"),
    ("evaluate.probe.runs", "5", "evaluate.probe.runs: expected an integer >= 1, got '5'"),
    ("evaluate.probe.lr", "fast", "evaluate.probe.lr: expected a number > 0.0, got 'fast'"),
    ("evaluate.probe.test_fraction", 0.9, "evaluate.probe.test_fraction: val_fraction + test_fraction must be "
                                          "< 1, got 0.15 + 0.9"),
    ("evaluate.probe.device", "tpu", "evaluate.probe.device: expected auto, cpu, cuda, cuda:N or mps, got 'tpu'"),
    ("evaluate.probe", 5, "evaluate.probe: expected a mapping with keys lr, weight_decay, max_epochs, patience, "
                          "batch_size, val_fraction, test_fraction, device, runs, got 5"),
    ("evaluate.tsne.max_points", 0, "evaluate.tsne.max_points: expected an integer >= 3, got 0"),
    ("evaluate.tsne.perplex", 5, "evaluate.tsne.perplex: unknown parameter; valid keys of evaluate.tsne: "
                                 "max_points, perplexity"),
])
def test_evaluate_config_rejects(params, dotted, value, message):
    with pytest.raises(ConfigError) as err:
        EvaluateConfig.from_params(_set(params, dotted, value), DATASET)
    assert str(err.value) == message and "\n" not in str(err.value)


def test_yaml11_exponent_strings_are_numbers(params):
    """PyYAML reads `1e-3` (no dot) as a string; it is accepted as the number it spells."""
    cfg = EvaluateConfig.from_params(_set(params, "evaluate.probe.lr", "1e-3"), DATASET)
    assert cfg.probe.lr == 1e-3


def test_only_test_datasets(params):
    with pytest.raises(ConfigError, match="'builtin-train' is a train dataset; embed runs on test datasets"):
        EmbedConfig.from_params(params, "builtin-train")
    with pytest.raises(ConfigError, match="valid choices: builtin-ood, builtin-test, builtin-train"):
        EvaluateConfig.from_params(params, "nope")


def test_other_stages_sections_are_not_read(params):
    garbage = copy.deepcopy(params)
    for name in ("augment", "train", "loss", "encoder", "encoders", "losses", "head", "features", "segment",
                 "trials", "corpus", "audio"):
        garbage[name] = {"surely": ["not", "valid"]} if name != "train" else "garbage"
    garbage["augment"] = {"waveform": {"no_such_augmentation": {"p": 2}}}
    assert EmbedConfig.from_params(garbage, DATASET) == EmbedConfig.from_params(params, DATASET)
    assert EvaluateConfig.from_params(garbage, DATASET) == EvaluateConfig.from_params(params, DATASET)
    # and a bad evaluate section does not stop embed, nor a bad embed section evaluate
    assert EmbedConfig.from_params(_set(params, "evaluate.bootstrap", 0), DATASET).batch_size == 64
    assert EvaluateConfig.from_params(_set(params, "embed.batch_size", 0), DATASET).bootstrap == 1000


@pytest.mark.parametrize("stage, dotted, value, expected", [
    ("embed", "embed.batch_size", 0, "error: embed: embed.batch_size: expected an integer >= 1, got 0"),
    ("evaluate", "evaluate.probe.patience", 0,
     "error: evaluate: evaluate.probe.patience: expected an integer >= 1, got 0"),
])
def test_shims_report_a_bad_parameter_on_one_line(tmp_path, params, stage, dotted, value, expected):
    """`python stages/<stage>.py <dataset> <4 paths> --params bad.yaml`: exit 1, one line, nothing written."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_set(params, dotted, value)))
    outs = [str(tmp_path / f"out{i}") for i in range(4)]
    p = subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py"), DATASET, *outs, "--params", str(bad)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert (p.returncode, p.stderr.splitlines(), p.stdout) == (1, [expected], "")
    assert not list(tmp_path.glob("out*"))


def test_check_frontend_compares_every_front_end_key():
    from singer_ssl.core.frontend import FRONT_END_KEYS

    model = {"sample_rate": 16000, "n_fft": 512, "hop": 160, "n_mels": 32, "fmin": 0.0, "fmax": None,
             "log_offset": 1e-8}
    stored = {**model, "fmax": 8000.0, "center": True}  # the features stage stores fmax resolved
    check_frontend(stored, model, "f.h5", "model")
    for key in FRONT_END_KEYS:
        changed = {**stored, key: float(stored[key]) * 2 + 1}
        with pytest.raises(ValueError, match=rf"f.h5 was extracted with {key}="):
            check_frontend(changed, model, "f.h5", "model")


# --------------------------------------------------------------------------------------------------
# One scoring path: `singer-ssl score` and the evaluate stage


def _embedding_file(path: Path, random_inits: int = 1) -> None:
    rng = np.random.default_rng(0)
    keys, singers, sources = [], [], []
    for s in range(4):
        for r in range(3):
            for k in range(4):
                keys.append(f"singer{s}/rec{r}_{k}.wav")
                singers.append(f"singer{s}")
                sources.append(f"singer{s}/rec{r}.wav")
    centres = rng.normal(size=(4, 8))
    codes = np.array([int(s[-1]) for s in singers])
    vec = lambda scale: (scale * centres[codes] + rng.normal(size=(len(keys), 8))).astype(np.float32)  # noqa: E731
    vectors = {"embedding": vec(1.0), "projection": vec(0.8), "baseline/random_init/embedding": vec(0.2),
               "baseline/random_init/projection": vec(0.2), "baseline/mfcc/embedding": vec(0.5)}
    for k in range(1, random_inits):  # as the embed stage names further initialisations
        vectors[f"baseline/random_init/init{k}/embedding"] = vec(0.2 + 0.3 * k)
        vectors[f"baseline/random_init/init{k}/projection"] = vec(0.2)
    write_embeddings(path, EmbeddingSet(keys, singers, sources, vectors))


def _trials(path: Path) -> None:
    rng = np.random.default_rng(1)
    keys = [f"singer{s}/rec{r}_{k}.wav" for s in range(4) for r in range(3) for k in range(4)]
    lines = []
    for _ in range(300):
        a, b = rng.choice(len(keys), size=2, replace=False)
        lines.append(f"{int(keys[a].split('/')[0] == keys[b].split('/')[0])},{keys[a]},{keys[b]}")
    path.write_text("\n".join(lines) + "\n")


def test_cli_score_and_evaluate_share_one_scoring_function(tmp_path, params, monkeypatch, capsys):
    emb, trials = tmp_path / "e.h5", tmp_path / "trials.txt"
    _embedding_file(emb)
    _trials(trials)
    calls: list[tuple[int, float]] = []
    shared = verification.score_trials

    def spy(vectors, trials_, **kw):
        out = shared(vectors, trials_, **kw)
        calls.append((vectors.shape[0], out.eer))
        return out

    monkeypatch.setattr(verification, "score_trials", spy)
    cfg = EvaluateConfig.from_params(_set(_set(_set(params, "evaluate.bootstrap", 20), "evaluate.probe.max_epochs", 3),
                                          "evaluate.tsne.max_points", 20), DATASET)
    line = evaluate_run(cfg, emb, trials, tmp_path / "m.json", tmp_path / "plots")
    metrics = json.loads((tmp_path / "m_details.json").read_text())
    # the headline file DVC shows: flat, ordered, the same numbers as the details (baselines included)
    head = json.loads((tmp_path / "m.json").read_text())
    assert list(head) == ["eer", "min_dcf", "mnr", "probe_acc", "random_init_eer", "mfcc_eer", "trials"]
    assert head == {"eer": metrics["embedding"]["eer"], "min_dcf": metrics["embedding"]["min_dcf"],
                    "mnr": metrics["embedding"]["mnr"], "probe_acc": metrics["probe"]["acc"],
                    "random_init_eer": metrics["baselines"]["random_init"]["eer"],
                    "mfcc_eer": metrics["baselines"]["mfcc"]["eer"], "trials": metrics["counts"]["trials"]}
    assert line.startswith(f"{DATASET}: EER {metrics['embedding']['eer']:.2f}%")
    assert len(calls) == 4  # embedding, projection, two baselines
    assert calls[0][1] == metrics["embedding"]["eer"]
    calls.clear()
    capsys.readouterr()
    assert cli(["score", str(trials), "--embeddings", str(emb)]) == 0
    assert len(calls) == 1 and calls[0][1] == metrics["embedding"]["eer"]
    printed = re.search(r"EER ([0-9.]+)%  threshold ([-0-9.]+)  minDCF\(p=0.01\) ([0-9.]+)", capsys.readouterr().out)
    assert float(printed[1]) == round(metrics["embedding"]["eer"], 2)
    assert float(printed[2]) == round(metrics["embedding"]["eer_threshold"], 4)
    assert float(printed[3]) == round(metrics["embedding"]["min_dcf"], 4)


def test_evaluate_names_missing_matrices(tmp_path, params):
    """A `singer-ssl embed` file (embedding only) is not an embed-stage file: one ValueError, nothing written."""
    emb = tmp_path / "cli.h5"
    write_embeddings(emb, EmbeddingSet(["a/x.wav", "b/y.wav"], ["a", "b"], ["a/x.wav", "b/y.wav"],
                                       {"embedding": np.ones((2, 3), np.float32)}))
    (tmp_path / "t.txt").write_text("1,a/x.wav,a/x.wav\n0,a/x.wav,b/y.wav\n")
    with pytest.raises(ValueError, match=r"cli.h5: no projection, baseline/random_init/embedding, "
                                         r"baseline/mfcc/embedding \(not an embed-stage file; it has embedding\)"):
        evaluate_run(EvaluateConfig.from_params(params, DATASET), emb, tmp_path / "t.txt", tmp_path / "m.json",
                     tmp_path / "plots")
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "plots").exists()
    assert not (tmp_path / "m_details.json").exists()


def test_evaluate_averages_random_inits_and_probe_runs(tmp_path, params):
    """baselines.random_init = mean / population std over the stored initialisations of each one's own metrics;
    every probe block = mean / population std over `evaluate.probe.runs` runs seeded evaluate.seed + i."""
    from singer_ssl.evaluation.store import read_embeddings

    emb, trials = tmp_path / "e.h5", tmp_path / "trials.txt"
    _embedding_file(emb, random_inits=3)
    _trials(trials)
    p = _set(_set(params, "evaluate.bootstrap", 20), "evaluate.tsne.max_points", 20)
    p = _set(_set(p, "evaluate.probe.max_epochs", 15), "evaluate.probe.runs", 3)
    cfg = EvaluateConfig.from_params(p, DATASET)
    line = evaluate_run(cfg, emb, trials, tmp_path / "m.json", tmp_path / "plots")
    m = json.loads((tmp_path / "m_details.json").read_text())

    es = read_embeddings(emb)
    singers, sources = np.asarray(es.singers), np.asarray(es.sources)
    kw = {k: v for k, v in vars(cfg.probe).items() if k != "runs"}

    def probe_mean(vectors):
        runs = [probe_singer_id(vectors, singers, sources, seed=cfg.seed + i, **kw) for i in range(3)]
        acc, bacc = [r["acc"] for r in runs], [r["bacc"] for r in runs]
        return np.mean(acc), np.std(acc), np.mean(bacc), np.std(bacc)

    acc, acc_std, bacc, bacc_std = probe_mean(es.vectors["embedding"])
    assert m["probe"] == pytest.approx({"acc": acc, "acc_std": acc_std, "bacc": bacc, "bacc_std": bacc_std,
                                        "runs": 3})
    assert m["baselines"]["mfcc"]["probe"]["acc"] == pytest.approx(probe_mean(es.vectors["baseline/mfcc/embedding"])[0])

    t = verification.load_trials(es, trials)
    names = ["baseline/random_init/embedding", "baseline/random_init/init1/embedding",
             "baseline/random_init/init2/embedding"]
    blocks = [verification.verification(es.vectors[n], singers, t, **cfg.scoring())[0] for n in names]
    r = m["baselines"]["random_init"]
    assert r["inits"] == 3
    for key in ("eer", "min_dcf", "mnr"):
        vals = [b[key] for b in blocks]
        assert (r[key], r[f"{key}_std"]) == pytest.approx((np.mean(vals), np.std(vals))), key
        assert r["per_init"][key] == pytest.approx(vals)
    assert len(set(b["eer"] for b in blocks)) > 1  # the initialisations do differ
    init_accs = [probe_mean(es.vectors[n])[0] for n in names]
    assert r["per_init"]["probe_acc"] == pytest.approx(init_accs)
    assert (r["probe"]["acc"], r["probe"]["acc_std"]) == pytest.approx((np.mean(init_accs), np.std(init_accs)))
    assert r["probe"]["runs"] == 3
    # the paired comparison: trained minus the baseline (random init averaged over its 3 initialisations), its
    # singer-level interval from the same singer draws for every system, `beaten` iff the interval is below 0
    emb_scores = metrics.cosine_scores(es.vectors["embedding"], t.idx1, t.idx2)
    init_scores = [metrics.cosine_scores(es.vectors[n], t.idx1, t.idx2) for n in names]
    mfcc_scores = metrics.cosine_scores(es.vectors["baseline/mfcc/embedding"], t.idx1, t.idx2)
    for base, refs in (("random_init", init_scores), ("mfcc", [mfcc_scores])):
        got = m["versus"][base]
        assert got["eer_diff"] == pytest.approx(m["embedding"]["eer"] - m["baselines"][base]["eer"])
        draws = [metrics.singer_bootstrap_samples(t.labels, sc, singers[t.idx1], singers[t.idx2], n_boot=20,
                                                  seed=cfg.seed)["eer"] for sc in (emb_scores, *refs)]
        diffs = draws[0] - np.mean(draws[1:], axis=0)
        assert got["eer_diff_ci95_singer"] == pytest.approx(list(np.nanpercentile(diffs, [2.5, 97.5])))
        assert got["beaten"] == (got["eer_diff_ci95_singer"][1] < 0)
    assert "vs random-init" in line and "vs mfcc" in line
    assert f"random-init EER {r['eer']:.2f}% (std {r['eer_std']:.2f}, 3 inits)" in line


def test_random_init_names_in_initialisation_order():
    names = ["embedding", "baseline/random_init/init10/embedding", "baseline/random_init/init2/embedding",
             "baseline/random_init/init1/projection", "baseline/random_init/embedding",
             "baseline/random_init/init1/embedding", "baseline/random_init/init0/embedding"]
    assert random_init_names(names) == ["baseline/random_init/embedding", "baseline/random_init/init1/embedding",
                                        "baseline/random_init/init2/embedding",
                                        "baseline/random_init/init10/embedding"]


def test_embed_train_role_embeds_training_datasets_without_the_extras(params):
    p = _set(params, "embed.degrade_16k", True)
    cfg = EmbedConfig.from_params(p, "builtin-train", role="train")
    assert (cfg.dataset, cfg.degrade_16k, cfg.invariance, cfg.random_inits) == ("builtin-train", False, None, 3)
    assert EmbedConfig.from_params(p, DATASET).degrade_16k and EmbedConfig.from_params(p, DATASET).invariance
    with pytest.raises(ConfigError, match="is a test dataset; embed-train runs on training datasets"):
        EmbedConfig.from_params(params, DATASET, role="train")
    with pytest.raises(ConfigError, match="is a train dataset; embed runs on test datasets"):
        EmbedConfig.from_params(params, "builtin-train")


def test_evaluate_stage_command_passes_the_training_embeddings_and_model(params):
    """dvc.yaml's evaluate command names embed-train's folder and the model folder, and depends on both."""
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["do"]
    assert stage["cmd"].split()[-2:] == ["data/embeddings/train", "data/model"]
    assert {"data/embeddings/train", "data/model"} <= set(stage["deps"])
    train = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["embed-train"]
    assert train["foreach"] == "${datasets.train}"
    assert train["do"]["outs"] == ["data/embeddings/train/${key}.h5"]
