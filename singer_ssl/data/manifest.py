"""A segment folder's contract: segment naming, and the one reader/writer of ``manifest.csv`` and ``skipped.csv``.

The segment stage writes, for each dataset, a folder::

    <singer>/<name>.wav     mono PCM_16 segments (names below)
    manifest.csv            segment,singer,source,start_s,end_s,dataset,recording   (one row per segment)
    skipped.csv             source,reason                                  (one row per skip)

``segment`` is the wav's path relative to the folder (``<singer>/<name>.wav``, also the key of the
features file and of the trial lists), ``source`` the file it was cut from (relative to the
dataset folder), ``start_s``/``end_s`` its span in that file in seconds (``end_s`` is the real
end of a zero-padded final segment), ``recording`` the recording that file belongs to (the layout's
``recording`` rule, :func:`singer_ssl.data.layouts.recording_of`; by default the file itself; M4Singer:
the song folder). A manifest written before the ``recording`` column existed reads back with
``recording`` = ``source``. The features, trials and train stages read it back through
:func:`read_manifest`, which fails with one line naming the dataset and the file.

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
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from singer_ssl.core.io import read_csv, write_csv

MANIFEST_NAME = "manifest.csv"
SKIPPED_NAME = "skipped.csv"
MANIFEST_COLUMNS = ("segment", "singer", "source", "start_s", "end_s", "dataset", "recording")
#: columns a manifest must have (``recording`` came later: missing, it defaults to ``source``)
REQUIRED_COLUMNS = MANIFEST_COLUMNS[:6]
SKIPPED_COLUMNS = ("source", "reason")
MANIFEST_FLOATS = ("start_s", "end_s")  # read back as float seconds; every other column stays str
_MAX_PREFIX_BYTES = 180  # keeps a segment name well under the 255-byte file-name limit


class DatasetError(ValueError):
    """A dataset's files cannot be used (missing folder, nothing to list, label clash, bad manifest)."""


class SegmentError(DatasetError):
    """A segment folder is inconsistent (missing/empty/malformed manifest, a missing/unreadable wav,
    wrong length or rate); the message names the dataset or the file."""


class Source(NamedTuple):
    """One listed file: ``relpath`` (posix, relative to the dataset folder), safe ``singer`` label,
    ``context``: the folders below the singer folder (used in segment names), and ``recording``: the
    recording it belongs to (a path prefix; empty = the file itself)."""

    relpath: str
    singer: str
    context: tuple[str, ...]
    recording: str = ""


# --------------------------------------------------------------------------------------- naming

_UNSAFE = re.compile(r"[^\w.+\-]+")  # \w is Unicode-aware: letters of any script stay


def safe_name(text: str) -> str:
    """Make ``text`` safe as one file-name part and CSV field: NFC-normalised, every run of
    characters other than letters, digits, ``_ . + -`` (spaces, commas, ``#``, quotes, slashes,
    ...) replaced by ``-``, leading/trailing ``-`` and leading ``.`` removed."""
    s = _UNSAFE.sub("-", unicodedata.normalize("NFC", text))
    return s.strip("-").lstrip(".").strip("-")


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
    times with 6 decimals, trailing zeros dropped; a row without ``recording`` gets its ``source``).
    Returns the file's path."""
    path = _csv_path(folder, MANIFEST_NAME)
    out = ([format_seconds(float(r[c]), 6) if c in MANIFEST_FLOATS
            else (r.get(c) or r["source"]) if c == "recording" else r[c] for c in MANIFEST_COLUMNS]
           for r in rows)
    write_csv(path, MANIFEST_COLUMNS, out)
    return path


def read_manifest(folder: str | os.PathLike, dataset: str | None = None) -> list[dict[str, Any]]:
    """Rows of ``<folder>/manifest.csv`` (or of a manifest file path), in file order.

    Each row is a dict of str fields, ``start_s``/``end_s`` as float seconds, always with a ``recording``
    (an older manifest without that column, or an empty cell: the row's ``source``). Raises SegmentError
    (a DatasetError), one line naming ``dataset`` (default: the folder's name) and the file, when
    the manifest is missing, lacks a column of REQUIRED_COLUMNS, lists no segment, or holds a
    time that is not a number.
    """
    path = _csv_path(folder, MANIFEST_NAME)
    name = dataset or path.parent.name
    if not path.is_file():
        raise SegmentError(f"dataset {name!r}: no manifest at {path}; run the segment stage first")
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise SegmentError(f"dataset {name!r}: {path}: missing column(s) {', '.join(missing)}; "
                           f"expected {','.join(MANIFEST_COLUMNS)}")
    rows = read_csv(path)
    if not rows:
        raise SegmentError(f"dataset {name!r}: {path} lists no segments (every source was skipped? "
                           f"see {path.with_name(SKIPPED_NAME)})")
    for line, r in enumerate(rows, start=2):  # line 1 is the header
        try:
            times = [float(r[c]) for c in MANIFEST_FLOATS]
        except (TypeError, ValueError):
            raise SegmentError(f"dataset {name!r}: {path}: row {line} ({r.get('segment')!r}): start_s/end_s "
                               f"must be numbers, got {', '.join(repr(r.get(c)) for c in MANIFEST_FLOATS)}") from None
        if not all(math.isfinite(t) for t in times):
            raise SegmentError(f"dataset {name!r}: {path}: row {line} ({r['segment']!r}): start_s/end_s must be finite")
        r.update(zip(MANIFEST_FLOATS, times))
        if not r.get("recording"):
            r["recording"] = r["source"]
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
