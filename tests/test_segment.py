"""Tests of the segment stage (singer_ssl.segment, stages/segment.py) on small synthetic datasets with bad files."""

from __future__ import annotations

import hashlib
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from singer_ssl.core.errors import ConfigError
from singer_ssl.data.manifest import DatasetError, read_manifest, read_skipped
from singer_ssl.segment import SegmentConfig, run, segment_dataset

REPO = Path(__file__).resolve().parents[1]
SR = 16000  # output rate of the tests (small files, fast)


def tone(seconds: float, sr: int, freq: float = 220.0, channels: int = 1, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    chans = [amp * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    return np.stack(chans, axis=1).astype(np.float32)  # soundfile layout (frames, channels)


def write(root: Path, rel: str, data: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    sf.write(p, data, sr, subtype=subtype)
    return p


# good files: relpath -> (duration s, input sr, channels)
GOOD = {
    "alice/song1.wav": (3.5, 22050, 2),
    "alice/sub/song2.flac": (2.0, 16000, 1),
    "bob/s1.wav": (4.2, 48000, 1),
    "bob/dir1/dir2/s2.wav": (1.0, 8000, 1),
    "carol/long.wav": (2.3, 44100, 2),
}
# bad files: relpath -> expected reason kinds in skipped.csv
BAD = {
    "carol/short.wav": {"too short"},
    "carol/empty.wav": {"empty"},
    "bob/junk.wav": {"not audio"},
    "alice/trunc.wav": {"truncated"},
    "alice/broken.flac": {"corrupt", "truncated"},
    "bob/nan.wav": {"non-finite"},
    "carol/silent.wav": {"silent"},
    "carol/link.wav": {"unreadable"},
}


def build_dataset(root: Path) -> Path:
    for rel, (dur, sr, ch) in GOOD.items():
        write(root, rel, tone(dur, sr, channels=ch), sr)
    write(root, "carol/short.wav", tone(0.6, 16000), 16000)
    (root / "carol/empty.wav").write_bytes(b"")
    (root / "bob/junk.wav").write_text("not audio at all\n" * 20)
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, (3 * 16000, 1)).astype(np.float32)
    b = write(root, "alice/trunc.wav", noise, 16000).read_bytes()
    (root / "alice/trunc.wav").write_bytes(b[: len(b) // 2])
    b = write(root, "alice/broken.flac", noise, 16000).read_bytes()
    (root / "alice/broken.flac").write_bytes(b[: len(b) // 2])
    x = tone(2.5, 16000)
    x[20000] = np.nan
    write(root, "bob/nan.wav", x, 16000, subtype="FLOAT")
    write(root, "carol/silent.wav", np.zeros((2 * 16000, 1), np.float32), 16000)
    (root / "carol/link.wav").symlink_to(root / "gone.wav")
    (root / "carol/notes.txt").write_text("ignored")
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        out[p.relative_to(root).as_posix()] = (st.st_mtime_ns, st.st_mode, hashlib.sha1(data).hexdigest())
    return out


def tree_digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build_dataset(tmp_path_factory.mktemp("raw") / "ds")


@pytest.fixture(scope="module")
def run_drop(dataset: Path, tmp_path_factory):
    before = snapshot(dataset)
    out = tmp_path_factory.mktemp("seg") / "test" / "ds"
    summary = segment_dataset("ds", {"path": str(dataset)}, out, SegmentConfig(SR, 1.0, "drop", None, 1))
    return out, summary, before


def test_segment_counts_follow_durations(run_drop):
    out, summary, _ = run_drop
    rows = read_manifest(out)
    per_source: dict[str, int] = {}
    for r in rows:
        per_source[r["source"]] = per_source.get(r["source"], 0) + 1
    assert per_source == {rel: math.floor(dur / 1.0) for rel, (dur, _, _) in GOOD.items()}
    assert summary.n_segments == len(rows) == sum(math.floor(d) for d, _, _ in GOOD.values())
    assert summary.n_files == len(GOOD) and summary.singers == {"alice", "bob", "carol"}
    assert {r["dataset"] for r in rows} == {"ds"}


def test_segment_files_are_mono_pcm16_at_target_rate(run_drop):
    out, _, _ = run_drop
    rows = read_manifest(out)
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.wav"))
    assert on_disk == sorted(r["segment"] for r in rows)
    for r in rows:
        info = sf.info(out / r["segment"])
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (SR, 1, SR, "PCM_16")
        assert r["segment"].startswith(r["singer"] + "/")
        assert r["end_s"] - r["start_s"] == pytest.approx(1.0)


def test_names_follow_torres2023_pattern(run_drop):
    out, _, _ = run_drop
    segs = {r["segment"] for r in read_manifest(out)}
    assert {"alice/song1_0_0_1_1s.wav", "alice/song1_2_2_3_1s.wav", "alice/sub_song2_1_1_2_1s.wav",
            "bob/dir1_dir2_s2_0_0_1_1s.wav", "bob/s1_3_3_4_1s.wav"} <= segs
    assert all(re.fullmatch(r"[^/]+/[\w.+-]+_\d+_[\d.]+_[\d.]+_1s\.wav", s) for s in segs)


def test_manifest_sorted_and_times_consistent(run_drop):
    out, _, _ = run_drop
    rows = read_manifest(out)
    keys = [(r["singer"], r["source"], r["start_s"]) for r in rows]
    assert keys == sorted(keys)
    for r in rows:
        k = int(r["segment"].rsplit("_", 4)[1])
        assert r["start_s"] == pytest.approx(k * 1.0)


def test_bad_files_skipped_with_reason(run_drop):
    out, summary, _ = run_drop
    skipped = {r["source"]: r["reason"] for r in read_skipped(out)}
    assert set(skipped) == set(BAD)
    for rel, kinds in BAD.items():
        assert skipped[rel].split(":")[0] in kinds, (rel, skipped[rel])
    assert "0.60 s < 1 s" in skipped["carol/short.wav"]
    assert not any(r["source"] in BAD for r in read_manifest(out))
    line = summary.line()
    assert line.startswith(f"ds: {summary.n_segments} segments from 5 files of 3 singers; skipped 8 files (")
    inner = line.split("skipped 8 files (")[1].split(")")[0]
    counts = dict(part.rsplit(": ", 1) for part in inner.split(", "))
    assert sum(map(int, counts.values())) == 8 and counts["too short"] == "1"


def test_inputs_untouched(run_drop, dataset: Path):
    _, _, before = run_drop
    assert snapshot(dataset) == before


def test_stereo_mixdown_is_channel_mean(tmp_path: Path):
    root = tmp_path / "raw"
    rng = np.random.default_rng(5)
    st = rng.uniform(-0.4, 0.4, (2 * SR, 2)).astype(np.float32)
    write(root, "a/st.wav", st, SR, subtype="FLOAT")  # same rate: no resampling involved
    write(root, "b/x.wav", tone(1.0, SR), SR)
    out = tmp_path / "out"
    segment_dataset("m", {"path": str(root)}, out, SegmentConfig(SR, 1.0, "drop", None, 1))
    y, _ = sf.read(out / "a" / "st_1_1_2_1s.wav", dtype="float32")
    np.testing.assert_allclose(y, st[SR:, :].mean(axis=1), atol=1.0 / 32768)


def test_resampled_segment_content(tmp_path: Path):
    root = tmp_path / "raw"
    write(root, "a/t.wav", tone(1.5, 48000, freq=1000.0), 48000)
    write(root, "b/t.wav", tone(1.0, 8000, freq=440.0), 8000)
    out = tmp_path / "out"
    segment_dataset("r", {"path": str(root)}, out, SegmentConfig(SR, 1.0, "drop", None, 1))
    for rel, freq in (("a/t_0_0_1_1s.wav", 1000.0), ("b/t_0_0_1_1s.wav", 440.0)):
        y, sr = sf.read(out / rel)
        spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        assert abs(np.argmax(spec) * sr / len(y) - freq) <= sr / len(y)


def test_pad_policy(dataset: Path, tmp_path: Path):
    out = tmp_path / "pad"
    segment_dataset("ds", {"path": str(dataset)}, out, SegmentConfig(SR, 1.0, "pad", None, 1))
    rows = read_manifest(out)
    count = {}
    for r in rows:
        count[r["source"]] = count.get(r["source"], 0) + 1
    # a final partial segment is kept when >= half a segment: 3.5 -> 4, 2.3 -> 2, 4.2 -> 4, 0.6 -> 1
    assert count["alice/song1.wav"] == 4 and count["carol/long.wav"] == 2 and count["bob/s1.wav"] == 4
    assert count["carol/short.wav"] == 1
    last = next(r for r in rows if r["source"] == "alice/song1.wav" and r["start_s"] == 3.0)
    assert last["end_s"] == pytest.approx(3.5) and last["segment"] == "alice/song1_3_3_3.5_1s.wav"
    y, _ = sf.read(out / last["segment"])
    assert len(y) == SR and not y[SR // 2 + 2:].any() and np.abs(y[: SR // 2 - 2]).max() > 0.1


def test_silence_threshold_skips_segments(tmp_path: Path):
    root = tmp_path / "raw"
    quiet = np.random.default_rng(1).uniform(-1e-4, 1e-4, SR).astype(np.float32)  # about -85 dBFS RMS
    x = np.concatenate([tone(1.0, SR)[:, 0], quiet, tone(1.0, SR)[:, 0], np.zeros(SR, np.float32)])
    write(root, "a/gap.wav", x[:, None], SR)
    write(root, "b/x.wav", tone(1.0, SR), SR)
    write(root, "b/hush.wav", quiet[:, None], SR)
    out = tmp_path / "out"
    s = segment_dataset("sil", {"path": str(root)}, out, SegmentConfig(SR, 1.0, "drop", -60.0, 1))
    assert [r["start_s"] for r in read_manifest(out) if r["source"] == "a/gap.wav"] == [0.0, 2.0]
    skipped = read_skipped(out)
    gap = [r["reason"] for r in skipped if r["source"] == "a/gap.wav"]
    assert len(gap) == 2 and gap[0].startswith("silent segment 1: RMS -8") and "< -60 dBFS" in gap[0]
    assert gap[1].startswith("silent segment 3: digital silence")
    assert [r["reason"].split(":")[0] for r in skipped if r["source"] == "b/hush.wav"] == ["silent"]
    assert s.skipped_segments == 2 and s.skipped_files == {"silent": 1}
    # without a threshold only the digital silence goes
    out2 = tmp_path / "out2"
    segment_dataset("sil", {"path": str(root)}, out2, SegmentConfig(SR, 1.0, "drop", None, 1))
    assert [r["start_s"] for r in read_manifest(out2) if r["source"] == "a/gap.wav"] == [0.0, 1.0, 2.0]


def test_deterministic_across_worker_counts(dataset: Path, run_drop, tmp_path: Path):
    out1, _, _ = run_drop
    out2 = tmp_path / "w2"
    segment_dataset("ds", {"path": str(dataset)}, out2, SegmentConfig(SR, 1.0, "drop", None, 2))
    assert tree_digest(out2) == tree_digest(out1)


def test_colliding_names_stay_unique(tmp_path: Path):
    root = tmp_path / "raw"
    for rel in ("a/x y.wav", "a/x,y.wav", "a/x#y.wav", "b/x y.wav"):
        write(root, rel, tone(2.0, SR), SR)
    out = tmp_path / "out"
    segment_dataset("u", {"path": str(root)}, out, SegmentConfig(SR, 1.0, "drop", None, 1))
    segs = [r["segment"] for r in read_manifest(out)]
    assert len(segs) == 8 == len(set(segs)) == len(list(out.rglob("*.wav")))
    assert all(" " not in s and "," not in s and "#" not in s for s in segs)


def test_fewer_than_two_singers_is_an_error_and_writes_nothing(tmp_path: Path):
    root = tmp_path / "raw"
    write(root, "a/x.wav", tone(2.0, SR), SR)
    (root / "b").mkdir()
    (root / "b/bad.wav").write_bytes(b"")  # b's only file is unusable
    out = tmp_path / "seg" / "one"
    with pytest.raises(DatasetError, match=r"dataset 'one': needs at least 2 singers.*empty: 1"):
        segment_dataset("one", {"path": str(root)}, out, SegmentConfig(SR, 1.0, "drop", None, 1))
    assert not out.exists() and list((tmp_path / "seg").iterdir()) == []
    with pytest.raises(DatasetError, match="'solo': needs at least 2 singers, found 1"):
        segment_dataset("solo", {"path": str(root / "a"), "singer": {"regex": "(?P<singer>x)"}}, out,
                        SegmentConfig(SR, 1.0, "drop", None, 1))


def test_missing_and_empty_dataset_errors(tmp_path: Path):
    cfg = SegmentConfig(SR, 1.0, "drop", None, 1)
    with pytest.raises(DatasetError, match="'gone'.*does not exist"):
        segment_dataset("gone", {"path": str(tmp_path / "nope")}, tmp_path / "o", cfg)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="'hollow': no audio files"):
        segment_dataset("hollow", {"path": str(tmp_path / "empty")}, tmp_path / "o", cfg)
    with pytest.raises(ConfigError, match="overlap"):
        segment_dataset("self", {"path": str(tmp_path / "empty")}, tmp_path / "empty" / "seg", cfg)
    assert not (tmp_path / "o").exists()


def test_existing_output_replaced(tmp_path: Path):
    root = tmp_path / "raw"
    write(root, "a/x.wav", tone(1.0, SR), SR)
    write(root, "b/y.wav", tone(1.0, SR), SR)
    out = tmp_path / "out"
    (out / "stale").mkdir(parents=True)
    (out / "stale" / "old.wav").write_bytes(b"old")
    segment_dataset("r", {"path": str(root)}, out, SegmentConfig(SR, 1.0, "drop", None, 1))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "a", "a/x_0_0_1_1s.wav", "b", "b/y_0_0_1_1s.wav", "manifest.csv", "skipped.csv"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


PARAMS = {"datasets": {"train": {"tr": {"path": "data/raw/tr", "layout": "builtin"}},
                        "test": {"mini": {"path": "data/raw/mini", "layout": "builtin"}}},
          "audio": {"sample_rate": 44100}, "segment": {}}


@pytest.mark.parametrize("seg,match", [
    ({"seconds": 0}, "segment.seconds"), ({"remainder": "keep"}, "drop, pad"),
    ({"silence_db": 10}, "silence_db"), ({"workers": -1}, "workers"),
])
def test_segment_config_validation(seg, match):
    with pytest.raises(ConfigError, match=match):
        SegmentConfig.from_params({**PARAMS, "segment": seg}, "mini")
    cfg = SegmentConfig.from_params({**PARAMS, "audio": {"sample_rate": 22050},
                                     "segment": {"workers": 0, "silence_db": -50}}, "mini")
    assert cfg.workers >= 1 and cfg.silence_db == -50.0 and cfg.sample_rate == 22050


@pytest.mark.parametrize("override,message", [
    ({"segment": {"secondz": 4.0}},
     "segment.secondz: unknown parameter; valid keys of segment: remainder, seconds, silence_db, workers"),
    ({"segment": {"seconds": "four"}}, "segment.seconds: expected a number > 0.0, got 'four'"),
    ({"segment": {"seconds": 1e-6}}, "segment.seconds: 1e-06 s is shorter than one sample at 44100 Hz"),
    ({"segment": {"workers": 1.5}}, "segment.workers: expected an integer >= 0, got 1.5"),
    ({"segment": {"remainder": "keep"}}, "segment.remainder: expected one of drop, pad, got 'keep'"),
    ({"segment": {"silence_db": True}}, "segment.silence_db: expected a number <= 0.0, got True"),
    ({"segment": [4.0]}, "segment: expected a mapping with keys"),
    ({"audio": {"sample_rate": 0}}, "audio.sample_rate: expected an integer >= 1, got 0"),
    ({"audio": {"sample_rate": "44.1k"}}, "audio.sample_rate: expected an integer >= 1, got '44.1k'"),
    ({"audio": {"rate": 44100}}, "audio.rate: unknown parameter; valid keys of audio: sample_rate"),
    ({"datasets": {"test": {"mini": {"path": "x", "layout": "vocalsett"}}}},
     "datasets.test.mini.layout: unknown dataset layout 'vocalsett'; valid choices: builtin, m4singer"),
    ({"datasets": {"test": {"mini": {"path": "x", "singer": {"level": -1}}}}},
     "datasets.test.mini.singer.level: expected an integer >= 0, got -1"),
])
def test_segment_config_errors_are_one_line_and_name_the_parameter(override, message):
    with pytest.raises(ConfigError) as err:
        SegmentConfig.from_params({**PARAMS, **override}, "mini")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_segment_config_reads_only_its_sections():
    garbage = {"train": {"batch_size": -3, "nonsense": 1}, "augment": "not a mapping", "features": {"n_fft": 0},
               "trials": {"external": {"nope": 1}}, "loss": 42, "encoder": None, "corpus": [1]}
    cfg = SegmentConfig.from_params({**PARAMS, **garbage}, "mini")
    assert cfg.sample_rate == 44100 and cfg.layout.layout == "builtin" and cfg.dataset == "mini"
    # another dataset's broken layout does not matter either
    other = {"datasets": {**PARAMS["datasets"], "train": {"tr": {"path": "x", "layout": "nope", "singer": 3}}}}
    assert SegmentConfig.from_params({**PARAMS, **other}, "mini").layout.path == Path("data/raw/mini")
    with pytest.raises(ConfigError, match="unknown dataset 'gone'; valid choices: mini, tr"):
        SegmentConfig.from_params(PARAMS, "gone")


def test_preset_key_is_a_deprecated_alias_of_layout():
    old = {**PARAMS, "datasets": {"test": {"mini": {"path": "data/raw/mini", "preset": "vocalset"}}}}
    with pytest.warns(FutureWarning, match="datasets.test.mini.preset is deprecated; write layout: vocalset"):
        deprecated = SegmentConfig.from_params(old, "mini")
    new = {**PARAMS, "datasets": {"test": {"mini": {"path": "data/raw/mini", "layout": "vocalset"}}}}
    assert deprecated == SegmentConfig.from_params(new, "mini")
    both = {**PARAMS, "datasets": {"test": {"mini": {"path": "x", "preset": "builtin", "layout": "builtin"}}}}
    with pytest.raises(ConfigError, match="datasets.test.mini.preset: deprecated alias of 'layout'"):
        SegmentConfig.from_params(both, "mini")


def test_run_takes_the_folder_from_its_argument(tmp_path: Path):
    root = tmp_path / "elsewhere"
    write(root, "FULL/a/x.wav", tone(1.0, SR), SR)
    write(root, "FULL/b/y.wav", tone(1.0, SR), SR)
    write(root, "a/ignored.wav", tone(1.0, SR), SR)  # outside the vocalset layout's glob
    params = {**PARAMS, "audio": {"sample_rate": SR}, "segment": {"seconds": 1.0},
              "datasets": {"test": {"v": {"path": "not/used/by/run", "layout": "vocalset"}}}}
    line = run(SegmentConfig.from_params(params, "v"), root, tmp_path / "out")
    assert line == f"v: 2 segments from 2 files of 2 singers -> {tmp_path / 'out'}"
    assert sorted(r["segment"] for r in read_manifest(tmp_path / "out")) == ["a/x_0_0_1_1s.wav", "b/y_0_0_1_1s.wav"]
    with pytest.raises(ConfigError, match="SegmentConfig.from_params"):
        run(SegmentConfig(SR, 1.0), root, tmp_path / "out2")


def test_stage_command_line(tmp_path: Path):
    root = tmp_path / "data" / "raw" / "mini"
    write(root, "a/x.wav", tone(2.0, 22050), 22050)
    write(root, "b/y.wav", tone(1.0, 22050), 22050)
    (root / "b" / "bad.wav").write_bytes(b"")
    params = {"datasets": {"test": {"mini": {"path": "data/raw/mini", "layout": "builtin"}}},
              "audio": {"sample_rate": SR}, "segment": {"seconds": 1.0, "remainder": "drop",
                                                        "silence_db": None, "workers": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cmd = [sys.executable, str(REPO / "stages" / "segment.py")]
    res = subprocess.run(cmd + ["mini", "data/raw/mini", "data/segments/test/mini"], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ("mini: 3 segments from 2 files of 2 singers; skipped 1 files (empty: 1) "
                                  "-> data/segments/test/mini")
    assert len(read_manifest(tmp_path / "data/segments/test/mini")) == 3
    bad = subprocess.run(cmd + ["nosuch", "data/raw/mini", "data/segments/test/nosuch"], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "unknown dataset 'nosuch'; valid choices: mini" in bad.stderr
    assert bad.stderr.startswith("error: segment: ") and bad.stderr.count("\n") == 1


def test_file_failing_midway_leaves_no_segments(tmp_path: Path):
    root = tmp_path / "raw"
    x = tone(3.0, SR)
    x[int(2.5 * SR)] = np.inf  # found only after two segments were already written
    write(root, "a/late.wav", x, SR, subtype="FLOAT")
    write(root, "b/x.wav", tone(1.0, SR), SR)
    write(root, "c/y.wav", tone(1.0, SR), SR)
    out = tmp_path / "out"
    cfg = SegmentConfig(SR, 1.0, "drop", None, 1, block_frames=4000)
    segment_dataset("late", {"path": str(root)}, out, cfg)
    assert [r["source"] for r in read_skipped(out)] == ["a/late.wav"]
    assert read_skipped(out)[0]["reason"].startswith("non-finite: 1 NaN/inf samples in frames 40000..44000")
    assert not (out / "a").exists()
    assert sorted(r["singer"] for r in read_manifest(out)) == ["b", "c"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads chmod-000 files")
def test_unreadable_file_recorded(tmp_path: Path):
    root = tmp_path / "raw"
    write(root, "a/x.wav", tone(1.0, SR), SR)
    write(root, "b/y.wav", tone(1.0, SR), SR)
    locked = write(root, "b/locked.wav", tone(1.0, SR), SR)
    locked.chmod(0)
    try:
        out = tmp_path / "out"
        segment_dataset("perm", {"path": str(root)}, out, SegmentConfig(SR, 1.0, "drop", None, 1))
        assert read_skipped(out) == [{"source": "b/locked.wav", "reason": "unreadable: permission denied"}]
        assert locked.stat().st_mode & 0o777 == 0
    finally:
        locked.chmod(0o644)
