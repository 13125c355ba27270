"""The torch resampler used by load_model agrees with soxr (an independent implementation)."""

import numpy as np
import pytest
import soxr
import torch

from singer_ssl.core.resample import Resample


@pytest.mark.parametrize("sr_in,sr_out", [(48000, 44100), (22050, 44100), (16000, 44100), (44100, 16000)])
def test_matches_soxr_on_band_limited_signal(sr_in, sr_out):
    t = np.arange(sr_in) / sr_in
    f2 = 0.3 * min(sr_in, sr_out)
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * f2 * t)).astype(np.float32)
    ref = soxr.resample(x, sr_in, sr_out, quality="VHQ")
    y = Resample(sr_in, sr_out)(torch.from_numpy(x)[None])[0].numpy()
    assert len(y) == int(np.ceil(len(x) * sr_out / sr_in))
    n = min(len(y), len(ref))
    inner = slice(600, n - 600)  # edges differ by padding convention
    assert np.abs(y[inner] - ref[inner]).max() < 1e-3


def test_identity_and_batch_independence():
    x = torch.randn(3, 5000)
    assert torch.equal(Resample(44100, 44100)(x), x)
    r = Resample(48000, 44100)
    both = r(x)
    assert torch.allclose(both[1], r(x[1:2])[0], atol=1e-6)


def test_scriptable():
    r = Resample(22050, 44100)
    x = torch.randn(2, 3000)
    assert torch.allclose(torch.jit.script(r)(x), r(x))
