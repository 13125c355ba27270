"""The model folder contract: what the train stage writes and ``embed``/``load_model``/the CLI read.

The model folder (``data/model/``) holds ``model.pt`` (state dict of ``SingerModel``, front-end
buffers included), ``model.ts`` (TorchScript of ``forward``: waveform -> embedding, carrying a copy
of ``hyperparams.yaml`` as the extra file ``hyperparams.yaml``, so its sample rate travels with it:
:func:`torchscript_hyperparams`) and ``hyperparams.yaml``, which describes everything needed to
rebuild the model without ``params.yaml``::

    library: {name: singer-ssl, version: 0.1.0}
    frontend: {sample_rate, n_fft, hop, n_mels, fmin, fmax, log_offset, center, window, mel}
    normalization: {mean, std}              # scalars applied to the log-mel before the encoder; optional
                                            # scaling: dataset_std | none | item_mean | item_peak |
                                            # item_loud and gain: 1.0 (written only when not these
                                            # defaults), offset (under item_peak / item_loud; see
                                            # SingerModel.normalize)
    encoder: {name, kwargs: {...}, input_kind, embedding_dim}   # optional init: published:<path> (the
                                            # weights training started from; not needed to load)
    head: {kind, in_dim, dim, hidden}       # optional l2: false (written only when false)
    loss: {name, kwargs: {...}, batch: {...} | null}
    segment_seconds: 4.0                    # length of the training segments (embedding window)
    crop_seconds: 3.0                       # length of each training view
    seed: 123
    augment: {...}                          # as trained (informative)
    train: {...}                            # as trained (informative)
    datasets: [names of the training datasets]

Only ``frontend``, ``normalization``, ``encoder`` and ``head`` are needed by :func:`build_model`.

Optional ``threshold.json`` (:data:`THRESHOLD_FILE`, written by the train stage beside the three files,
never inside ``model.ts``): ``{eer_threshold, eer, source, n_segments, n_singers, n_trials,
n_target_trials, calibration: {scale, offset, score}, val_singers}``, the cosine score at the EER of all
pairs of the held-out validation singers' segments, the linear map of a cosine score to a log-likelihood
ratio fitted on the same pairs, which ``singer-ssl verify`` decides with (:func:`read_threshold`), and the
validation singers' names; with ``calibration_norm: {snorm, asnorm}: {scale, offset, top_n}`` the same
for the normalised scores against the optional ``cohort.json`` (:data:`COHORT_FILE`): ``{singers, segments,
mean (D,), cohort (C, D)}``, the training singers' mean embeddings and the training mean for S-norm/AS-norm
(:func:`read_cohort`, :mod:`singer_ssl.evaluation.backend`).

Loading validates the folder (:func:`load_eager`, :func:`load_torchscript`): every problem is one
:class:`ModelFolderError` line naming the file and key (malformed hyperparams, a ``model.pt`` that is
not a finite state dict, hyperparams that differ from the weights or from the copy in ``model.ts``,
a front end that does not fit the encoder, weights that give NaN/inf on a test signal, a ``model.pt`` and
``model.ts`` that embed that signal differently: :func:`probe_forward`, :func:`check_copies_agree`).

Every file is byte-reproducible: the same weights and hyperparams give the same bytes wherever the
repository lives and whatever ``PYTHONHASHSEED`` is (so a retrain with the same result leaves
``dvc.lock`` clean). ``model.ts`` is rewritten for that (:func:`save_torchscript`).
"""

from __future__ import annotations

import copy
import io
import math
import os
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from singer_ssl import encoders
from singer_ssl.core.device import resolve_device
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.frontend import LogMel, front_end_params
from singer_ssl.core.io import atomic_path
from singer_ssl.core.params import int_param, number_param
from singer_ssl.model.heads import make_head
from singer_ssl.model.singer_model import INPUT_SCALINGS, SingerModel

FRONTEND_KEYS = ("sample_rate", "n_fft", "hop", "n_mels", "fmin", "fmax", "log_offset")
FRONTEND_FIXED = {"center": True, "window": "hann", "mel": "slaney"}

MODEL_FILES = ("model.pt", "model.ts", "hyperparams.yaml")
#: optional: the stored decision threshold (see the module docstring)
THRESHOLD_FILE = "threshold.json"
#: optional: the score-normalisation cohort (see the module docstring)
COHORT_FILE = "cohort.json"


