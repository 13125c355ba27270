"""Tests of singer_ssl.model: SingerModel, hyperparams, build/save/load of the model folder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.frontend import LogMel, front_end_params
from singer_ssl.model.folder import build_model, load_model_folder, save_model_folder
from singer_ssl.training.config import TrainConfig
from singer_ssl.training.hyperparams import hyperparams

ATTRS = {**front_end_params(8000, n_fft=256, hop=64, n_mels=16), "center": True, "window": "hann", "mel": "slaney",
         "mean": -4.0, "std": 3.0}


def params_for(encoder: str, encoder_kwargs: dict, loss: str = "ntxent") -> dict:
    return {
        "seed": 1, "loss": loss, "encoder": encoder,
        "losses": {"ntxent": {"temperature": 0.2}, "ge2e": {"w_init": 10.0, "batch": {"singers": 2, "utterances": 2}}},
        "encoders": {encoder: encoder_kwargs},
        "head": {"kind": "mlp", "dim": 8, "hidden": 12},
        "augment": {"views": "file", "crop_seconds": 0.5},
        "train": {"batch_size": 4, "lr": 1e-3},
    }


def describe(params: dict, attrs: dict, mean: float, std: float, segment_seconds: float | None = None,
             datasets: list[str] | None = None) -> dict:
    """hyperparams.yaml as the train stage writes it: TrainConfig -> model -> its embedding size."""
    params = {**params, "datasets": {"train": {n: {"path": n} for n in (datasets or ["toy"])}}}
    cfg = TrainConfig.from_params(params)
    hp = hyperparams(cfg, attrs, mean, std, segment_seconds)
    return hyperparams(cfg, attrs, mean, std, segment_seconds, build_model(hp).embedding_dim)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_hyperparams_describe_everything_needed():
    hp = describe(params_for("lstm", {"hidden": 8, "layers": 1, "embedding_dim": 12}, "ge2e"),
                  ATTRS, mean=-4.0, std=3.0, segment_seconds=1.0, datasets=["toy"])
    assert hp["frontend"] == {"sample_rate": 8000, "n_fft": 256, "hop": 64, "n_mels": 16, "fmin": 0.0, "fmax": 4000.0,
                              "log_offset": 1e-8, "center": True, "window": "hann", "mel": "slaney"}
    assert hp["encoder"] == {"name": "lstm", "kwargs": {"hidden": 8, "layers": 1, "embedding_dim": 12, "n_mels": 16},
                             "input_kind": "logmel", "embedding_dim": 12}
    assert hp["head"] == {"kind": "mlp", "in_dim": 12, "dim": 8, "hidden": 12}
    assert hp["loss"] == {"name": "ge2e", "kwargs": {"w_init": 10.0}, "batch": {"singers": 2, "utterances": 2}}
    assert hp["normalization"] == {"mean": -4.0, "std": 3.0}
    assert hp["segment_seconds"] == 1.0 and hp["datasets"] == ["toy"] and hp["library"]["name"] == "singer-ssl"
    assert yaml.safe_load(yaml.safe_dump(hp)) == hp  # plain YAML types only


def test_contradicting_n_mels_is_an_error():
    with pytest.raises(ConfigError, match="encoders.lstm.n_mels=40 contradicts features.n_mels=16"):
        describe(params_for("lstm", {"n_mels": 40}), ATTRS, -4.0, 3.0)


def test_forward_is_frontend_standardise_encoder():
    hp = describe(params_for("audiontt2020", {"embedding_dim": 16}), ATTRS, -4.0, 3.0, 1.0)
    model = build_model(hp).eval()
    wave = 0.1 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logmel = LogMel(8000, 256, 64, 16)(wave)
        expected = model.encoder(((logmel + 4.0) / 3.0).unsqueeze(1))
        torch.testing.assert_close(model(wave), expected)
        emb, proj = model.embed_logmel(logmel)
        torch.testing.assert_close(emb, expected)
        torch.testing.assert_close(proj.norm(dim=1), torch.ones(2))  # L2-normalised projection


@pytest.mark.parametrize("encoder, kwargs, sample_rate, seconds", [
    ("lstm", {"hidden": 8, "layers": 2, "embedding_dim": 12}, 8000, 1.0),
    ("audiontt2020", {"embedding_dim": 16}, 8000, 1.0),
    ("samplecnn", {}, 22050, 2.7),  # waveform encoder: no front end
])
def test_model_folder_roundtrip_and_torchscript(tmp_path, encoder, kwargs, sample_rate, seconds):
    attrs = {**ATTRS, **front_end_params(sample_rate, n_fft=256, hop=64, n_mels=16)}
    hp = describe(params_for(encoder, kwargs), attrs, -4.0, 3.0, seconds)
    torch.manual_seed(0)
    model = build_model(hp)
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    folder = save_model_folder(model, hp, tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["hyperparams.yaml", "model.pt", "model.ts"]
    loaded, hp2 = load_model_folder(folder)
    assert hp2["encoder"]["name"] == encoder
    n = int(seconds * sample_rate)
    wave = 0.1 * torch.randn(2, n, generator=torch.Generator().manual_seed(3))
    model.eval()
    with torch.no_grad():
        eager = model(wave)
        torch.testing.assert_close(loaded(wave), eager)
        scripted = torch.jit.load(str(folder / "model.ts"))
        torch.testing.assert_close(scripted(wave), eager, atol=1e-5, rtol=1e-5)
        if encoder == "samplecnn":
            torch.testing.assert_close(eager, model.encoder(wave))
    # the public loader (singer_ssl.api) reads the same folder, eager and TorchScript
    from singer_ssl.api import load_model

    for ts in (False, True):
        api_model = load_model(folder, device="cpu", torchscript=ts)
        with torch.no_grad():
            torch.testing.assert_close(api_model(wave), eager, atol=1e-5, rtol=1e-5)


def test_save_is_atomic(tmp_path, monkeypatch):
    from singer_ssl.model import folder as full

    hp = describe(params_for("lstm", {"hidden": 8, "layers": 1, "embedding_dim": 12}), ATTRS, -4.0, 3.0, 1.0)
    model = build_model(hp)
    folder = save_model_folder(model, hp, tmp_path / "model")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def broken(*a, **k):
        raise RuntimeError("export failed")

    monkeypatch.setattr(full, "to_torchscript", broken)
    with pytest.raises(RuntimeError, match="export failed"):
        save_model_folder(build_model(hp), hp, tmp_path / "model")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary left behind


def test_normalisation_buffers_travel_with_the_state_dict():
    hp = describe(params_for("lstm", {"hidden": 8, "layers": 1, "embedding_dim": 12}), ATTRS, -4.0, 3.0)
    state = build_model(hp).state_dict()
    assert float(state["mean"]) == -4.0 and float(state["std"]) == 3.0
    hp["normalization"] = {"mean": 0.0, "std": 1.0}
    other = build_model(hp)
    other.load_state_dict(state)
    assert float(other.mean) == -4.0 and np.isclose(float(other.std), 3.0)


@pytest.mark.parametrize("scaling", ["none", "dataset_std"])
def test_input_scaling_travels_through_the_model_folder(tmp_path, scaling):
    """``train.input_scaling`` is recorded in hyperparams.yaml and reproduced by the eager and TorchScript models."""
    params = params_for("lstm", {"hidden": 8, "layers": 1, "embedding_dim": 12})
    params["train"]["input_scaling"] = scaling
    params["head"]["l2"] = False
    hp = describe(params, ATTRS, -4.0, 3.0, 1.0)
    assert hp["normalization"] == ({"mean": -4.0, "std": 3.0, "scaling": "none"} if scaling == "none"
                                   else {"mean": -4.0, "std": 3.0})  # the default adds no key
    assert hp["head"]["l2"] is False
    torch.manual_seed(0)
    folder = save_model_folder(build_model(hp), hp, tmp_path / "model")
    loaded, _ = load_model_folder(folder)
    assert loaded.head.l2 is False
    wave = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logmel = LogMel(8000, 256, 64, 16)(wave)
        x = logmel if scaling == "none" else (logmel + 4.0) / 3.0
        expected = loaded.encoder(x.unsqueeze(1))
        torch.testing.assert_close(loaded(wave), expected)
        torch.testing.assert_close(torch.jit.load(str(folder / "model.ts"))(wave), expected, atol=1e-5, rtol=1e-5)


def test_bad_scaling_in_hyperparams_is_one_line(tmp_path):
    from singer_ssl.model.folder import ModelFolderError

    hp = describe(params_for("lstm", {"hidden": 8, "layers": 1, "embedding_dim": 12}), ATTRS, -4.0, 3.0, 1.0)
    folder = save_model_folder(build_model(hp), hp, tmp_path / "model")
    hp["normalization"]["scaling"] = "batch_max"
    (folder / "hyperparams.yaml").write_text(yaml.safe_dump(hp))
    with pytest.raises(ModelFolderError, match=r"normalization\.scaling: expected one of dataset_std, none"):
        load_model_folder(folder)


@pytest.mark.skipif(not (Path(__file__).parents[2] / "shared" / "weights" / "VGG_best.pth").is_file(),
                    reason="published uclser20 weights not found under ../shared/weights")
def test_published_encoder_as_an_untrained_pipeline_row(tmp_path):
    """``encoders.vgglike.init: published:<path>`` + ``train.max_steps: 0``: the train stage writes the model
    folder from the published weights, with their input convention, without a step; it loads without the file."""
    import shutil

    from singer_ssl import encoders
    from singer_ssl.training import run as training_run
    from singer_ssl.training.data import load_segment_table
    from tests.synthetic import make_training_set, pipeline_paths

    make_training_set(tmp_path, n_singers=4, sources_per_singer=1, segments_per_source=2)
    ckpt = tmp_path / "VGG_best.pth"
    shutil.copy(Path(__file__).parents[2] / "shared" / "weights" / "VGG_best.pth", ckpt)
    params = params_for("vgglike", {"init": f"published:{ckpt}"})
    params["datasets"] = {"train": {"toy": {"path": "data/raw/toy"}}}
    params["train"].update(max_steps=0, num_workers=0, val_fraction=0.0, device="cpu")
    paths = pipeline_paths(tmp_path)
    summary = training_run.train(TrainConfig.from_params(params), paths, progress=False)
    assert summary["steps"] == 0
    ckpt.unlink()  # the model folder is self-contained
    model, hp = load_model_folder(paths.model)
    assert hp["encoder"]["init"] == f"published:{ckpt}" and "init" not in hp["encoder"]["kwargs"]
    table = load_segment_table(paths.features, paths.segments, ["toy"])
    assert hp["normalization"] == {"mean": pytest.approx(table.mean), "std": pytest.approx(table.std),
                                   "gain": pytest.approx(encoders.FSDNOISY18K_GAIN)}
    published = encoders.load_published("vgglike", Path(__file__).parents[2] / "shared" / "weights" / "VGG_best.pth",
                                        mean=float(hp["normalization"]["mean"]), std=float(hp["normalization"]["std"]))
    for k, v in published.encoder.state_dict().items():
        if not k.startswith("dense_out."):
            torch.testing.assert_close(model.encoder.state_dict()[k], v)
    from singer_ssl.evaluation.baselines import random_init_model

    rnd = random_init_model(hp, 0, torch.device("cpu"))  # the embed stage's baseline stays random, needs no file
    assert not torch.equal(rnd.encoder.conv0.conv.weight, model.encoder.conv0.conv.weight)
    wave = 0.1 * torch.randn(3, 8000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(wave), published(LogMel(8000, 256, 64, 16)(wave)[:, None]), rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.parametrize("scaling", ["dataset_std", "item_mean", "none"])
@pytest.mark.parametrize("file", ["VGG_best.pth", "CRNN_best.pth"])
def test_published_convention_applies_under_any_input_scaling(file, scaling, tmp_path):
    """``encoders.<vgglike|crnn>.init: published:<...>_best.pth``: the model feeds the encoder standardised log-mels
    times the checkpoint's gain sqrt(N) whatever ``train.input_scaling`` (``none``, which those weights never saw,
    becomes ``dataset_std``), records it in hyperparams.yaml, and the saved folder loads with it."""
    from singer_ssl import encoders
    from tests.synthetic import write_published_checkpoint

    name = write_published_checkpoint(tmp_path / file)
    params = params_for(name, {"init": f"published:{tmp_path / file}"})
    params["train"]["input_scaling"] = scaling
    attrs = {**front_end_params(22050, n_fft=1024, hop=256, n_mels=96), "center": True, "window": "hann",
             "mel": "slaney"}
    hp = describe(params, attrs, mean=-4.0, std=3.0)
    gain = math.sqrt(38.8 * 3600 * 100 * 96)  # Fonseca et al. 2021: std / sqrt(N), N log-mel values of FSDnoisy18k
    want = {"mean": -4.0, "std": 3.0, "gain": pytest.approx(gain)}
    if scaling == "item_mean":
        want["scaling"] = "item_mean"
    assert hp["normalization"] == want
    model = build_model(hp)
    x = torch.randn(3, 96, 40, generator=torch.Generator().manual_seed(0)) * 2.0 - 5.0
    if scaling == "item_mean":
        expected = (x - x.mean(dim=(1, 2), keepdim=True)) / 3.0 * gain
    else:  # the published wrapper's own convention with the dataset scalars
        published = encoders.load_published(name, tmp_path / file, mean=-4.0, std=3.0)
        expected = published.encoder_input(x[:, None])[:, 0]
    torch.testing.assert_close(model.normalize(x)[:, 0], expected, rtol=1e-5, atol=1e-2)
    hp["training"] = {"steps": 0}
    folder = save_model_folder(model, hp, tmp_path / "model")
    loaded, _ = load_model_folder(folder)
    torch.testing.assert_close(loaded.normalize(x), model.normalize(x))


@pytest.mark.parametrize("change, message", [
    ({"loss": "byol", "head": {"l2": False}}, r"losses.byol.predictor_input: l2 needs L2-normalised projections: "
                                              r"set head.l2: true"),
    ({"loss": "byol", "losses": {"byol": {"predictor_input": "raw"}}},
     r"losses.byol.predictor_input: raw needs raw projections: set head.l2: false"),
    ({"train": {"view_batching": "split"}}, r"train.view_batching: expected one of joint, per_view, got 'split'"),
    ({"train": {"input_scaling": "item"}},
     r"train.input_scaling: expected one of dataset_std, none, item_mean, item_peak, item_loud, got 'item'"),
    ({"head": {"l2": "no"}}, r"head.l2: expected true or false"),
    ({"encoders": {"lstm": {"init": "VGG_best.pth"}}}, r"encoders.lstm.init: expected 'published:<path"),
])
def test_new_wiring_parameters_are_checked(change, message):
    from singer_ssl.presets import merge

    params = params_for("lstm", {"hidden": 8, "layers": 1, "embedding_dim": 12})
    params["losses"]["byol"] = {"predictor_input": "l2"}
    params["datasets"] = {"train": {"toy": {"path": "x"}}}
    params = merge(params, change)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_params(params)
