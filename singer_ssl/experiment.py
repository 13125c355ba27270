"""Safe experiments: ``singer-ssl run`` checks ``-S`` overrides before ``dvc exp run`` and keeps params.yaml on
failure; ``singer-ssl restore`` brings back the last committed state.

``dvc exp run -S key=value`` writes the overrides into params.yaml (reformatted) before it checks anything, so a
typo such as ``-S loss=vicreq`` leaves params.yaml rewritten and fails with DVC's ``Parameters 'losses.vicreq'
are missing``, and ``-S train.max_step=3`` draws the advice ``+train.max_step=3``, which the train stage then
rejects. :func:`check_overrides` applies the overrides to a copy of params.yaml (Hydra's override grammar as DVC
uses it: ``key=value``, ``+key=value`` adds a key, ``++key=value`` sets or adds, ``~key`` deletes) and validates
the result with :func:`singer_ssl.validate.validate_params`, the one walk over the parameter schema (the ``check``
stage runs it too): every stage's typed ``<Stage>Config.from_params``, unknown keys anywhere, empty roles, so an
unknown loss, encoder or key is refused with the valid names before DVC is called.

:func:`run_experiment` then runs ``dvc exp run`` with the byte snapshot of params.yaml in hand and writes the
snapshot back when DVC fails or is interrupted. It refuses to start while another DVC process holds the
repository (DVC's lock ``.dvc/tmp/lock``) or runs a stage (DVC releases that lock while a stage's command runs and
records the stage in ``.dvc/tmp/rwlock``), or while another ``singer-ssl run`` is under way
(``.dvc/tmp/singer-ssl-run.lock``, held for the whole run): a second ``dvc exp run`` would otherwise write its
overrides into the params.yaml of the running experiment. Parallel work goes through DVC's queue (``--queue``,
then ``dvc queue start -j N``), whose experiments run in their own temporary copies.

:func:`restore` is the way back after any failed or finished experiment: it keeps a copy of a modified
params.yaml, checks out :data:`~singer_ssl.core.stage.RESTORE_PATHS` from git's HEAD (params.yaml, dvc.lock, and
the cache-free metrics/ and plots/ that DVC deletes before a stage runs: a failed evaluate's metrics, a failed
train's partial curves) and then ``dvc checkout --force`` (the cached outputs, data/model included, that the
restored dvc.lock names).
"""

from __future__ import annotations

import copy
import difflib
import fcntl
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from singer_ssl.core.stage import RESTORE_ONE_LINER, RESTORE_PATHS
from singer_ssl.validate import validate_params

#: DVC's repository lock (dvc.lock.make_lock: zc.lockfile, an flock on this file) relative to the repository root
DVC_LOCK = Path(".dvc") / "tmp" / "lock"
#: DVC's table of the stages running now (dvc.rwlock: ``{"write": {path: {"pid", "cmd"}}, "read": {path: [...]}}``)
DVC_RWLOCK = Path(".dvc") / "tmp" / "rwlock"
#: held by ``singer-ssl run`` from its params.yaml snapshot to DVC's exit
RUN_LOCK = Path(".dvc") / "tmp" / "singer-ssl-run.lock"
#: where :func:`restore` keeps the params.yaml it replaces
BACKUP_DIR = Path(".dvc") / "tmp" / "singer-ssl-restore"


class ExperimentError(ValueError):
    """An override, a busy repository or a failed git/DVC call: printed as one ``error:`` line."""


@dataclass(frozen=True)
class Override:
    """One ``-S`` override: ``mode`` is ``""`` (set an existing key), ``+`` (add a new key), ``++`` (set or add)
    or ``~`` (delete); ``value`` is parsed as YAML (Hydra's ``{a:1}`` dict spelling accepted)."""

    text: str
    key: str
    mode: str
    value: Any = None


_DICT_KEY = re.compile(r"([{,]\s*[^\s:{}\[\],]+):(?=\S)")