class ModelFolderError(ValueError):
    """The model folder is missing a file or its files do not match each other."""


def read_hyperparams(folder: str | os.PathLike) -> dict:
    """Read ``hyperparams.yaml`` of a model folder and validate it (:func:`check_hyperparams`);
    :class:`ModelFolderError`, one line naming the file (and key), when missing or malformed."""
    folder = Path(folder)
    path = folder / "hyperparams.yaml"
    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}")
    if not path.exists():
        raise ModelFolderError(f"{path} is missing: the folder is not a singer-ssl model folder")
    try:
        hp = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelFolderError(f"{path} is not a UTF-8 text file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ModelFolderError(f"{path} is not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(hp, dict):
        raise ModelFolderError(f"{path} does not describe a model (expected a mapping)")
    check_hyperparams(hp, path)
    return hp


def model_sample_rate(hp: dict) -> int:
    """Sample rate (Hz) the model expects, from its hyperparams."""
    return int(hp["frontend"]["sample_rate"])


def model_segment_seconds(hp: dict) -> float:
    """Window length (s) the model was trained/evaluated on (4.0 when absent or null)."""
    seconds = hp.get("segment_seconds")
    return 4.0 if seconds is None else float(seconds)


# ----------------------------------------------------------------------------------------------
# validation: every problem of a model folder is one ModelFolderError line naming the file and key

# hyperparams sections that decide what the model computes; model.ts carries its own copy of them
BUILD_KEYS = ("frontend", "normalization", "encoder", "head", "segment_seconds")


def check_hyperparams(hp: dict[str, Any], path: str | os.PathLike) -> None:
    """Validate what :func:`build_model` and the loaders read from ``hyperparams.yaml`` at ``path``.

    ``frontend``: positive integers ``sample_rate`` (Hz), ``n_fft``, ``hop`` (samples), ``n_mels``;
    ``0 <= fmin < fmax <= sample_rate / 2`` (Hz, ``fmax`` null = Nyquist); ``log_offset > 0``;
    ``center``/``window``/``mel`` as :data:`FRONTEND_FIXED` when present. ``normalization``: finite
    ``mean``, ``std > 0``. ``encoder``: a ``name`` and a ``kwargs`` mapping (or null). ``head``: a
    mapping. ``segment_seconds``: null or > 0 (s). :class:`ModelFolderError` naming ``path`` and the
    dotted key otherwise.
    """
    try:
        _check_hyperparams(hp)
    except ConfigError as e:
        raise ModelFolderError(f"{path}: {e}") from None


def _check_hyperparams(hp: dict[str, Any]) -> None:
    for key in ("frontend", "encoder", "head"):
        if not isinstance(hp.get(key), dict):
            what = "lacks" if key not in hp else "has a malformed"
            raise ConfigError(f"{what} the {key!r} section (expected a mapping, got {hp.get(key)!r})")
    fe = hp["frontend"]
    ints = {k: int_param(fe.get(k), f"frontend.{k}", minimum=1) for k in ("sample_rate", "n_fft", "hop", "n_mels")}
    fmin = number_param(fe.get("fmin", 0.0), "frontend.fmin", low=0.0)
    fmax = None if fe.get("fmax") is None else number_param(fe["fmax"], "frontend.fmax", low=0.0, low_open=True)
    log_offset = number_param(fe.get("log_offset", 1e-8), "frontend.log_offset", low=0.0, low_open=True)
    for key, value in FRONTEND_FIXED.items():
        if key in fe and fe[key] != value:
            raise ConfigError(f"frontend.{key}: this front end supports only {value!r}, got {fe[key]!r}")
    nyquist = ints["sample_rate"] / 2.0
    if fmax is not None and fmax > nyquist:
        raise ConfigError(f"frontend.fmax: expected <= sample_rate / 2 = {nyquist} Hz, got {fe['fmax']!r}")
    top = nyquist if fmax is None else fmax
    if not fmin < top:
        raise ConfigError(f"frontend.fmin: expected < fmax = {top} Hz, got {fe.get('fmin')!r}")
    try:  # the front end's own checks (all covered above)
        front_end_params(**ints, fmin=fmin, fmax=fmax, log_offset=log_offset)
    except ValueError as e:
        raise ConfigError(f"frontend: {str(e).removeprefix('features: ')}") from None
    norm = hp.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict):
            raise ConfigError(f"normalization: expected a mapping {{mean, std}}, got {norm!r}")
        number_param(norm.get("mean", 0.0), "normalization.mean")
        number_param(norm.get("std", 1.0), "normalization.std", low=0.0, low_open=True)
        if norm.get("scaling", "dataset_std") not in INPUT_SCALINGS:
            raise ConfigError(f"normalization.scaling: expected one of {', '.join(INPUT_SCALINGS)}, "
                              f"got {norm.get('scaling')!r}")
        number_param(norm.get("gain", 1.0), "normalization.gain", low=0.0, low_open=True)
        number_param(norm.get("offset", 0.0), "normalization.offset")
    if hp["head"].get("l2", True) not in (True, False):
        raise ConfigError(f"head.l2: expected true or false, got {hp['head'].get('l2')!r}")
    enc = hp["encoder"]
    if not isinstance(enc.get("name"), str):
        raise ConfigError(f"encoder.name: expected an encoder name, got {enc.get('name')!r}")
    if enc.get("kwargs") is not None and not isinstance(enc["kwargs"], dict):
        raise ConfigError(f"encoder.kwargs: expected a mapping, got {enc['kwargs']!r}")
    if hp.get("segment_seconds") is not None:
        number_param(hp["segment_seconds"], "segment_seconds", low=0.0, low_open=True)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """``model.pt`` -> the state dict ``{name: tensor}`` (loaded with ``weights_only=True``, on CPU).

    :class:`ModelFolderError` naming ``path`` when it is not a ``torch.save`` file, when it holds a
    training checkpoint (``data/checkpoints/last.pt``: ``{"model": state dict, "optimizer": ...}``)
    instead of the model's state dict, or when a floating-point tensor holds NaN or inf (the first
    such tensor is named).
    """
    if not path.exists():
        raise ModelFolderError(f"{path} is missing")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, IndexError, pickle.UnpicklingError, RuntimeError, ValueError, OSError, KeyError,
            AttributeError, TypeError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelFolderError(f"{path} is not a PyTorch state dict written by torch.save "
                               f"({type(e).__name__}: {why[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict) and (
            "optimizer" in state or "step" in state or "fingerprint" in state):
        raise ModelFolderError(f"{path} is a training checkpoint (keys {', '.join(sorted(map(str, state))[:6])}, ...)"
                               f", not a model's state dict: use the model folder the train stage writes "
                               f"(data/model), or save checkpoint['model'] as model.pt")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ModelFolderError(f"{path} does not hold a state dict {{name: tensor}} (got {type(state).__name__})")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise ModelFolderError(f"{path}: tensor {name!r} holds {bad} NaN/inf value(s) of {tensor.numel()}; "
                                   f"the weights are unusable")
    return state


