"""Dataset layouts: which files of a dataset folder are audio of which singer.

A dataset spec (``params.yaml`` ``datasets.<role>.<name>``) names a layout or describes its own::

    {path: data/raw/vocalset, layout: vocalset}
    {path: data/raw/mine, glob: ["**/*.wav"], singer: {level: 0}, exclude: ["*_take0*"]}
    {path: data/raw/mine, singer: {regex: "^(?P<singer>[A-Za-z]+)_"}}     # singer from the file name

Keys
----
``path``     folder of the dataset (relative to the working directory, i.e. the repo root).
``layout``   one of :data:`LAYOUTS` (table below). ``preset`` is its deprecated old name (same result,
             with a FutureWarning); "preset" now means only a paper configuration (``presets/``).
``glob``     pattern or list of patterns for the audio files, relative to ``path``; ``*``, ``?`` and
             ``[...]`` stay inside one folder, ``**`` spans any number of folders (also zero).
             Matching ignores case (``*.wav`` also takes ``X.WAV``), so a listing is the same on
             case-insensitive file systems. Default :data:`AUDIO_GLOBS` (the formats libsndfile
             reads: :data:`singer_ssl.core.audio.AUDIO_EXTENSIONS`).
``singer``   ``{level: k}`` - the singer is the k-th folder of the file's relative path (0 = top);
             ``{regex: "...(?P<singer>...)..."}`` - the named group of the first match
             (``re.search``) in the relative path (``/``-separated). Default ``{level: 0}``.
             Files without a label are listed as unlabelled (recorded in skipped.csv).
``recording`` what one recording is (trials' ``cross_recording``, the probe's grouped splits and the
             ``views: file`` pairs keep a recording together): ``{level: k}`` - the file's folders down to
             the k-th (0 = top); ``{regex: "...(?P<recording>...)..."}`` - the relative path up to the end
             of that group. Default: each file is its own recording (also for a file the rule does not
             reach). The recording id is a path prefix, so two singers never share one by accident.
``exclude``  patterns removed from the listing: one without ``/`` is matched against every folder
             and file name of the relative path, one with ``/`` against the whole relative path.
Always excluded: hidden files and folders (name starting with ``.``, e.g. AppleDouble ``._x.wav``)
and ``__MACOSX`` folders.

A ``layout`` fills ``glob``, ``singer``, ``exclude`` and ``recording``; explicit keys refine it: ``glob``,
``singer`` and ``recording`` replace the layout's, ``exclude`` is added to the layout's.

Layouts (``path`` is the folder that holds the files shown):

========  =============================================  =========================  ===================
layout    files under ``path``                           glob                       singer / exclude
========  =============================================  =========================  ===================
builtin   ``<singer>/<song>.wav`` (built-in corpus;      AUDIO_GLOBS                level 0
          any depth below the singer folder)
vocalset  ``FULL/<singer>/<context>/<technique>/*.wav``  ``FULL/**/*.wav``          level 1 (the folder
          (VocalSet 1.1/1.2)                                                        after ``FULL``)
m4singer  ``<Voice>-<n>#<song>/<nnnn>.wav`` (M4Singer;   ``*#*/*.wav``              regex: the part
          .mid/.TextGrid/meta.json are ignored)                                     before ``#``
nus48e    ``<SINGER>/sing/<nn>.wav`` (NUS-48E; the       ``*/sing/*.wav``           level 0
          spoken ``read/`` half is left out: singing
          identity only; both halves, as Torres et al. 2023
          used them: ``glob: ["*/*/*.wav"]``)
vctk      ``wav48_silence_trimmed/<pNNN>/*_mic1.flac``   ``wav48*/*/*_mic1.flac``,  level 1; exclude
          (VCTK 0.92) or ``wav48/<pNNN>/*.wav`` (0.80)   ``wav48/*/*.wav``          ``*_mic2.*``
========  =============================================  =========================  ===================

Recordings per layout, as far as the folder trees show them: ``m4singer`` - the song folder
(``Alto-1#song/0000.wav`` -> ``Alto-1#song``; M4Singer stores one file per phrase); every other layout -
the file: a built-in song is one file, a VocalSet file one take of one technique, a NUS-48E file one
sung song; VCTK stores one file per read sentence and its trees show no recording session, so each
file is its own recording there too (sessions would need metadata the layout does not have).

Singer labels are made safe as folder names by :func:`singer_ssl.data.manifest.safe_name`; segment
names and the manifest are in :mod:`singer_ssl.data.manifest`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from singer_ssl.core.audio import AUDIO_EXTENSIONS
from singer_ssl.core.errors import ConfigError
from singer_ssl.data.manifest import DatasetError, Source, safe_name

AUDIO_GLOBS = tuple(f"**/*.{ext}" for ext in AUDIO_EXTENSIONS)
ALWAYS_EXCLUDED_DIRS = ("__MACOSX",)
SPEC_KEYS = ("path", "layout", "glob", "singer", "exclude", "recording")
DEPRECATED_LAYOUT_KEY = "preset"  # the old name of ``layout``; still read, with a FutureWarning

LAYOUTS: dict[str, dict[str, Any]] = {
    "builtin": {"glob": AUDIO_GLOBS, "singer": {"level": 0}, "exclude": ()},
    "vocalset": {"glob": ("FULL/**/*.wav",), "singer": {"level": 1}, "exclude": ()},
    "m4singer": {"glob": ("*#*/*.wav",), "singer": {"regex": r"^(?P<singer>[^/#]+)#"}, "exclude": (),
                 "recording": {"level": 0}},  # the song folder: one file per phrase
    "nus48e": {"glob": ("*/sing/*.wav",), "singer": {"level": 0}, "exclude": ()},
    "vctk": {"glob": ("wav48*/*/*_mic1.flac", "wav48/*/*.wav"), "singer": {"level": 1},
             "exclude": ("*_mic2.*",)},
}
#: a layout without ``recording`` (and a custom spec without one): each file is its own recording
FILE_RECORDING = None


@dataclass(frozen=True)
class DatasetSpec:
    """A resolved dataset layout: which files under ``path`` and how their singer is found."""

    path: Path
    glob: tuple[str, ...]
    exclude: tuple[str, ...]
    singer_level: int | None = None
    singer_regex: str | None = None
    layout: str | None = None
    recording_level: int | None = None
    recording_regex: str | None = None


class Listing(NamedTuple):
    """Result of :func:`scan_sources`: labelled sources (sorted by path), unlabelled relpaths and
    ``problems``: ``(relpath, reason)`` of folders the walk could not read (sorted)."""

    sources: list[Source]
    unlabelled: list[str]
    problems: tuple[tuple[str, str], ...] = ()


# ---------------------------------------------------------------------------------------- specs

def _as_tuple(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigError(f"{where}: expected a pattern or a list of patterns, got {value!r}")


def _singer_rule(rule: Any, where: str, group: str = "singer") -> tuple[int | None, str | None]:
    """``{level: k}`` or ``{regex: "...(?P<group>...)..."}`` -> ``(level, None)`` or ``(None, regex)``."""
    if not isinstance(rule, Mapping) or len(rule) != 1 or not set(rule) <= {"level", "regex"}:
        raise ConfigError(f"{where}: expected {{level: k}} or {{regex: '...(?P<{group}>...)...'}}, got {rule!r}")
    if "level" in rule:
        level = rule["level"]
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise ConfigError(f"{where}.level: expected an integer >= 0, got {level!r}")
        return level, None
    regex = rule["regex"]
    try:
        compiled = re.compile(regex)
    except (re.error, TypeError) as e:
        raise ConfigError(f"{where}.regex: {regex!r} is not a valid regular expression: {e}") from None
    if group not in compiled.groupindex:
        raise ConfigError(f"{where}.regex: {regex!r} needs a named group (?P<{group}>...)")
    return None, regex


def _layout_name(spec: Mapping[str, Any], where: str) -> str | None:
    """The spec's ``layout`` (or its deprecated alias ``preset``, with a FutureWarning); None if neither."""
    if spec.get(DEPRECATED_LAYOUT_KEY) is not None:
        if spec.get("layout") is not None:
            raise ConfigError(f"{where}.{DEPRECATED_LAYOUT_KEY}: deprecated alias of 'layout'; give only 'layout'")
        warnings.warn(f"{where}.{DEPRECATED_LAYOUT_KEY} is deprecated; write "
                      f"layout: {spec[DEPRECATED_LAYOUT_KEY]}", FutureWarning, stacklevel=3)
        key = DEPRECATED_LAYOUT_KEY
    else:
        key = "layout"
    layout = spec.get(key)
    if layout is not None and (not isinstance(layout, str) or layout not in LAYOUTS):
        raise ConfigError(f"{where}.{key}: unknown dataset layout {layout!r}; "
                          f"valid choices: {', '.join(sorted(LAYOUTS))}")
    return layout


