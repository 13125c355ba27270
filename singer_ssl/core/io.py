"""Atomic output helpers: every stage writes through these so a crash never leaves a half file.

A temporary sibling (same directory, so ``os.replace`` is a same-filesystem rename) is written
first and renamed over the target only when the writer finished without raising.

Temporaries are named ``.<name>.tmp-<pid>-<8 hex>``. A process killed with ``SIGKILL`` cannot remove
its own, so every write first removes the stale temporaries *of the same target*: those whose
process is gone (:func:`remove_stale_temporaries`). The pid test keeps the temporary of a writer that
is still running (another process writing the same target); a temporary of this very process is also
kept (a thread of it may be writing). A pid reused by an unrelated live process only delays the
cleanup to a later write.

A target that is not written again (DVC restores it from its run cache instead of running the stage)
would keep its temporary for ever, so every stage also sweeps the whole workspace at its start
(:func:`sweep_stale_temporaries`, called by :func:`singer_ssl.core.stage.stage_main`; the scan stages
run at every ``dvc repro``, so one ``dvc repro`` clears what a killed run left).
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import yaml

from singer_ssl.core.errors import DiskFullError


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _remove(path: Path) -> None:
    """Remove a file or a folder tree (ignoring errors: it may be gone already)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but belongs to someone else (or cannot tell): keep its files
    return True


#: the name of a temporary of :func:`atomic_path`: ``.<target name>.tmp-<writer pid>-<8 hex>``
TEMPORARY = re.compile(r"\.(?P<target>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}")


def _is_stale(name: str, target: str | None = None) -> bool:
    """Whether ``name`` is a temporary (of ``target``, when given) whose writer no longer runs."""
    match = TEMPORARY.fullmatch(name)
    if match is None or (target is not None and match["target"] != target):
        return False
    pid = int(match["pid"])
    return pid != os.getpid() and not _pid_alive(pid)


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` (files or folders ``.<name>.tmp-<pid>-<hex>`` next to it)
    left by processes that no longer run; returns what was removed. Another target's temporaries, a
    live process's and this process's own are kept."""
    path = Path(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if _is_stale(entry.name, path.name):
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def sweep_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Remove every stale temporary (:data:`TEMPORARY` whose writer no longer runs) in the tree under
    ``root``; returns what was removed. Hidden folders (``.git``, ``.dvc``, ``.venv``) are not entered
    and symbolic links are not followed (a linked dataset folder is not the workspace's); unreadable
    folders are passed over. Costs one directory listing per folder."""
    removed: list[Path] = []
    stack = [Path(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if _is_stale(entry.name):
                _remove(Path(entry.path))
                removed.append(Path(entry.path))
            elif not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
    return removed


#: how a full disk reads when the errno is lost: h5py's HDF5 error stack ("errno = 28") or the C library's text
_DISK_FULL_TEXT = ("no space left on device", "errno = 28", "disk quota exceeded")
#: torch's archive writer (torch.save / torch.jit.save to a path) when a write comes up short: the errno is lost
_TORCH_SHORT_WRITE = ("unexpected pos", "pytorchstreamwriter failed")
#: below this many free bytes a short write is taken for a full disk
LOW_SPACE_BYTES = 16 * 2**20


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes available to this user on the filesystem holding ``folder`` (``shutil.disk_usage``; -1 if unknown)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return -1


def is_disk_full(err: BaseException, folder: str | os.PathLike) -> bool:
    """Whether ``err`` (or an exception it was raised from) is a write failing for lack of space on the filesystem
    of ``folder``: an OSError with errno ENOSPC/EDQUOT, the same text from a C library (h5py), or torch's writer
    reporting a short write while less than :data:`LOW_SPACE_BYTES` are free."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(e).lower()
        if any(m in text for m in _DISK_FULL_TEXT):
            return True
        if any(m in text for m in _TORCH_SHORT_WRITE) and 0 <= free_bytes(folder) < LOW_SPACE_BYTES:
            return True
        e = e.__cause__ or e.__context__
    return False


def require_free_space(path: str | os.PathLike, nbytes: int) -> None:
    """DiskFullError before writing ``path`` when its filesystem has less than ``nbytes`` (+ 1 %) free: a
    library that dies inside a write (h5py can crash on ENOSPC) never starts."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    free = free_bytes(folder)
    if 0 <= free < nbytes * 1.01:
        raise DiskFullError(path, f"needs about {nbytes / 2**20:.0f} MiB, {free / 2**20:.0f} MiB free")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` into; rename it over ``path`` on success.

    With ``is_dir=True`` the temporary path is an (empty, created) directory and an existing
    target directory is replaced as a whole. On an exception the temporary is removed and the
    previous target (if any) is left untouched. Stale temporaries of ``path`` from killed processes
    are removed first (:func:`remove_stale_temporaries`). A failure for lack of space (:func:`is_disk_full`)
    becomes one :class:`~singer_ssl.core.errors.DiskFullError`: ``no space left on device writing <path>``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = _tmp_sibling(path)
    if is_dir:
        tmp.mkdir()
    try:
        yield tmp
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, Exception) and not isinstance(err, DiskFullError) and is_disk_full(err, path.parent):
            raise DiskFullError(path) from None
        raise
    if is_dir:
        old = None
        if path.exists():
            old = _tmp_sibling(path)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            _remove(old)  # a folder, or a file the folder replaces
    else:
        os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_yaml(path: str | os.PathLike, obj: object) -> None:
    """Atomically write ``obj`` as YAML (key order kept)."""
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Atomically write a CSV file with a header row."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a CSV file with a header row into a list of dicts."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def open_h5(path: str | os.PathLike, what: str = "HDF5 file"):
    """``h5py.File(path, "r")``, with an unreadable, truncated or non-HDF5 file as a one-line ValueError.

    h5py raises a bare ``OSError`` ("Unable to synchronously open file (truncated file: ...)") that names
    neither the file's role nor what to do; ``what`` names the role (e.g. "features file").
    """
    import h5py  # local: core stays importable without h5py's start-up cost

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{path}: not a readable {what} ({reason}); re-create it (dvc repro -f <stage>)") from None
