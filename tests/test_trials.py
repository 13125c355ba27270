"""Trial generation invariants (brute-force checked), external list parsing, and the trials stage."""

from __future__ import annotations

import csv
import importlib
import itertools
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.stage import stage_main
from singer_ssl.trials import (
    TrialsConfig,
    TrialsError,
    generate_trials,
    load_external_trials,
    parse_trials,
    read_trials,
    write_trials,
)

ROOT = Path(__file__).resolve().parents[1]


def _dataset(spec: dict[str, list[int]]) -> tuple[list[str], list[str], list[str]]:
    """``{singer: [segments per source, ...]}`` -> parallel keys, singers, sources (interleaved order)."""
    keys, singers, sources = [], [], []
    for singer, per_source in spec.items():
        for r, n in enumerate(per_source):
            for k in range(n):
                keys.append(f"{singer}/rec{r}_{k}.wav")
                singers.append(singer)
                sources.append(f"{singer}/rec{r}.wav")
    order = np.random.default_rng(7).permutation(len(keys))  # manifest order must not matter
    return [keys[i] for i in order], [singers[i] for i in order], [sources[i] for i in order]


def _valid_positive_pairs(keys, singers, sources, cross: bool) -> set[frozenset]:
    """Brute force: every unordered same-singer pair allowed by the cross-recording rule."""
    n_sources = Counter(s for s, _ in set(zip(singers, sources)))
    out = set()
    for i, j in itertools.combinations(range(len(keys)), 2):
        if singers[i] != singers[j]:
            continue
        if cross and n_sources[singers[i]] > 1 and sources[i] == sources[j]:
            continue
        out.add(frozenset((keys[i], keys[j])))
    return out


def _check_invariants(trials, keys, singers, sources, cross=True):
    singer_of = dict(zip(keys, singers))
    source_of = dict(zip(keys, sources))
    n_sources = Counter(s for s, _ in set(zip(singers, sources)))
    seen = set()
    for label, a, b in trials:
        assert a != b, "a trial pairs a file with itself"
        assert label == int(singer_of[a] == singer_of[b]), "label disagrees with the singers"
        pair = frozenset((a, b))
        assert pair not in seen, f"duplicate pair {a} {b}"
        seen.add(pair)
        if label == 1 and cross and n_sources[singer_of[a]] > 1:
            assert source_of[a] != source_of[b], "same-recording positive although another recording exists"


SPEC = {  # singer: segments per source recording
    "alto1": [30, 20, 10], "bass2": [40], "sop3": [5, 5, 5, 5], "ten4": [1, 1], "mez5": [12, 3],
    "bar6": [25, 25], "solo7": [1], "ctr8": [8, 8, 8], "sop9": [60, 2], "ten10": [3, 3, 3],
}


def test_trial_invariants_and_balance():
    keys, singers, sources = _dataset(SPEC)
    trials = generate_trials(keys, singers, sources, n_pairs=1001, seed=5)
    assert len(trials) == 1001
    assert sum(t[0] for t in trials) == 500  # exactly n // 2 positives
    _check_invariants(trials, keys, singers, sources)
    # Positives spread evenly: every singer gets the same share unless it has fewer distinct pairs.
    singer_of = dict(zip(keys, singers))
    per_singer = Counter(singer_of[a] for lab, a, _ in trials if lab == 1)
    valid = _valid_positive_pairs(keys, singers, sources, cross=True)
    caps = Counter(singer_of[next(iter(pair))] for pair in valid)
    assert per_singer["ten4"] == caps["ten4"] == 1 and "solo7" not in per_singer
    uncapped = [per_singer[s] for s in caps if per_singer[s] < caps[s]]
    assert uncapped and max(uncapped) - min(uncapped) <= 1
    capped = [s for s in caps if per_singer[s] == caps[s]]
    assert all(caps[s] <= max(uncapped) for s in capped)  # a singer is capped only below the level


