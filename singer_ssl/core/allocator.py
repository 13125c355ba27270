"""Keep large CPU buffers in the heap between batches instead of mapping fresh pages for each one.

glibc's ``malloc`` serves a request above its mmap threshold (dynamic, at most 32 MiB on 64-bit
Linux) with a fresh ``mmap`` and gives it back with ``munmap`` on ``free``, and the heap above its
trim threshold is handed back to the kernel. A convolutional encoder's activations on a batch of
log-mel spectrograms are far above that (64 segments x 64 channels x 128 mels x 345 frames float32 =
723 MiB), so every forward and backward pass maps new pages, which the kernel zero-fills on first
touch: on a 2-core machine the kernel's share of embedding was larger than the arithmetic itself
(sys 6.7 s against user 5.1 s for two batches of 64).

:func:`keep_large_allocations` raises both thresholds with ``mallopt(3)`` (``M_MMAP_THRESHOLD``
1 GiB, ``M_TRIM_THRESHOLD`` 1 GiB), so freed buffers are reused by the next batch. The arithmetic
is unchanged (bit-identical outputs); on an idle 2-core machine an AudioNTT2020 batch embedded 1.7x
and a training step ran 2.0x faster (``benchmarks/allocator.py``), and the default ``dvc repro``
reproduced every output with training in 272 s instead of 433 s. PyTorch's CPU performance tuning
guide recommends swapping in jemalloc or tcmalloc with ``LD_PRELOAD`` for the same reason; this needs
no extra library and no environment variable. The price is memory: a process keeps its peak heap
until it exits, and fragmentation raises the peak (3.4 GiB against 2.0 GiB in the benchmark).

It is a no-op where ``mallopt`` does not exist (macOS, Windows, musl) and when the user already
tuned glibc's malloc (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc.*``
in ``GLIBC_TUNABLES``), or set ``SINGER_SSL_DEFAULT_MALLOC=1``. Every stage and the ``singer-ssl``
command call it once at start-up; library code (``load_model``) leaves the process alone, and user
code may call it itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

#: ``mallopt`` parameter numbers from glibc's ``<malloc.h>``
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: the thresholds set (bytes; both fit a C int): requests up to 1 GiB come from the heap, trimmed above 1 GiB free
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = 1 << 30

#: environment variables by which the user has already chosen malloc's behaviour (or opted out)
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "SINGER_SSL_DEFAULT_MALLOC")

_applied: bool | None = None


def _user_tuned(environ: Mapping[str, str]) -> bool:
    if any(environ.get(k) for k in _USER_SETTINGS):
        return True
    return "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


def keep_large_allocations(environ: Mapping[str, str] | None = None) -> bool:
    """Raise glibc malloc's mmap and trim thresholds for this process (see the module docstring).

    Returns True when the thresholds were set (now or by an earlier call), False when left alone
    (no glibc ``mallopt``, the user's own malloc settings, or ``SINGER_SSL_DEFAULT_MALLOC=1``).
    Never raises.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if _user_tuned(os.environ if environ is None else environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error (a value glibc rejects leaves the setting as it was)
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
