"""singer_ssl.hear (HEAR 2021 API) against the API's own windowed embedding and a direct forward per window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from singer_ssl import hear
from singer_ssl.model.folder import build_model, save_model_folder
from tests.test_api import SR, _hparams  # segment_seconds 1.0 -> windows of SR samples


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    hp = _hparams()
    out = tmp_path_factory.mktemp("hear") / "model"
    save_model_folder(build_model(hp).eval(), hp, out)
    return hear.load_model(str(out), device="cpu")


def test_hear_attributes(model):
    assert model.sample_rate == SR
    assert model.scene_embedding_size == model.timestamp_embedding_size == 32


def test_timestamp_embeddings_are_the_windows_and_scene_is_their_mean(model):
    audio = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, int(2.6 * SR))).astype(np.float32))
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (2, 2, 32) and ts.shape == (2, 2) and not emb.requires_grad
    # window k = samples [k SR, (k+1) SR); the 0.6 s remainder is dropped; timestamps at the centres (ms)
    np.testing.assert_allclose(ts.numpy(), [[500.0, 1500.0]] * 2)
    with torch.no_grad():
        for k in range(2):
            direct = model.model(audio[:, k * SR:(k + 1) * SR])
            torch.testing.assert_close(emb[:, k], direct, atol=1e-5, rtol=1e-5)
    scene = hear.get_scene_embeddings(audio, model)
    assert scene.shape == (2, 32)
    torch.testing.assert_close(scene, emb.mean(1))
    api = model.embed(audio.numpy(), SR, layout="batch")  # the API's (and CLI's) embedding
    np.testing.assert_allclose(scene.numpy(), api, atol=1e-5, rtol=1e-5)


def test_short_audio_is_one_window_and_bad_input_is_refused(model):
    audio = torch.zeros(3, SR // 2)
    audio[:, ::7] = 0.1
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (3, 1, 32)
    np.testing.assert_allclose(ts.numpy(), [[250.0]] * 3)
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_scene_embeddings(torch.zeros(SR), model)