def test_same_recording_positives_only_without_alternative():
    keys, singers, sources = _dataset(SPEC)
    src = dict(zip(keys, sources))
    sing = dict(zip(keys, singers))
    trials = generate_trials(keys, singers, sources, n_pairs=2000, seed=1)
    same = {sing[a] for lab, a, b in trials if lab == 1 and src[a] == src[b]}
    assert same == {"bass2"}  # the only singer with one recording and more than one segment
    loose = generate_trials(keys, singers, sources, n_pairs=2000, seed=1, cross_recording=False)
    _check_invariants(loose, keys, singers, sources, cross=False)
    assert {sing[a] for lab, a, b in loose if lab == 1 and src[a] == src[b]} > {"bass2"}


def test_deterministic_by_seed():
    keys, singers, sources = _dataset(SPEC)
    a = generate_trials(keys, singers, sources, 600, seed=3)
    assert a == generate_trials(keys, singers, sources, 600, seed=3)
    assert a != generate_trials(keys, singers, sources, 600, seed=4)


def test_fewer_pairs_than_requested_uses_all_and_warns():
    spec = {"a": [2, 1], "b": [2], "c": [1]}  # positives: a has 2 cross pairs, b 1 same-recording pair
    keys, singers, sources = _dataset(spec)
    with pytest.warns(UserWarning, match="only 3 of 50 positive and 11 of 50 negative"):
        trials = generate_trials(keys, singers, sources, n_pairs=100, seed=0)
    _check_invariants(trials, keys, singers, sources)
    got_pos = {frozenset((a, b)) for lab, a, b in trials if lab == 1}
    got_neg = {frozenset((a, b)) for lab, a, b in trials if lab == 0}
    assert got_pos == _valid_positive_pairs(keys, singers, sources, cross=True)
    all_neg = {frozenset((keys[i], keys[j])) for i, j in itertools.combinations(range(len(keys)), 2)
               if singers[i] != singers[j]}
    assert got_neg == all_neg


def test_dense_regime_draws_without_repeats():
    """Requests that are a sizeable fraction of the available pairs use the enumerated (weighted) path."""
    keys, singers, sources = _dataset({"a": [6, 6], "b": [5, 5], "c": [4], "d": [3, 2]})
    singer_of = dict(zip(keys, singers))
    assert len(_valid_positive_pairs(keys, singers, sources, cross=True)) == 36 + 25 + 6 + 6
    trials = generate_trials(keys, singers, sources, n_pairs=100, seed=2)  # 50 of 73 positives
    _check_invariants(trials, keys, singers, sources)
    per_singer = Counter(singer_of[a] for lab, a, _ in trials if lab == 1)
    assert per_singer == {"a": 19, "b": 19, "c": 6, "d": 6}  # water-filling: 19 + 19 + 6 + 6 = 50
    with pytest.warns(UserWarning, match="only 73 of 100 positive"):  # 100 of 338 negatives: enumerated
        trials = generate_trials(keys, singers, sources, n_pairs=200, seed=2)
    _check_invariants(trials, keys, singers, sources)
    assert sum(t[0] for t in trials) == 73 and len(trials) == 173


def test_lopsided_recordings_enumerate_only_valid_pairs():
    """A singer with 3000 segments of one take and 1 of another has only 3000 cross-recording pairs
    (never the 4.5 M same-take ones); asking for 1000 of them takes the enumerated path."""
    keys, singers, sources = _dataset({"x": [3000, 1], "y": [2, 2]})
    trials = generate_trials(keys, singers, sources, n_pairs=2010, seed=0)
    _check_invariants(trials, keys, singers, sources)
    pos_x = [(a, b) for lab, a, b in trials if lab == 1 and a.startswith("x/")]
    assert len(pos_x) == 1005 - 4 and all("x/rec1_0.wav" in pair for pair in pos_x)


def test_negatives_follow_torres2023_singer_weighting():
    """Negatives pick a uniform singer pair (Torres et al. 2023), not segments uniformly: a singer with 20x the
    segments of the others is not over-represented."""
    spec = {"big": [400], "s1": [20], "s2": [20], "s3": [20], "s4": [20]}
    keys, singers, sources = _dataset(spec)
    singer_of = dict(zip(keys, singers))
    trials = generate_trials(keys, singers, sources, n_pairs=4000, seed=0)
    pairs = Counter(frozenset((singer_of[a], singer_of[b])) for lab, a, b in trials if lab == 0)
    shares = np.array(list(pairs.values())) / 2000
    assert len(pairs) == 10 and np.all(np.abs(shares - 0.1) < 0.03)  # segment-uniform: 'big' pairs ~ 0.2 each