def resolve_spec(spec: Mapping[str, Any], where: str = "dataset") -> DatasetSpec:
    """Validate a dataset spec dict and fill it from its layout; ConfigError names the problem.

    ``where`` is the spec's dotted path in the params (``datasets.test.vocalset``); every error is
    one line starting with ``<where>.<key>``. Unknown layouts and keys raise ConfigError listing the
    valid ones. ``preset:`` is accepted as a deprecated alias of ``layout:`` (same result).
    """
    if not isinstance(spec, Mapping) or "path" not in spec:
        raise ConfigError(f"{where}: needs at least 'path', got {spec!r}")
    for key in spec:
        if key not in SPEC_KEYS and key != DEPRECATED_LAYOUT_KEY:
            raise ConfigError(f"{where}.{key}: unknown dataset key {key!r}; "
                              f"valid choices: {', '.join(sorted(SPEC_KEYS))}")
    layout = _layout_name(spec, where)
    base = LAYOUTS.get(layout, {"glob": AUDIO_GLOBS, "singer": {"level": 0}, "exclude": ()})
    glob = _as_tuple(spec["glob"], f"{where}.glob") if spec.get("glob") is not None else tuple(base["glob"])
    exclude = tuple(base["exclude"])
    if spec.get("exclude") is not None:
        exclude += _as_tuple(spec["exclude"], f"{where}.exclude")
    level, regex = _singer_rule(spec["singer"] if spec.get("singer") is not None else base["singer"],
                                f"{where}.singer")
    rec_rule = spec["recording"] if spec.get("recording") is not None else base.get("recording", FILE_RECORDING)
    rec_level, rec_regex = (None, None) if rec_rule is None else _singer_rule(rec_rule, f"{where}.recording",
                                                                               "recording")
    if not isinstance(spec["path"], (str, os.PathLike)) or not str(spec["path"]):
        raise ConfigError(f"{where}.path: expected a folder path, got {spec['path']!r}")
    return DatasetSpec(Path(spec["path"]), glob, exclude, level, regex, layout, rec_level, rec_regex)


