"""Registry of the SSL objectives: ``get(name, **params)`` builds one, ``NAMES`` lists them.

Each objective lives in its own module (formula, reference and shapes in its docstring) and is an
:class:`~singer_ssl.losses.base.Objective`: ``forward(z1, z2, labels=None, **kw) -> scalar`` on the
two views' projections (B, D), class attributes ``needs_labels``/``needs_teacher``/``batch_defaults``.
Adding a method = one module + one line in ``_REGISTRY``.

Parameters come from ``params.yaml`` ``losses.<name>``. Two keys are not constructor arguments:

- ``batch``: options for the batch sampler (GE2E's singers × utterances, SemiSupCon's p_s/b_s),
  read with :func:`sampler_config`; ``get`` drops it.
- ``dim``: the projection dimension, passed by the trainer to every objective
  (``get(name, dim=head_dim, **params)``); used by those whose state depends on it (BYOL's
  predictor, COLA's W), ignored by the others.

Trainer checklist: optimise ``loss.parameters()`` together with the model (BYOL predictor, COLA W,
GE2E w and b); pass ``labels`` when ``needs_labels``; keep an EMA teacher and pass
``targets=(t1, t2)`` when ``needs_teacher`` (see :mod:`singer_ssl.losses.byol`); under DDP multiply
the loss by ``distributed.world_size()`` (see :mod:`singer_ssl.losses.distributed`).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from singer_ssl.core.errors import ConfigError, choice_error
from singer_ssl.losses import distributed
from singer_ssl.losses.base import Objective
from singer_ssl.losses.byol import BYOLLoss, ema_update, tau_schedule
from singer_ssl.losses.cola import COLALoss
from singer_ssl.losses.contrastive import ContrastiveLoss
from singer_ssl.losses.contrastive_vc import ContrastiveVCLoss
from singer_ssl.losses.dcl import DCLLoss
from singer_ssl.losses.ge2e import GE2ELoss
from singer_ssl.losses.ntxent import NTXentLoss
from singer_ssl.losses.semisupcon import SemiSupConLoss, select_labelled, semisup_batch_counts
from singer_ssl.losses.supcon import SupConLoss
from singer_ssl.losses.uniformity import UniformityLoss
from singer_ssl.losses.vicreg import VICRegLoss

_REGISTRY: dict[str, type[Objective]] = {
    "contrastive": ContrastiveLoss,
    "ntxent": NTXentLoss,
    "dcl": DCLLoss,
    "contrastive-vc": ContrastiveVCLoss,
    "uniformity": UniformityLoss,
    "vicreg": VICRegLoss,
    "byol": BYOLLoss,
    "cola": COLALoss,
    "ge2e": GE2ELoss,
    "supcon": SupConLoss,
    "semisupcon": SemiSupConLoss,
}

NAMES: tuple[str, ...] = tuple(_REGISTRY)

__all__ = [
    "NAMES",
    "Objective",
    "accepted_params",
    "distributed",
    "ema_update",
    "get",
    "objective_class",
    "sampler_config",
    "select_labelled",
    "semisup_batch_counts",
    "tau_schedule",
]


def objective_class(name: str) -> type[Objective]:
    """The class registered under ``name``; ConfigError listing the valid names otherwise."""
    if name not in _REGISTRY:
        raise choice_error("loss", name, NAMES)
    return _REGISTRY[name]


def accepted_params(name: str) -> tuple[str, ...]:
    """Constructor keyword names of objective ``name`` (what ``losses.<name>`` may set, plus ``batch``)."""
    sig = inspect.signature(objective_class(name).__init__)
    return tuple(p for p in sig.parameters if p != "self")


def get(name: str, **params: Any) -> nn.Module:
    """Build objective ``name`` from its ``params.yaml`` mapping.

    ``batch`` (sampler options) is dropped; ``dim`` is passed only to objectives that take it.
    Raises ConfigError for an unknown name or an unknown parameter (naming it and the accepted ones)
    and for invalid values.
    """
    cls = objective_class(name)
    accepted = accepted_params(name)
    kwargs = {k: v for k, v in params.items() if k != "batch"}
    if "dim" in kwargs and "dim" not in accepted:
        kwargs.pop("dim")
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(
            f"losses.{name}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted) or '(none)'}, plus 'batch' for the sampler"
        )
    return cls(**kwargs)


def sampler_config(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """The batch-sampler options of objective ``name``: ``params['batch']`` over its defaults.

    Returns ``{}`` for objectives that work with any batch of items. Raises ConfigError when a
    ``batch`` mapping is given to such an objective, for unknown keys, or for invalid values.
    """
    cls = objective_class(name)
    batch = (params or {}).get("batch") or {}
    if not isinstance(batch, dict):
        raise ConfigError(f"losses.{name}.batch: expected a mapping, got {type(batch).__name__}")
    defaults = dict(cls.batch_defaults)
    if not defaults:
        if batch:
            raise ConfigError(f"losses.{name}.batch: {name} uses plain batches and takes no sampler options")
        return {}
    unknown = sorted(set(batch) - set(defaults))
    if unknown:
        raise ConfigError(
            f"losses.{name}.batch: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(defaults)}"
        )
    merged = {**defaults, **batch}
    cls.validate_batch(merged)
    return merged
