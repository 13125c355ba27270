"""Encoders, registry, published checkpoints and projection heads (singer_ssl.encoders)."""

from __future__ import annotations

import functools
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from singer_ssl import encoders
from singer_ssl.core.errors import ConfigError
from singer_ssl.model.heads import make_head

SHARED = Path(__file__).parents[1].parent / "shared"
WEIGHTS = SHARED / "weights"
needs_weights = pytest.mark.skipif(
    not (WEIGHTS / "VGG_best.pth").is_file(),
    reason=f"published uclser20 weights not found under {WEIGHTS} (the ../shared folder of the repo root)",
)

# Small but valid inputs for every encoder (log-mel F=64 satisfies crnn's F >= 40).
N_MELS = 64
SMALL = {"lstm": {"hidden": 32, "layers": 2, "embedding_dim": 16}}


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return encoders.get_for_features(name, N_MELS, SMALL.get(name)).eval()


def inputs(model: torch.nn.Module, length: int, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(length)
    if model.input_kind == "waveform":
        return 0.1 * torch.randn(batch, length, generator=gen)
    return torch.randn(batch, 1, N_MELS, length, generator=gen)


def lengths(model: torch.nn.Module) -> tuple[int, int]:
    """Two input lengths: one at the encoder's minimum, one longer and not a multiple of the strides."""
    if model.input_kind == "waveform":
        return model.min_length, 2 * model.min_length + 101
    return max(model.min_length, 9), 37


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------ registry


def test_names_match_contract():
    assert encoders.NAMES == ("efficientnet_b0", "audiontt2020", "vgglike", "crnn", "resnet18", "samplecnn", "lstm")


def test_unknown_encoder_lists_choices():
    with pytest.raises(ConfigError, match=r"unknown encoder 'vgg'.*audiontt2020.*vgglike"):
        encoders.get("vgg")


def test_unknown_kwarg_names_key_and_accepted_ones():
    with pytest.raises(ConfigError, match=r"encoders\.vgglike: unknown parameter\(s\) n_layers; accepted: "
                                          r"embedding_dim, num_classes, pooling"):
        encoders.get("vgglike", n_layers=3)


@pytest.mark.parametrize("name, bad", [("efficientnet_b0", {"input_norm": "batch_max"}),
                                       ("efficientnet_b0", {"in_channels": 2}),
                                       ("crnn", {"n_mels": 39}), ("audiontt2020", {"n_mels": 4}),
                                       ("vgglike", {"pooling": "max"})])
def test_invalid_values_raise_config_error(name, bad):
    with pytest.raises(ConfigError, match=name.split("_")[0]):
        encoders.get(name, **bad)


def test_encoders_raise_value_error_and_the_registry_names_the_section():
    """Encoders are torch-only (plain ValueError); the registry names encoders.<name> in a ConfigError."""
    from singer_ssl.encoders.vgglike import VGGLike

    with pytest.raises(ValueError, match="pooling") as err:
        VGGLike(pooling="max")
    assert not isinstance(err.value, ConfigError)
    with pytest.raises(ConfigError, match=r"^encoders\.vgglike: unknown pooling 'max'; valid choices: gap, gapgmp"):
        encoders.get("vgglike", pooling="max")


def test_get_for_features_fills_n_mels_only_where_needed():
    assert encoders.get_for_features("audiontt2020", 128).fc[0].in_features == 64 * 128 // 8
    assert encoders.get_for_features("lstm", 80, {"hidden": 8, "layers": 1}).lstm.input_size == 80
    assert encoders.get_for_features("vgglike", 128).embedding_dim == 512  # no n_mels parameter
    with pytest.raises(ConfigError, match="contradicts features.n_mels"):
        encoders.get_for_features("crnn", 128, {"n_mels": 96})


def test_params_yaml_encoder_sections_build():
    import yaml

    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    n_mels = params["features"]["n_mels"]
    for name in encoders.NAMES:
        model = encoders.get_for_features(name, n_mels, params["encoders"][name]).eval()
        if model.input_kind == "logmel":  # the configured F at a short T
            with torch.no_grad():
                assert model(torch.randn(1, 1, n_mels, 16)).shape == (1, model.embedding_dim)


# ------------------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("name", encoders.NAMES)
def test_output_shape_at_two_lengths(name):
    model = build(name)
    assert model.input_kind in ("logmel", "waveform")
    with torch.no_grad():
        for length in lengths(model):
            out = model(inputs(model, length, batch=3))
            assert out.shape == (3, model.embedding_dim)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in encoders.NAMES if encoders.ENCODERS[n].min_length > 1])