def test_large_dataset():
    """1500 singers, over 50,000 segments (a few seconds; no speed assertion: no test fails for being slow)."""
    rng = np.random.default_rng(0)
    spec = {f"s{i}": list(rng.integers(1, 40, size=rng.integers(1, 6))) for i in range(1500)}
    keys, singers, sources = _dataset(spec)
    assert len(keys) > 50_000
    trials = generate_trials(keys, singers, sources, n_pairs=20000, seed=9)
    assert len(trials) == 20000 and sum(t[0] for t in trials) == 10000
    _check_invariants(trials, keys, singers, sources)


def test_impossible_datasets_fail_clearly():
    with pytest.raises(TrialsError, match="one singer"):
        generate_trials(["a/1", "a/2"], ["a", "a"], ["x", "y"], 10, 0)
    with pytest.raises(TrialsError, match="no singer has two segments"):
        generate_trials(["a/1", "b/1"], ["a", "b"], ["x", "y"], 10, 0)
    with pytest.raises(TrialsError, match="more than once.*a/1"):
        generate_trials(["a/1", "a/1", "b/1"], ["a", "a", "b"], ["x", "x", "y"], 10, 0)


# ------------------------------------------------------------------------------------------- file formats


KEYS = ["f1/a.wav", "f1/b.wav", "m2/c.wav", "m2/d, live.wav"]


def test_write_read_round_trip_with_awkward_keys(tmp_path: Path):
    trials = [(1, "f1/a.wav", "f1/b.wav"), (0, "f1/a.wav", "m2/d, live.wav"),
              (1, "m2/c.wav", "m2/d, live.wav")]
    path = tmp_path / "t.txt"
    write_trials(path, trials)
    assert path.read_text().splitlines()[0] == "1,f1/a.wav,f1/b.wav"  # Torres et al.'s plain format
    labels, k1, k2 = read_trials(path)
    assert labels.dtype.kind == "i" and labels.tolist() == [1, 0, 1]
    assert list(zip(labels.tolist(), k1, k2)) == trials


def test_external_torres2023_and_kaldi_formats(tmp_path: Path):
    torres2023 = tmp_path / "speaker_pairs.txt"
    torres2023.write_text("1,f1/a.wav,f1/b.wav\n0,f1/a.wav,m2/c.wav\n\n", encoding="utf-8")
    kaldi = tmp_path / "trials.kaldi"
    kaldi.write_text("f1/a.wav  f1/b.wav target\n./f1/a.wav m2/c.wav nontarget\n", encoding="utf-8")
    expected = [(1, "f1/a.wav", "f1/b.wav"), (0, "f1/a.wav", "m2/c.wav")]
    assert load_external_trials(torres2023, KEYS) == expected
    assert load_external_trials(kaldi, KEYS) == expected
    assert parse_trials(kaldi.read_text())[3] == "kaldi"
    vox = "1 f1/a.wav f1/b.wav\n0 f1/a.wav m2/c.wav\n"
    labels, k1, k2, fmt = parse_trials(vox)
    assert fmt == "voxceleb" and list(zip(labels.tolist(), k1, k2)) == expected
    labels, *_ = parse_trials("label,key1,key2\n1,a,b\n")  # header row skipped
    assert labels.tolist() == [1]


