"""Encoder registry: ``NAMES``, ``get(name, **params)``, ``load_published(name, path)``.

Every encoder is an ``nn.Module`` with

- ``input_kind``: ``"logmel"`` — input (B, 1, F, T), natural-log mel power, freq x time — or
  ``"waveform"`` — input (B, S) in [-1, 1] (``samplecnn``);
- ``embedding_dim``: size D of the output (B, D);
- ``min_length``: the smallest T (frames) or S (samples) the encoder accepts.

===============  =====  ==========  =============  ===================================================
name             kind   D           min length     needs F = n_mels / input normalisation inside
===============  =====  ==========  =============  ===================================================
efficientnet_b0  mel    1000        1 frame        any F / per-item (see efficientnet.py)
audiontt2020     mel    512         8 frames       F = n_mels >= 8 / none (dataset mean/std expected)
vgglike          mel    512         8 frames       any F >= 8 / none
crnn             mel    64          8 frames       F = n_mels >= 40 / none
resnet18         mel    512         1 frame        any F / none
samplecnn        wave   512         59,049 samp.   - / none
lstm             mel    256         1 frame        F = n_mels / none
===============  =====  ==========  =============  ===================================================

Constructor keyword arguments come from ``params.yaml`` ``encoders.<name>``;
:func:`get_for_features` also passes the front end's ``n_mels`` to the encoders that need it.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from singer_ssl.core.errors import ConfigError, choice_error
from singer_ssl.encoders.audiontt import AudioNTT2020
from singer_ssl.encoders.crnn import CRNN
from singer_ssl.encoders.efficientnet import EfficientNetB0
from singer_ssl.encoders.lstm import LSTMEncoder
from singer_ssl.encoders.resnet import ResNet18
from singer_ssl.encoders.samplecnn import SampleCNN
from singer_ssl.encoders.vgglike import VGGLike

ENCODERS: dict[str, type[nn.Module]] = {
    "efficientnet_b0": EfficientNetB0,
    "audiontt2020": AudioNTT2020,
    "vgglike": VGGLike,
    "crnn": CRNN,
    "resnet18": ResNet18,
    "samplecnn": SampleCNN,
    "lstm": LSTMEncoder,
}
NAMES: tuple[str, ...] = tuple(ENCODERS)

__all__ = ["NAMES", "ENCODERS", "PARAMETER_ROOTS", "PUBLISHED_INPUT", "InputConvention", "PublishedEncoder",
           "encoder_class", "accepted_params", "check_kwargs", "get", "kwargs_for_features", "get_for_features",
           "load_published", "load_published_into", "published_convention"]

#: ``encoders.<name>.init``: the weights an encoder starts from (``published:<path>``); every encoder accepts it
INIT_KEY = "init"
INIT_PREFIX = "published:"


def encoder_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; :class:`ConfigError` listing the valid names otherwise."""
    if name not in ENCODERS:
        raise choice_error("encoder", name, NAMES)
    return ENCODERS[name]


def accepted_params(name: str) -> tuple[str, ...]:
    """Constructor keyword arguments of encoder ``name`` (plus ``init``, see :func:`get`)."""
    cls = encoder_class(name)
    return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self") + (INIT_KEY,)


def check_kwargs(name: str, params: Mapping[str, Any]) -> None:
    """:class:`ConfigError` naming ``encoders.<name>`` and the unknown keys, with the accepted ones."""
    accepted = accepted_params(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"encoders.{name}: unknown parameter(s) {', '.join(unknown)}; accepted: {', '.join(accepted) or 'none'}"
        )
    if params.get(INIT_KEY) is not None:
        init_path(name, params[INIT_KEY])


def get(name: str, **params: Any) -> nn.Module:
    """Build encoder ``name`` with constructor kwargs ``params`` (``params.yaml`` ``encoders.<name>``).

    The encoders raise plain ``ValueError``/``TypeError``; here an unknown name, an unknown key or an
    invalid value becomes a :class:`ConfigError` naming ``encoders.<name>`` and the culprit.
    ``init: published:<path>`` loads that published checkpoint's weights into the built encoder
    (:func:`load_published_into`; a classifier layer of the checkpoint that the encoder lacks is dropped).
    """
    cls = encoder_class(name)
    check_kwargs(name, params)
    params = dict(params)
    init = params.pop(INIT_KEY, None)
    try:
        model = cls(**params)
    except (TypeError, ValueError) as err:
        message = str(err).removeprefix(f"{name}: ")
        raise ConfigError(f"encoders.{name}: {message} (parameters {dict(params)!r})") from err
    if init:
        load_published_into(model, name, init)
    return model