def _check_normalization(hp: dict[str, Any], state: dict[str, torch.Tensor], path: Path) -> None:
    """The ``mean``/``std`` buffers of the weights must be ``normalization`` of ``hyperparams.yaml``
    (up to float32 rounding): eager loading takes the weights' values, model.ts has them baked in."""
    norm = hp.get("normalization") or {}
    for key, default in (("mean", 0.0), ("std", 1.0)):
        if key not in state:
            continue
        want = float(norm.get(key, default))
        got = float(state[key])
        if not math.isclose(want, got, rel_tol=1e-6, abs_tol=1e-6):
            raise ModelFolderError(f"{path / 'hyperparams.yaml'}: normalization.{key} = {want!r} but the weights "
                                   f"in {path / 'model.pt'} were trained with {got!r}")


def _first_difference(a: Any, b: Any, where: str) -> tuple[str, Any, Any] | None:
    """The first dotted key where two YAML trees differ (``None`` when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            if key not in a or key not in b:
                return f"{where}.{key}".lstrip("."), a.get(key, "<absent>"), b.get(key, "<absent>")
            diff = _first_difference(a[key], b[key], f"{where}.{key}")
            if diff is not None:
                return diff
        return None
    return None if a == b else (where.lstrip("."), a, b)


def read_torchscript_hyperparams(path: Path) -> dict[str, Any] | None:
    """The ``hyperparams.yaml`` carried inside ``model.ts`` at ``path``, read from its zip archive
    without loading the module; ``None`` when it carries none (written before they were stored).
    :class:`ModelFolderError` when ``path`` is not a TorchScript archive or the copy is malformed."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.split("/", 1)[-1] == "extra/hyperparams.yaml"]
            if not any(n.split("/", 1)[-1] in ("data.pkl", "constants.pkl") for n in archive.namelist()):
                raise ModelFolderError(f"{path} is not a TorchScript file written by torch.jit.save")
            text = archive.read(names[0]).decode("utf-8") if names else None
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:
        raise ModelFolderError(f"{path} is not a TorchScript file written by torch.jit.save ({e})") from None
    if text is None:
        return None
    try:
        hp = yaml.safe_load(text)
    except yaml.YAMLError:
        hp = None
    if not isinstance(hp, dict):
        raise ModelFolderError(f"{path}: its copy of hyperparams.yaml is not a mapping")
    return hp