def test_too_short_input_is_a_clear_error(name):
    model = build(name)
    with pytest.raises(ValueError, match=rf"{name}: needs at least {model.min_length}"):
        model(inputs(model, model.min_length - 1))


def test_wrong_mel_count_is_a_clear_error():
    with pytest.raises(ValueError, match="built for n_mels=64 but the input has F=80"):
        build("audiontt2020")(torch.randn(1, 1, 80, 16))
    with pytest.raises(ValueError, match=r"expected a log-mel batch \(B, 1, F, T\)"):
        build("resnet18")(torch.randn(1, 64, 16))


def test_embedding_dims_of_seed_configurations():
    expected = {"efficientnet_b0": 1000, "audiontt2020": 512, "vgglike": 512, "crnn": 64, "resnet18": 512,
                "samplecnn": 512, "lstm": 256}
    for name, dim in expected.items():
        assert encoders.get_for_features(name, 96).embedding_dim == dim


# ------------------------------------------------------------------------------------------------ TorchScript


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning", "ignore::UserWarning")
@pytest.mark.parametrize("name", encoders.NAMES)
def test_torchscript_script_and_trace_generalise_to_another_length(name):
    model = build(name)
    short, long = lengths(model)
    x_trace, x_other = inputs(model, short, batch=1), inputs(model, long, batch=2)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own RNN input checks emit TracerWarnings
        expected = model(x_other)
        scripted = torch.jit.script(model)
        traced = torch.jit.trace(model, x_trace)
        torch.testing.assert_close(scripted(x_other), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(traced(x_other), expected, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------ EfficientNet


def test_efficientnet_b0_parameter_count_matches_torchvision():
    # torchvision documents 5,288,548 parameters for efficientnet_b0 (3-channel input, 1000 classes).
    assert n_params(encoders.get("efficientnet_b0", embedding_dim=1000, in_channels=3)) == 5_288_548
    # 1-channel stem: 32 x 1 x 3 x 3 instead of 32 x 3 x 3 x 3 -> 576 fewer.
    assert n_params(encoders.get("efficientnet_b0", in_channels=1)) == 5_288_548 - 576


def test_efficientnet_b0_uses_torchvision_key_layout():
    sd = encoders.get("efficientnet_b0").state_dict()
    # Hand count: stem Conv+BN = 1 + 5 entries; MBConv with expansion = 3 x (Conv+BN) + SE (4) = 22,
    # without (stage 1) = 16; 15 x 22 + 16 = 346; head Conv+BN 6; classifier.1 2 -> 360.
    assert len(sd) == 360
    expected = {  # torchvision efficientnet_b0 names and shapes (expand, depthwise, SE, project)
        "features.0.0.weight": (32, 3, 3, 3),
        "features.1.0.block.0.0.weight": (32, 1, 3, 3),
        "features.1.0.block.1.fc1.weight": (8, 32, 1, 1),
        "features.1.0.block.2.0.weight": (16, 32, 1, 1),
        "features.2.0.block.0.0.weight": (96, 16, 1, 1),
        "features.2.0.block.1.0.weight": (96, 1, 3, 3),
        "features.2.0.block.2.fc1.weight": (4, 96, 1, 1),
        "features.2.1.block.2.fc1.weight": (6, 144, 1, 1),
        "features.3.0.block.1.0.weight": (144, 1, 5, 5),
        "features.6.3.block.3.1.running_var": (192,),
        "features.7.0.block.3.0.weight": (320, 1152, 1, 1),
        "features.8.0.weight": (1280, 320, 1, 1),
        "classifier.1.weight": (1000, 1280),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key


def test_efficientnet_stochastic_depth_schedule():
    model = encoders.get("efficientnet_b0")
    probs = [m.stochastic_depth.p for stage in list(model.features)[1:8] for m in stage]
    assert probs == pytest.approx([0.2 * k / 16 for k in range(16)])
    assert model.classifier[0].p == 0.2


@pytest.mark.parametrize("input_norm", ["item_std", "item_max"])
def test_efficientnet_item_embedding_does_not_depend_on_batch(input_norm):
    torch.manual_seed(1)
    model = encoders.get("efficientnet_b0", input_norm=input_norm).eval()
    item = torch.randn(1, 1, 32, 40)
    others = torch.cat([item * 0.1 - 20.0, item * 5.0 + 30.0, torch.randn(1, 1, 32, 40)])  # quiet, loud, noise
    with torch.no_grad():
        alone = model(item)
        in_batch = model(torch.cat([others[:2], item, others[2:]]))[2:3]
    torch.testing.assert_close(in_batch, alone, rtol=0, atol=1e-5)


def test_efficientnet_input_normalisation_formulas():
    x = np.random.default_rng(0).normal(-8.0, 3.0, size=(2, 1, 8, 10)).astype(np.float32)
    x[1] -= 40.0  # a quiet item: its log-mel maximum is negative
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    xd = x.astype(np.float64)
    standardised = (xd - xd.mean(axis=(1, 2, 3), keepdims=True)) / np.sqrt(xd.var(axis=(1, 2, 3), keepdims=True) + 1e-5)
    peak = np.abs(xd.max(axis=(1, 2, 3), keepdims=True))
    cases = {"item_std": standardised, "item_max": xd / peak, "none": xd}
    for norm, ref in cases.items():
        got = encoders.get("efficientnet_b0", input_norm=norm).normalize_input(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, (np.repeat(ref, 3, axis=1) - mean) / std, rtol=1e-5, atol=1e-4)
    one = encoders.get("efficientnet_b0", in_channels=1, input_norm="item_std")
    np.testing.assert_allclose(one.normalize_input(torch.from_numpy(x)).numpy(), standardised, rtol=1e-5, atol=1e-5)


def test_efficientnet_item_std_is_gain_invariant():
    # A gain change is an additive constant on a natural-log mel; per-item standardisation removes it.
    torch.manual_seed(2)
    model = encoders.get("efficientnet_b0").eval()
    x = torch.randn(2, 1, 32, 24)
    with torch.no_grad():
        torch.testing.assert_close(model(x + np.log(10.0)), model(x), rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------------------------ AudioNTT2020


def _published_audiontt_state(n_mels: int = 64, d: int = 512) -> dict[str, torch.Tensor]:
    """A state dict with exactly the keys/shapes of AudioNTT2020-BYOLA-64x96d512.pth, random values."""
    gen = torch.Generator().manual_seed(3)
    sd: dict[str, torch.Tensor] = {}
    for idx, in_ch in ((0, 1), (4, 64), (8, 64)):
        sd[f"features.{idx}.weight"] = 0.3 * torch.randn(64, in_ch, 3, 3, generator=gen)
        sd[f"features.{idx}.bias"] = 0.1 * torch.randn(64, generator=gen)
        sd[f"features.{idx + 1}.weight"] = 1 + 0.1 * torch.randn(64, generator=gen)
        sd[f"features.{idx + 1}.bias"] = 0.1 * torch.randn(64, generator=gen)
        sd[f"features.{idx + 1}.running_mean"] = 0.1 * torch.randn(64, generator=gen)
        sd[f"features.{idx + 1}.running_var"] = 0.5 + torch.rand(64, generator=gen)
        sd[f"features.{idx + 1}.num_batches_tracked"] = torch.tensor(1000)
    sd["fc.0.weight"] = 0.05 * torch.randn(d, 64 * (n_mels // 8), generator=gen)
    sd["fc.0.bias"] = 0.05 * torch.randn(d, generator=gen)
    sd["fc.3.weight"] = 0.05 * torch.randn(d, d, generator=gen)
    sd["fc.3.bias"] = 0.05 * torch.randn(d, generator=gen)
    return sd


def _audiontt_manual(sd: dict[str, torch.Tensor], x: torch.Tensor) -> np.ndarray:
    """BYOL-A v1 forward written out with functional ops and explicit index bookkeeping."""
    h = x.double()
    for idx in (0, 4, 8):
        h = F.conv2d(h, sd[f"features.{idx}.weight"].double(), sd[f"features.{idx}.bias"].double(), padding=1)
        bn = f"features.{idx + 1}"
        h = F.batch_norm(h, sd[f"{bn}.running_mean"].double(), sd[f"{bn}.running_var"].double(),
                         sd[f"{bn}.weight"].double(), sd[f"{bn}.bias"].double(), training=False, eps=1e-5)
        h = F.max_pool2d(F.relu(h), 2)
    h = h.numpy()  # (B, 64, F', T')
    b, c, fp, tp = h.shape
    frames = np.zeros((b, tp, fp * c))
    for f in range(fp):
        for ch in range(c):
            frames[:, :, f * c + ch] = h[:, ch, f, :]  # original reshape: index = mel * 64 + channel
    w0, b0 = sd["fc.0.weight"].double().numpy(), sd["fc.0.bias"].double().numpy()
    w3, b3 = sd["fc.3.weight"].double().numpy(), sd["fc.3.bias"].double().numpy()
    z = np.maximum(np.maximum(frames @ w0.T + b0, 0) @ w3.T + b3, 0)
    return z.max(axis=1) + z.mean(axis=1)


def test_audiontt_loads_published_layout_and_matches_manual_forward(tmp_path):
    sd = _published_audiontt_state()
    assert encoders.get("audiontt2020", n_mels=64).load_state_dict(sd, strict=True)  # no missing/unexpected
    path = tmp_path / "AudioNTT2020-BYOLA-64x96d512.pth"
    torch.save(sd, path)
    model = encoders.load_published("audiontt2020", path).encoder
    assert (model.n_mels, model.embedding_dim, model.training) == (64, 512, False)
    x = torch.randn(2, 1, 64, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got = model(x).numpy()
    np.testing.assert_allclose(got, _audiontt_manual(sd, x), rtol=1e-4, atol=1e-4)


def test_audiontt_load_published_infers_size_and_strips_training_prefix(tmp_path):
    sd = _published_audiontt_state(n_mels=64, d=1024)
    wrapped = {"state_dict": {f"model.online_encoder.net.{k}": v for k, v in sd.items()}, "epoch": 3}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    model = encoders.load_published("audiontt2020", tmp_path / "ckpt.pth").encoder
    assert model.embedding_dim == 1024
    torch.testing.assert_close(model.fc[3].weight, sd["fc.3.weight"])


# ------------------------------------------------------------------------------------------------ Fonseca et al. 2021


@needs_weights
def test_vgglike_reproduces_published_vectors():
    ref = np.load(WEIGHTS / "uclser20_vgg_vectors.npz")
    model = encoders.load_published("vgglike", WEIGHTS / "VGG_best.pth").encoder
    assert (model.embedding_dim, model.num_classes) == (512, 20)
    # The reference inputs are seed-004 patches (batch, 1, time=101, freq=96); the encoder takes freq x time.
    x = torch.from_numpy(ref["input_patch"]).transpose(2, 3)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), ref["expected_embedding"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(model.forward_logits(x).numpy(), ref["expected_logits"], rtol=0, atol=1e-5)


@needs_weights
def test_vgglike_and_crnn_state_dicts_load_strictly_into_published_configuration():
    for name, file in (("vgglike", "VGG_best.pth"), ("crnn", "CRNN_best.pth")):
        sd = torch.load(WEIGHTS / file, map_location="cpu", weights_only=True)
        encoders.get_for_features(name, 96, {"num_classes": 20}).load_state_dict(sd, strict=True)


def _gru_last_step_product(x: np.ndarray, sd: dict[str, np.ndarray], hidden: int) -> np.ndarray:
    """Numpy GRU (PyTorch gate order r, z, n): forward direction over all steps, backward direction's
    output at the last step (= one step from h0 = 0 on the last frame); return their product."""

    def step(xt, h, suffix):
        wi, wh = sd["rnn1.weight_ih_l0" + suffix], sd["rnn1.weight_hh_l0" + suffix]
        bi, bh = sd["rnn1.bias_ih_l0" + suffix], sd["rnn1.bias_hh_l0" + suffix]
        gi, gh = xt @ wi.T + bi, h @ wh.T + bh
        r = 1 / (1 + np.exp(-(gi[:, :hidden] + gh[:, :hidden])))
        z = 1 / (1 + np.exp(-(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])))
        n = np.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        return (1 - z) * n + z * h

    h = np.zeros((x.shape[0], hidden))
    for t in range(x.shape[1]):
        h = step(x[:, t], h, "")
    back = step(x[:, -1], np.zeros_like(h), "_reverse")
    return h * back


@needs_weights
def test_crnn_published_weights_match_manual_forward():
    model = encoders.load_published("crnn", WEIGHTS / "CRNN_best.pth").encoder
    assert (model.n_mels, model.embedding_dim, model.num_classes) == (96, 64, 20)
    sd = {k: v.double() for k, v in torch.load(WEIGHTS / "CRNN_best.pth", map_location="cpu",
                                                 weights_only=True).items()}
    x_tf = torch.randn(2, 1, 101, 96, generator=torch.Generator().manual_seed(5))  # seed-004 time x freq
    h = x_tf.double()
    for name, pool in (("conv1", (2, 5)), ("conv2", (2, 4)), ("conv3", (2, 2))):
        h = F.conv2d(h, sd[f"{name}.conv.weight"], padding=2)
        h = F.batch_norm(h, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"], sd[f"{name}.bn.weight"],
                         sd[f"{name}.bn.bias"], training=False, eps=1e-5)
        h = F.max_pool2d(F.relu(h), pool)
    h = h.numpy()  # (B, 128, T'=12, F'=2)
    seq = np.concatenate([h[:, :, :, f].transpose(0, 2, 1) for f in range(h.shape[3])], axis=2)  # f * 128 + c
    expected = _gru_last_step_product(seq, {k: v.numpy() for k, v in sd.items()}, 64)
    with torch.no_grad():
        got = model(x_tf.transpose(2, 3))
        logits = model.forward_logits(x_tf.transpose(2, 3))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), expected @ sd["dense.weight"].numpy().T + sd["dense.bias"].numpy(),
                               rtol=1e-4, atol=1e-4)


@needs_weights
def test_load_published_rejects_a_mismatched_checkpoint():
    with pytest.raises(ConfigError, match="no key belongs to the encoder"):
        encoders.load_published("audiontt2020", WEIGHTS / "VGG_best.pth")
    with pytest.raises(ConfigError, match="does not match encoder 'vgglike'"):
        encoders.load_published("vgglike", WEIGHTS / "VGG_best.pth", embedding_dim=256)


def test_load_published_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        encoders.load_published("vgglike", tmp_path / "absent.pth")


def test_crnn_gru_input_follows_n_mels():
    # ((128 // 5) // 4) // 2 = 3 frequency cells x 128 channels
    assert encoders.get("crnn", n_mels=128).rnn1.input_size == 384
    assert encoders.get("crnn").rnn1.input_size == 256


def test_resnet18_parameter_count():
    # By hand (torchvision ResNet-18, 1 input channel, no fc; BN = 2 x channels parameters):
    #   conv1 64*1*7*7 = 3,136 + bn1 128
    #   layer1: 2 blocks x (2 x 64*64*9 + 2 x 128)                                  =   147,968
    #   layer2: (128*64*9 + 256 + 128*128*9 + 256 + 128*64 + 256) + (2*128*128*9 + 512) =   525,568
    #   layer3: (256*128*9 + 512 + 256*256*9 + 512 + 256*128 + 512) + (2*256*256*9 + 1024) = 2,099,712
    #   layer4: (512*256*9 + 1024 + 512*512*9 + 1024 + 512*256 + 1024) + (2*512*512*9 + 2048) = 8,393,728
    #   total 11,170,240 (= torchvision's documented 11,689,512 - fc 513,000 - 3-channel conv1 9,408 + 3,136)
    assert n_params(encoders.get("resnet18")) == 11_170_240
    assert n_params(encoders.get("resnet18", num_classes=20)) == 11_170_240 + 512 * 20 + 20


def test_resnet18_published_layout_round_trip(tmp_path):
    source = encoders.get("resnet18", num_classes=20)
    keys = set(source.state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer2.0.downsample.0.weight", "layer4.1.bn2.bias",
            "fc.weight"} <= keys
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ResNet_best.pth")
    loaded = encoders.load_published("resnet18", tmp_path / "ResNet_best.pth").encoder
    assert loaded.num_classes == 20
    x = torch.randn(2, 1, 96, 101)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_logits(x), source.eval().forward_logits(x))


def test_efficientnet_loads_torres2023_style_checkpoint(tmp_path):
    source = encoders.get("efficientnet_b0")
    sd = {f"encoder.net.2.{k}": v for k, v in source.state_dict().items()}
    sd["feature_extractor.spec_layer.mel_basis"] = torch.zeros(128, 1025)  # front end: not the encoder's
    sd["projection.net.1.weight"] = torch.zeros(128, 1000)
    torch.save(sd, tmp_path / "model.pt")
    loaded = encoders.load_published("efficientnet_b0", tmp_path / "model.pt").encoder
    torch.testing.assert_close(loaded.features[8][0].weight, source.features[8][0].weight)


def test_parameter_roots_cover_every_key():
    for name in encoders.NAMES:
        kwargs = {"num_classes": 5} if "num_classes" in encoders.accepted_params(name) else {}
        keys = encoders.get_for_features(name, N_MELS, {**kwargs, **SMALL.get(name, {})}).state_dict()
        roots = {re.split(r"\.", k)[0] for k in keys}
        assert roots == set(encoders.PARAMETER_ROOTS[name]) - {"relu"}, name


# ------------------------------------------------------------------------------------------------ samplecnn / lstm


def test_samplecnn_parameter_count_and_time_collapse():
    # Spec: Conv1d(1,128,k3)+BN, 9 blocks Conv1d(k3)+BN, Conv1d(512,512,k3)+BN (conv biases on)
    chans = [128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]
    expected = (1 * 128 * 3 + 128 + 2 * 128) + sum(i * o * 3 + o + 2 * o for i, o in zip(chans[:-1], chans[1:]))
    model = encoders.get("samplecnn").eval()
    assert n_params(model) == expected
    stack = model.sequential.to("meta")  # shapes only, no arithmetic
    # SemiSupCon: 2.7 s at 22,050 Hz = 59,535 samples -> one time step left; 3^10 = 59,049 per step
    assert stack(torch.zeros(1, 1, 59_535, device="meta")).shape == (1, 512, 1)
    assert stack(torch.zeros(1, 1, 2 * 59_049 + 101, device="meta")).shape == (1, 512, 2)
    with pytest.raises(RuntimeError, match="output size"):  # why min_length is 3^10
        stack(torch.zeros(1, 1, 59_048, device="meta"))


def _numpy_lstm_encoder(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """Seed-001 encoder in numpy: stacked LSTM (gates i, f, g, o), last hidden, ReLU(Linear), / (norm + 1e-5)."""
    sd = {k: v.double().numpy() for k, v in model.state_dict().items()}
    seq = x[:, 0].transpose(0, 2, 1)  # (B, T, F)
    hidden = sd["lstm.weight_hh_l0"].shape[1]
    for layer in range(model.lstm.num_layers):
        w_ih, w_hh = sd[f"lstm.weight_ih_l{layer}"], sd[f"lstm.weight_hh_l{layer}"]
        bias = sd[f"lstm.bias_ih_l{layer}"] + sd[f"lstm.bias_hh_l{layer}"]
        h = np.zeros((seq.shape[0], hidden))
        c = np.zeros_like(h)
        outs = []
        for t in range(seq.shape[1]):
            g = seq[:, t] @ w_ih.T + h @ w_hh.T + bias
            i, f, gg, o = (g[:, k * hidden:(k + 1) * hidden] for k in range(4))
            sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
            c = sig(f) * c + sig(i) * np.tanh(gg)
            h = sig(o) * np.tanh(c)
            outs.append(h)
        seq = np.stack(outs, axis=1)
    e = np.maximum(h @ sd["linear.weight"].T + sd["linear.bias"], 0)
    return e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-5)


def test_lstm_matches_numpy_reference():
    torch.manual_seed(6)
    model = encoders.get("lstm", n_mels=12, hidden=10, layers=3, embedding_dim=7).eval()
    x = np.random.default_rng(7).normal(size=(3, 1, 12, 15)).astype(np.float32)
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _numpy_lstm_encoder(model, x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_lstm_load_published_drops_ge2e_parameters(tmp_path):
    source = encoders.get("lstm", n_mels=80, hidden=16, layers=3, embedding_dim=8)
    sd = dict(source.state_dict(), similarity_weight=torch.tensor([10.0]), similarity_bias=torch.tensor([-5.0]))
    torch.save({"model_b": sd}, tmp_path / "sie.ckpt")
    loaded = encoders.load_published("lstm", tmp_path / "sie.ckpt").encoder
    assert (loaded.n_mels, loaded.lstm.hidden_size, loaded.lstm.num_layers, loaded.embedding_dim) == (80, 16, 3, 8)


# ------------------------------------------------------------------------------------------------ heads


def test_silu_linear_head_matches_formula_and_is_unit_norm():
    torch.manual_seed(8)
    head = make_head("silu_linear", 20, dim=6)
    x = torch.randn(5, 20)
    w, b = head.net[1].weight.detach().double().numpy(), head.net[1].bias.detach().double().numpy()
    xd = x.double().numpy()
    z = (xd / (1 + np.exp(-xd))) @ w.T + b
    with torch.no_grad():
        got = head(x).numpy()
    np.testing.assert_allclose(got, z / np.linalg.norm(z, axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_mlp_head_structure_and_unit_norm():
    head = make_head("mlp", 20, dim=6, hidden=16)
    assert [type(m).__name__ for m in head.net] == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert (head.net[0].out_features, head.net[3].out_features, head.output_dim) == (16, 6, 6)
    out = head.train()(torch.randn(8, 20))
    np.testing.assert_allclose(np.linalg.norm(out.detach().numpy(), axis=1), 1.0, rtol=1e-5)
    torch.jit.script(head.eval())


def test_mlp_nobias_and_none_heads_structure():
    torch.manual_seed(3)
    head = make_head("mlp_nobias", 20, dim=6, hidden=16)
    assert [type(m).__name__ for m in head.net] == ["Linear", "ReLU", "Linear"]
    assert head.net[0].bias is None and head.net[2].bias is None and head.output_dim == 6
    x = torch.randn(4, 20)
    z = torch.relu(x @ head.net[0].weight.T) @ head.net[2].weight.T
    torch.testing.assert_close(head(x), z / z.norm(dim=1, keepdim=True))
    none = make_head("none", 20, dim=6)
    assert none.output_dim == 20 and not list(none.parameters())
    torch.testing.assert_close(none(x), x / x.norm(dim=1, keepdim=True))
    raw = make_head("mlp", 20, dim=6, hidden=16, l2=False).eval()
    torch.testing.assert_close(raw(x), raw.net(x))


def test_head_errors():
    with pytest.raises(ConfigError,
                       match=r"unknown head kind 'linear'; valid choices: mlp, mlp_nobias, none, silu_linear"):
        make_head("linear", 10)
    with pytest.raises(ConfigError, match="dim must be a positive integer"):
        make_head("mlp", 10, dim=0)


# ------------------------------------------------------------------------------------------------ input conventions


@functools.lru_cache(maxsize=1)
def _voices_logmel(n: int = 6) -> torch.Tensor:
    """singer-ssl log-mels (n, 1, 96, 101) of n unrelated synthetic voices at Fonseca et al.'s front end."""
    from singer_ssl.core.frontend import LogMel

    rng = np.random.default_rng(0)
    sr = 22050
    t = np.arange(101 * 220) / sr
    waves = []
    for k in range(n):  # harmonic voices: own pitch, spectral envelope (timbre) and vibrato each
        f0 = 110.0 * 2 ** (k / 5) * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 7) * t))
        phase = 2 * np.pi * np.cumsum(f0) / sr
        env = rng.uniform(0.05, 1.0, 12) / np.arange(1, 13) ** rng.uniform(0.3, 1.5)
        x = sum(a * np.sin(h * phase) for h, a in enumerate(env, start=1) if h * f0.max() < sr / 2)
        waves.append((0.3 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32))
    lm = LogMel(sr, n_fft=2048, hop=220, n_mels=96, fmin=50.0, fmax=10500.0, log_offset=1.1e-8)
    return lm(torch.from_numpy(np.stack(waves)))[:, None, :, :101]


def _mean_cosine(e: torch.Tensor) -> float:
    c = F.normalize(e, dim=1) @ F.normalize(e, dim=1).T
    n = len(e)
    return float((c.sum() - n) / (n * n - n))


@needs_weights
@pytest.mark.parametrize("name, file", [("vgglike", "VGG_best.pth"), ("crnn", "CRNN_best.pth")])
def test_published_weights_carry_their_input_convention(name, file):
    """Fonseca et al. 2021 fed (x - mean) / (std / sqrt(N)): load_published applies that gain, so singer-ssl
    log-mels give distinct embeddings; unit-variance input (no convention) collapses them."""
    model = encoders.load_published(name, WEIGHTS / file)
    gain = math.sqrt(38.8 * 3600 * 100 * 96)  # sqrt(N), N = log-mel values of FSDnoisy18k's noisy set
    assert model.convention is not None and model.gain == pytest.approx(gain) and model.standardize
    x = _voices_logmel()
    z = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(model.encoder_input(x), z * gain)
    with torch.no_grad():
        collapsed = _mean_cosine(model.encoder(z))
        meaningful = _mean_cosine(model(x))
        with_stats = encoders.PublishedEncoder(model.encoder, model.convention, float(x.mean()), float(x.std()))
        torch.testing.assert_close(with_stats.encoder_input(x), (x - x.mean()) / x.std() * gain)
        dataset_level = _mean_cosine(with_stats(x))
    assert collapsed > 0.999
    print(f"{name}: mean cosine {collapsed:.4f} unit-variance input, {meaningful:.4f} / {dataset_level:.4f} with the "
          "convention (per-item / dataset standardisation)")
    assert meaningful < 0.97 and dataset_level < 0.97, (meaningful, dataset_level)


def test_unknown_checkpoint_gets_no_input_transform(tmp_path):
    torch.save(encoders.get("vgglike").state_dict(), tmp_path / "mine.pth")
    model = encoders.load_published("vgglike", tmp_path / "mine.pth")
    assert model.convention is None
    x = torch.randn(2, 1, 16, 20)
    torch.testing.assert_close(model.encoder_input(x), x)
    assert encoders.published_convention("crnn", "VGG_best.pth") is None  # keyed by file and encoder