def test_external_list_errors(tmp_path: Path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1,f1/a.wav,f1/zz.wav\n0,f1/a.wav,m2/c.wav\n1,nope/x.wav,f1/zz.wav\n", encoding="utf-8")
    msg = r"2 key\(s\) are not segments of toy, e\.g\. f1/zz\.wav, nope/x\.wav"
    with pytest.raises(TrialsError, match=msg):
        load_external_trials(bad, KEYS, dataset="toy")
    one_class = tmp_path / "pos.txt"
    one_class.write_text('1,f1/a.wav,f1/b.wav\n1,m2/c.wav,"m2/d, live.wav"\n', encoding="utf-8")
    with pytest.raises(TrialsError, match="all 2 trials are target"):
        load_external_trials(one_class, KEYS)
    garbage = tmp_path / "g.txt"
    garbage.write_text("f1/a.wav f1/b.wav maybe\n", encoding="utf-8")
    with pytest.raises(TrialsError, match="unrecognised trial line"):
        load_external_trials(garbage, KEYS)
    labels_bad = tmp_path / "l.txt"
    labels_bad.write_text("1,f1/a.wav,f1/b.wav\n2,f1/a.wav,m2/c.wav\n", encoding="utf-8")
    with pytest.raises(TrialsError, match=r"l\.txt:2: bad label"):
        load_external_trials(labels_bad, KEYS)
    with pytest.raises(TrialsError, match="not found"):
        load_external_trials(tmp_path / "missing.txt", KEYS)


# ----------------------------------------------------------------------------------------------- stage


def _project(tmp_path: Path, external: str = "{}") -> Path:
    project = tmp_path / "project"
    seg = project / "data" / "segments" / "test" / "toy"
    seg.mkdir(parents=True)
    keys, singers, sources = _dataset({"a": [3, 3], "b": [4, 2], "c": [5]})
    with open(seg / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["segment", "singer", "source", "start_s", "end_s", "dataset"])
        for k, s, src in zip(keys, singers, sources):
            start = 4 * int(k.rsplit("_", 1)[1].removesuffix(".wav"))  # a/rec0_2.wav: 8 s to 12 s of a/rec0.wav
            w.writerow([k, s, src, start, start + 4, "toy"])
    _listing(project, sorted(set(sources)), {})
    (project / "params.yaml").write_text(
        "seed: 11\ndatasets:\n  test:\n    toy: {path: data/raw/toy}\n"
        f"trials: {{n_pairs: 40, seed: null, cross_recording: true, external: {external}}}\n",
        encoding="utf-8")
    return project


def _listing(project: Path, sources: list[str], copies: dict[str, str]) -> None:
    """The scan listing of ``sources`` (``copies``: copy -> first copy) as the scan stage writes it."""
    from singer_ssl.core.io import write_csv
    from singer_ssl.scan import HEADER

    path = project / "data" / "listings" / "test" / "toy.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, HEADER, [(s, "10", f"{hash(copies.get(s, s)) & 0xffff:032x}", "", copies.get(s, ""))
                             for s in sources])


def _cli(*argv: str) -> int:
    stage = importlib.import_module("stages.trials")
    return stage_main("trials", stage.main, ("dataset", "manifest", "listing", "out"), argv=argv)


STAGE_ARGS = ("toy", "data/segments/test/toy/manifest.csv", "data/listings/test/toy.csv", "data/trials/toy.txt")


def test_trials_stage_generates(tmp_path: Path, monkeypatch, capsys):
    project = _project(tmp_path)
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    assert _cli(*STAGE_ARGS) == 0
    out = capsys.readouterr().out
    assert "toy: 40 trials (20 target, 20 non-target" in out and out.endswith("-> data/trials/toy.txt\n")
    labels, k1, k2 = read_trials(project / "data/trials/toy.txt")
    rows = list(csv.DictReader(open(project / "data/segments/test/toy/manifest.csv", encoding="utf-8")))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected = generate_trials([r["segment"] for r in rows], [r["singer"] for r in rows],
                                   [r["source"] for r in rows], 40, seed=11)  # top-level seed fallback
    assert list(zip(labels.tolist(), k1, k2)) == expected


def test_trials_stage_external(tmp_path: Path, monkeypatch, capsys):
    ext = tmp_path / "list.kaldi"
    ext.write_text("a/rec0_0.wav a/rec1_0.wav target\na/rec0_0.wav b/rec0_0.wav nontarget\n",
                   encoding="utf-8")
    project = _project(tmp_path, external="{toy: " + str(ext) + "}")
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    assert _cli(*STAGE_ARGS) == 0
    written = (project / "data/trials/toy.txt").read_text()
    assert written == "1,a/rec0_0.wav,a/rec1_0.wav\n0,a/rec0_0.wav,b/rec0_0.wav\n"
    ext.write_text("a/rec0_0.wav z/q.wav target\na/rec0_0.wav b/rec0_0.wav nontarget\n", encoding="utf-8")
    assert _cli(*STAGE_ARGS) == 1
    assert "1 key(s) are not segments of toy, e.g. z/q.wav" in capsys.readouterr().err


