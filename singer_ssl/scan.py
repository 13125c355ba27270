"""The scan stage: a content listing of a raw dataset folder, the dependency DVC hashes instead of the folder.

DVC hashes a folder dependency itself and stops ``dvc repro`` on a dangling link (``[Errno 2]``), a
link loop (``[Errno 40]``) or a folder it cannot read, before any stage runs (DVC 3 has no option to
skip them). So ``dvc.yaml`` does not declare raw dataset folders: a ``scan`` stage per dataset
(``always_changed``: it runs at every ``dvc repro``) writes ``data/listings/<role>/<dataset>.csv``
and the segment stage depends on that file. When the listing comes out byte-identical, DVC skips
everything downstream; a changed, added or removed audio file changes the listing, so nothing goes
stale.

The listing (sorted by path) has one row per file the dataset's layout matches
(:func:`singer_ssl.data.layouts.scan_sources`: labelled and unlabelled files):
``path,bytes,md5,problem,duplicate_of`` - ``md5`` the content hash of the file (as DVC's own), or an
empty hash and the ``problem`` (``unreadable: ...``) for an entry that cannot be read (dangling link,
loop, permissions); folders the walk could not read are rows ``<folder>,,,unreadable folder: ...``;
``duplicate_of`` the first path (in sorted order) holding the same bytes (same md5 and size), empty for
the first copy and for unique files (:func:`mark_duplicates`): a byte-identical copy is reported with a
warning on stderr and its segments are kept out of the trials (:func:`read_duplicates`,
:mod:`singer_ssl.trials`: a target pair of two copies of one recording is no trial). The segment stage
records the unreadable entries in ``skipped.csv``. The listing holds no times, inode
numbers or absolute paths, so it is the same in every clone.

Cost: every file is hashed once; the hash is reused while the file's ``(size, mtime_ns, ctime_ns,
inode)`` is unchanged (DVC's state database keys on size, mtime and inode; the ctime, which no
program can set back, also catches an in-place edit whose mtime was restored), from a cache in DVC's
scratch folder ``.dvc/tmp/singer-ssl-scan/<dataset>.json`` (git-ignored; left out when there is no
``.dvc/tmp``, e.g. a stage run by hand). Errors before anything is written (one line): unknown
dataset, bad layout, missing folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from singer_ssl.core.io import read_csv, write_csv, write_text
from singer_ssl.core.params import dataset_spec
from singer_ssl.data.layouts import DatasetSpec, resolve_spec, scan_sources

HEADER = ("path", "bytes", "md5", "problem", "duplicate_of")
CACHE_DIR = Path(".dvc/tmp/singer-ssl-scan")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ScanConfig:
    """The dataset's name and validated layout (``datasets.<role>.<dataset>``; nothing else is read)."""

    dataset: str
    layout: DatasetSpec

    @classmethod
    def from_params(cls, params: Mapping[str, Any], dataset: str) -> ScanConfig:
        """Validate ``datasets.<role>.<dataset>``; a problem is a one-line ConfigError naming the key."""
        role, spec = dataset_spec(dict(params), dataset)
        return cls(dataset, resolve_spec(spec, f"datasets.{role}.{dataset}"))


def file_md5(path: str | os.PathLike) -> str:
    """md5 hex digest of a file's bytes, read in 1 MiB chunks (OSError for an unreadable file)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _load_cache(path: Path | None) -> dict[str, list]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # a missing or damaged cache only costs re-hashing


def listing_rows(spec: DatasetSpec, name: str, cache: dict[str, list] | None = None
                 ) -> tuple[list[tuple[str, str, str, str]], dict[str, list]]:
    """``[(path, bytes, md5, problem)]`` of the dataset (sorted) and the updated stat cache
    ``{path: [size, mtime_ns, ctime_ns, inode, md5]}``; hashes are reused from ``cache`` for unchanged stats."""
    cache = cache or {}
    listing = scan_sources(spec, name)
    rels = sorted([s.relpath for s in listing.sources] + list(listing.unlabelled))
    rows: list[tuple[str, str, str, str]] = [(rel, "", "", why) for rel, why in listing.problems]
    new_cache: dict[str, list] = {}
    for rel in rels:
        full = spec.path / rel
        try:
            st = os.stat(full)
            key = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
            old = cache.get(rel)
            digest = old[4] if isinstance(old, list) and len(old) == 5 and old[:4] == key else file_md5(full)
        except OSError as e:
            rows.append((rel, "", "", f"unreadable: {e.strerror or type(e).__name__}"))
            continue
        new_cache[rel] = key + [digest]
        rows.append((rel, str(st.st_size), digest, ""))
    rows.sort()
    return rows, new_cache


def mark_duplicates(rows: list[tuple[str, str, str, str]]) -> list[tuple[str, str, str, str, str]]:
    """Append ``duplicate_of`` to each ``(path, bytes, md5, problem)`` row: the first path (sorted) with the
    same ``(bytes, md5)``, or ``""`` (the first copy, a unique file, an unreadable entry)."""
    first: dict[tuple[str, str], str] = {}
    out = []
    for path, size, digest, problem in sorted(rows):
        original = first.setdefault((size, digest), path) if digest else path
        out.append((path, size, digest, problem, "" if original == path else original))
    return out


def read_duplicates(listing: str | os.PathLike) -> dict[str, str]:
    """``{path: first copy}`` of every byte-identical copy in a scan listing (none for a listing written
    before the ``duplicate_of`` column existed); FileNotFoundError naming a missing listing."""
    path = Path(listing)
    if not path.is_file():
        raise FileNotFoundError(f"scan listing not found: {path} (run the scan stage first)")
    return {r["path"]: r["duplicate_of"] for r in read_csv(path) if r.get("duplicate_of")}


def run(cfg: ScanConfig, src: str | os.PathLike, out: str | os.PathLike,
        cache_dir: str | os.PathLike | None = CACHE_DIR) -> str:
    """Write the listing of folder ``src`` (laid out as ``cfg.layout``) to ``out``; the summary line."""
    spec = dataclasses.replace(cfg.layout, path=Path(src))
    cache_path = None
    if cache_dir is not None and Path(cache_dir).parent.is_dir():
        cache_path = Path(cache_dir) / f"{cfg.dataset}.json"
    rows, new_cache = listing_rows(spec, cfg.dataset, _load_cache(cache_path))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    marked = mark_duplicates(rows)
    write_csv(out, HEADER, marked)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        write_text(cache_path, json.dumps(new_cache, sort_keys=True))
    bad = sum(1 for r in rows if r[3])
    copies = [(r[0], r[4]) for r in marked if r[4]]
    if copies:
        print(f"warning: {cfg.dataset}: {len(copies)} files are byte-identical copies of another file "
              f"(e.g. {copies[0][0]} = {copies[0][1]}; all in the duplicate_of column of {out}); the trials of a "
              f"test dataset leave their segments out", file=sys.stderr)
    return (f"{cfg.dataset}: listed {len(rows) - bad} files" + (f", {bad} unreadable entries" if bad else "")
            + (f", {len(copies)} byte-identical copies" if copies else "") + f" -> {out}")
