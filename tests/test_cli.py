"""`singer-ssl` command line, run in-process (``singer_ssl.cli.main``) on a tiny model folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from singer_ssl.api import load_model
from singer_ssl.cli import build_parser, main
from singer_ssl.evaluation.store import read_embeddings
from singer_ssl.model.folder import build_model, save_model_folder
from tests.test_api import SR, _hparams


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    hp = _hparams()
    out = tmp_path_factory.mktemp("m") / "model"
    save_model_folder(build_model(hp).eval(), hp, out)
    return out


@pytest.fixture()
def audio(tmp_path):
    """alice/{a,b}.wav, bob/c.flac (1.5 s, 22.05 kHz) and an unreadable bob/broken.wav."""
    rng = np.random.default_rng(0)
    root = tmp_path / "songs"
    for rel in ("alice/a.wav", "alice/b.wav", "bob/c.flac"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, (0.1 * rng.normal(size=int(1.5 * 22050))).astype(np.float32), 22050)
    (root / "bob" / "broken.wav").write_bytes(b"not audio")
    return root


def _expected(model_dir, files):
    m = load_model(model_dir, device="cpu")
    return np.stack([m.embed_file(f) for f in files])


def run(args, capsys):
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_every_output_format_holds_the_same_embeddings(tmp_path, audio, model_dir, capsys):
    files = [audio / "alice/a.wav", audio / "alice/b.wav", audio / "bob/c.flac"]
    want = _expected(model_dir, files)
    keys = ["alice/a.wav", "alice/b.wav", "bob/c.flac"]
    out = tmp_path / "out"
    out.mkdir()
    for name in ("e.h5", "e.npz", "e.npy", "e.txt", "e.ark.txt"):
        rc, stdout, err = run(["embed", audio, "--model", model_dir, "--out", out / name, "--quiet",
                               "--device", "cpu"], capsys)
        assert rc == 0, err
        assert err.count("broken.wav") == 1 and "skipped 1 unreadable" in stdout  # listed once
        if name == "e.h5":
            es = read_embeddings(out / name)
            got, got_keys, singers = es.vectors["embedding"], es.keys, es.singers
        elif name == "e.npz":
            z = np.load(out / name)
            got, got_keys, singers = z["embedding"], list(z["key"]), list(z["singer"])
        elif name == "e.npy":
            got = np.load(out / name)
            rows = [line.split("\t") for line in (out / "e.npy.keys.txt").read_text().splitlines()]
            got_keys, singers = [r[0] for r in rows], [r[1] for r in rows]
        else:
            lines = (out / name).read_text().splitlines()
            got_keys = [line.split()[0] for line in lines]
            got = np.array([[float(v) for v in line.split()[1:]] for line in lines])
            singers = ["alice", "alice", "bob"]
        assert got_keys == keys and singers == ["alice", "alice", "bob"]
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)


def test_single_file_and_list_inputs(tmp_path, audio, model_dir, capsys):
    out = tmp_path / "one.npz"
    assert run(["embed", audio / "bob/c.flac", "--model", model_dir, "--out", out, "--quiet"], capsys)[0] == 0
    z = np.load(out)
    assert list(z["key"]) == ["c.flac"] and list(z["singer"]) == ["bob"]  # singer = the folder holding it
    np.testing.assert_allclose(z["embedding"], _expected(model_dir, [audio / "bob/c.flac"]), atol=1e-6)

    lst = audio / "list.txt"  # relative to the list's folder; comments and blank lines ignored
    lst.write_text(f"# my files\nbob/c.flac\n\nalice/a.wav\n{audio / 'alice/b.wav'}\n")
    out = tmp_path / "list.npz"
    assert run(["embed", lst, "--model", model_dir, "--out", out, "--quiet"], capsys)[0] == 0
    z = np.load(out)
    assert list(z["key"]) == ["bob/c.flac", "alice/a.wav", str(audio / "alice/b.wav")]
    assert list(z["singer"]) == ["bob", "alice", "alice"]
    want = _expected(model_dir, [audio / "bob/c.flac", audio / "alice/a.wav", audio / "alice/b.wav"])
    np.testing.assert_allclose(z["embedding"], want, atol=1e-6)


def test_flat_folder_singer_is_the_folder_name(tmp_path, model_dir, capsys):
    flat = tmp_path / "carol"
    flat.mkdir()
    sf.write(flat / "x.wav", np.zeros(SR, np.float32) + 0.01, SR)
    out = tmp_path / "f.npz"
    assert run(["embed", flat, "--model", model_dir, "--out", out, "--quiet"], capsys)[0] == 0
    assert list(np.load(out)["singer"]) == ["carol"]


def test_bad_outputs_and_inputs_are_one_line_errors(tmp_path, audio, model_dir, capsys):
    cases = [
        (["embed", audio, "--model", model_dir, "--out", tmp_path / "missing" / "e.h5"], "does not exist"),
        (["embed", audio, "--model", model_dir, "--out", tmp_path / "e.csv"], "unknown extension"),
        (["embed", audio, "--model", model_dir, "--out", tmp_path], "is a folder"),
        (["embed", tmp_path / "nope", "--model", model_dir, "--out", tmp_path / "e.h5"], "does not exist"),
        (["embed", audio, "--model", tmp_path / "nomodel", "--out", tmp_path / "e.h5"], "model folder not found"),
    ]
    for args, msg in cases:
        rc, _, err = run(args, capsys)
        assert rc == 2 and msg in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    assert not (tmp_path / "missing").exists()  # never created silently
    (audio / "alice" / "my take.wav").write_bytes((audio / "alice" / "a.wav").read_bytes())
    rc, _, err = run(["embed", audio, "--model", model_dir, "--out", tmp_path / "e.txt", "--quiet"], capsys)
    assert rc == 2 and "whitespace" in err and not (tmp_path / "e.txt").exists()


def test_verify_prints_the_cosine_and_the_decision(tmp_path, audio, model_dir, capsys):
    a, b = _expected(model_dir, [audio / "alice/a.wav", audio / "bob/c.flac"])
    cos = float(torch.nn.functional.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=0))
    rc, out, _ = run(["verify", audio / "alice/a.wav", audio / "bob/c.flac", "--model", model_dir], capsys)
    assert rc == 0 and f"score {cos:.4f}" in out and "no decision" in out and "same singer" not in out
    rc, out, _ = run(["verify", audio / "alice/a.wav", audio / "bob/c.flac", "--model", model_dir,
                      "--threshold", f"{cos - 0.001}"], capsys)
    assert "same singer" in out
    rc, out, _ = run(["verify", audio / "alice/a.wav", audio / "bob/c.flac", "--model", model_dir,
                      "--threshold", f"{cos + 0.001}"], capsys)
    assert "different singers" in out
    stored = tmp_path / "model_thr"  # a model folder that stores its EER threshold
    stored.mkdir()
    for f in model_dir.iterdir():
        (stored / f.name).write_bytes(f.read_bytes())
    (stored / "threshold.json").write_text(json.dumps({"eer_threshold": cos - 0.001, "eer": 12.5,
                                                       "source": "validation singers"}))
    rc, out, _ = run(["verify", audio / "alice/a.wav", audio / "bob/c.flac", "--model", stored], capsys)
    assert rc == 0 and "same singer" in out and "threshold.json" in out and "12.50%" in out
    (stored / "threshold.json").write_text(json.dumps({"eer_threshold": cos + 0.001}))
    rc, out, _ = run(["verify", audio / "alice/a.wav", audio / "bob/c.flac", "--model", stored], capsys)
    assert "different singers" in out
    rc, out, _ = run(["verify", audio / "alice/a.wav", audio / "bob/c.flac", "--model", stored,
                      "--threshold", f"{cos - 0.001}"], capsys)  # --threshold overrides the stored one
    assert "same singer" in out and "--threshold" in out
    (stored / "threshold.json").write_text("{\"eer\": 3}")
    rc, _, err = run(["verify", audio / "alice/a.wav", audio / "bob/c.flac", "--model", stored], capsys)
    assert rc == 2 and "threshold.json" in err and err.count("\n") == 1
    rc, _, err = run(["verify", audio / "alice/a.wav", audio / "bob/broken.wav", "--model", model_dir], capsys)
    assert rc == 2 and "broken.wav" in err and err.count("\n") == 1
    rc, _, err = run(["verify", audio / "alice/a.wav", audio / "bob/c.flac", "--model", model_dir, "--score-norm",
                      "snorm"], capsys)
    assert rc == 2 and "stores no cohort.json" in err and err.count("\n") == 1


def test_preset_list(capsys):
    from singer_ssl.presets import available

    rc, out, _ = run(["preset", "--list"], capsys)
    lines = out.splitlines()
    assert rc == 0 and [line.split()[0] for line in lines] == available() and "torres2023" in out
    for line in lines:  # each name with its file's first comment line (the paper and what it is)
        name = line.split()[0]
        first = next(t for t in (Path("presets") / f"{name}.yaml").read_text().splitlines() if t.startswith("#"))
        assert line.split(None, 1)[1] == first.lstrip("# ").strip()
    rc, _, err = run(["preset"], capsys)
    assert rc == 2 and "--list" in err


def test_every_option_has_plain_help():
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"embed", "verify", "score", "preset", "run", "restore", "compare", "exps",
                                 "summary"}
    for name, sub in subs.choices.items():
        for action in sub._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"{name} {action.dest} has no help"
        text = sub.format_help()
        assert "``" not in text and "`" not in text, name
    assert "`" not in parser.format_help()


def test_train_stores_the_validation_threshold_and_verify_decides_with_it(tmp_path, capsys):
    """The train stage writes threshold.json (EER point of all validation-singer pairs, recomputed here with
    the API and sklearn), prints one progress line per epoch without carriage returns when stderr is
    not a terminal, and verify decides at the stored threshold."""
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    from singer_ssl.training.config import TrainConfig
    from singer_ssl.training.data import load_segment_table, split_by_singer
    from singer_ssl.training.run import train
    from tests.synthetic import make_training_set, pipeline_paths
    from tests.test_train import tiny_params

    make_training_set(tmp_path)  # 6 singers x 2 songs x 3 one-second segments
    # 2 epochs; val_fraction 0.34: 2 singers. item_mean: under params.yaml's item_loud this 2-step toy model sits at
    # exactly 50 % EER, where FAR = FRR holds along a stretch of the ROC and the threshold is not within one trial
    # of it (the API's embeddings equal the trainer's to the bit there: checked by hand)
    params = tiny_params("ntxent", max_steps=2, steps_per_epoch=1, input_scaling="item_mean")
    paths = pipeline_paths(tmp_path)
    capsys.readouterr()
    train(TrainConfig.from_params(params), paths, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("train: epoch ")]
    assert [ln.split(" (")[0] for ln in lines] == ["train: epoch 1/2", "train: epoch 2/2"], err
    assert all("val in-batch EER" in ln and "train loss" in ln for ln in lines)

    stored = json.loads((paths.model / "threshold.json").read_text())
    table = load_segment_table(paths.features, paths.segments, ["toy"])
    _, val_idx, _ = split_by_singer(table, params["train"]["val_fraction"], params["seed"])
    files = [table.audio_path(int(i)) for i in val_idx]
    emb = load_model(paths.model, device="cpu").embed_files(files)  # the API's path, not the trainer's
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    i, j = np.triu_indices(len(emb), k=1)
    labels = (table.singer[val_idx][i] == table.singer[val_idx][j]).astype(int)
    scores = (emb[i] * emb[j]).sum(1)
    fpr, tpr, _ = roc_curve(labels, scores)
    want = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert stored["eer"] == pytest.approx(100 * want, abs=1e-3)
    assert stored["n_trials"] == len(labels) == 66 and stored["n_target_trials"] == labels.sum()
    far = np.mean(scores[labels == 0] >= stored["eer_threshold"] - 1e-6)
    frr = np.mean(scores[labels == 1] < stored["eer_threshold"] - 1e-6)
    assert abs(far - want) <= 1 / 36 + 1e-9 and abs(frr - want) <= 1 / 30 + 1e-9

    # the calibration: logistic regression of the same pairs' cosine scores (scikit-learn, balanced classes)
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=np.inf, class_weight="balanced", tol=1e-12, max_iter=10000).fit(scores[:, None], labels)
    # (the API's embeddings here, the trainer's there: the same up to float rounding, which a 2-step model's
    # nearly flat scores amplify in the coefficients, so the LLRs are compared)
    mine = stored["calibration"]["scale"] * scores + stored["calibration"]["offset"]
    np.testing.assert_allclose(mine, lr.decision_function(scores[:, None]), atol=0.02)
    assert stored["calibration"]["score"] == "cosine"
    assert stored["val_singers"] == sorted({table.singer_names[k] for k in table.singer[val_idx]})

    a, b = files[0], files[-1]
    for p_target in (0.01, 0.5, 0.99):
        rc, out, _ = run(["verify", a, b, "--model", paths.model, "--device", "cpu", "--p-target", str(p_target)],
                         capsys)
        score, llr = float(out.split()[1]), float(out.split()[3])
        assert rc == 0 and "threshold.json" in out and "Bayes threshold" in out
        assert llr == pytest.approx(stored["calibration"]["scale"] * score + stored["calibration"]["offset"],
                                    abs=2e-3)
        assert ("same singer" in out) == (llr >= np.log((1 - p_target) / p_target))
    rc, out, _ = run(["verify", a, b, "--model", paths.model, "--device", "cpu", "--threshold", "-1"], capsys)
    assert "same singer (threshold -1.0000 from --threshold)" in out  # --threshold overrides the calibration

    # cohort.json: the training (not validation) singers' mean embeddings and the training mean, recomputed with
    # the API; the AS-norm calibration of the validation pairs; verify --score-norm asnorm decides with them
    from singer_ssl.evaluation.backend import normalize_pair, normalize_scores

    train_idx, _, _ = split_by_singer(table, params["train"]["val_fraction"], params["seed"])
    t_emb = load_model(paths.model, device="cpu").embed_files([table.audio_path(int(i)) for i in train_idx])
    t_sing = np.array([table.singer_names[k] for k in table.singer[train_idx]])
    coh = json.loads((paths.model / "cohort.json").read_text())
    assert coh["singers"] == sorted(set(t_sing)) and coh["segments"] == len(train_idx)
    np.testing.assert_allclose(coh["cohort"], [t_emb[t_sing == n].mean(0) for n in coh["singers"]], atol=1e-4)
    np.testing.assert_allclose(coh["mean"], t_emb.mean(0), atol=1e-4)
    assert not set(coh["singers"]) & set(stored["val_singers"])
    cohort, mean = np.array(coh["cohort"]), np.array(coh["mean"])
    raw = load_model(paths.model, device="cpu").embed_files(files)
    norm_scores = normalize_scores(raw, i, j, cohort, mean, "asnorm", 100)
    lr = LogisticRegression(C=np.inf, class_weight="balanced", tol=1e-12, max_iter=10000).fit(norm_scores[:, None],
                                                                                               labels)
    cal = stored["calibration_norm"]["asnorm"]
    np.testing.assert_allclose(cal["scale"] * norm_scores + cal["offset"], lr.decision_function(norm_scores[:, None]),
                               atol=0.02)
    rc, out, _ = run(["verify", a, b, "--model", paths.model, "--device", "cpu", "--score-norm", "asnorm"], capsys)
    want = normalize_pair(raw[0], raw[-1], cohort, mean, "asnorm", cal["top_n"])
    assert rc == 0 and f"asnorm score {want:.4f} (cohort of {len(cohort)} training singers)" in out
    llr = float(out.split("llr ")[1].split()[0])
    assert llr == pytest.approx(cal["scale"] * want + cal["offset"], abs=2e-3)
    assert ("same singer" in out) == (llr >= np.log(99))
    rc, _, err = run(["verify", a, b, "--model", paths.model, "--score-norm", "asnorm", "--threshold", "0.5"], capsys)
    assert rc == 2 and "cannot be combined" in err


def test_threshold_file_leaves_the_weights_untouched(tmp_path):
    hp = yaml.safe_load(yaml.safe_dump(_hparams()))
    for name, thr in (("plain", None), ("thr", {"eer_threshold": 0.5, "eer": 10.0})):
        torch.manual_seed(0)
        save_model_folder(build_model(hp).eval(), hp, tmp_path / name, threshold=thr)
    for f in ("model.pt", "model.ts", "hyperparams.yaml"):
        assert (tmp_path / "plain" / f).read_bytes() == (tmp_path / "thr" / f).read_bytes()
    assert not (tmp_path / "plain" / "threshold.json").exists()
    assert json.loads((tmp_path / "thr" / "threshold.json").read_text())["eer_threshold"] == 0.5