def test_trials_stage_misspelt_external_dataset_fails_naming_it(tmp_path: Path, monkeypatch, capsys):
    project = _project(tmp_path, external="{tyo: lists/toy.txt}")
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    assert _cli(*STAGE_ARGS) == 1
    assert capsys.readouterr().err == ("error: trials: trials.external.tyo: not a test dataset; "
                                       "test datasets: toy\n")
    assert not (project / "data/trials").exists()


def test_trials_stage_missing_manifest(tmp_path: Path, monkeypatch, capsys):
    project = _project(tmp_path)
    monkeypatch.chdir(project)
    assert _cli("toy", "data/segments/test/gone/manifest.csv", STAGE_ARGS[2], "data/trials/toy.txt") == 1
    assert capsys.readouterr().err.startswith("error: trials: dataset 'toy': no manifest at ")


TRIAL_PARAMS = {"seed": 5,
                "datasets": {"train": {"tr": {"path": "a"}}, "test": {"t1": {"path": "b"}, "t2": {"path": "c"}}},
                "trials": {"n_pairs": 100, "seed": None, "cross_recording": True, "external": {}}}


def test_trials_config_values_and_seed_fallback():
    cfg = TrialsConfig.from_params(TRIAL_PARAMS, "t1")
    assert cfg == TrialsConfig("t1", 100, 5, True, None)
    own = {**TRIAL_PARAMS, "trials": {**TRIAL_PARAMS["trials"], "seed": 9, "external": {"t2": "l.txt", "t1": None}}}
    assert TrialsConfig.from_params(own, "t1") == TrialsConfig("t1", 100, 9, True, None)
    assert TrialsConfig.from_params(own, "t2") == TrialsConfig("t2", 100, 9, True, "l.txt")
    assert TrialsConfig.from_params({"datasets": TRIAL_PARAMS["datasets"]}, "t2") == TrialsConfig("t2")


@pytest.mark.parametrize("override,message", [
    ({"n_pair": 10},
     "trials.n_pair: unknown parameter; valid keys of trials: cross_recording, external, n_pairs, seed"),
    ({"n_pairs": 1}, "trials.n_pairs: expected an integer >= 2, got 1"),
    ({"n_pairs": "many"}, "trials.n_pairs: expected an integer >= 2, got 'many'"),
    ({"seed": -1}, "trials.seed: expected an integer >= 0, got -1"),
    ({"cross_recording": "yes"}, "trials.cross_recording: expected true or false, got 'yes'"),
    ({"external": ["t1"]}, "trials.external: expected a mapping"),
    ({"external": {"t3": "x.txt"}}, "trials.external.t3: not a test dataset; test datasets: t1, t2"),
    ({"external": {"tr": "x.txt"}}, "trials.external.tr: not a test dataset; test datasets: t1, t2"),
    ({"external": {"t2": 7}}, "trials.external.t2: expected the path of a trial list, got 7"),
])
def test_trials_config_errors_are_one_line_and_name_the_parameter(override, message):
    params = {**TRIAL_PARAMS, "trials": {**TRIAL_PARAMS["trials"], **override}}
    with pytest.raises(ConfigError) as err:
        TrialsConfig.from_params(params, "t1")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_trials_config_checks_only_its_sections():
    with pytest.raises(ConfigError, match=r"^seed: expected an integer >= 0, got 'x'$"):
        TrialsConfig.from_params({**TRIAL_PARAMS, "seed": "x"}, "t1")
    assert TrialsConfig.from_params({**TRIAL_PARAMS, "seed": "x", "trials": {"seed": 3}}, "t1").seed == 3
    with pytest.raises(ConfigError, match="dataset 'tr' is a train dataset; trials runs on test datasets"):
        TrialsConfig.from_params(TRIAL_PARAMS, "tr")
    garbage = {"segment": {"seconds": "x"}, "features": [], "train": {"lr": -1}, "augment": {"views": "nope"},
               "audio": {"sample_rate": 0}, "evaluate": 3,
               "datasets": {**TRIAL_PARAMS["datasets"], "train": {"tr": {"path": "a", "layout": "nope"}}}}
    assert TrialsConfig.from_params({**TRIAL_PARAMS, **garbage}, "t1") == TrialsConfig.from_params(TRIAL_PARAMS, "t1")