def check_against_torchscript(hp: dict[str, Any], folder: Path) -> dict[str, Any] | None:
    """Every key of :data:`BUILD_KEYS` in ``hyperparams.yaml`` must equal the copy inside ``model.ts``
    (the values the weights were trained and exported with): the front end's ``hop``, ``n_fft``,
    ``fmin``... leave no trace in ``model.pt`` (the window and mel basis are non-persistent buffers),
    so an edited ``hyperparams.yaml`` would otherwise load and silently change the embeddings.
    Returns the copy; ``None`` when ``model.ts`` is absent or carries none (written before it was
    stored; the loaders then compare the two models' outputs instead: :func:`check_copies_agree`)."""
    ts = folder / "model.ts"
    if not ts.exists():
        return None
    carried = read_torchscript_hyperparams(ts)
    if carried is None:
        return None
    for key in BUILD_KEYS:
        diff = _first_difference(hp.get(key), carried.get(key), key)
        if diff is not None:
            name, mine, theirs = diff
            raise ModelFolderError(f"{folder / 'hyperparams.yaml'}: {name} = {mine!r} but {ts} was exported with "
                                   f"{theirs!r}; the files come from different models (restore hyperparams.yaml)")
    return carried


#: the probe's relative tolerance: model.pt and model.ts must agree to max|a - b| <= PROBE_TOLERANCE * max(1, max|a|)
PROBE_TOLERANCE = 1e-3


