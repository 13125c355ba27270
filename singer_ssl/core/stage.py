"""The one way a stage script runs: parse its paths, build its config, run it, print one line.

Every ``stages/<stage>.py`` is the same thin shim::

    def main(args):                                   # args: the parsed command line
        cfg = SegmentConfig.from_params(load_params(args.params), args.dataset)
        return run(cfg, args.src, args.out)           # -> the one summary line

    if __name__ == "__main__":
        sys.exit(stage_main("segment", main, ("dataset", "src", "out")))

Paths come from the command line, which ``dvc.yaml`` writes (as DVC's example-get-started does), so
the library never hard-codes where a stage reads or writes. Expected failures (a bad parameter, bad
input data, a missing file) print ``error: <stage>: <message>`` on one line and exit with status 1;
anything else is a bug and keeps its traceback. Run in a pipeline workspace (a ``dvc.yaml`` in the
working folder, as DVC runs every stage), a stage first removes the temporaries killed writers left
anywhere in it (:func:`singer_ssl.core.io.sweep_stale_temporaries`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from singer_ssl.core.allocator import keep_large_allocations
from singer_ssl.core.errors import DiskFullError
from singer_ssl.core.io import is_disk_full, sweep_stale_temporaries

#: the failures a user can cause (bad params, bad data, missing files, a full disk): one line, exit status 1
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, NotADirectoryError, PermissionError,
                                                DiskFullError)


def stage_main(stage: str, main: Callable[[argparse.Namespace], str], positional: Sequence[str],
               argv: Sequence[str] | None = None, description: str | None = None,
               optional: Sequence[str] = ()) -> int:
    """Run ``main(args)`` with ``positional`` arguments, then the ``optional`` positional ones (None when left
    out), and ``--params``; print its summary line.

    Returns the process exit status: 0 on success, 1 on a user error (message on stderr, one line),
    2 on a bad command line (argparse's own message).
    """
    ap = argparse.ArgumentParser(prog=f"stages/{stage}.py", description=description)
    for name in positional:
        ap.add_argument(name)
    for name in optional:
        ap.add_argument(name, nargs="?", default=None)
    ap.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    args = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    keep_large_allocations()  # large CPU tensors reuse heap pages (singer_ssl.core.allocator)
    if Path("dvc.yaml").is_file():  # in a pipeline workspace: what killed runs left (singer_ssl.core.io)
        sweep_stale_temporaries(".")
    try:
        line = main(args)
    except USER_ERRORS as err:
        print(f"error: {stage}: {one_line(err)}{restore_hint()}", file=sys.stderr)
        return 1
    except Exception as err:
        if not is_disk_full(err, os.getcwd()):
            raise  # a bug: keep the traceback
        where = getattr(err, "filename", None) or "an output"  # a write outside atomic_path (e.g. a log)
        print(f"error: {stage}: {DiskFullError(where)}{restore_hint()}", file=sys.stderr)
        return 1
    if line:
        print(line)
    return 0


#: the git-tracked files a run rewrites: params.yaml (``dvc exp run -S`` edits it in place), dvc.lock, and the
#: cache-free metrics and plots that DVC deletes before a stage runs (a failed evaluate or train leaves them
#: deleted or partial; only git has the last good copy)
RESTORE_PATHS = ("params.yaml", "dvc.lock", "metrics", "plots")
#: the shell form of ``singer-ssl restore`` (singer_ssl.experiment.restore): git brings back the tracked files,
#: then DVC the cached outputs that the restored dvc.lock names
RESTORE_ONE_LINER = f"git checkout HEAD -- {' '.join(RESTORE_PATHS)} && dvc checkout --force"
#: how to put the workspace back after a failed ``dvc exp run`` (it edits params.yaml in place and may
#: already have removed the outputs of the stages it was about to run)
RESTORE_HINT = f"; restore the last committed state with: singer-ssl restore (or: {RESTORE_ONE_LINER})"


def restore_hint() -> str:
    """:data:`RESTORE_HINT` when running inside ``dvc exp run`` (DVC sets ``DVC_EXP_NAME``), else ``""``."""
    return RESTORE_HINT if os.environ.get("DVC_EXP_NAME") else ""


def one_line(err: BaseException) -> str:
    """The error's message on one line (``OSError`` with its file name, newlines folded)."""
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in str(err):
        text = f"{err.strerror or err}: {err.filename}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())