def parse_override(text: str) -> Override:
    """An :class:`Override` of ``text`` (``key=value``, ``+key=value``, ``++key=value``, ``~key``)."""
    mode = next((m for m in ("++", "+", "~") if text.startswith(m)), "")
    body = text[len(mode):]
    key, eq, raw = body.partition("=")
    if not key or not re.fullmatch(r"[\w-]+(\.[\w-]+)*", key) or (not eq and mode != "~"):
        raise ExperimentError(f"-S {text}: expected key=value (e.g. -S train.max_steps=50)")
    if not eq:
        return Override(text, key, mode)
    raw = _DICT_KEY.sub(r"\1: ", raw) if raw.lstrip().startswith("{") else raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ExperimentError(f"-S {text}: value is not valid YAML ({' '.join(str(err).split())})") from None
    return Override(text, key, mode, value)


#: the most parameter combinations a sweep may ask :func:`check_overrides` to validate
MAX_SWEEP = 10000


def _split_top(raw: str) -> list[str]:
    """``raw`` split at the commas outside brackets, braces, parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, c in enumerate(raw):
        if quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "[{(":
            depth += 1
        elif c in "]})":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    return parts + [raw[start:]]


def expand_sweep(text: str) -> list[str]:
    """The single-valued overrides of a sweep override, as ``dvc exp run --queue`` expands it (Hydra's sweep
    syntax): ``loss=ntxent,dcl`` and ``loss=choice(ntxent,dcl)`` give one per value, ``seed=range(1,4)`` gives
    ``seed=1``, ``seed=2``, ``seed=3`` (stop excluded, optional step); any other override is returned alone."""
    head, eq, raw = text.partition("=")
    if not eq:
        return [text]
    call = re.fullmatch(r"\s*(choice|range)\((.*)\)\s*", raw)
    if call and call.group(1) == "range":
        try:
            bounds = [int(x) for x in call.group(2).split(",")]
            values = [str(v) for v in range(*bounds)] if 1 <= len(bounds) <= 3 else []
        except ValueError:
            values = []
        if not values:
            raise ExperimentError(f"-S {text}: expected range(start, stop[, step]) of integers with some values")
    else:
        values = _split_top(call.group(2) if call else raw)
    return [f"{head}={v.strip()}" for v in values]


def _suggest(key: str, tree: Any, parent: str) -> str:
    """``; did you mean X?`` plus the keys of the deepest existing mapping on ``key``'s path."""
    names = [f"{parent}.{k}" if parent else str(k) for k in tree] if isinstance(tree, dict) else []
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    where = f"keys of {parent}" if parent else "top-level keys"
    return f"{hint} ({where}: {', '.join(sorted(map(str, tree)))})" if isinstance(tree, dict) else hint


def apply_overrides(params: dict[str, Any], overrides: Sequence[Override]) -> dict[str, Any]:
    """A deep copy of ``params`` with ``overrides`` applied in order (a later one wins, as in DVC).

    Setting a key params.yaml lacks (without ``+``) or adding one it has (with ``+``) is an ExperimentError naming
    the closest existing key and the valid keys at that level.
    """
    out = copy.deepcopy(params)
    for o in overrides:
        *parents, leaf = o.key.split(".")
        node, path = out, ""
        for part in parents:
            child = node.get(part) if isinstance(node, dict) else None
            if not isinstance(child, dict):
                if o.mode in ("+", "++") and isinstance(node, dict) and child is None:
                    node[part] = child = {}
                else:
                    raise ExperimentError(f"-S {o.text}: params.yaml has no {o.key}{_suggest(o.key, node, path)}")
            node, path = child, f"{path}.{part}" if path else part
        exists = isinstance(node, dict) and leaf in node
        if o.mode == "+" and exists:
            raise ExperimentError(f"-S {o.text}: {o.key} is already in params.yaml; set it with -S {o.text[1:]}")
        if o.mode in ("", "~") and not exists:
            raise ExperimentError(f"-S {o.text}: params.yaml has no {o.key}{_suggest(o.key, node, path)}")
        if o.mode == "~":
            del node[leaf]
        else:
            node[leaf] = o.value
    return out