def probe_signal(sample_rate: int, n: int) -> torch.Tensor:
    """``(1, n)`` float32 non-silent test signal at ``sample_rate`` Hz: a 220 Hz tone with 5 harmonics
    (amplitudes 0.2 / k), a 5.5 Hz vibrato of +-2 % and seeded white noise at -40 dBFS (peak about 0.5).

    Silence can hide a broken model (a ReLU network whose first layer sees zeros, an overflow that
    needs signal energy), so the load checks run on this sung-like input; deterministic (fixed seed)."""
    t = torch.arange(n, dtype=torch.float64) / float(sample_rate)
    phase = 2 * math.pi * 220.0 * (t + 0.02 / (2 * math.pi * 5.5) * (1 - torch.cos(2 * math.pi * 5.5 * t)))
    x = sum(0.2 / k * torch.sin(k * phase) for k in range(1, 6))
    noise = torch.randn(n, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return (x + 0.01 * noise).to(torch.float32)[None]


def probe_forward(model: nn.Module, hp: dict[str, Any], folder: Path, device: torch.device | None = None,
                  name: str = "model") -> torch.Tensor:
    """One forward pass on :func:`probe_signal` (one embedding window: ``segment_seconds`` at the
    front end's rate) must give a finite ``(1, encoder embedding_dim)``: a front end that does not fit
    the encoder (e.g. ``frontend.n_mels`` 64 for an encoder built for 128 mels) fails here, at load,
    instead of at the first embedding, and so do weights that overflow to NaN/inf on real signal
    (``name``: which file the weights came from). Returns the output on CPU. Costs one window of compute."""
    sr = model_sample_rate(hp)
    window = max(1, int(round(model_segment_seconds(hp) * sr)))
    dev = device or next(iter(model.parameters()), torch.empty(0)).device
    try:
        with torch.no_grad():
            out = model(probe_signal(sr, window).to(dev))
    except Exception as e:  # noqa: BLE001 - re-raised with the culprit named
        why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise ModelFolderError(f"{folder}: the model fails on a {window}-sample window with the front end of "
                               f"hyperparams.yaml (frontend.n_mels = {hp['frontend'].get('n_mels')}, encoder "
                               f"{hp['encoder'].get('name')!r}): {why[:200]}") from None
    dim = getattr(model, "embedding_dim", None)
    if out.dim() != 2 or out.shape[0] != 1 or (isinstance(dim, int) and out.shape[1] != dim):
        raise ModelFolderError(f"{folder}: the model gives shape {tuple(out.shape)} for one window, "
                               f"expected (1, {dim})")
    out = out.detach().float().cpu()
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise ModelFolderError(f"{folder / name}: the model gives {bad} NaN/inf value(s) of {out.numel()} on a "
                               f"{window}-sample test signal; the weights are unusable (overflow)")
    return out


def check_copies_agree(folder: Path, eager_out: torch.Tensor, ts_out: torch.Tensor) -> None:
    """model.pt (rebuilt from hyperparams.yaml) and model.ts must give the same embedding of the probe
    signal within :data:`PROBE_TOLERANCE` (relative to the largest value, at least 1); else the two
    files come from different models (one was edited, re-saved or copied from another run)."""
    diff = float((eager_out - ts_out).abs().max()) if eager_out.shape == ts_out.shape else math.inf
    scale = max(1.0, float(eager_out.abs().max()))
    if not diff <= PROBE_TOLERANCE * scale:
        raise ModelFolderError(f"{folder / 'model.pt'} (with hyperparams.yaml) and {folder / 'model.ts'} disagree "
                               f"on a test signal (max abs difference {diff:.3g}, shape {tuple(eager_out.shape)} vs "
                               f"{tuple(ts_out.shape)}; tolerance {PROBE_TOLERANCE * scale:.3g}): the files come from "
                               f"different models; restore the folder the train stage wrote")


def _eager_model(folder: Path, hp: dict[str, Any], dev: torch.device) -> nn.Module:
    """``model.pt`` loaded strictly into the model ``hyperparams.yaml`` describes (eval mode, on ``dev``)."""
    weights = folder / "model.pt"
    state = read_state_dict(weights)
    try:
        model = build_model(hp, load_init=False)  # every weight comes from model.pt
    except Exception as e:  # noqa: BLE001 - re-raised with the culprit named
        raise ModelFolderError(f"{folder / 'hyperparams.yaml'} does not describe a buildable model: "
                               f"{(str(e).splitlines() or [type(e).__name__])[0]}") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelFolderError(
            f"{weights} does not match {folder / 'hyperparams.yaml'} "
            f"(encoder {hp.get('encoder', {}).get('name')!r}): {str(e).splitlines()[0]} ..."
        ) from e
    _check_normalization(hp, state, folder)
    return model.to(dev).eval()


def _torchscript_model(folder: Path, dev: torch.device) -> nn.Module:
    ts = folder / "model.ts"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(ts), map_location=dev).eval()
    except (RuntimeError, ValueError, OSError) as e:
        raise ModelFolderError(f"{ts} is not a loadable TorchScript model: "
                               f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:200]}") from None


