"""Praat's global random generator, seeded for one block of calls (the corpus synthesisers, pitch augmentation).

Praat draws random numbers in its synthesis and overlap-add resynthesis (e.g. noise in unvoiced stretches,
KlattGrid aspiration), from one generator per process. Seeding it makes a block's audio a function of the
seed; re-randomising it afterwards leaves the process as Praat starts (``random_initializeSafelyAndUnpredictably``),
so an unseeded call elsewhere does not repeat the seeded stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def praat_seed(seed: int | None) -> Iterator[None]:
    """Seed Praat's random generator with ``seed`` inside the block (``None``: leave it alone); unpredictable
    again after, also when the block raises."""
    if seed is None:
        yield
        return
    from parselmouth.praat import run

    run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    try:
        yield
    finally:
        run("random_initializeSafelyAndUnpredictably ()")
