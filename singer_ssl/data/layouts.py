"""Dataset layouts (which files, which singer), segment naming, and the segments' manifest I/O.

A dataset spec (``params.yaml`` ``datasets.<role>.<name>``) is either a preset or a custom layout::

    {path: data/raw/vocalset, preset: vocalset}
    {path: data/raw/mine, glob: ["**/*.wav"], singer: {level: 0}, exclude: ["*_take0*"]}
    {path: data/raw/mine, singer: {regex: "^(?P<singer>[A-Za-z]+)_"}}     # singer from the file name

Keys
----
``path``     folder of the dataset (relative to the working directory, i.e. the repo root).
``glob``     pattern or list of patterns for the audio files, relative to ``path``; ``*``, ``?`` and
             ``[...]`` stay inside one folder, ``**`` spans any number of folders (also zero).
             Matching ignores case (``*.wav`` also takes ``X.WAV``), so a listing is the same on
             case-insensitive file systems. Default :data:`AUDIO_GLOBS` (the formats libsndfile
             reads: wav flac ogg oga opus aif aiff mp3).
``singer``   ``{level: k}`` - the singer is the k-th folder of the file's relative path (0 = top);
             ``{regex: "...(?P<singer>...)..."}`` - the named group of the first match
             (``re.search``) in the relative path (``/``-separated). Default ``{level: 0}``.
             Files without a label are listed as unlabelled (recorded in skipped.csv).
``exclude``  patterns removed from the listing: one without ``/`` is matched against every folder
             and file name of the relative path, one with ``/`` against the whole relative path.
Always excluded: hidden files and folders (name starting with ``.``, e.g. AppleDouble ``._x.wav``)
and ``__MACOSX`` folders.

A ``preset`` fills ``glob``, ``singer`` and ``exclude``; explicit keys refine it: ``glob`` and
``singer`` replace the preset's, ``exclude`` is added to the preset's.

Presets (``path`` is the folder that holds the layout shown):

========  =============================================  =========================  ===================
preset    layout                                         glob                       singer / exclude
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

Segment names (Torres et al.'s ``{subdir}_{subsubdir}_{file}_{k}_{start}_{end}_{n}s.wav``, under
``<singer>/``): ``<context>_<stem>_<k>_<start>_<end>_<n>s.wav`` where ``context`` is the source's
folders below the singer folder (all of them, ``_``-joined; none when the file sits directly in the
singer folder; for a regex label with no folder equal to the label, e.g. M4Singer, all folders, so
the song stays in the name), ``stem`` the file name without extension, ``k`` the segment index,
``start``/``end`` seconds in the source and ``n`` the segment length (:func:`format_seconds`:
up to 3 decimals, trailing zeros dropped: ``0``, ``4``, ``2.7``). Every name part is made safe by
:func:`safe_name`; if two sources of one singer still collide (compared case-insensitively, so
the folder also works on macOS/Windows), later ones (in path order) get ``-2``, ``-3``, ... .
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from singer_ssl.core.audio import AUDIO_EXTENSIONS
from singer_ssl.core.errors import ConfigError, choice_error
from singer_ssl.core.io import read_csv, write_csv

AUDIO_GLOBS = tuple(f"**/*.{ext}" for ext in AUDIO_EXTENSIONS)
ALWAYS_EXCLUDED_DIRS = ("__MACOSX",)
SPEC_KEYS = ("path", "preset", "glob", "singer", "exclude")

PRESETS: dict[str, dict[str, Any]] = {
    "builtin": {"glob": AUDIO_GLOBS, "singer": {"level": 0}, "exclude": ()},
    "vocalset": {"glob": ("FULL/**/*.wav",), "singer": {"level": 1}, "exclude": ()},
    "m4singer": {"glob": ("*#*/*.wav",), "singer": {"regex": r"^(?P<singer>[^/#]+)#"}, "exclude": ()},
    "nus48e": {"glob": ("*/sing/*.wav",), "singer": {"level": 0}, "exclude": ()},
    "vctk": {"glob": ("wav48*/*/*_mic1.flac", "wav48/*/*.wav"), "singer": {"level": 1},
             "exclude": ("*_mic2.*",)},
}

MANIFEST_NAME = "manifest.csv"
SKIPPED_NAME = "skipped.csv"
MANIFEST_COLUMNS = ("segment", "singer", "source", "start_s", "end_s", "dataset")
SKIPPED_COLUMNS = ("source", "reason")
_MANIFEST_FLOATS = ("start_s", "end_s")
_MAX_PREFIX_BYTES = 180  # keeps a segment name well under the 255-byte file-name limit


class DatasetError(ValueError):
    """A dataset's files cannot be used (missing folder, nothing to list, label clash, bad manifest)."""


