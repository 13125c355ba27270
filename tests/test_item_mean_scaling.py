"""``train.input_scaling: item_mean`` / ``item_peak``: each item's mean (or maximum) log-mel is removed before the
encoder, so the embedding does not depend on the recording level (a gain is an additive constant on a log-mel);
``item_peak`` also keeps the voice's bins in place under additive noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from singer_ssl.core.frontend import LogMel, front_end_params
from singer_ssl.model.folder import build_model, load_model_folder, save_model_folder
from singer_ssl.training.config import TrainConfig
from singer_ssl.training.hyperparams import hyperparams

ATTRS = {**front_end_params(8000, n_fft=256, hop=64, n_mels=16), "center": True, "window": "hann", "mel": "slaney"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model_folder(tmp_path, scaling: str):
    """A small audiontt2020 model folder (dataset mean -4, std 3) with the given ``train.input_scaling``."""
    params = {"seed": 1, "loss": "ntxent", "encoder": "audiontt2020", "losses": {"ntxent": {"temperature": 0.2}},
              "encoders": {"audiontt2020": {"embedding_dim": 16}}, "head": {"kind": "mlp", "dim": 8, "hidden": 12},
              "augment": {"views": "file", "crop_seconds": 0.5}, "train": {"input_scaling": scaling},
              "datasets": {"train": {"toy": {"path": "toy"}}}}
    cfg = TrainConfig.from_params(params)
    hp = hyperparams(cfg, ATTRS, -4.0, 3.0, 1.0)
    hp = hyperparams(cfg, ATTRS, -4.0, 3.0, 1.0, build_model(hp).embedding_dim)
    torch.manual_seed(0)
    model = build_model(hp)
    with torch.no_grad():  # non-trivial batch-norm statistics (a fresh BN is close to an identity)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return hp, save_model_folder(model.eval(), hp, tmp_path / "model")


def _wave() -> torch.Tensor:
    """Two 1 s tones + noise at 8 kHz, far above the log floor (1e-8) at every gain used below."""
    t = torch.arange(8000) / 8000.0
    g = torch.Generator().manual_seed(3)
    tone = torch.stack([torch.sin(2 * torch.pi * 220.0 * t), torch.sin(2 * torch.pi * 330.0 * t)])
    return 0.3 * tone + 0.05 * torch.randn(2, 8000, generator=g)


@pytest.mark.parametrize("scaling,centre", [
    ("item_mean", lambda item: item.mean()),
    ("item_peak", lambda item: item.max()),  # item_peak: each item's maximum, over frequency and time
])
def test_item_scaled_input_is_the_log_mel_minus_its_own_centre(tmp_path, scaling, centre):
    """(x - centre of each item) / std, in the module and its TorchScript."""
    hp, folder = _model_folder(tmp_path, scaling)
    assert hp["normalization"] == {"mean": -4.0, "std": 3.0, "scaling": scaling}
    loaded, _ = load_model_folder(folder)
    wave = _wave()
    with torch.no_grad():
        logmel = LogMel(8000, 256, 64, 16)(wave)
        centres = torch.stack([centre(item) for item in logmel]).view(-1, 1, 1)
        expected = loaded.encoder(((logmel - centres) / 3.0).unsqueeze(1))
        torch.testing.assert_close(loaded(wave), expected)
        torch.testing.assert_close(torch.jit.load(str(folder / "model.ts"))(wave), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gain_db", [-20.0, -6.0, 6.0])
def test_item_scaled_embedding_is_gain_invariant_and_dataset_std_is_not(tmp_path, gain_db):
    wave = _wave()
    g = 10.0 ** (gain_db / 20.0)
    for scaling in ("item_mean", "item_peak", "dataset_std"):
        _, folder = _model_folder(tmp_path / scaling, scaling)
        model = torch.jit.load(str(folder / "model.ts"))
        with torch.no_grad():
            a, b = model(wave), model(g * wave)
        diff = float((a - b).abs().max())
        if scaling != "dataset_std":
            assert diff < 1e-5 * max(1.0, float(a.abs().max())), diff
        else:  # the control: the same encoder on dataset-standardised input does see the level
            assert diff > 1e-3, diff


def test_item_peak_keeps_the_voice_bins_under_additive_noise_and_item_mean_does_not():
    """Why ``item_peak``: 10 dB of white noise fills the weak bins of a harmonic voice-like signal and moves its
    mean log-mel, not its maximum. Bins within 30 dB of the clean peak (the voice) move by < 0.5 (natural-log
    units) after peak centring and by > 2 after mean centring (a constant shift of every voice bin)."""
    from singer_ssl.augment.controlled import add_noise

    sr = 16000
    t = np.arange(2 * sr) / sr
    x = sum(np.sin(2 * np.pi * 220.0 * k * t) / k ** 2 for k in range(1, 12)).astype(np.float32)
    y = add_noise(x, 10.0, np.random.default_rng(0), "white")
    clean, noisy = LogMel(sr, 1024, 256, 64)(torch.from_numpy(np.stack([x, y]))).double()
    voice = clean > clean.max() - np.log(1e3)
    assert 0.02 < float(voice.double().mean()) < 0.6

    def moved(centre) -> float:
        return float(((noisy - centre(noisy)) - (clean - centre(clean)))[voice].abs().mean())

    assert moved(torch.max) < 0.5
    assert moved(torch.mean) > 2.0
