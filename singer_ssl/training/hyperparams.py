"""``hyperparams.yaml`` of a trained model, written from the :class:`~singer_ssl.training.config.TrainConfig`
(schema: :mod:`singer_ssl.model.folder`)."""

from __future__ import annotations

from typing import Any

import singer_ssl
from singer_ssl import encoders
from singer_ssl.core.errors import ConfigError
from singer_ssl.model.folder import FRONTEND_FIXED, FRONTEND_KEYS, plain
from singer_ssl.model.singer_model import OFFSET_SCALINGS
from singer_ssl.training.config import TrainConfig


def frontend_from_attrs(feature_attrs: dict[str, Any]) -> dict[str, Any]:
    """The ``frontend`` mapping from the training features' HDF5 attrs (every front-end parameter)."""
    missing = [k for k in FRONTEND_KEYS if k not in feature_attrs]
    if missing:
        raise ConfigError(f"feature attrs lack front-end parameter(s) {missing}; re-run the features stage")
    frontend = {k: plain(feature_attrs[k]) for k in FRONTEND_KEYS}
    for k, v in FRONTEND_FIXED.items():
        frontend[k] = plain(feature_attrs.get(k, v))
    if frontend["fmax"] is not None and float(frontend["fmax"]) <= 0:
        frontend["fmax"] = None  # HDF5 attrs cannot hold None; writers may store 0 / -1 for "sr / 2"
    return frontend


def normalization(cfg: TrainConfig, init: str | None, mean: float, std: float, offset: float = 0.0
                  ) -> dict[str, Any]:
    """``normalization``: the dataset scalars, plus ``scaling``/``gain`` when they are not the defaults and
    ``offset`` (:func:`singer_ssl.model.singer_model.centre_offset` of the training features) under ``item_peak``
    and ``item_loud``.

    ``scaling`` is ``train.input_scaling``; when the encoder starts from a published checkpoint whose input
    convention standardises (:data:`singer_ssl.encoders.PUBLISHED_INPUT`), ``gain`` is that convention's
    gain (Fonseca et al. 2021: sqrt(N) = 3.66e4) under ``dataset_std``, ``item_mean`` and ``item_peak`` alike, and
    ``none`` (raw log-mel, which those weights were never fed) becomes ``dataset_std``: the weights get the
    input they were trained on whatever ``train.input_scaling`` says (:func:`published_scaling`).
    """
    out: dict[str, Any] = {"mean": float(mean), "std": float(std)}
    scaling, gain = published_scaling(cfg, init)
    if scaling != "dataset_std":
        out["scaling"] = scaling
    if gain != 1.0:
        out["gain"] = float(gain)
    if scaling in OFFSET_SCALINGS:
        out["offset"] = float(offset)
    return out


def published_scaling(cfg: TrainConfig, init: str | None) -> tuple[str, float]:
    """(input scaling, gain) of the model: ``train.input_scaling`` with gain 1, unless ``init`` names a
    published checkpoint whose recorded convention standardises its input (then ``none`` becomes
    ``dataset_std`` and the gain is the convention's)."""
    scaling = cfg.train.input_scaling
    convention = None if init is None else encoders.published_convention(cfg.encoder, encoders.init_path(
        cfg.encoder, init))
    if convention is None or not convention.standardize:
        return scaling, 1.0
    return ("dataset_std" if scaling == "none" else scaling), float(convention.gain)


def head_section(cfg: TrainConfig, dim: int | None) -> dict[str, Any]:
    """``head``: kind, sizes, and ``l2: false`` when the head leaves projections raw."""
    out: dict[str, Any] = {"kind": cfg.head.kind, "in_dim": dim, "dim": cfg.head.dim, "hidden": cfg.head.hidden}
    if not cfg.head.l2:
        out["l2"] = False
    return out


def hyperparams(cfg: TrainConfig, feature_attrs: dict[str, Any], mean: float, std: float,
                segment_seconds: float | None = None, embedding_dim: int | None = None,
                offset: float = 0.0) -> dict[str, Any]:
    """Build the ``hyperparams.yaml`` mapping (schema in :mod:`singer_ssl.model.folder`).

    Args:
        cfg: the validated train configuration.
        feature_attrs: attrs of the training features HDF5 (every front-end parameter).
        mean, std: normalisation scalars (pooled over the training features).
        offset: the item-centring offset (:func:`singer_ssl.model.singer_model.centre_offset`), stored under
            ``item_peak`` and ``item_loud``.
        segment_seconds: training segment length in seconds (the embedding window).
        embedding_dim: the built encoder's output size D (``encoder.embedding_dim`` and ``head.in_dim``);
            ``None`` before the model exists (:func:`singer_ssl.model.folder.build_model` does not need it).

    The encoder's ``n_mels`` is filled in from the front end where its layers depend on it
    (:func:`singer_ssl.encoders.kwargs_for_features`; a contradicting explicit value is a ConfigError).
    """
    frontend = frontend_from_attrs(feature_attrs)
    kwargs = encoders.kwargs_for_features(cfg.encoder, frontend["n_mels"], cfg.encoder_kwargs)
    init = kwargs.pop(encoders.INIT_KEY, None)
    dim = None if embedding_dim is None else int(embedding_dim)
    objective = cfg.objective
    encoder = {"name": cfg.encoder, "kwargs": plain(kwargs), "input_kind": cfg.encoder_kind, "embedding_dim": dim}
    if init is not None:
        encoder["init"] = str(init)
    return {
        "library": {"name": "singer-ssl", "version": singer_ssl.__version__},
        "frontend": frontend,
        "normalization": normalization(cfg, init, mean, std, offset),
        "encoder": encoder,
        "head": head_section(cfg, dim),
        "loss": {"name": objective.name, "kwargs": plain(dict(objective.kwargs)),
                 "batch": plain(objective.batch_given)},
        "segment_seconds": None if segment_seconds is None else float(segment_seconds),
        "crop_seconds": plain(cfg.augment.crop_seconds),
        "seed": cfg.seed,
        "augment": plain(cfg.augment_section()),
        "train": plain(cfg.train_section()),
        "datasets": list(cfg.datasets),
    }
