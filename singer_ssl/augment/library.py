"""The bridge to audiomentations: its transforms run with parameters drawn from the item's ``np.random.Generator``.

audiomentations draws its random parameters (and noise) from python's ``random`` and ``np.random``, global
per process; this project seeds every item from its own Generator (:mod:`singer_ssl.training.data`). Two
ways across, both here and nowhere else:

- :func:`library_apply`: our op draws the parameters from the Generator and the library's ``apply`` does the
  DSP with them (``transform.parameters`` set, as its ``freeze_parameters`` mode does); any noise the
  ``apply`` itself draws comes from the globals seeded by :func:`library_random_state`.
- :func:`library_random_state` alone around a whole library call (the library draws its own parameters from
  the seeded globals), for transforms whose parameters live in sub-transforms.

Either way the result is a function of the Generator, whichever DataLoader worker runs it, and the globals
are restored after, so every other user of them is undisturbed. Transforms are built once per process and
argument set (:func:`library_transform`), so ops stay plain picklable numbers.
"""

from __future__ import annotations

import contextlib
import functools
import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["library_apply", "library_random_state", "library_transform"]


@contextlib.contextmanager
def library_random_state(seed: int | None) -> Iterator[None]:
    """Seed python ``random`` and ``np.random`` with ``seed`` inside the block (``None``: leave them); restore after."""
    if seed is None:
        yield
        return
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@functools.lru_cache(maxsize=64)
def library_transform(name: str, **kwargs: Any) -> Any:
    """``audiomentations.<name>(**kwargs, p=1.0)``, built once per process and argument set."""
    import audiomentations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. the lameenc backend's deprecation notice
        return getattr(audiomentations, name)(**kwargs, p=1.0)


def library_apply(name: str, x: np.ndarray, sample_rate: int, parameters: dict[str, Any],
                  seed: int | None = None, **kwargs: Any) -> np.ndarray:
    """``audiomentations.<name>(**kwargs).apply(x)`` with ``parameters`` (ours) and the globals seeded by ``seed``.

    ``x`` mono float32 ``(S,)``; returns the library's float32 output (a new array).
    """
    transform = library_transform(name, **kwargs)
    transform.parameters = {"should_apply": True, **parameters}
    with warnings.catch_warnings(), library_random_state(seed):
        warnings.simplefilter("ignore")
        return np.asarray(transform.apply(np.asarray(x, dtype=np.float32), int(sample_rate)), dtype=np.float32)