def test_trials_stage_uses_the_manifest_recording(tmp_path: Path, monkeypatch, capsys):
    """Cross-recording targets follow the manifest's ``recording`` (M4Singer-like: phrase files of one song)."""
    project = _project(tmp_path)
    manifest = project / "data/segments/test/toy/manifest.csv"
    keys, singers, sources = _dataset({"a": [3, 3, 3], "b": [3, 3], "c": [2, 2]})
    song = {"a/rec0.wav": "a#s1", "a/rec1.wav": "a#s1", "a/rec2.wav": "a#s2",  # two phrase files of song s1
            "b/rec0.wav": "b#s1", "b/rec1.wav": "b#s1", "c/rec0.wav": "c/rec0.wav", "c/rec1.wav": "c/rec1.wav"}
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["segment", "singer", "source", "start_s", "end_s", "dataset", "recording"])
        for k, s, src in zip(keys, singers, sources):
            w.writerow([k, s, src, 0, 4, "toy", song[src]])
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    assert _cli(*STAGE_ARGS) == 0
    labels, k1, k2 = read_trials(project / "data/trials/toy.txt")
    rec = {k: song[s] for k, s in zip(keys, sources)}
    pos = [(a, b) for lab, a, b in zip(labels.tolist(), k1, k2) if lab == 1]
    a_pos = [(x, y) for x, y in pos if x.startswith("a/")]
    assert a_pos and all(rec[x] != rec[y] for x, y in a_pos)  # never two phrases of one song
    assert all(rec[x] == rec[y] for x, y in pos if x.startswith("b/"))  # b has one recording: within it
    # the file-level rule would have paired a's two phrase files of song s1
    src = dict(zip(keys, sources))
    by_file = generate_trials(keys, singers, sources, 40, seed=11)
    assert any(rec[a] == rec[b] and src[a] != src[b] for lab, a, b in by_file if lab == 1 and a.startswith("a/"))
    assert "same-recording targets" in capsys.readouterr().out


# ------------------------------------------------------------- external lists checked line by line (issue 25)

SINGER_OF = {"f1/a.wav": "f1", "f1/b.wav": "f1", "m2/c.wav": "m2", "m2/d, live.wav": "m2"}


@pytest.mark.parametrize("line, needles", [
    ("1,f1/a.wav,m2/c.wav", ["labelled target (same-singer)", "'f1'", "'m2'"]),
    ('0,m2/c.wav,"m2/d, live.wav"', ["labelled non-target (different-singer)", "'m2'"]),
    ("0,f1/b.wav,f1/a.wav", ["repeats line 1"]),
    ("1,f1/b.wav,f1/b.wav", ["pairs segment 'f1/b.wav' with itself"]),
    ("1,f1/a.wav,f1/zz.wav", ["1 key(s) are not segments of toy, e.g. f1/zz.wav"]),
])
def test_external_list_bad_line_is_named(tmp_path: Path, line: str, needles: list[str]):
    """Each bad trial on line 3 (after a comment line) is named with the file and line number."""
    path = tmp_path / "list.txt"
    path.write_text(f"1,f1/a.wav,f1/b.wav\n# a comment\n{line}\n0,f1/a.wav,m2/c.wav\n", encoding="utf-8")
    with pytest.raises(TrialsError) as info:
        load_external_trials(path, KEYS, dataset="toy", singer_of=SINGER_OF)
    assert str(info.value).startswith(f"{path}:3: ") and "\n" not in str(info.value)
    for needle in needles:
        assert needle in str(info.value)