def load_eager(folder: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild the full :class:`~singer_ssl.model.singer_model.SingerModel` and load ``model.pt`` strictly.

    Raises :class:`ModelFolderError` (one line naming the file and key) when ``hyperparams.yaml``
    is malformed (:func:`check_hyperparams`) or does not match the weights (another encoder or
    embedding size, ``normalization``, or any :data:`BUILD_KEYS` value differing from the copy in
    ``model.ts``: :func:`check_against_torchscript`), when ``model.pt`` is not a finite state dict
    (:func:`read_state_dict`), when the rebuilt model fails on or gives NaN/inf for one window of the
    probe signal (:func:`probe_forward`), or, when ``model.ts`` is present, when it embeds the probe
    signal differently (:func:`check_copies_agree`).
    """
    folder = Path(folder)
    hp = read_hyperparams(folder)
    dev = resolve_device(device)
    model = _eager_model(folder, hp, dev)
    check_against_torchscript(hp, folder)
    out = probe_forward(model, hp, folder, dev, "model.pt")
    if (folder / "model.ts").exists():
        check_copies_agree(folder, out, probe_forward(_torchscript_model(folder, dev), hp, folder, dev, "model.ts"))
    return model


def load_torchscript(folder: str | os.PathLike, device: str | torch.device | None = None) -> nn.Module:
    """Load ``model.ts`` of a model folder (eval mode) after checking that ``hyperparams.yaml`` agrees
    with the copy it carries (:func:`check_against_torchscript`); :class:`ModelFolderError` naming the
    file when it is missing, not TorchScript, fails on or gives NaN/inf for the probe signal
    (:func:`probe_forward`), or embeds it differently from ``model.pt`` (:func:`check_copies_agree`;
    skipped only when ``model.pt`` is absent and ``model.ts`` carries the hyperparams it was exported
    with: without both, nothing ties ``hyperparams.yaml`` to the weights, and the folder is refused)."""
    folder = Path(folder)
    hp = read_hyperparams(folder)
    ts = folder / "model.ts"
    if not ts.exists():
        raise ModelFolderError(f"{ts} is missing")
    carried = check_against_torchscript(hp, folder)
    if carried is None and not (folder / "model.pt").exists():
        raise ModelFolderError(f"{ts} carries no copy of hyperparams.yaml and {folder / 'model.pt'} is missing: "
                               f"nothing checks {folder / 'hyperparams.yaml'} against the weights")
    dev = resolve_device(device)
    model = _torchscript_model(folder, dev)
    out = probe_forward(model, hp, folder, dev, "model.ts")
    if (folder / "model.pt").exists():
        check_copies_agree(folder, probe_forward(_eager_model(folder, hp, dev), hp, folder, dev, "model.pt"), out)
    return model


def plain(value: Any) -> Any:
    """numpy scalars/arrays and tuples -> plain Python types (YAML-safe)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def build_model(hparams: dict[str, Any], load_init: bool | None = None) -> SingerModel:
    """Rebuild a (randomly initialised) :class:`SingerModel` from a hyperparams mapping.

    Uses ``frontend``, ``normalization``, ``encoder`` and ``head`` (and ``train.view_batching``); load
    ``model.pt`` into the result for the trained weights (:func:`load_model_folder` does both). With
    ``encoder.init: published:<path>`` and ``load_init``, the encoder starts from that published
    checkpoint (:func:`singer_ssl.encoders.load_published_into`) instead of a random initialisation.
    ``load_init=None`` (default): only for hyperparams of a run being set up, i.e. without the
    ``training`` record a finished model folder carries (so the embed stage's random-init baseline of
    such a folder stays random and never needs the checkpoint file).
    """
    if load_init is None:
        load_init = "training" not in hparams
    for key in ("frontend", "encoder", "head"):
        if key not in hparams:
            raise ConfigError(f"hyperparams lack the {key!r} section")
    enc = hparams["encoder"]
    encoder = encoders.get(enc["name"], **dict(enc.get("kwargs") or {}))
    if load_init and enc.get("init"):
        encoders.load_published_into(encoder, enc["name"], enc["init"])
    frontend = LogMel.from_attrs(hparams["frontend"]) if encoder.input_kind == "logmel" else None
    head_cfg = hparams["head"]
    head = make_head(head_cfg.get("kind", "silu_linear"), int(encoder.embedding_dim),
                     int(head_cfg.get("dim", 128)), int(head_cfg.get("hidden", 512)), bool(head_cfg.get("l2", True)))
    norm = hparams.get("normalization") or {}
    view_batching = (hparams.get("train") or {}).get("view_batching", "joint")
    return SingerModel(frontend, encoder, head, float(norm.get("mean", 0.0)), float(norm.get("std", 1.0)),
                       str(norm.get("scaling", "dataset_std")), float(norm.get("gain", 1.0)), view_batching,
                       float(norm.get("offset", 0.0)))


def load_model_folder(folder: str | os.PathLike, device: str | torch.device = "cpu"
                      ) -> tuple[SingerModel, dict[str, Any]]:
    """Load ``hyperparams.yaml`` + ``model.pt`` of a model folder -> (model in eval mode, hparams).

    :func:`load_eager` names the culprit when a file is missing or the weights do not match the
    hyperparameters.
    """
    return load_eager(folder, device), read_hyperparams(folder)


# ----------------------------------------------------------------------------------------------
# export


def to_torchscript(model: SingerModel, sample_rate: int, example_seconds: float = 2.0,
                   atol: float = 1e-4) -> torch.jit.ScriptModule:
    """TorchScript of ``model.forward`` (waveform -> embedding), checked against eager on CPU.

    ``torch.jit.script`` is tried first (any input length); if the encoder is not scriptable the
    model is traced instead. Either way the exported module must reproduce the eager embeddings
    on two input lengths (``example_seconds`` and 1.5 x that), else ``RuntimeError``.
    """
    model = copy.deepcopy(model).cpu().eval()
    n = max(int(round(example_seconds * sample_rate)), 4096)
    gen = torch.Generator().manual_seed(0)
    examples = [0.1 * torch.randn(2, n, generator=gen), 0.1 * torch.randn(2, int(1.5 * n), generator=gen)]
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; model.ts is in the contract
            warnings.simplefilter("ignore", DeprecationWarning)
            exported: torch.jit.ScriptModule = torch.jit.script(model)
        how = "scripted"
    except Exception as script_error:  # noqa: BLE001 - fall back to tracing, reported if that fails too
        try:
            with torch.no_grad():
                exported = torch.jit.trace(model, examples[0], check_trace=False)
            how = "traced"
            warnings.warn(f"encoder is not scriptable ({str(script_error).splitlines()[0]}); model.ts is traced",
                          stacklevel=2)
        except Exception as trace_error:
            raise RuntimeError(f"cannot export the model to TorchScript: script failed ({script_error}); "
                               f"trace failed ({trace_error})") from trace_error
    with torch.no_grad():
        for x in examples:
            ref = model(x)
            got = exported(x)
            scale = max(1.0, float(ref.abs().max()))
            if got.shape != ref.shape or not torch.allclose(got, ref, atol=atol * scale, rtol=1e-4):
                raise RuntimeError(f"{how} TorchScript model differs from the eager model on input {tuple(x.shape)}"
                                   f" (max abs diff {float((got - ref).abs().max()):.3g})")
    return exported


_FINAL = re.compile(r"^\s+\w+ : Final\[")  # a class constant line of TorchScript's serialized code
_WRITER_RECORDS = ("version", ".data/version", ".data/serialization_id")  # written by the archive writer


def _sorted_constants(code: str) -> str:
    """Sort each run of ``name : Final[...] = value`` lines of serialized TorchScript code: torch lists
    a class's constants in the order of a Python ``set`` (string hashes: a different order per process);
    constants are looked up by name, so their order carries no meaning."""
    out: list[str] = []
    run: list[str] = []
    for line in code.splitlines(keepends=True):
        if _FINAL.match(line):
            run.append(line)
            continue
        out.extend(sorted(run))
        run = []
        out.append(line)
    return "".join(out + sorted(run))


def save_torchscript(module: torch.jit.ScriptModule, path: str | os.PathLike,
                     extra_files: dict[str, str] | None = None) -> None:
    """``torch.jit.save`` made byte-reproducible: the archive is rewritten record by record (sorted
    names) through torch's own archive writer (aligned records, fixed timestamps, archive folder named
    after ``path``), without the ``*.debug_pkl`` records (source ranges with the absolute paths of the
    Python files; error messages then point at the serialized code instead) and with sorted class
    constants (:func:`_sorted_constants`); the serialization id is recomputed from the content.
    ``extra_files`` (name -> text) are stored as ``extra/<name>``; read them back with
    ``torch.jit.load(path, _extra_files={name: ""})``."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; model.ts is in the contract
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(module, buffer, _extra_files=extra_files or {})
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as archive:
        names = archive.namelist()
        prefix = names[0].split("/", 1)[0] + "/"
        records = {name[len(prefix):]: archive.read(name) for name in names}
    writer = torch._C.PyTorchFileWriter(str(path))  # what torch.save/jit.save write through
    writer.set_min_version(int(records.get(".data/version", records.get("version", b"0"))))
    for name in sorted(records):
        if name in _WRITER_RECORDS or name.endswith(".debug_pkl"):
            continue
        data = records[name]
        if name.startswith("code/") and name.endswith(".py"):
            data = _sorted_constants(data.decode("utf-8")).encode("utf-8")
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    del writer  # closes the file


def torchscript_hyperparams(path: str | os.PathLike) -> dict[str, Any]:
    """The hyperparams stored inside a ``model.ts`` (e.g. ``["frontend"]["sample_rate"]``, in Hz).

    The same as ``yaml.safe_load(files["hyperparams.yaml"])`` after
    ``torch.jit.load(path, _extra_files=files)`` with ``files = {"hyperparams.yaml": ""}``;
    :class:`ModelFolderError` when the file carries none (written before they were stored)."""
    files = {"hyperparams.yaml": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    hp = yaml.safe_load(files["hyperparams.yaml"] or "null")
    if not isinstance(hp, dict):
        raise ModelFolderError(f"{path} carries no hyperparams.yaml")
    return hp


def read_threshold(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's ``threshold.json`` (``eer_threshold`` a finite float), or None when there is none.

    Raises :class:`ModelFolderError` (one line naming the file) when it exists but is malformed.
    """
    import json

    path = Path(folder) / THRESHOLD_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        value = float(data["eer_threshold"])
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFolderError(f"{path}: expected a JSON object with a numeric eer_threshold ({e})") from None
    if not math.isfinite(value):
        raise ModelFolderError(f"{path}: eer_threshold is {value}")
    return {**data, "eer_threshold": value}


def read_cohort(folder: str | os.PathLike) -> tuple[Any, Any] | None:
    """``(cohort (C, D), mean (D,))`` float64 arrays of the folder's ``cohort.json``, or None when there is none.

    Raises :class:`ModelFolderError` (one line naming the file) when it is malformed or not finite.
    """
    import json

    import numpy as np

    path = Path(folder) / COHORT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        cohort = np.asarray(data["cohort"], dtype=np.float64)
        mean = np.asarray(data["mean"], dtype=np.float64)
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFolderError(f"{path}: expected a JSON object with a cohort matrix and a mean vector ({e})") from None
    if cohort.ndim != 2 or len(cohort) < 2 or mean.shape != (cohort.shape[1],):
        raise ModelFolderError(f"{path}: cohort {cohort.shape} and mean {mean.shape} must be (C >= 2, D) and (D,)")
    if not (np.isfinite(cohort).all() and np.isfinite(mean).all()):
        raise ModelFolderError(f"{path}: the cohort holds NaN/inf values")
    return cohort, mean


def save_model_folder(model: SingerModel, hparams: dict[str, Any], out_dir: str | os.PathLike,
                      threshold: dict[str, Any] | None = None, cohort: dict[str, Any] | None = None) -> Path:
    """Write ``model.pt``, ``model.ts`` and ``hyperparams.yaml`` (and ``threshold.json`` / ``cohort.json`` when
    ``threshold`` / ``cohort`` is given) into ``out_dir`` atomically.

    The folder is assembled in a temporary sibling and renamed over ``out_dir`` only when all the
    files were written (an existing folder is replaced as a whole). The same model and hyperparams
    give the same bytes (see :func:`save_torchscript`); ``threshold`` changes neither ``model.pt``
    nor ``model.ts``.
    """
    out_dir = Path(out_dir)
    sample_rate = int(hparams["frontend"]["sample_rate"])
    seconds = float(hparams.get("segment_seconds") or 2.0)
    cpu_model = copy.deepcopy(model).cpu().eval()
    scripted = to_torchscript(cpu_model, sample_rate, example_seconds=min(seconds, 4.0))
    text = yaml.safe_dump(plain(hparams), sort_keys=False)
    with atomic_path(out_dir, is_dir=True) as tmp:
        torch.save(cpu_model.state_dict(), tmp / "model.pt")
        save_torchscript(scripted, tmp / "model.ts", {"hyperparams.yaml": text})
        (tmp / "hyperparams.yaml").write_text(text, encoding="utf-8")
        if threshold is not None:
            import json

            (tmp / THRESHOLD_FILE).write_text(json.dumps(plain(threshold), indent=2) + "\n", encoding="utf-8")
        if cohort is not None:
            import json

            (tmp / COHORT_FILE).write_text(json.dumps(plain(cohort)) + "\n", encoding="utf-8")
    return out_dir
