"""``hyperparams.yaml`` of a trained model, written from the :class:`~singer_ssl.training.config.TrainConfig`
(schema: :mod:`singer_ssl.model.folder`)."""

from __future__ import annotations

from typing import Any

import singer_ssl
from singer_ssl import encoders
from singer_ssl.core.errors import ConfigError
from singer_ssl.model.folder import FRONTEND_FIXED, FRONTEND_KEYS, plain
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


def hyperparams(cfg: TrainConfig, feature_attrs: dict[str, Any], mean: float, std: float,
                segment_seconds: float | None = None, embedding_dim: int | None = None) -> dict[str, Any]:
    """Build the ``hyperparams.yaml`` mapping (schema in :mod:`singer_ssl.model.folder`).

    Args:
        cfg: the validated train configuration.
        feature_attrs: attrs of the training features HDF5 (every front-end parameter).
        mean, std: normalisation scalars (pooled over the training features).
        segment_seconds: training segment length in seconds (the embedding window).
        embedding_dim: the built encoder's output size D (``encoder.embedding_dim`` and ``head.in_dim``);
            ``None`` before the model exists (:func:`singer_ssl.model.folder.build_model` does not need it).

    The encoder's ``n_mels`` is filled in from the front end where its layers depend on it
    (:func:`singer_ssl.encoders.kwargs_for_features`; a contradicting explicit value is a ConfigError).
    """
    frontend = frontend_from_attrs(feature_attrs)
    kwargs = encoders.kwargs_for_features(cfg.encoder, frontend["n_mels"], cfg.encoder_kwargs)
    dim = None if embedding_dim is None else int(embedding_dim)
    objective = cfg.objective
    return {
        "library": {"name": "singer-ssl", "version": singer_ssl.__version__},
        "frontend": frontend,
        "normalization": {"mean": float(mean), "std": float(std)},
        "encoder": {"name": cfg.encoder, "kwargs": plain(kwargs), "input_kind": cfg.encoder_kind,
                    "embedding_dim": dim},
        "head": {"kind": cfg.head.kind, "in_dim": dim, "dim": cfg.head.dim, "hidden": cfg.head.hidden},
        "loss": {"name": objective.name, "kwargs": plain(dict(objective.kwargs)),
                 "batch": plain(objective.batch_given)},
        "segment_seconds": None if segment_seconds is None else float(segment_seconds),
        "crop_seconds": plain(cfg.augment.crop_seconds),
        "seed": cfg.seed,
        "augment": plain(cfg.augment_section()),
        "train": plain(cfg.train_section()),
        "datasets": list(cfg.datasets),
    }