def test_external_list_checks_agree_with_brute_force(tmp_path: Path):
    """Random lists over KEYS: accepted exactly when every line is a distinct pair of two segments labelled as
    their singers say (brute force over the lines)."""
    rng = np.random.default_rng(3)
    for trial in range(200):
        lines = [(int(rng.integers(2)), KEYS[rng.integers(4)], KEYS[rng.integers(4)])
                 for _ in range(rng.integers(2, 5))]
        pairs = [frozenset((a, b)) for _, a, b in lines]
        ok = (all(a != b and lab == (SINGER_OF[a] == SINGER_OF[b]) for lab, a, b in lines)
              and len(set(pairs)) == len(pairs) and len({lab for lab, _, _ in lines}) == 2)
        path = tmp_path / f"l{trial}.txt"
        write_trials(path, lines)
        try:
            load_external_trials(path, KEYS, singer_of=SINGER_OF)
            accepted = True
        except TrialsError:
            accepted = False
        assert accepted == ok, lines


def test_trials_stage_refuses_a_wrong_label_naming_file_and_line(tmp_path: Path, monkeypatch, capsys):
    """Issue 25 case 5: a target label on a different-singer pair passed trials and failed late in evaluate."""
    ext = tmp_path / "list.kaldi"
    ext.write_text("a/rec0_0.wav a/rec1_0.wav target\na/rec0_0.wav b/rec0_0.wav target\n", encoding="utf-8")
    project = _project(tmp_path, external="{toy: " + str(ext) + "}")
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    assert _cli(*STAGE_ARGS) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: trials: {ext}:2: labelled target"), err
    assert not (project / "data/trials/toy.txt").exists()


# ------------------------------------------------------------------- byte-identical copies (issue 25)


def _content(project: Path, copies: dict[str, str]) -> dict[str, tuple]:
    """Brute force: segment -> (first copy of its file, start) from the manifest."""
    rows = list(csv.DictReader(open(project / "data/segments/test/toy/manifest.csv", encoding="utf-8")))
    return {r["segment"]: (copies.get(r["source"], r["source"]), float(r["start_s"])) for r in rows}


def test_generated_trials_leave_copies_out(tmp_path: Path, monkeypatch, capsys):
    """a/rec1.wav is a byte-identical copy of a/rec0.wav: its 3 segments are left out (warning), so no trial
    pairs two copies of one stretch; without the listing's mark the same draw does pair them."""
    project = _project(tmp_path)
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    copies = {"a/rec1.wav": "a/rec0.wav"}
    content = _content(project, copies)
    assert _cli(*STAGE_ARGS) == 0  # listing without copies: the pairs exist
    labels, k1, k2 = read_trials(project / "data/trials/toy.txt")
    assert any(content[a] == content[b] for a, b in zip(k1, k2))
    _listing(project, sorted({c[0] for c in content.values()} | set(copies)), copies)
    capsys.readouterr()
    assert _cli(*STAGE_ARGS) == 0
    err = capsys.readouterr().err
    assert "warning: toy: 3 segments of byte-identical copies left out of the trials" in err
    labels, k1, k2 = read_trials(project / "data/trials/toy.txt")
    assert all(content[a] != content[b] for a, b in zip(k1, k2))
    used = set(k1 + k2)
    assert len(used) == len({content[k] for k in used})  # one copy of each stretch is used, never both


def test_external_target_pair_of_copies_is_refused(tmp_path: Path, monkeypatch, capsys):
    ext = tmp_path / "list.txt"
    ext.write_text("1,a/rec0_1.wav,a/rec1_2.wav\n1,a/rec0_1.wav,a/rec1_1.wav\n0,a/rec0_0.wav,b/rec0_0.wav\n",
                   encoding="utf-8")
    project = _project(tmp_path, external="{toy: " + str(ext) + "}")
    _listing(project, ["a/rec0.wav", "a/rec1.wav", "b/rec0.wav", "b/rec1.wav", "c/rec0.wav"],
             {"a/rec1.wav": "a/rec0.wav"})
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(ROOT))
    assert _cli(*STAGE_ARGS) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: trials: {ext}:2: a/rec0_1.wav and a/rec1_1.wav are the same stretch"), err