@dataclass(frozen=True)
class DatasetSpec:
    """A resolved dataset layout: which files under ``path`` and how their singer is found."""

    path: Path
    glob: tuple[str, ...]
    exclude: tuple[str, ...]
    singer_level: int | None = None
    singer_regex: str | None = None
    preset: str | None = None


class Source(NamedTuple):
    """One listed file: ``relpath`` (posix, relative to the dataset folder), safe ``singer`` label,
    and ``context``: the folders below the singer folder (used in segment names)."""

    relpath: str
    singer: str
    context: tuple[str, ...]


class Listing(NamedTuple):
    """Result of :func:`scan_sources`: labelled sources (sorted by path) and unlabelled relpaths."""

    sources: list[Source]
    unlabelled: list[str]


# ---------------------------------------------------------------------------------------- specs

def _as_tuple(value: Any, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigError(f"dataset {key!r}: expected a pattern or a list of patterns, got {value!r}")


def _singer_rule(rule: Any) -> tuple[int | None, str | None]:
    if not isinstance(rule, Mapping) or len(rule) != 1 or not set(rule) <= {"level", "regex"}:
        raise ConfigError(f"dataset 'singer': expected {{level: k}} or {{regex: '...(?P<singer>...)...'}}, "
                          f"got {rule!r}")
    if "level" in rule:
        level = rule["level"]
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise ConfigError(f"dataset 'singer.level': expected an integer >= 0, got {level!r}")
        return level, None
    regex = rule["regex"]
    try:
        compiled = re.compile(regex)
    except (re.error, TypeError) as e:
        raise ConfigError(f"dataset 'singer.regex' {regex!r} is not a valid regular expression: {e}") \
            from None
    if "singer" not in compiled.groupindex:
        raise ConfigError(f"dataset 'singer.regex' {regex!r} needs a named group (?P<singer>...)")
    return None, regex


def resolve_spec(spec: Mapping[str, Any]) -> DatasetSpec:
    """Validate a dataset spec dict and fill it from its preset; ConfigError names the problem.

    Unknown presets and keys raise ConfigError listing the valid ones.
    """
    if not isinstance(spec, Mapping) or "path" not in spec:
        raise ConfigError(f"dataset spec needs at least 'path', got {spec!r}")
    unknown = set(spec) - set(SPEC_KEYS)
    if unknown:
        raise choice_error("dataset key", sorted(unknown)[0], SPEC_KEYS)
    preset = spec.get("preset")
    if preset is not None and preset not in PRESETS:
        raise choice_error("dataset preset", preset, PRESETS)
    base = PRESETS.get(preset, {"glob": AUDIO_GLOBS, "singer": {"level": 0}, "exclude": ()})
    glob = _as_tuple(spec["glob"], "glob") if spec.get("glob") is not None else tuple(base["glob"])
    exclude = tuple(base["exclude"])
    if spec.get("exclude") is not None:
        exclude += _as_tuple(spec["exclude"], "exclude")
    level, regex = _singer_rule(spec["singer"] if spec.get("singer") is not None else base["singer"])
    if not isinstance(spec["path"], (str, os.PathLike)) or not str(spec["path"]):
        raise ConfigError(f"dataset 'path': expected a folder path, got {spec['path']!r}")
    return DatasetSpec(Path(spec["path"]), glob, exclude, level, regex, preset)


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


def _walk_files(root: Path, name_excludes: list[re.Pattern[str]]) -> Iterator[str]:
    """Relative posix paths of every non-folder entry under ``root`` (follows links, once each)."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
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


_UNSAFE = re.compile(r"[^\w.+\-]+")  # \w is Unicode-aware: letters of any script stay


def safe_name(text: str) -> str:
    """Make ``text`` safe as one file-name part and CSV field: NFC-normalised, every run of
    characters other than letters, digits, ``_ . + -`` (spaces, commas, ``#``, quotes, slashes,
    ...) replaced by ``-``, leading/trailing ``-`` and leading ``.`` removed."""
    s = _UNSAFE.sub("-", unicodedata.normalize("NFC", text))
    return s.strip("-").lstrip(".").strip("-")


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
    sources, unlabelled = [], []
    raw_by_safe: dict[str, set[str]] = {}
    for rel in _walk_files(root, name_ex):
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
        sources.append(Source(rel, singer, found[1]))
    for raws in raw_by_safe.values():
        if len(raws) > 1:
            raise DatasetError(f"{what}: singer labels {sorted(raws)} all map to the same folder name "
                               f"{safe_name(sorted(raws)[0])!r}; rename one or adjust the singer rule")
    sources.sort(key=lambda s: s.relpath)
    unlabelled.sort()
    return Listing(sources, unlabelled)


def list_sources(spec: DatasetSpec | Mapping[str, Any]) -> list[tuple[str, str]]:
    """Sorted ``[(relpath, singer)]`` of the dataset's labelled audio files (deterministic)."""
    if not isinstance(spec, DatasetSpec):
        spec = resolve_spec(spec)
    return [(s.relpath, s.singer) for s in scan_sources(spec).sources]


# --------------------------------------------------------------------------------------- naming

def format_seconds(x: float, decimals: int = 3) -> str:
    """Seconds as text: rounded to ``decimals``, trailing zeros dropped (``0``, ``4``, ``2.7``)."""
    s = f"{x:.{decimals}f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def segment_name(prefix: str, index: int, start_s: float, end_s: float, seconds: float) -> str:
    """``<prefix>_<k>_<start>_<end>_<n>s.wav`` (times by :func:`format_seconds`)."""
    return (f"{prefix}_{index}_{format_seconds(start_s)}_{format_seconds(end_s)}_"
            f"{format_seconds(seconds)}s.wav")


def _base_prefix(source: Source) -> str:
    parts = [safe_name(c) for c in source.context] + [safe_name(PurePosixPath(source.relpath).stem)]
    prefix = "_".join(p for p in parts if p) or "audio"
    if len(prefix.encode("utf-8")) > _MAX_PREFIX_BYTES:
        digest = hashlib.sha1(source.relpath.encode("utf-8")).hexdigest()[:8]
        cut = prefix.encode("utf-8")[:_MAX_PREFIX_BYTES - 9].decode("utf-8", errors="ignore")
        prefix = f"{cut}-{digest}"
    return prefix


def source_prefixes(sources: Iterable[Source]) -> dict[str, str]:
    """Map each source's relpath to its segment-name prefix, unique per singer case-insensitively.

    Prefix = safe context folders and stem joined by ``_`` (see module docstring); colliding
    sources get ``-2``, ``-3``, ... in relpath order, so the result depends only on the listing.
    """
    out: dict[str, str] = {}
    used: set[tuple[str, str]] = set()
    for src in sorted(sources, key=lambda s: s.relpath):
        base = _base_prefix(src)
        prefix, i = base, 1
        while (src.singer.casefold(), prefix.casefold()) in used:
            i += 1
            prefix = f"{base}-{i}"
        used.add((src.singer.casefold(), prefix.casefold()))
        out[src.relpath] = prefix
    return out


# ------------------------------------------------------------------------------------- manifest

def _csv_path(folder: str | os.PathLike, filename: str) -> Path:
    p = Path(folder)
    return p if p.suffix == ".csv" else p / filename


def write_manifest(folder: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Atomically write ``<folder>/manifest.csv`` (columns MANIFEST_COLUMNS, rows in the given order;
    times with 6 decimals, trailing zeros dropped). Returns the file's path."""
    path = _csv_path(folder, MANIFEST_NAME)
    out = ([format_seconds(float(r[c]), 6) if c in _MANIFEST_FLOATS else r[c] for c in MANIFEST_COLUMNS]
           for r in rows)
    write_csv(path, MANIFEST_COLUMNS, out)
    return path


def read_manifest(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Read ``<folder>/manifest.csv`` (or a manifest file path): dicts with str fields and float
    ``start_s``/``end_s``. DatasetError if it is missing or lacks a column."""
    path = _csv_path(folder, MANIFEST_NAME)
    if not path.is_file():
        raise DatasetError(f"no manifest at {path} (run the segment stage first)")
    rows = read_csv(path)
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    missing = [c for c in MANIFEST_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; expected {list(MANIFEST_COLUMNS)}")
    for r in rows:
        for c in _MANIFEST_FLOATS:
            r[c] = float(r[c])
    return rows


def write_skipped(folder: str | os.PathLike, rows: Iterable[tuple[str, str]]) -> Path:
    """Atomically write ``<folder>/skipped.csv`` with columns ``source,reason``."""
    path = _csv_path(folder, SKIPPED_NAME)
    write_csv(path, SKIPPED_COLUMNS, rows)
    return path


def read_skipped(folder: str | os.PathLike) -> list[dict[str, str]]:
    """Read ``<folder>/skipped.csv`` as dicts ``{source, reason}`` (empty list if absent)."""
    path = _csv_path(folder, SKIPPED_NAME)
    return read_csv(path) if path.is_file() else []
