"""``train.input_scaling: item_mean`` / ``item_peak`` / ``item_loud``: each item's mean (maximum, mean of its loudest
quarter) log-mel is removed before the encoder, so the embedding does not depend on the recording level (a gain is an
additive constant on a log-mel); ``item_peak`` and ``item_loud`` also keep the voice's bins (nearly) in place under
additive noise, and add back the training features' mean centre-to-mean distance (``normalization.offset``)."""

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


OFFSET = 0.7  # normalization.offset of the test folders (item_peak, item_loud)


def _model_folder(tmp_path, scaling: str):
    """A small audiontt2020 model folder (dataset mean -4, std 3, centring offset 0.7) with the given
    ``train.input_scaling``."""
    params = {"seed": 1, "loss": "ntxent", "encoder": "audiontt2020", "losses": {"ntxent": {"temperature": 0.2}},
              "encoders": {"audiontt2020": {"embedding_dim": 16}}, "head": {"kind": "mlp", "dim": 8, "hidden": 12},
              "augment": {"views": "file", "crop_seconds": 0.5}, "train": {"input_scaling": scaling},
              "datasets": {"train": {"toy": {"path": "toy"}}}}
    cfg = TrainConfig.from_params(params)
    hp = hyperparams(cfg, ATTRS, -4.0, 3.0, 1.0, offset=OFFSET)
    hp = hyperparams(cfg, ATTRS, -4.0, 3.0, 1.0, build_model(hp).embedding_dim, offset=OFFSET)
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


def _loudest_quarter_mean(item: torch.Tensor) -> torch.Tensor:
    """Mean of the largest F*T // 4 values of one (F, T) log-mel, by a full sort (numpy)."""
    values = np.sort(item.numpy().ravel())[::-1]
    return torch.tensor(values[: values.size // 4].mean(dtype=np.float64), dtype=item.dtype)


@pytest.mark.parametrize("scaling,centre,offset", [
    ("item_mean", lambda item: item.mean(), 0.0),
    ("item_peak", lambda item: item.max(), OFFSET),  # item_peak: each item's maximum, over frequency and time
    ("item_loud", _loudest_quarter_mean, OFFSET),
])
def test_item_scaled_input_is_the_log_mel_minus_its_own_centre(tmp_path, scaling, centre, offset):
    """(x - centre of each item + offset) / std, in the module and its TorchScript."""
    hp, folder = _model_folder(tmp_path, scaling)
    assert hp["normalization"] == {"mean": -4.0, "std": 3.0, "scaling": scaling,
                                   **({"offset": OFFSET} if offset else {})}
    loaded, _ = load_model_folder(folder)
    wave = _wave()
    with torch.no_grad():
        logmel = LogMel(8000, 256, 64, 16)(wave)
        centres = torch.stack([centre(item) for item in logmel]).view(-1, 1, 1)
        expected = loaded.encoder(((logmel - centres + offset) / 3.0).unsqueeze(1))
        torch.testing.assert_close(loaded(wave), expected)
        torch.testing.assert_close(torch.jit.load(str(folder / "model.ts"))(wave), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("gain_db", [-20.0, -6.0, 6.0])
def test_item_scaled_embedding_is_gain_invariant_and_dataset_std_is_not(tmp_path, gain_db):
    wave = _wave()
    g = 10.0 ** (gain_db / 20.0)
    for scaling in ("item_mean", "item_peak", "item_loud", "dataset_std"):
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
    """Why ``item_peak`` and ``item_loud``: 10 dB of white noise fills the weak bins of a harmonic voice-like signal
    and moves its mean log-mel, not its maximum. Bins within 30 dB of the clean peak (the voice) move by < 0.5
    (natural-log units) after peak centring and by > 2 after mean centring (a constant shift of every voice bin);
    the loudest-quarter centre lies between, nearer the peak."""
    from singer_ssl.augment.controlled import add_noise
    from singer_ssl.model.singer_model import item_centre

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
    loud = moved(lambda x: item_centre(x[None], "item_loud")[0])
    assert moved(torch.max) < loud < moved(torch.mean) / 2, loud


@pytest.mark.parametrize("scaling", ["item_mean", "item_peak", "item_loud", "dataset_std"])
def test_training_centre_offset_is_the_mean_centre_to_mean_distance_of_the_training_features(tmp_path, scaling):
    """``normalization.offset``: mean over the training segments of (centre - item mean), brute force over the
    stored log-mels; 0 under item_mean (by construction) and under dataset_std (no item centre); a sample of
    ``max_items`` segments stays close to the whole."""
    import h5py

    from singer_ssl.training.data import load_segment_table, training_centre_offset
    from tests.synthetic import make_training_set, pipeline_paths

    make_training_set(tmp_path)
    paths = pipeline_paths(tmp_path)
    table = load_segment_table(paths.features, paths.segments, ["toy"])
    with h5py.File(paths.features / "toy.h5", "r") as f:
        logmel = f["logmel"][:].astype(np.float64)[..., :table.n_frames]
    flat = np.sort(logmel.reshape(len(logmel), -1), axis=1)[:, ::-1]
    centre = {"item_peak": flat[:, 0], "item_loud": flat[:, : flat.shape[1] // 4].mean(1)}.get(scaling)
    expected = 0.0 if centre is None else float((centre - flat.mean(1)).mean())
    assert training_centre_offset(table, scaling) == pytest.approx(expected, abs=1e-4)
    if scaling in ("item_peak", "item_loud"):
        assert expected > 1.0  # the centre lies above the mean: a real offset to add back
        sampled = training_centre_offset(table, scaling, max_items=len(table) // 2)
        assert sampled != expected and sampled == pytest.approx(expected, rel=0.2)