def check_overrides(params: dict[str, Any], texts: Sequence[str],
                    base: str | os.PathLike = ".") -> list[dict[str, Any]]:
    """The parameter trees ``dvc exp run -S ...`` would produce from ``params`` and the override ``texts``, one per
    combination of a sweep's values (:func:`expand_sweep`; one tree without a sweep), each validated
    (:func:`validate_params`); ExperimentError / ConfigError of one line naming the failing combination."""
    options = [expand_sweep(t) for t in texts]
    if math.prod(len(o) for o in options) > MAX_SWEEP:
        raise ExperimentError(f"the sweep asks for more than {MAX_SWEEP} experiments; split it")
    trees = []
    for combo in itertools.product(*options):
        tree = apply_overrides(params, [parse_override(t) for t in combo])
        try:
            validate_params(tree, base=base)
        except ValueError as err:
            raise ExperimentError(f"{' '.join(str(err).split())} (after -S {' -S '.join(combo)})") from None
        trees.append(tree)
    return trees


def dvc_executable() -> str:
    """The ``dvc`` next to this Python (the project's virtual environment), else the one on PATH."""
    near = Path(sys.executable).with_name("dvc")
    found = str(near) if near.exists() else shutil.which("dvc")
    if found is None:
        raise ExperimentError("dvc not found; install the project (pip install -e .) or put dvc on PATH")
    return found


def _flock(path: Path) -> int | None:
    """An open descriptor holding an exclusive flock on ``path`` (created), or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stage_lock_holder(root: Path) -> str | None:
    """``pid N (cmd)`` of a live process that :data:`DVC_RWLOCK` records as reading or writing a stage's paths,
    or None. DVC releases its repository lock while a stage's command runs (dvc.stage.run.unlocked_repo) and
    records the running stage here instead; entries of dead processes (a kill -9) are ignored, as DVC does."""
    try:
        table = json.loads((root / DVC_RWLOCK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    entries = list((table.get("write") or {}).values()) if isinstance(table, dict) else []
    entries += [e for readers in ((table.get("read") or {}).values() if isinstance(table, dict) else [])
                for e in (readers if isinstance(readers, list) else [])]
    for info in entries:
        if isinstance(info, dict) and info.get("pid") != os.getpid() and _alive(info.get("pid")):
            return f"pid {info['pid']} ({info.get('cmd', '?')})"
    return None


def busy(root: Path, include_run_lock: bool = True) -> str | None:
    """Why the repository at ``root`` is busy, or None: a DVC process holds its repository lock or runs a stage
    (:func:`stage_lock_holder`), or, with ``include_run_lock``, a ``singer-ssl run`` is under way. Each lock is
    taken and released at once (DVC itself waits a few seconds for its lock)."""
    locks = ((RUN_LOCK, "another singer-ssl run"),) if include_run_lock else ()
    for lock, who in (*locks, (DVC_LOCK, "another DVC process")):
        if not (root / lock).exists():
            continue
        fd = _flock(root / lock)
        if fd is None:
            return f"{who} holds {lock}"
        os.close(fd)
    holder = stage_lock_holder(root)
    return f"another DVC process runs a stage: {holder}, in {DVC_RWLOCK}" if holder else None


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold :data:`RUN_LOCK` for the block; ExperimentError when ``root`` is no DVC project or is busy
    (:func:`busy`)."""
    if not (root / ".dvc").is_dir():
        raise ExperimentError(f"{root.resolve()} is no DVC project (no .dvc folder); run this in the project's root")
    fd = _flock(root / RUN_LOCK)
    if fd is None:
        raise ExperimentError(f"another singer-ssl run holds {RUN_LOCK}; wait for it, or queue this one with "
                              "--queue and start the queue with `dvc queue start` once it is done")
    try:
        why = busy(root, include_run_lock=False)  # this process holds the run lock now
        if why is not None:
            raise ExperimentError(f"{why}; nothing was changed. Wait for it, or queue this run with --queue "
                                  "and start the queue with `dvc queue start`")
        yield
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def run_experiment(overrides: Sequence[str], root: str | os.PathLike = ".", *, preset: str | None = None,
                   queue: bool = False, name: str | None = None, dvc: str | None = None) -> int:
    """Check the overrides (preset ones first, then ``overrides``), then ``dvc exp run -S ...`` in ``root``.

    Returns DVC's exit status. On a failure or an interrupt params.yaml is written back byte for byte and the
    restore command is printed; nothing is run when the overrides are invalid or the repository is busy
    (ExperimentError before params.yaml is touched).
    """
    from singer_ssl.core.params import load_params

    root = Path(root)
    params_path = root / "params.yaml"
    texts = list(overrides)
    if preset is not None:
        from singer_ssl.presets import PRESET_DIR
        from singer_ssl.presets import overrides as preset_overrides

        texts = preset_overrides(preset, params_path, root / PRESET_DIR)[1::2] + texts
    check_overrides(load_params(params_path), texts, base=Path(params_path).resolve().parent)
    cmd = [dvc or dvc_executable(), "exp", "run", *(a for t in texts for a in ("-S", t))]
    cmd += ["--queue"] if queue else []
    cmd += ["--name", name] if name else []
    with run_lock(root):
        snapshot = params_path.read_bytes()
        try:
            rc = subprocess.run(cmd, cwd=root, check=False).returncode
        except KeyboardInterrupt:
            rc = 130
        if rc != 0:
            if params_path.read_bytes() != snapshot:
                _write_bytes(params_path, snapshot)
            print(f"error: dvc exp run failed (exit {rc}); params.yaml is as it was before the run. To bring back "
                  f"the last committed outputs too: singer-ssl restore (or: {RESTORE_ONE_LINER})", file=sys.stderr)
    return rc


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    git = shutil.which("git")
    if git is None:
        raise ExperimentError("git not found; restore needs the project's git history")
    return subprocess.run([git, *args], cwd=root, capture_output=True, text=True, check=False)


