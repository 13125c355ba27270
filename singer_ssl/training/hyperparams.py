"""``hyperparams.yaml`` of a trained model, built from the train stage's parameters (schema:
:mod:`singer_ssl.model.folder`)."""

from __future__ import annotations

from typing import Any

import singer_ssl
from singer_ssl import encoders
from singer_ssl.core.errors import ConfigError
from singer_ssl.model.folder import FRONTEND_FIXED, FRONTEND_KEYS, plain


def encoder_kwargs(params: dict[str, Any], n_mels: int | None = None) -> dict[str, Any]:
    """Constructor kwargs of ``params['encoder']`` from ``params['encoders'][name]``.

    ``n_mels`` is filled in from the front end for the encoders whose layer sizes depend on the
    number of mel bands (``encoders.get_for_features``' rule); a contradicting explicit value raises
    ConfigError.
    """
    name = params["encoder"]
    kwargs = dict((params.get("encoders") or {}).get(name) or {})
    if n_mels is not None and "n_mels" in encoders.accepted_params(name):
        if "n_mels" in kwargs and int(kwargs["n_mels"]) != int(n_mels):
            raise ConfigError(f"encoders.{name}.n_mels={kwargs['n_mels']} contradicts the features' n_mels={n_mels}")
        kwargs["n_mels"] = int(n_mels)
    return kwargs


def hyperparams_from_params(params: dict[str, Any], feature_attrs: dict[str, Any], mean: float, std: float,
                            segment_seconds: float | None = None,
                            datasets: list[str] | None = None) -> dict[str, Any]:
    """Build the ``hyperparams.yaml`` mapping (schema in the module docstring).

    Args:
        params: the whole ``params.yaml`` tree (``loss``, ``encoder``, ``losses``, ``encoders``,
            ``head``, ``augment``, ``train``, ``seed``).
        feature_attrs: attrs of the training features HDF5 (every front-end parameter).
        mean, std: normalisation scalars (pooled over the training features).
        segment_seconds: training segment length in seconds (the embedding window).
        datasets: names of the training datasets.
    """
    missing = [k for k in FRONTEND_KEYS if k not in feature_attrs]
    if missing:
        raise ConfigError(f"feature attrs lack front-end parameter(s) {missing}; re-run the features stage")
    frontend = {k: plain(feature_attrs[k]) for k in FRONTEND_KEYS}
    for k, v in FRONTEND_FIXED.items():
        frontend[k] = plain(feature_attrs.get(k, v))
    if frontend["fmax"] is not None and float(frontend["fmax"]) <= 0:
        frontend["fmax"] = None  # HDF5 attrs cannot hold None; writers may store 0 / -1 for "sr / 2"
    name = params["encoder"]
    kwargs = encoder_kwargs(params, frontend["n_mels"])
    encoder = encoders.get(name, **kwargs)
    head = dict(params.get("head") or {})
    loss_name = params["loss"]
    loss_params = dict((params.get("losses") or {}).get(loss_name) or {})
    batch = loss_params.pop("batch", None)
    return {
        "library": {"name": "singer-ssl", "version": singer_ssl.__version__},
        "frontend": frontend,
        "normalization": {"mean": float(mean), "std": float(std)},
        "encoder": {"name": name, "kwargs": plain(kwargs), "input_kind": str(encoder.input_kind),
                    "embedding_dim": int(encoder.embedding_dim)},
        "head": {"kind": head.get("kind", "silu_linear"), "in_dim": int(encoder.embedding_dim),
                 "dim": int(head.get("dim", 128)), "hidden": int(head.get("hidden", 512))},
        "loss": {"name": loss_name, "kwargs": plain(loss_params), "batch": plain(batch)},
        "segment_seconds": None if segment_seconds is None else float(segment_seconds),
        "crop_seconds": plain((params.get("augment") or {}).get("crop_seconds")),
        "seed": plain(params.get("seed")),
        "augment": plain(params.get("augment")),
        "train": plain(params.get("train")),
        "datasets": list(datasets or []),
    }
