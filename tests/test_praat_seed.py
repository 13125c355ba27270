"""core.praat.praat_seed: a seeded block repeats Praat's random stream; after it, the stream is unpredictable."""

from __future__ import annotations

import numpy as np
import pytest

from singer_ssl.core.praat import praat_seed

parselmouth = pytest.importorskip("parselmouth")


def noise() -> np.ndarray:
    """80 draws of Praat's global generator (a Sound whose formula is randomGauss)."""
    from parselmouth.praat import call

    return call("Create Sound from formula", "n", 1, 0.0, 0.01, 8000, "randomGauss(0, 1)").values[0].copy()


def test_same_seed_same_stream_and_unpredictable_after():
    with praat_seed(5):
        first, continued, third = noise(), noise(), noise()
    with praat_seed(5):
        again = noise()
        np.testing.assert_array_equal(noise(), continued)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, continued)
    after = noise()  # re-randomised on leaving the block: not the seeded stream's next draw
    assert not np.array_equal(after, third)
    with praat_seed(6):
        assert not np.array_equal(noise(), first)


def test_reseeded_after_an_error_and_none_leaves_the_generator_alone():
    with praat_seed(5):
        noise()
        continued = noise()
    with pytest.raises(RuntimeError), praat_seed(5):
        noise()
        raise RuntimeError("boom")
    assert not np.array_equal(noise(), continued)  # the stream was re-randomised despite the error
    with praat_seed(5):
        noise()
        with praat_seed(None):  # None: no reseeding, the seeded stream goes on
            np.testing.assert_array_equal(noise(), continued)