def init_path(name: str, init: Any) -> str:
    """The checkpoint path of ``encoders.<name>.init`` (``published:<path>``); ConfigError otherwise."""
    if not isinstance(init, str) or not init.startswith(INIT_PREFIX) or not init[len(INIT_PREFIX):]:
        raise ConfigError(f"encoders.{name}.init: expected 'published:<path to a checkpoint>', got {init!r}")
    return init[len(INIT_PREFIX):]


def kwargs_for_features(name: str, n_mels: int, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Constructor kwargs of encoder ``name``: ``params`` (``encoders.<name>``) with the front end's
    ``n_mels`` filled in for the encoders whose layers depend on F (audiontt2020, crnn, lstm).

    An explicit ``n_mels`` in ``params`` that differs from the front end's raises :class:`ConfigError`.
    """
    kwargs = dict(params or {})
    if kwargs.get(INIT_KEY) is not None:
        init_path(name, kwargs[INIT_KEY])
    if "n_mels" in accepted_params(name):
        if "n_mels" in kwargs and int(kwargs["n_mels"]) != int(n_mels):
            raise ConfigError(f"encoders.{name}.n_mels={kwargs['n_mels']} contradicts features.n_mels={n_mels}")
        kwargs["n_mels"] = int(n_mels)
    return kwargs


def get_for_features(name: str, n_mels: int, params: Mapping[str, Any] | None = None) -> nn.Module:
    """Build encoder ``name`` with :func:`kwargs_for_features` (``n_mels`` from the front end where needed)."""
    return get(name, **kwargs_for_features(name, n_mels, params))


# ---------------------------------------------------------------------------------------------------
# Published checkpoints

# Top-level submodules holding each encoder's parameters (prefixes before them are stripped on load).
PARAMETER_ROOTS: dict[str, tuple[str, ...]] = {
    "efficientnet_b0": ("features", "classifier"),
    "audiontt2020": ("features", "fc"),
    "vgglike": ("conv0", "conv1", "conv2", "conv3", "conv4", "conv5", "dense1", "dense_out"),
    "crnn": ("conv1", "conv2", "conv3", "rnn1", "dense"),
    "resnet18": ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc"),
    "samplecnn": ("sequential",),
    "lstm": ("lstm", "linear"),
}
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "model_b")


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in sd:
        raise ConfigError(f"checkpoint has no {key!r}; keys start with {sorted(sd)[:5]}")
    return tuple(sd[key].shape)


def _infer_efficientnet(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {"embedding_dim": _shape(sd, "classifier.1.weight")[0], "in_channels": _shape(sd, "features.0.0.weight")[1]}


def _infer_audiontt(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    d, fc_in = _shape(sd, "fc.0.weight")
    return {"embedding_dim": d, "n_mels": fc_in // 64 * 8}


def _infer_vgglike(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    emb, pooled = _shape(sd, "dense1.weight")
    n_cls = _shape(sd, "dense_out.weight")[0] if "dense_out.weight" in sd else 0
    return {"embedding_dim": emb, "num_classes": n_cls, "pooling": "gapgmp" if pooled == 256 else "gap"}


def _infer_crnn(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    freq_cells = _shape(sd, "rnn1.weight_ih_l0")[1] // 128
    n_cls = _shape(sd, "dense.weight")[0] if "dense.weight" in sd else 0
    # Any F with ((F//5)//4)//2 == freq_cells builds the same layers; prefer the published 96.
    n_mels = 96 if freq_cells == 2 else 40 * freq_cells
    return {"hidden": _shape(sd, "rnn1.weight_hh_l0")[1], "num_classes": n_cls, "n_mels": n_mels}


def _infer_resnet(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {"num_classes": _shape(sd, "fc.weight")[0] if "fc.weight" in sd else 0}


def _infer_lstm(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    hidden4, n_mels = _shape(sd, "lstm.weight_ih_l0")
    layers = sum(1 for k in sd if re.fullmatch(r"lstm\.weight_ih_l\d+", k))
    return {"n_mels": n_mels, "hidden": hidden4 // 4, "layers": layers,
            "embedding_dim": _shape(sd, "linear.weight")[0]}


_INFER: dict[str, Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]] = {
    "efficientnet_b0": _infer_efficientnet,
    "audiontt2020": _infer_audiontt,
    "vgglike": _infer_vgglike,
    "crnn": _infer_crnn,
    "resnet18": _infer_resnet,
    "samplecnn": lambda sd: {},
    "lstm": _infer_lstm,
}


def _unwrap(obj: Any, path: str) -> dict[str, torch.Tensor]:
    """Find the state dict inside a checkpoint (plain, or wrapped under e.g. ``state_dict``)."""
    for _ in range(3):
        if not isinstance(obj, Mapping):
            break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        inner = [k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        if not inner:
            break
        obj = obj[inner[0]]
    raise ConfigError(f"{path}: no state dict found (expected a mapping of tensors, possibly under one of "
                      f"{', '.join(_WRAPPER_KEYS)})")


def _select_encoder_keys(sd: Mapping[str, torch.Tensor], roots: tuple[str, ...], path: str) -> dict[str, torch.Tensor]:
    """Keep the keys under the encoder's top-level modules, stripping any prefix before them.

    ``encoder.net.2.features.0.0.weight`` (Torres et al. 2023) -> ``features.0.0.weight``; ``module.`` (DataParallel)
    and Lightning prefixes likewise. Keys outside the encoder (front end, heads, GE2E w/b) are dropped.
    """
    pattern = re.compile(r"(?:^|\.)((?:" + "|".join(re.escape(r) for r in roots) + r")\..*)$")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        match = pattern.search(key)
        if match is None:
            continue
        new_key = match.group(1)
        if new_key in out:
            raise ConfigError(f"{path}: ambiguous checkpoint, several keys map to {new_key!r} (e.g. {key!r})")
        out[new_key] = value
    if not out:
        raise ConfigError(f"{path}: no key belongs to the encoder (expected names under {', '.join(roots)}; "
                          f"found e.g. {sorted(sd)[:5]})")
    return out


def _read_state(name: str, path: str, trusted: bool) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise ConfigError(f"published checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises various unpickling errors
        if not trusted:
            raise ConfigError(f"{path}: cannot be read with weights_only=True ({err}); if you trust the file, "
                              f"pass trusted=True") from err
        obj = torch.load(path, map_location="cpu", weights_only=False)
    state = _unwrap(obj, path)
    return _select_encoder_keys(state, PARAMETER_ROOTS[name], path)


# ---------------------------------------------------------------------------------------------------
# The input convention each published checkpoint was trained with


@dataclass(frozen=True)
class InputConvention:
    """How a published checkpoint's training inputs relate to singer-ssl's natural-log log-mel x.

    The encoder input is ``gain * (x - mean) / std`` (``standardize``; mean/std of the data, a scalar
    each) or ``x`` unchanged. Standardising removes the log base, so natural-log mels stand in for
    log10 mels exactly.
    """

    encoder: str
    standardize: bool
    gain: float
    source: str


#: Fonseca et al. 2021 (edufonseca/uclser20, ``FSDnoisy18k.py``) standardised with the training set's
#: mean and ``spec_std = sqrt(sum (x - mu)^2) / N`` = std / sqrt(N), N = number of log-mel values of the
#: training set: their inputs are standardised log-mels times sqrt(N). N = 38.8 h (FSDnoisy18k's noisy
#: training set) x 100 frames/s (hop 10 ms) x 96 bands = 1.341e9, sqrt(N) = 3.662e4. Cross-check from
#: the checkpoints themselves: their first batch-norm's running variance (1.4e8 VGG, 1.7e8 CRNN on
#: average) over the first convolution's variance on standardised singer-ssl log-mels gives a median
#: per-channel gain of 2.6e4 (VGG) and 3.0e4 (CRNN), the same order (spectra of singing, not of sound
#: events).
FSDNOISY18K_GAIN = math.sqrt(38.8 * 3600 * 100 * 96)
_FONSECA = "Fonseca et al. 2021: (x - mean) / (std / sqrt(N)), N = log-mel values of FSDnoisy18k's noisy set"
_BYOLA = "BYOL-A (Niizumi et al.): dataset mean/std of the log-mel (PrecomputedNorm)"

#: published checkpoint file name -> its input convention (the one place these facts live)
PUBLISHED_INPUT: dict[str, InputConvention] = {
    "VGG_best.pth": InputConvention("vgglike", True, FSDNOISY18K_GAIN, _FONSECA),
    "CRNN_best.pth": InputConvention("crnn", True, FSDNOISY18K_GAIN, _FONSECA),
    "ResNet_best.pth": InputConvention("resnet18", True, FSDNOISY18K_GAIN, _FONSECA),
    **{f"AudioNTT2020-BYOLA-64x96d{d}.pth": InputConvention("audiontt2020", True, 1.0, _BYOLA)
       for d in (512, 1024, 2048)},
}


def published_convention(name: str, path: str | os.PathLike) -> InputConvention | None:
    """The recorded input convention of published checkpoint ``path`` (by file name) for encoder ``name``;
    ``None`` when the file is not a known published checkpoint of that encoder."""
    conv = PUBLISHED_INPUT.get(os.path.basename(os.fspath(path)))
    return conv if conv is not None and conv.encoder == name else None


class PublishedEncoder(nn.Module):
    """A published encoder with the input convention it was trained with: singer-ssl log-mel in.

    ``forward(x)``: (B, 1, F, T) natural-log mel power -> ``encoder(gain * (x - mean) / std)`` (B, D),
    with ``mean``/``std`` the data's scalars when given, else each item's own over F x T (a convention
    of ``standardize=False`` feeds ``x`` unchanged). ``encoder`` is the raw published network (its
    ``forward`` reproduces the authors' outputs on their inputs).
    """

    def __init__(self, encoder: nn.Module, convention: InputConvention | None,
                 mean: float | None = None, std: float | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.convention = convention
        self.standardize = convention is not None and convention.standardize
        self.gain = 1.0 if convention is None else float(convention.gain)
        if (mean is None) != (std is None) or (std is not None and not std > 0):
            raise ConfigError(f"published encoder: give both mean and std > 0 (or neither), got {mean!r}, {std!r}")
        self.mean, self.std = mean, std
        self.input_kind = encoder.input_kind
        self.embedding_dim = encoder.embedding_dim
        self.min_length = encoder.min_length

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) singer-ssl log-mel -> the published network's input (same shape)."""
        if not self.standardize:
            return x
        if self.mean is not None:
            z = (x - self.mean) / self.std
        else:
            z = (x - x.mean(dim=(1, 2, 3), keepdim=True)) / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8)
        return z * self.gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) log-mel -> (B, D) embedding."""
        return self.encoder(self.encoder_input(x))


def load_published(name: str, path: str | os.PathLike, trusted: bool = False, *, mean: float | None = None,
                   std: float | None = None, **params: Any) -> PublishedEncoder:
    """Load a published checkpoint of encoder ``name`` with the input convention it was trained with.

    The network is built in the checkpoint's own key layout and loaded with ``strict=True``; its
    constructor parameters are inferred from the tensor shapes (e.g. ``VGG_best.pth`` ->
    ``vgglike(embedding_dim=512, num_classes=20)``; BYOL-A ``...64x96d2048.pth`` ->
    ``audiontt2020(n_mels=64, embedding_dim=2048)``); ``params`` override them. The input convention
    comes from :data:`PUBLISHED_INPUT` by file name (Fonseca et al.'s checkpoints expect standardised
    log-mels times sqrt(N) = 3.66e4: fed unit-variance input, their embeddings collapse); a file not in
    the table gets no input transform. Returns a :class:`PublishedEncoder` in eval mode: singer-ssl
    log-mels (B, 1, F, T) in, embeddings (B, D) out, standardised with ``mean``/``std`` (the data's
    log-mel scalars, e.g. the features' attrs) when given, else per item; ``.encoder`` is the raw network.
    The file is read with ``torch.load(weights_only=True)``; ``trusted=True`` allows a full unpickling
    fallback for legacy files that need it (only for files you trust: unpickling runs code).
    """
    encoder_class(name)
    path = os.fspath(path)
    state = _read_state(name, path, trusted)
    model = get(name, **{**_INFER[name](state), **params})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"{path}: checkpoint does not match encoder {name!r}: {err}") from err
    return PublishedEncoder(model, published_convention(name, path), mean, std).eval()


def load_published_into(model: nn.Module, name: str, init: str, trusted: bool = False) -> nn.Module:
    """Load ``init`` (``published:<path>``) into an already built encoder ``model`` of kind ``name``
    (the pipeline's ``encoders.<name>.init``): strict, except that checkpoint classifier layers the
    model lacks (``num_classes: 0``) are dropped. ConfigError naming ``encoders.<name>.init`` otherwise."""
    path = init_path(name, init)
    try:
        state = _read_state(name, path, trusted)
    except ConfigError as err:
        raise ConfigError(f"encoders.{name}.init: {err}") from None
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(("dense_out.", "dense.", "fc."))}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        why = str(err).splitlines()[0]
        raise ConfigError(f"encoders.{name}.init: {path} does not match the configured encoder: {why}") from None
    return model
