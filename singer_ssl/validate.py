"""Validate the whole ``params.yaml`` at once, before any stage does work (the ``check`` stage of dvc.yaml).

Each stage validates its own sections when it runs (``<Stage>Config.from_params``), but DVC runs a stage only
when one of its declared params changed: a typo such as ``train.lrr`` is no stage's param, so no stage would
re-run and no config would see it. :func:`validate_params` walks every section instead:

1. the top level: only :data:`singer_ssl.core.params.TOP_LEVEL_KEYS`;
2. ``datasets``: both roles non-empty, no dataset in both (by name or by folder);
3. every stage's typed config, for every dataset it runs on: corpus; scan, segment, features (each dataset);
   trials, embed, evaluate (each test dataset); train;
4. every entry of ``losses`` and ``encoders`` (not only the selected one): a registered name with known keys.

The first problem is a one-line :class:`~singer_ssl.core.errors.ConfigError` naming the dotted key and the valid
names. It lives here, not in :mod:`singer_ssl.core.params`, because it needs every stage's config class and
``singer_ssl.core`` imports nothing above itself.
"""

from __future__ import annotations

import os
from typing import Any

from singer_ssl import encoders, losses
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.params import check_roles, check_top_level, dataset_items
from singer_ssl.data.builtin_corpus import CorpusConfig
from singer_ssl.embed import EmbedConfig
from singer_ssl.evaluation.run import EvaluateConfig
from singer_ssl.features import FeaturesConfig
from singer_ssl.scan import ScanConfig
from singer_ssl.segment import SegmentConfig
from singer_ssl.training.config import TrainConfig
from singer_ssl.trials import TrialsConfig

__all__ = ["validate_params"]


def _check_registry_sections(params: dict[str, Any]) -> None:
    """Every ``losses.<name>`` / ``encoders.<name>`` entry: a registered name whose keys that class accepts."""
    for key, what, names in (("losses", "loss", losses.NAMES), ("encoders", "encoder", encoders.NAMES)):
        section = params.get(key) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{key}: expected a mapping {{name: parameters}}, got {section!r}")
        for name, kwargs in section.items():
            if name not in names:
                raise ConfigError(f"{key}.{name}: unknown {what}; valid names: {', '.join(sorted(names))}")
            if kwargs is not None and not isinstance(kwargs, dict):
                raise ConfigError(f"{key}.{name}: expected a mapping of parameters, got {kwargs!r}")
            if key == "losses":
                losses.spec(name, kwargs)
            else:
                encoders.check_kwargs(name, kwargs or {})


def validate_params(params: dict[str, Any], base: str | os.PathLike = ".") -> None:
    """Check every section of a params tree (``params.yaml`` as loaded, ``-S`` overrides applied); the first
    problem is a one-line ConfigError naming its dotted key and the valid choices. ``base``: the folder that
    relative dataset paths are resolved against (the repository root). Reads no data and writes nothing.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"params: expected a mapping at the top level, got {params!r}")
    check_top_level(params)
    check_roles(params, base)
    CorpusConfig.from_params(params)
    for name, role, _ in dataset_items(params):
        ScanConfig.from_params(params, name)
        SegmentConfig.from_params(params, name)
        FeaturesConfig.from_params(params, name)
        if role == "test":
            TrialsConfig.from_params(params, name)
            EmbedConfig.from_params(params, name)
            EvaluateConfig.from_params(params, name)
    _check_registry_sections(params)
    TrainConfig.from_params(params)
