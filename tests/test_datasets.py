"""Tests of singer_ssl.data.layouts (layouts on fake trees mirroring the real datasets, custom rules)
and singer_ssl.data.manifest (segment naming, manifest I/O)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from singer_ssl.core.errors import ConfigError
from singer_ssl.data.layouts import LAYOUTS, list_sources, resolve_spec, scan_sources
from singer_ssl.data.manifest import (
    MANIFEST_COLUMNS,
    DatasetError,
    SegmentError,
    Source,
    format_seconds,
    read_manifest,
    read_skipped,
    safe_name,
    segment_name,
    source_prefixes,
    write_manifest,
    write_skipped,
)


def make_tree(root: Path, files: list[str]) -> Path:
    for rel in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")  # listing never opens the files
    return root


# -------------------------------------------------------------------------------------- layouts

def test_builtin_layout(tmp_path: Path):
    root = make_tree(tmp_path / "ds", [
        "alice/song1.wav", "alice/song2.flac", "alice/S3.WAV", "bob/song1.wav", "bob/take/x.ogg",
        # decoys
        "loose.wav", "alice/notes.txt", "alice/cover.jpg", ".cache/alice/y.wav", "alice/._song1.wav",
        "__MACOSX/alice/song1.wav", "bob/.DS_Store",
    ])
    spec = resolve_spec({"path": str(root), "layout": "builtin"})
    assert list_sources(spec) == [
        ("alice/S3.WAV", "alice"), ("alice/song1.wav", "alice"), ("alice/song2.flac", "alice"),
        ("bob/song1.wav", "bob"), ("bob/take/x.ogg", "bob"),
    ]
    assert scan_sources(spec).unlabelled == ["loose.wav"]
    # a built-in song is one file: each file is its own recording
    assert [s.recording for s in scan_sources(spec).sources] == [s.relpath for s in scan_sources(spec).sources]


def test_vocalset_layout(tmp_path: Path):
    root = make_tree(tmp_path / "VocalSet", [
        "FULL/f1/arpeggios/belt/f1_arpeggios_belt_c_a.wav",
        "FULL/f1/excerpts/vibrato/f1_excerpts_vibrato_caro.wav",
        "FULL/m3/long_tones/straight/m3_long_straight_a.wav",
        # decoys
        "FULL/f1/arpeggios/belt/._f1_arpeggios_belt_c_a.wav", "__MACOSX/FULL/f1/arpeggios/belt/x.wav",
        "FULL/f1/.DS_Store", "FULL/readme.txt", "other/f2/a/b/c.wav", "DataSet_Description.wav",
        "FULL/stray.wav",  # no singer folder: unlabelled
    ])
    listing = scan_sources(resolve_spec({"path": str(root), "layout": "vocalset"}))
    assert [(s.relpath, s.singer) for s in listing.sources] == [
        ("FULL/f1/arpeggios/belt/f1_arpeggios_belt_c_a.wav", "f1"),
        ("FULL/f1/excerpts/vibrato/f1_excerpts_vibrato_caro.wav", "f1"),
        ("FULL/m3/long_tones/straight/m3_long_straight_a.wav", "m3"),
    ]
    assert listing.sources[0].context == ("arpeggios", "belt")  # folders below the singer folder
    assert listing.unlabelled == ["FULL/stray.wav"]
    assert [s.recording for s in listing.sources] == [s.relpath for s in listing.sources]  # one take per file


def test_m4singer_layout(tmp_path: Path):
    root = make_tree(tmp_path / "m4singer", [
        "Alto-1#美错/0000.wav", "Alto-1#美错/0001.wav", "Alto-1#安河桥/0000.wav",
        "Tenor-5#song x/0003.wav",
        # decoys
        "Alto-1#美错/0000.mid", "Alto-1#美错/0000.TextGrid", "meta.json", "README.wav",
        "Alto-1#美错/sub/0009.wav",
        "Bass-2/0000.wav",
    ])
    listing = scan_sources(resolve_spec({"path": str(root), "layout": "m4singer"}))
    assert [(s.relpath, s.singer) for s in listing.sources] == [
        ("Alto-1#安河桥/0000.wav", "Alto-1"), ("Alto-1#美错/0000.wav", "Alto-1"),
        ("Alto-1#美错/0001.wav", "Alto-1"), ("Tenor-5#song x/0003.wav", "Tenor-5"),
    ]
    # the song folder is the recording: phrases of one song share it, songs and singers do not
    assert [s.recording for s in listing.sources] == ["Alto-1#安河桥", "Alto-1#美错", "Alto-1#美错",
                                                      "Tenor-5#song x"]
    prefixes = source_prefixes(listing.sources)
    # the song folder stays in the name: the two songs' 0000.wav must not collide
    assert prefixes["Alto-1#美错/0000.wav"] == "Alto-1-美错_0000"
    assert prefixes["Alto-1#安河桥/0000.wav"] == "Alto-1-安河桥_0000"
    assert prefixes["Tenor-5#song x/0003.wav"] == "Tenor-5-song-x_0003"


def test_nus48e_layout_sing_only_and_refined(tmp_path: Path):
    root = make_tree(tmp_path / "nus", [
        "ADIZ/sing/01.wav", "ADIZ/sing/13.wav", "ADIZ/read/01.wav", "JLEE/sing/05.wav", "JLEE/read/05.wav",
        # decoys
        "ADIZ/sing/01.txt", "ADIZ/sing/.01.wav", "README.wav",
    ])
    assert list_sources({"path": str(root), "layout": "nus48e"}) == [
        ("ADIZ/sing/01.wav", "ADIZ"), ("ADIZ/sing/13.wav", "ADIZ"), ("JLEE/sing/05.wav", "JLEE")]
    both = list_sources({"path": str(root), "layout": "nus48e", "glob": ["*/*/*.wav"]})
    assert [r for r, _ in both] == ["ADIZ/read/01.wav", "ADIZ/sing/01.wav", "ADIZ/sing/13.wav",
                                    "JLEE/read/05.wav", "JLEE/sing/05.wav"]
    # sung and read versions of one song are different recordings: each file is its own
    listing = scan_sources(resolve_spec({"path": str(root), "layout": "nus48e", "glob": ["*/*/*.wav"]}))
    assert [s.recording for s in listing.sources] == [s.relpath for s in listing.sources]


def test_vctk_layout_092_and_080(tmp_path: Path):
    root = make_tree(tmp_path / "vctk", [
        "wav48_silence_trimmed/p225/p225_001_mic1.flac", "wav48_silence_trimmed/p225/p225_001_mic2.flac",
        "wav48_silence_trimmed/p226/p226_002_mic1.flac", "wav48_silence_trimmed/p226/p226_002_mic2.flac",
        # decoys
        "txt/p225/p225_001.txt", "wav48_silence_trimmed/log.txt", "speaker-info.txt",
        "wav48_silence_trimmed/p225/p225_001_mic1.flac.bak",
    ])
    assert list_sources({"path": str(root), "layout": "vctk"}) == [
        ("wav48_silence_trimmed/p225/p225_001_mic1.flac", "p225"),
        ("wav48_silence_trimmed/p226/p226_002_mic1.flac", "p226")]
    old = make_tree(tmp_path / "vctk080", ["wav48/p225/p225_001.wav", "wav48/p227/p227_003.wav",
                                           "txt/p225/p225_001.txt"])
    assert list_sources({"path": str(old), "layout": "vctk"}) == [
        ("wav48/p225/p225_001.wav", "p225"), ("wav48/p227/p227_003.wav", "p227")]
    # explicit exclude adds to the layout's (mic2 stays excluded)
    assert list_sources({"path": str(root), "layout": "vctk", "exclude": ["p226"]}) == [
        ("wav48_silence_trimmed/p225/p225_001_mic1.flac", "p225")]
    # the trees show no session: each utterance file is its own recording
    for tree in (root, old):
        listing = scan_sources(resolve_spec({"path": str(tree), "layout": "vctk"}))
        assert [s.recording for s in listing.sources] == [s.relpath for s in listing.sources]


# ---------------------------------------------------------------------------------- custom rules

def test_custom_regex_level_and_exclude(tmp_path: Path):
    root = make_tree(tmp_path / "c", ["all/alice_01.wav", "all/bob_02.wav", "all/bob_03.wav",
                                      "all/carol-x.wav", "s1/dave/a.wav", "s2/erin/b.wav",
                                      "s2/erin/b_take0.wav"])
    by_name = list_sources({"path": str(root), "glob": "all/*.wav",
                            "singer": {"regex": r"(?P<singer>[a-z]+)_\d+\.wav$"}})
    assert by_name == [("all/alice_01.wav", "alice"), ("all/bob_02.wav", "bob"), ("all/bob_03.wav", "bob")]
    spec = resolve_spec({"path": str(root), "glob": "s*/**/*.wav", "singer": {"level": 1},
                         "exclude": ["*_take0*"]})
    assert list_sources(spec) == [("s1/dave/a.wav", "dave"), ("s2/erin/b.wav", "erin")]
    path_excl = list_sources({"path": str(root), "glob": "s*/**/*.wav", "singer": {"level": 1},
                              "exclude": ["s2/**"]})
    assert path_excl == [("s1/dave/a.wav", "dave")]


def test_custom_recording_rules(tmp_path: Path):
    root = make_tree(tmp_path / "c", ["ann/live/t1_a.wav", "ann/live/t1_b.wav", "ann/live/t2_a.wav",
                                      "ann/studio/x.wav", "ann/solo.wav", "ben/live/t1_a.wav"])

    def recordings(rule):
        spec = resolve_spec({"path": str(root), **({"recording": rule} if rule else {})})
        return {s.relpath: s.recording for s in scan_sources(spec).sources}

    files = ["ann/live/t1_a.wav", "ann/live/t1_b.wav", "ann/live/t2_a.wav", "ann/solo.wav", "ann/studio/x.wav",
             "ben/live/t1_a.wav"]
    assert recordings(None) == {f: f for f in files}  # default: the file
    # level 1: the folder below the singer; a file directly in the singer folder stays its own recording
    assert recordings({"level": 1}) == {
        "ann/live/t1_a.wav": "ann/live", "ann/live/t1_b.wav": "ann/live", "ann/live/t2_a.wav": "ann/live",
        "ann/solo.wav": "ann/solo.wav", "ann/studio/x.wav": "ann/studio", "ben/live/t1_a.wav": "ben/live"}
    # regex: the path up to the group's end, so ann's and ben's take t1 stay apart; no match -> the file
    assert recordings({"regex": r"/(?P<recording>t\d+)_"}) == {
        "ann/live/t1_a.wav": "ann/live/t1", "ann/live/t1_b.wav": "ann/live/t1", "ann/live/t2_a.wav": "ann/live/t2",
        "ann/solo.wav": "ann/solo.wav", "ann/studio/x.wav": "ann/studio/x.wav", "ben/live/t1_a.wav": "ben/live/t1"}
    # an explicit rule replaces the layout's (M4Singer's song folder -> each phrase file)
    m4 = make_tree(tmp_path / "m4", ["Alto-1#s/0000.wav", "Alto-1#s/0001.wav"])
    spec = resolve_spec({"path": str(m4), "layout": "m4singer", "recording": {"regex": r"(?P<recording>\d+)\.wav"}})
    assert [s.recording for s in scan_sources(spec).sources] == ["Alto-1#s/0000", "Alto-1#s/0001"]
    with pytest.raises(ConfigError, match=r"^ds\.recording\.regex: .*needs a named group \(\?P<recording>"):
        resolve_spec({"path": str(root), "recording": {"regex": "(?P<singer>x)"}}, "ds")
    with pytest.raises(ConfigError, match=r"^ds\.recording\.level: expected an integer >= 0"):
        resolve_spec({"path": str(root), "recording": {"level": -1}}, "ds")


def test_glob_double_star_matches_zero_folders(tmp_path: Path):
    root = make_tree(tmp_path / "d", ["a/x.wav", "a/b/c/y.wav", "a/b/z.wav"])
    assert [r for r, _ in list_sources({"path": str(root), "glob": "a/**/*.wav"})] == [
        "a/b/c/y.wav", "a/b/z.wav", "a/x.wav"]
    assert [r for r, _ in list_sources({"path": str(root), "glob": "a/b/?.wav"})] == ["a/b/z.wav"]


def test_symlinked_folder_followed_once(tmp_path: Path):
    real = make_tree(tmp_path / "real", ["s/a.wav"])
    root = make_tree(tmp_path / "ds", ["t/b.wav"])
    (root / "s").symlink_to(real / "s", target_is_directory=True)
    (root / "t" / "loop").symlink_to(root / "t", target_is_directory=True)  # a cycle must not hang
    assert list_sources({"path": str(root)}) == [("s/a.wav", "s"), ("t/b.wav", "t")]


@pytest.mark.parametrize("spec,match", [
    ({"path": "x", "layout": "vocalsett"}, "builtin, m4singer, nus48e, vctk, vocalset"),
    ({"path": "x", "preset": "vocalsett"}, "builtin, m4singer, nus48e, vctk, vocalset"),
    ({"path": "x", "presett": "vocalset"}, "unknown dataset key 'presett'"),
    ({"path": "x", "layout": ["builtin"]}, r"dataset.layout: unknown dataset layout \['builtin'\]"),
    ({"path": "x", "singer": {"level": -1}}, "integer >= 0"),
    ({"path": "x", "singer": {"level": 0, "regex": "(?P<singer>a)"}}, "expected"),
    ({"path": "x", "singer": {"regex": "([a-z]+)"}}, r"\(\?P<singer>"),
    ({"path": "x", "singer": {"regex": "(?P<singer>[a-z"}}, "not a valid regular expression"),
    ({"path": "x", "glob": 3}, "pattern"),
    ({"layout": "builtin"}, "path"),
])
@pytest.mark.filterwarnings("ignore:dataset.preset is deprecated:FutureWarning")
def test_bad_specs_raise_config_error(spec, match):
    with pytest.raises(ConfigError, match=match):
        resolve_spec(spec)


@pytest.mark.parametrize("spec,message", [
    ({"path": "x", "presett": "vocalset"},
     "datasets.test.vs.presett: unknown dataset key 'presett'; valid choices: exclude, glob, layout, path, "
     "recording, singer"),
    ({"path": "x", "layout": "vocalsett"}, "datasets.test.vs.layout: unknown dataset layout 'vocalsett'"),
    ({"path": "x", "singer": {"level": -1}}, "datasets.test.vs.singer.level: expected an integer >= 0, got -1"),
    ({"path": "x", "singer": {"regex": "([a-z]+)"}}, "datasets.test.vs.singer.regex: '([a-z]+)' needs a named group"),
    ({"path": "x", "singer": "folder"}, "datasets.test.vs.singer: expected {level: k} or {regex:"),
    ({"path": "x", "glob": 3}, "datasets.test.vs.glob: expected a pattern or a list of patterns, got 3"),
    ({"path": "x", "exclude": [""]}, "datasets.test.vs.exclude: expected a pattern or a list of patterns"),
    ({"path": 3}, "datasets.test.vs.path: expected a folder path, got 3"),
])
def test_spec_errors_name_the_dotted_parameter(spec, message):
    with pytest.raises(ConfigError) as err:
        resolve_spec(spec, "datasets.test.vs")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_preset_is_a_deprecated_alias_of_layout(tmp_path: Path):
    root = make_tree(tmp_path / "vctk", ["wav48/p225/p225_001.wav", "wav48/p227/p227_003.wav"])
    with pytest.warns(FutureWarning, match="datasets.test.vctk.preset is deprecated; write layout: vctk"):
        old = resolve_spec({"path": str(root), "preset": "vctk"}, "datasets.test.vctk")
    assert old == resolve_spec({"path": str(root), "layout": "vctk"}) and old.layout == "vctk"
    with pytest.raises(ConfigError, match="preset: deprecated alias of 'layout'; give only 'layout'"):
        resolve_spec({"path": str(root), "preset": "vctk", "layout": "vctk"})


def test_every_layout_documented():
    import singer_ssl.data.layouts as ds

    for name in LAYOUTS:
        assert re.search(rf"^{name}\s", ds.__doc__, re.MULTILINE), name


# ---------------------------------------------------------------------------------------- naming

def test_safe_name():
    assert safe_name("a, b#c  d") == "a-b-c-d"
    assert safe_name("..hidden") == "hidden"
    assert safe_name("Alto-1#美错") == "Alto-1-美错"
    assert safe_name("x/y\\z'\"") == "x-y-z"
    assert safe_name("p225_001_mic1") == "p225_001_mic1"


def test_segment_name_and_format_seconds():
    assert segment_name("sub_song", 2, 8.0, 12.0, 4.0) == "sub_song_2_8_12_4s.wav"
    assert segment_name("p", 1, 2.7, 5.4, 2.7) == "p_1_2.7_5.4_2.7s.wav"
    assert segment_name("p", 3, 12.0, 14.52134, 4) == "p_3_12_14.521_4s.wav"
    assert format_seconds(0.0) == "0" and format_seconds(123456.5) == "123456.5"


def test_prefixes_context_and_uniqueness():
    sources = [
        Source("a/x y.wav", "a", ()), Source("a/x,y.wav", "a", ()), Source("a/X-Y.wav", "a", ()),
        Source("b/x y.wav", "b", ()),  # another singer may reuse a prefix
        Source("a/sub/deeper/x.wav", "a", ("sub", "deeper")), Source("a/sub_deeper_x.wav", "a", ()),
    ]
    p = source_prefixes(sources)
    assert p["a/X-Y.wav"] == "X-Y" and p["a/x y.wav"] == "x-y-2" and p["a/x,y.wav"] == "x-y-3"
    assert p["b/x y.wav"] == "x-y"
    assert p["a/sub/deeper/x.wav"] == "sub_deeper_x" and p["a/sub_deeper_x.wav"] == "sub_deeper_x-2"
    names = [segment_name(p[s.relpath], k, 4.0 * k, 4.0 * k + 4, 4) for s in sources if s.singer == "a"
             for k in range(12)]
    assert len({n.casefold() for n in names}) == len(names)


def test_long_prefix_truncated_but_unique():
    stem = "é" * 150
    a, b = Source(f"s/{stem}1.wav", "s", ()), Source(f"s/{stem}2.wav", "s", ())
    p = source_prefixes([a, b])
    assert p[a.relpath] != p[b.relpath]
    assert all(len(segment_name(v, 999, 3996, 4000, 4).encode()) < 255 for v in p.values())


# -------------------------------------------------------------------------------------- manifest

def test_manifest_round_trip(tmp_path: Path):
    rows = [{"segment": "a/x_0_0_4_4s.wav", "singer": "a", "source": "a/x.wav", "start_s": 0.0, "end_s": 4.0,
             "dataset": "d", "recording": "a"},
            {"segment": "a/x_1_4_6.5_4s.wav", "singer": "a", "source": "a/x.wav", "start_s": 4.0,
             "end_s": 6.523, "dataset": "d", "recording": "a"}]
    path = write_manifest(tmp_path, rows)
    assert path.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    assert path.read_text().splitlines()[2] == "a/x_1_4_6.5_4s.wav,a,a/x.wav,4,6.523,d,a"
    back = read_manifest(tmp_path)
    assert back == rows and isinstance(back[1]["end_s"], float)
    # a manifest from before the recording column: each row's recording is its source file, no error
    (tmp_path / "manifest.csv").write_text("segment,singer,source,start_s,end_s,dataset\n"
                                           "a/x_0.wav,a,a/x.wav,0,4,d\nb/y_0.wav,b,b/y.wav,0,4,d\n")
    assert [r["recording"] for r in read_manifest(tmp_path)] == ["a/x.wav", "b/y.wav"]
    write_skipped(tmp_path, [("b/y.wav", "corrupt: bad, really")])
    assert read_skipped(tmp_path) == [{"source": "b/y.wav", "reason": "corrupt: bad, really"}]


def test_read_manifest_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("segment,singer\na/x.wav,a\n")
    with pytest.raises(DatasetError, match="missing column"):
        read_manifest(tmp_path)


def test_read_manifest_errors_are_one_line_segment_errors(tmp_path: Path):
    folder = tmp_path / "vocalset"
    folder.mkdir()
    with pytest.raises(SegmentError) as err:
        read_manifest(folder)
    assert str(err.value) == (f"dataset 'vocalset': no manifest at {folder / 'manifest.csv'}; "
                              "run the segment stage first")
    (folder / "manifest.csv").write_text("segment,singer\na/x.wav,a\n")
    with pytest.raises(SegmentError, match=r"^dataset 'vs': .*manifest.csv: missing column\(s\) source, start_s, "
                                           r"end_s, dataset; expected "
                                           r"segment,singer,source,start_s,end_s,dataset,recording$"):
        read_manifest(folder / "manifest.csv", "vs")
    write_manifest(folder, [])
    with pytest.raises(SegmentError, match=r"^dataset 'vocalset': .*manifest.csv lists no segments \(every source"):
        read_manifest(folder)
    (folder / "manifest.csv").write_text(",".join(MANIFEST_COLUMNS) + "\na/x_0.wav,a,a/x.wav,0,four,d\n")
    with pytest.raises(SegmentError, match=r"row 2 \('a/x_0.wav'\): start_s/end_s must be numbers, got '0', 'four'"):
        read_manifest(folder)
    (folder / "manifest.csv").write_text(",".join(MANIFEST_COLUMNS) + "\na/x_0.wav,a,a/x.wav,0,inf,d\n")
    with pytest.raises(SegmentError, match=r"row 2 \('a/x_0.wav'\): start_s/end_s must be finite"):
        read_manifest(folder)


def test_segment_writes_the_layout_recording(tmp_path: Path):
    """The segment stage's manifest carries each row's recording (M4Singer: the song folder)."""
    import numpy as np
    import soundfile as sf

    from singer_ssl.segment import SegmentConfig, segment_dataset

    sr = 8000
    rng = np.random.default_rng(0)
    files = ["Alto-1#s1/0000.wav", "Alto-1#s1/0001.wav", "Alto-1#s2/0000.wav", "Bass-2#s1/0000.wav"]
    for rel in files:
        (tmp_path / "m4" / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "m4" / rel, 0.1 * rng.standard_normal(2 * sr), sr, subtype="PCM_16")
    segment_dataset("m4", {"path": str(tmp_path / "m4"), "layout": "m4singer"}, tmp_path / "out",
                    SegmentConfig(sr, 1.0, "drop", None, 1))
    rows = read_manifest(tmp_path / "out")
    assert sorted((r["source"], r["recording"]) for r in rows) == sorted(
        (f, f.split("/")[0]) for f in files for _ in range(2))  # 2 one-second segments per file
    header = (tmp_path / "out" / "manifest.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",")[-1] == "recording"
    # the features' ``source`` (what the views and the probe group by, through embed) is that recording
    from singer_ssl.features import FeatureStore, extract_features

    extract_features(tmp_path / "out", tmp_path / "f.h5", sample_rate=sr, n_fft=256, hop=128, n_mels=16,
                     device="cpu", workers=1, progress=False)
    store = FeatureStore(tmp_path / "f.h5")
    assert list(store.sources) == [r["recording"] for r in rows]
    store.close()