# -------------------------------------------------------------------------------------- listing

def _component_regex(part: str) -> str:
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and part.find("]", i + 2) != -1:
            j = part.find("]", i + 2)
            body = part[i + 1:j]
            body = ("^" + body[1:]) if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob pattern (``*``, ``?``, ``[...]`` within a folder, ``**`` across folders) to a
    case-insensitive regex that must match a whole ``/``-separated relative path."""
    parts = [p for p in pattern.strip("/").split("/") if p]
    out = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
        else:
            out.append(_component_regex(part) + ("" if last else "/"))
    return re.compile("".join(out), re.IGNORECASE)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in ALWAYS_EXCLUDED_DIRS


def _walk_files(root: Path, name_excludes: list[re.Pattern[str]],
                problems: list[tuple[str, str]] | None = None) -> Iterator[str]:
    """Relative posix paths of every non-folder entry under ``root`` (follows links, once each).

    A dangling link or a link loop is yielded like a file (reading it then fails with a reason); a
    folder that cannot be listed (permissions, I/O error) is appended to ``problems`` as
    ``(relpath, "unreadable folder: <why>")`` instead of vanishing.
    """
    def onerror(err: OSError) -> None:
        if problems is not None:
            rel = os.path.relpath(err.filename or root, root)
            rel = "." if rel == "." else PurePosixPath(*Path(rel).parts).as_posix()
            problems.append((rel, f"unreadable folder: {err.strerror or type(err).__name__}"))

    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=onerror):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link cycle or a folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames
                             if not _hidden(d) and not any(p.fullmatch(d) for p in name_excludes))
        rel_dir = os.path.relpath(dirpath, root)
        for f in sorted(filenames):
            if _hidden(f):
                continue
            yield f if rel_dir == "." else PurePosixPath(*Path(rel_dir).parts, f).as_posix()


def _label(spec: DatasetSpec, relpath: str,
           regex: re.Pattern[str] | None) -> tuple[str, tuple[str, ...]] | None:
    folders = relpath.split("/")[:-1]
    if regex is None:
        level = spec.singer_level or 0
        if level >= len(folders):
            return None
        return folders[level], tuple(folders[level + 1:])
    m = regex.search(relpath)
    raw = m.group("singer") if m else None
    if not raw:
        return None
    if raw in folders:
        return raw, tuple(folders[folders.index(raw) + 1:])
    return raw, tuple(folders)


def recording_of(spec: DatasetSpec, relpath: str, regex: re.Pattern[str] | None = None) -> str:
    """The recording ``relpath`` belongs to (a ``/``-separated path prefix of it, so unique in the dataset).

    ``recording: {level: k}``: the file's folders up to and including the k-th (``Alto-1#song`` for k = 0);
    ``{regex: "...(?P<recording>...)..."}``: the relative path up to the end of that group's first match.
    No rule, a file fewer than k + 1 folders deep, or no (non-empty) match: the file itself.
    """
    folders = relpath.split("/")[:-1]
    if spec.recording_level is not None:
        k = spec.recording_level
        return "/".join(folders[:k + 1]) if k < len(folders) else relpath
    if spec.recording_regex is not None:
        m = (regex or re.compile(spec.recording_regex)).search(relpath)
        if m and m.group("recording"):
            return relpath[:m.end("recording")]
    return relpath


def scan_sources(spec: DatasetSpec, name: str | None = None) -> Listing:
    """List the dataset's files: :class:`Listing` of labelled sources (sorted by relpath) and the
    relpaths of matching files whose singer rule gave no label.

    Raises DatasetError (naming the dataset ``name`` or its path) when the folder is missing or two
    different singer labels become the same folder name after :func:`safe_name`.
    """
    what = f"dataset {name!r}" if name else f"dataset at {spec.path}"
    root = spec.path
    if not root.is_dir():
        raise DatasetError(f"{what}: folder {root} does not exist" if not root.exists()
                           else f"{what}: {root} is not a folder")
    globs = [glob_regex(g) for g in spec.glob]
    name_ex = [glob_regex(e) for e in spec.exclude if "/" not in e]
    path_ex = [glob_regex(e) for e in spec.exclude if "/" in e]
    singer_rx = re.compile(spec.singer_regex) if spec.singer_regex is not None else None
    recording_rx = re.compile(spec.recording_regex) if spec.recording_regex is not None else None
    sources, unlabelled = [], []
    raw_by_safe: dict[str, set[str]] = {}
    problems: list[tuple[str, str]] = []
    for rel in _walk_files(root, name_ex, problems):
        if not any(g.fullmatch(rel) for g in globs):
            continue
        parts = rel.split("/")
        if any(p.fullmatch(parts[-1]) for p in name_ex) or any(p.fullmatch(rel) for p in path_ex):
            continue
        found = _label(spec, rel, singer_rx)
        singer = safe_name(found[0]) if found else ""
        if not singer:
            unlabelled.append(rel)
            continue
        raw_by_safe.setdefault(singer.casefold(), set()).add(found[0])
        sources.append(Source(rel, singer, found[1], recording_of(spec, rel, recording_rx)))
    for raws in raw_by_safe.values():
        if len(raws) > 1:
            raise DatasetError(f"{what}: singer labels {sorted(raws)} all map to the same folder name "
                               f"{safe_name(sorted(raws)[0])!r}; rename one or adjust the singer rule")
    sources.sort(key=lambda s: s.relpath)
    unlabelled.sort()
    return Listing(sources, unlabelled, tuple(sorted(problems)))


def walk_audio(root: str | os.PathLike) -> tuple[list[str], list[tuple[str, str]]]:
    """The pipeline's walk for a plain folder (``singer-ssl embed``): sorted relpaths of every entry whose
    extension is in ``AUDIO_EXTENSIONS`` (hidden entries and ``__MACOSX`` left out, links followed once,
    dangling links and loops included: reading them fails with a reason) and the ``(relpath, reason)``
    of folders that could not be read."""
    problems: list[tuple[str, str]] = []
    files = [rel for rel in _walk_files(Path(root), [], problems)
             if rel.rsplit(".", 1)[-1].lower() in AUDIO_EXTENSIONS and "." in rel.rsplit("/", 1)[-1]]
    return files, sorted(problems)


def list_sources(spec: DatasetSpec | Mapping[str, Any]) -> list[tuple[str, str]]:
    """Sorted ``[(relpath, singer)]`` of the dataset's labelled audio files (deterministic)."""
    if not isinstance(spec, DatasetSpec):
        spec = resolve_spec(spec)
    return [(s.relpath, s.singer) for s in scan_sources(spec).sources]
