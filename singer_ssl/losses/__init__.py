"""Registry of the SSL objectives: ``NAMES``, :func:`spec` (resolve ``loss`` + ``losses.<loss>``) and
:func:`get` (build one).

Each objective lives in its own module (formula, reference and shapes in its docstring) and is an
:class:`~singer_ssl.losses.base.Objective`: ``forward(z1, z2, labels=None, **kw) -> scalar`` on the
two views' projections (B, D), with the declarations the training loop reads (``needs_labels``,
``sampler`` + ``batch_defaults``, ``momentum_tau``, ``selection_metric``; see
:mod:`singer_ssl.losses.base`). Adding a method = one module + one line in ``_REGISTRY``; the loop
does not change.

From ``params.yaml`` to an objective, in one place (the wespeaker ``<thing>`` + ``<thing>_args``
pattern): ``spec(name, section)`` checks the name (once), the keys of ``losses.<name>`` and its
``batch`` sampler options -> :class:`ObjectiveSpec`; ``ObjectiveSpec.build(dim)`` constructs it (once).
Two keys of ``losses.<name>`` are not constructor arguments:

- ``batch``: options of the batch sampler the objective declares (GE2E's singers × utterances,
  SemiSupCon's p_s/b_s), merged over ``batch_defaults`` into ``ObjectiveSpec.batch``.
- ``dim``: the projection dimension, passed by the trainer to the objectives that take it (BYOL's
  predictor, COLA's W); not settable in ``losses.<name>``.

The objectives raise plain ``ValueError``/``TypeError``; this registry turns them into a
:class:`~singer_ssl.core.errors.ConfigError` naming ``losses.<name>`` and the key. Under DDP the
trainer multiplies the loss by ``distributed.world_size()`` (see :mod:`singer_ssl.losses.distributed`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from singer_ssl.core.errors import ConfigError, choice_error
from singer_ssl.losses import distributed
from singer_ssl.losses.base import SAMPLERS, SELECTION_METRICS, Objective
from singer_ssl.losses.byol import BYOLLoss
from singer_ssl.losses.cola import COLALoss
from singer_ssl.losses.contrastive import ContrastiveLoss
from singer_ssl.losses.contrastive_vc import ContrastiveVCLoss
from singer_ssl.losses.dcl import DCLLoss
from singer_ssl.losses.ge2e import GE2ELoss
from singer_ssl.losses.momentum import ema_update, momentum_copy, tau_schedule
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
    "SAMPLERS",
    "SELECTION_METRICS",
    "Objective",
    "ObjectiveSpec",
    "accepted_params",
    "distributed",
    "ema_update",
    "get",
    "momentum_copy",
    "objective_class",
    "select_labelled",
    "semisup_batch_counts",
    "spec",
    "tau_schedule",
]


def objective_class(name: str) -> type[Objective]:
    """The class registered under ``name``; ConfigError listing the valid names otherwise."""
    if name not in _REGISTRY:
        raise choice_error("loss", name, NAMES)
    return _REGISTRY[name]


def accepted_params(name: str) -> tuple[str, ...]:
    """Constructor keyword names of objective ``name`` (what ``losses.<name>`` may set, plus ``batch``)."""
    return _accepted(objective_class(name))


def _accepted(cls: type[Objective]) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(cls.__init__).parameters if p != "self")


def _message(err: Exception, cls: type[Objective]) -> str:
    """The objective's own message without its ``<ClassName>: `` prefix (the caller names the section)."""
    return str(err).removeprefix(f"{cls.__name__}: ")


@dataclass(frozen=True)
class ObjectiveSpec:
    """An objective resolved from ``loss`` and ``losses.<loss>``: name and keys checked, not built yet.

    Attributes:
        name: registry name (``loss``).
        cls: the objective's class; its declarations (``sampler``, ``needs_labels``, ``selection_metric``)
            are what the trainer plans with before anything is built.
        kwargs: constructor arguments (``losses.<name>`` without ``batch``).
        batch: sampler options, ``losses.<name>.batch`` over the class's ``batch_defaults`` (``{}`` for
            objectives that take any batch of items).
        batch_given: ``losses.<name>.batch`` as written (``None`` when absent).
    """

    name: str
    cls: type[Objective]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    batch: Mapping[str, Any] = field(default_factory=dict)
    batch_given: Mapping[str, Any] | None = None

    @property
    def sampler(self) -> str:
        return self.cls.sampler

    @property
    def needs_labels(self) -> bool:
        return bool(self.cls.needs_labels)

    @property
    def selection_metric(self) -> str:
        return self.cls.selection_metric

    def build(self, dim: int | None = None) -> Objective:
        """Construct the objective (``dim`` = projection dimension, passed where the constructor takes it).

        A ``ValueError``/``TypeError`` of the constructor becomes a ConfigError naming ``losses.<name>``.
        """
        kwargs = dict(self.kwargs)
        if dim is not None and "dim" in _accepted(self.cls):
            kwargs["dim"] = dim
        try:
            return self.cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"losses.{self.name}: {_message(err, self.cls)}") from err


def spec(name: str, section: Mapping[str, Any] | None = None) -> ObjectiveSpec:
    """Resolve objective ``name`` with its ``params.yaml`` mapping ``losses.<name>`` -> :class:`ObjectiveSpec`.

    Raises ConfigError for an unknown name (listing the valid ones), a section that is not a mapping, an
    unknown key (naming it and the accepted ones), and invalid ``batch`` options.
    """
    cls = objective_class(name)
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"losses.{name}: expected a mapping of parameters, got {section!r}")
    accepted = _accepted(cls)
    kwargs = {k: v for k, v in section.items() if k != "batch"}
    unknown = sorted(set(kwargs) - (set(accepted) - {"dim"}))
    if unknown:
        raise ConfigError(
            f"losses.{name}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(a for a in accepted if a != 'dim') or '(none)'}, plus 'batch' for the sampler"
        )
    given = section.get("batch")
    return ObjectiveSpec(name, cls, kwargs, _batch_options(name, cls, given), None if given is None else dict(given))


def _batch_options(name: str, cls: type[Objective], batch: Any) -> dict[str, Any]:
    """``losses.<name>.batch`` over the class's ``batch_defaults``, checked by ``cls.validate_batch``."""
    where = f"losses.{name}.batch"
    batch = batch or {}
    if not isinstance(batch, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(batch).__name__}")
    defaults = dict(cls.batch_defaults)
    if not defaults:
        if batch:
            raise ConfigError(f"{where}: {name} uses plain batches and takes no sampler options")
        return {}
    unknown = sorted(set(batch) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(defaults)}")
    merged = {**defaults, **batch}
    try:
        cls.validate_batch(merged)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {str(err).removeprefix(f'{name}: ')}") from err
    return merged


def get(name: str, **params: Any) -> Objective:
    """Build objective ``name`` from its ``params.yaml`` mapping (``batch`` is checked, not passed;
    ``dim`` goes to the objectives that take it). Errors: see :func:`spec` and :meth:`ObjectiveSpec.build`."""
    dim = params.pop("dim", None)
    return spec(name, params).build(dim)