def restore(root: str | os.PathLike = ".", dvc: str | None = None) -> list[str]:
    """Bring the workspace at ``root`` back to the last commit (module docstring); returns what was done, one
    line per step. A modified params.yaml is first copied to :data:`BACKUP_DIR`; refuses while busy."""
    root = Path(root)
    lines: list[str] = []
    with run_lock(root):
        listed = _git(root, "ls-tree", "--name-only", "HEAD", "--", *RESTORE_PATHS)
        if listed.returncode != 0:
            raise ExperimentError(f"git ls-tree HEAD failed: {' '.join(listed.stderr.split()) or 'no message'}")
        paths = listed.stdout.split()
        if not paths:
            raise ExperimentError(f"HEAD holds none of {', '.join(RESTORE_PATHS)}; nothing to restore")
        if "params.yaml" in paths and _git(root, "diff", "--quiet", "HEAD", "--", "params.yaml").returncode != 0:
            backup = root / BACKUP_DIR / f"params.yaml.{time.strftime('%Y%m%dT%H%M%S')}"
            backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / "params.yaml", backup)
            lines.append(f"kept the modified params.yaml as {backup.relative_to(root)}")
        done = _git(root, "checkout", "HEAD", "--", *paths)
        if done.returncode != 0:
            raise ExperimentError(f"git checkout failed: {' '.join(done.stderr.split()) or 'no message'}")
        lines.append(f"git: {', '.join(paths)} as committed (HEAD)")
        if (root / "dvc.lock").exists():
            proc = subprocess.run([dvc or dvc_executable(), "checkout", "--force"], cwd=root, capture_output=True,
                                  text=True, check=False)
            if proc.returncode != 0:
                why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                raise ExperimentError(f"dvc checkout --force failed (exit {proc.returncode}): {why}")
            lines.append("dvc: the outputs dvc.lock names checked out from the cache")
    return lines
