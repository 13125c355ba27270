"""Tests of singer_ssl.data.layouts: presets on fake trees mirroring the real layouts, custom rules,
naming, and manifest I/O."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from singer_ssl.core.errors import ConfigError
from singer_ssl.data.layouts import (
    MANIFEST_COLUMNS,
    PRESETS,
    DatasetError,
    Source,
    format_seconds,
    list_sources,
    read_manifest,
    read_skipped,
    resolve_spec,
    safe_name,
    scan_sources,
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


# -------------------------------------------------------------------------------------- presets

def test_builtin_preset(tmp_path: Path):
    root = make_tree(tmp_path / "ds", [
        "alice/song1.wav", "alice/song2.flac", "alice/S3.WAV", "bob/song1.wav", "bob/take/x.ogg",
        # decoys
        "loose.wav", "alice/notes.txt", "alice/cover.jpg", ".cache/alice/y.wav", "alice/._song1.wav",
        "__MACOSX/alice/song1.wav", "bob/.DS_Store",
    ])
    spec = resolve_spec({"path": str(root), "preset": "builtin"})
    assert list_sources(spec) == [
        ("alice/S3.WAV", "alice"), ("alice/song1.wav", "alice"), ("alice/song2.flac", "alice"),
        ("bob/song1.wav", "bob"), ("bob/take/x.ogg", "bob"),
    ]
    assert scan_sources(spec).unlabelled == ["loose.wav"]


def test_vocalset_preset(tmp_path: Path):
    root = make_tree(tmp_path / "VocalSet", [
        "FULL/f1/arpeggios/belt/f1_arpeggios_belt_c_a.wav",
        "FULL/f1/excerpts/vibrato/f1_excerpts_vibrato_caro.wav",
        "FULL/m3/long_tones/straight/m3_long_straight_a.wav",
        # decoys
        "FULL/f1/arpeggios/belt/._f1_arpeggios_belt_c_a.wav", "__MACOSX/FULL/f1/arpeggios/belt/x.wav",
        "FULL/f1/.DS_Store", "FULL/readme.txt", "other/f2/a/b/c.wav", "DataSet_Description.wav",
        "FULL/stray.wav",  # no singer folder: unlabelled
    ])
    listing = scan_sources(resolve_spec({"path": str(root), "preset": "vocalset"}))
    assert [(s.relpath, s.singer) for s in listing.sources] == [
        ("FULL/f1/arpeggios/belt/f1_arpeggios_belt_c_a.wav", "f1"),
        ("FULL/f1/excerpts/vibrato/f1_excerpts_vibrato_caro.wav", "f1"),
        ("FULL/m3/long_tones/straight/m3_long_straight_a.wav", "m3"),
    ]
    assert listing.sources[0].context == ("arpeggios", "belt")  # folders below the singer folder
    assert listing.unlabelled == ["FULL/stray.wav"]


def test_m4singer_preset(tmp_path: Path):
    root = make_tree(tmp_path / "m4singer", [
        "Alto-1#美错/0000.wav", "Alto-1#美错/0001.wav", "Alto-1#安河桥/0000.wav",
        "Tenor-5#song x/0003.wav",
        # decoys
        "Alto-1#美错/0000.mid", "Alto-1#美错/0000.TextGrid", "meta.json", "README.wav",
        "Alto-1#美错/sub/0009.wav",
        "Bass-2/0000.wav",
    ])
    listing = scan_sources(resolve_spec({"path": str(root), "preset": "m4singer"}))
    assert [(s.relpath, s.singer) for s in listing.sources] == [
        ("Alto-1#安河桥/0000.wav", "Alto-1"), ("Alto-1#美错/0000.wav", "Alto-1"),
        ("Alto-1#美错/0001.wav", "Alto-1"), ("Tenor-5#song x/0003.wav", "Tenor-5"),
    ]
    prefixes = source_prefixes(listing.sources)
    # the song folder stays in the name: the two songs' 0000.wav must not collide
    assert prefixes["Alto-1#美错/0000.wav"] == "Alto-1-美错_0000"
    assert prefixes["Alto-1#安河桥/0000.wav"] == "Alto-1-安河桥_0000"
    assert prefixes["Tenor-5#song x/0003.wav"] == "Tenor-5-song-x_0003"


def test_nus48e_preset_sing_only_and_refined(tmp_path: Path):
    root = make_tree(tmp_path / "nus", [
        "ADIZ/sing/01.wav", "ADIZ/sing/13.wav", "ADIZ/read/01.wav", "JLEE/sing/05.wav", "JLEE/read/05.wav",
        # decoys
        "ADIZ/sing/01.txt", "ADIZ/sing/.01.wav", "README.wav",
    ])
    assert list_sources({"path": str(root), "preset": "nus48e"}) == [
        ("ADIZ/sing/01.wav", "ADIZ"), ("ADIZ/sing/13.wav", "ADIZ"), ("JLEE/sing/05.wav", "JLEE")]
    both = list_sources({"path": str(root), "preset": "nus48e", "glob": ["*/*/*.wav"]})
    assert [r for r, _ in both] == ["ADIZ/read/01.wav", "ADIZ/sing/01.wav", "ADIZ/sing/13.wav",
                                    "JLEE/read/05.wav", "JLEE/sing/05.wav"]


def test_vctk_preset_092_and_080(tmp_path: Path):
    root = make_tree(tmp_path / "vctk", [
        "wav48_silence_trimmed/p225/p225_001_mic1.flac", "wav48_silence_trimmed/p225/p225_001_mic2.flac",
        "wav48_silence_trimmed/p226/p226_002_mic1.flac", "wav48_silence_trimmed/p226/p226_002_mic2.flac",
        # decoys
        "txt/p225/p225_001.txt", "wav48_silence_trimmed/log.txt", "speaker-info.txt",
        "wav48_silence_trimmed/p225/p225_001_mic1.flac.bak",
    ])
    assert list_sources({"path": str(root), "preset": "vctk"}) == [
        ("wav48_silence_trimmed/p225/p225_001_mic1.flac", "p225"),
        ("wav48_silence_trimmed/p226/p226_002_mic1.flac", "p226")]
    old = make_tree(tmp_path / "vctk080", ["wav48/p225/p225_001.wav", "wav48/p227/p227_003.wav",
                                           "txt/p225/p225_001.txt"])
    assert list_sources({"path": str(old), "preset": "vctk"}) == [
        ("wav48/p225/p225_001.wav", "p225"), ("wav48/p227/p227_003.wav", "p227")]
    # explicit exclude adds to the preset's (mic2 stays excluded)
    assert list_sources({"path": str(root), "preset": "vctk", "exclude": ["p226"]}) == [
        ("wav48_silence_trimmed/p225/p225_001_mic1.flac", "p225")]


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
    ({"path": "x", "preset": "vocalsett"}, "builtin, m4singer, nus48e, vctk, vocalset"),
    ({"path": "x", "presett": "vocalset"}, "unknown dataset key 'presett'"),
    ({"path": "x", "singer": {"level": -1}}, "integer >= 0"),
    ({"path": "x", "singer": {"level": 0, "regex": "(?P<singer>a)"}}, "expected"),
    ({"path": "x", "singer": {"regex": "([a-z]+)"}}, r"\(\?P<singer>"),
    ({"path": "x", "singer": {"regex": "(?P<singer>[a-z"}}, "not a valid regular expression"),
    ({"path": "x", "glob": 3}, "pattern"),
    ({"preset": "builtin"}, "path"),
])
def test_bad_specs_raise_config_error(spec, match):
    with pytest.raises(ConfigError, match=match):
        resolve_spec(spec)


def test_every_preset_documented():
    import singer_ssl.data.layouts as ds

    for name in PRESETS:
        assert re.search(rf"^{name}\s", ds.__doc__, re.MULTILINE), name


def test_missing_folder_and_label_clash(tmp_path: Path):
    with pytest.raises(DatasetError, match="'mine'.*does not exist"):
        scan_sources(resolve_spec({"path": str(tmp_path / "nope")}), "mine")
    root = make_tree(tmp_path / "clash", ["Ann Lee/a.wav", "Ann,Lee/b.wav"])
    with pytest.raises(DatasetError, match="same folder name 'Ann-Lee'"):
        scan_sources(resolve_spec({"path": str(root)}), "clash")


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
             "dataset": "d"},
            {"segment": "a/x_1_4_6.5_4s.wav", "singer": "a", "source": "a/x.wav", "start_s": 4.0,
             "end_s": 6.523, "dataset": "d"}]
    path = write_manifest(tmp_path, rows)
    assert path.read_text().splitlines()[0] == ",".join(MANIFEST_COLUMNS)
    assert path.read_text().splitlines()[2] == "a/x_1_4_6.5_4s.wav,a,a/x.wav,4,6.523,d"
    back = read_manifest(tmp_path)
    assert back == rows and isinstance(back[1]["end_s"], float)
    write_skipped(tmp_path, [("b/y.wav", "corrupt: bad, really")])
    assert read_skipped(tmp_path) == [{"source": "b/y.wav", "reason": "corrupt: bad, really"}]


def test_read_manifest_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text("segment,singer\na/x.wav,a\n")
    with pytest.raises(DatasetError, match="missing column"):
        read_manifest(tmp_path)
