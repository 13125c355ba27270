"""The train stage's configuration: :class:`TrainConfig`, the only reader of its ``params.yaml`` sections.

``TrainConfig.from_params(params)`` reads ``seed``, ``loss``, ``losses.<loss>``, ``encoder``,
``encoders.<encoder>``, ``head``, ``augment``, ``train`` and ``datasets.train`` (nothing else: another
stage's section never makes training fail) and checks everything that needs no data — names, keys,
types, ranges, combinations — before any heavy work; a problem is one line naming the parameter
(``train.batch_size: expected an integer >= 2, got 1``). An objective whose sampler fixes the batch
(GE2E: ``losses.ge2e.batch.singers x utterances``) defines its own batch size; ``train.batch_size``
then does not apply (:func:`resolve_batch_size`). The checks that need the data's metadata
(crop length vs segments, labels, batch vs pool sizes) are in :func:`singer_ssl.training.run.plan_data`.
The objective's and encoder's hyperparameter *values* are checked by their constructors when the run
builds them, once (:meth:`singer_ssl.losses.ObjectiveSpec.build`, right after the model, before any step).

Everything downstream (the run, ``hyperparams.yaml``, the checkpoint fingerprint) reads this object,
never the raw ``params`` dict.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from singer_ssl import augment, encoders, losses
from singer_ssl.core.device import resolve_device
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.params import (
    bool_param,
    choice_param,
    dataset_items,
    int_param,
    mapping_param,
    number_param,
)
from singer_ssl.model.heads import KINDS as HEAD_KINDS
from singer_ssl.model.singer_model import INPUT_SCALINGS, VIEW_BATCHINGS
from singer_ssl.training.optim import OPTIMIZERS, SCHEDULES
from singer_ssl.training.sampler import check_batch_options

#: which weights the train stage keeps (see :func:`resolve_select`)
SELECTS = ("auto", "val_loss", "val_eer", "last")
#: train.* keys that do not change the result (where/how fast it runs, how often it logs/saves)
RUNTIME_KEYS = ("num_workers", "device", "log_every", "checkpoint_every")


@dataclass(frozen=True)
class TrainSettings:
    """``train.*``, typed (field order = ``params.yaml`` order; defaults for omitted keys).

    Numbers keep the type they were written with (``warmup_epochs: 0`` stays an int), so that
    ``hyperparams.yaml`` records them as written; numeric strings (YAML 1.1's ``1e-4``) become floats.
    """

    batch_size: int = 32
    optimizer: str = "adam"          # adam | sgd
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9            # sgd only
    schedule: str = "constant"       # constant | cosine | multistep
    warmup_epochs: float = 0
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    epochs: int | None = 100
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    val_fraction: float = 0.2
    val_batches: int | None = 10
    patience: int | None = 5
    select: str = "auto"             # auto | val_loss | val_eer | last
    checkpoint_every: int = 50
    num_workers: int = 2
    device: str = "auto"
    amp: bool = True
    log_every: int = 10
    grad_clip: float | None = None
    deterministic: bool = True
    input_scaling: str = "dataset_std"   # dataset_std | none | item_mean | item_peak | item_loud (SingerModel)
    view_batching: str = "joint"         # joint | per_view (TrainUnit)

    @classmethod
    def from_section(cls, section: Any) -> TrainSettings:
        """Check ``train`` (unknown keys, types, ranges) -> :class:`TrainSettings`."""
        raw = mapping_param(section, "train", [f.name for f in fields(cls)])
        d = {**asdict(cls()), **raw}

        def number(key: str, low: float | None = 0.0, *, low_open: bool = False, high: float | None = None,
                   high_open: bool = False, allow_none: bool = False) -> Any:
            value = d[key]
            if value is None and allow_none:
                return None
            checked = number_param(value, f"train.{key}", low, high, low_open=low_open, high_open=high_open)
            return value if isinstance(value, (int, float)) and not isinstance(value, bool) else checked

        def integer(key: str, minimum: int, allow_none: bool = False) -> int | None:
            value = d[key]
            return None if value is None and allow_none else int_param(value, f"train.{key}", minimum)

        milestones = d["milestones"]
        if not isinstance(milestones, (list, tuple)):
            raise ConfigError(f"train.milestones: expected a list of epochs >= 0, got {milestones!r}")
        checked = cls(
            batch_size=int_param(d["batch_size"], "train.batch_size", 2),
            optimizer=choice_param(d["optimizer"], "train.optimizer", OPTIMIZERS),
            lr=number("lr", low_open=True),
            weight_decay=number("weight_decay"),
            momentum=number("momentum"),
            schedule=choice_param(d["schedule"], "train.schedule", SCHEDULES),
            warmup_epochs=number("warmup_epochs"),
            milestones=tuple(m if isinstance(m, (int, float)) and not isinstance(m, bool)
                             else number_param(m, "train.milestones", 0.0) for m in milestones),
            gamma=number("gamma"),
            epochs=integer("epochs", 1, allow_none=True),
            max_steps=integer("max_steps", 0, allow_none=True),
            steps_per_epoch=integer("steps_per_epoch", 1, allow_none=True),
            val_fraction=number("val_fraction", high=1.0, high_open=True),
            val_batches=integer("val_batches", 1, allow_none=True),
            patience=integer("patience", 1, allow_none=True),
            select=choice_param(d["select"], "train.select", SELECTS),
            checkpoint_every=integer("checkpoint_every", 1),
            num_workers=integer("num_workers", 0),
            device=d["device"],
            amp=bool_param(d["amp"], "train.amp"),
            log_every=integer("log_every", 1),
            grad_clip=number("grad_clip", allow_none=True),
            deterministic=bool_param(d["deterministic"], "train.deterministic"),
            input_scaling=choice_param(d["input_scaling"], "train.input_scaling", INPUT_SCALINGS),
            view_batching=choice_param(d["view_batching"], "train.view_batching", VIEW_BATCHINGS),
        )
        if any(m < 0 for m in checked.milestones):
            raise ConfigError(f"train.milestones: expected a list of epochs >= 0, got {milestones!r}")
        if checked.epochs is None and checked.max_steps is None:
            raise ConfigError("train.epochs and train.max_steps are both null: set at least one")
        try:
            resolve_device(checked.device)
        except (ValueError, RuntimeError) as err:
            raise ConfigError(f"train.device: {err}") from None
        return checked


@dataclass(frozen=True)
class HeadConfig:
    """``head``: the projection head on the embedding (see :mod:`singer_ssl.model.heads`)."""

    kind: str = "silu_linear"
    dim: int = 128
    hidden: int = 512
    l2: bool = True

    @classmethod
    def from_section(cls, section: Any) -> HeadConfig:
        d = {**asdict(cls()), **mapping_param(section, "head", [f.name for f in fields(cls)])}
        return cls(kind=choice_param(d["kind"], "head.kind", HEAD_KINDS), dim=int_param(d["dim"], "head.dim", 1),
                   hidden=int_param(d["hidden"], "head.hidden", 1), l2=bool_param(d["l2"], "head.l2"))


@dataclass(frozen=True)
class AugmentConfig:
    """``augment``: how the two views are drawn and augmented (see :mod:`singer_ssl.augment`)."""

    views: str = "file"                                          # file | clip
    crop_seconds: float = 3.0                                    # length of each view
    ramp_epochs: float = 0.0                                     # waveform curriculum (augment.ramp_strength)
    ramp_augmentations: tuple[str, ...] = ()                     # the entries it ramps (() = all)
    waveform: dict[str, Any] = field(default_factory=dict)       # {name: {p, ...}}, in the workers
    spectrogram: dict[str, Any] = field(default_factory=dict)    # {name: {p, ...}}, on the device

    @classmethod
    def from_section(cls, section: Any) -> AugmentConfig:
        augment.validate(section)  # keys, names, parameters, probabilities (ConfigError naming augment.*)
        d = dict(section or {})
        return cls(views=d.get("views", "file"), crop_seconds=d.get("crop_seconds", 3.0),
                   ramp_epochs=float(d.get("ramp_epochs", 0.0)),
                   ramp_augmentations=tuple(d.get("ramp_augmentations") or ()),
                   waveform=copy.deepcopy(dict(d.get("waveform") or {})),
                   spectrogram=copy.deepcopy(dict(d.get("spectrogram") or {})))

    @property
    def waveform_enabled(self) -> list[str]:
        return augment.enabled(self.waveform)

    @property
    def spectrogram_enabled(self) -> list[str]:
        return augment.enabled(self.spectrogram)


@dataclass(frozen=True)
class TrainConfig:
    """The validated train-stage configuration (build it with :meth:`from_params`).

    Attributes:
        seed: ``seed`` (model init, data split, batches, views).
        datasets: names under ``datasets.train``, in file order.
        objective: ``loss`` + ``losses.<loss>`` resolved (:class:`singer_ssl.losses.ObjectiveSpec`): its
            class declares the sampler, labels, momentum teacher and selection metric the run needs.
        encoder, encoder_kwargs: ``encoder`` and ``encoders.<encoder>`` (``n_mels`` is filled in from
            the features at run time for the encoders that need it).
        encoder_kind: ``logmel`` or ``waveform`` (the encoder's declared input).
        encoder_min_length: the shortest input the encoder accepts (frames or samples).
        head, augment, train: the typed sections.
        select, monitor: the resolved ``train.select`` and the validation metric it watches.
    """

    seed: int
    datasets: tuple[str, ...]
    objective: losses.ObjectiveSpec
    encoder: str
    encoder_kwargs: dict[str, Any]
    encoder_kind: str
    encoder_min_length: int
    head: HeadConfig
    augment: AugmentConfig
    train: TrainSettings
    select: str
    monitor: str

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainConfig:
        """Validate the train stage's sections of ``params`` (see the module docstring) -> TrainConfig."""
        seed = int_param(params.get("seed", 0), "seed", 0)
        loss = params.get("loss")
        losses_section = params.get("losses") or {}
        if not isinstance(losses_section, dict):
            raise ConfigError(f"losses: expected a mapping {{name: parameters}}, got {losses_section!r}")
        objective = losses.spec(loss, losses_section.get(loss))  # the one check of the name and keys
        encoder = params.get("encoder")
        encoder_cls = encoders.encoder_class(encoder)
        encoders_section = params.get("encoders") or {}
        if not isinstance(encoders_section, dict):
            raise ConfigError(f"encoders: expected a mapping {{name: parameters}}, got {encoders_section!r}")
        encoder_kwargs = encoders_section.get(encoder) or {}
        if not isinstance(encoder_kwargs, dict):
            raise ConfigError(f"encoders.{encoder}: expected a mapping of parameters, got {encoder_kwargs!r}")
        encoders.check_kwargs(encoder, encoder_kwargs)
        head = HeadConfig.from_section(params.get("head"))
        wiring = objective.kwargs.get("predictor_input")
        if wiring is not None and (wiring == "raw") == head.l2:
            want = "raw" if head.l2 else "L2-normalised"
            raise ConfigError(f"losses.{loss}.predictor_input: {wiring} needs {want} projections: set head.l2: "
                              f"{str(not head.l2).lower()} (or the other predictor_input)")
        aug = AugmentConfig.from_section(params.get("augment"))
        tr = resolve_batch_size(TrainSettings.from_section(params.get("train")), objective)
        check_batch_options(objective.sampler, objective.batch, tr.batch_size, objective.name)
        kind = str(encoder_cls.input_kind)
        if kind == "waveform" and aug.spectrogram_enabled:
            raise ConfigError(f"encoder {encoder!r} takes waveforms, so spectrogram augmentations cannot apply; "
                              f"remove augment.spectrogram entries {aug.spectrogram_enabled} (or set their p to 0)")
        names = tuple(n for n, _, _ in dataset_items(params, "train"))
        if not names:
            raise ConfigError("no training dataset: add one under datasets.train in params.yaml")
        select, monitor = resolve_select(tr.select, objective.selection_metric)
        return cls(seed=seed, datasets=names, objective=objective, encoder=encoder,
                   encoder_kwargs=copy.deepcopy(encoder_kwargs), encoder_kind=kind,
                   encoder_min_length=int(getattr(encoder_cls, "min_length", 1)), head=head, augment=aug, train=tr,
                   select=select, monitor=monitor)

    @property
    def loss(self) -> str:
        """The objective's registry name (``loss``)."""
        return self.objective.name

    @property
    def batch_size(self) -> int:
        return self.train.batch_size

    @property
    def wave_mode(self) -> bool:
        """Views are waveform crops (augmented in the workers) rather than stored log-mel crops: the
        encoder takes waveforms, or a waveform augmentation is enabled."""
        return self.encoder_kind == "waveform" or bool(self.augment.waveform_enabled)

    def loss_section(self) -> dict[str, Any]:
        """``losses.<loss>`` as it defines the run: constructor kwargs plus ``batch`` when one was given."""
        out = dict(self.objective.kwargs)
        if self.objective.batch_given is not None:
            out["batch"] = dict(self.objective.batch_given)
        return out

    def train_section(self) -> dict[str, Any]:
        """``train`` as a plain mapping (every key, params.yaml order)."""
        out = asdict(self.train)
        out["milestones"] = list(self.train.milestones)
        return out

    def augment_section(self) -> dict[str, Any]:
        """``augment`` as a plain mapping (views, crop_seconds, waveform, spectrogram)."""
        return asdict(self.augment)


def fixed_batch_size(objective: losses.ObjectiveSpec) -> int | None:
    """The batch size the objective's sampler fixes by itself (GE2E: ``singers x utterances``), else None.

    Samplers that take any number of items (``random``, ``semisupervised``) use ``train.batch_size``.
    """
    if objective.sampler == "singers":
        return int(objective.batch["singers"]) * int(objective.batch["utterances"])
    return None


def resolve_batch_size(tr: TrainSettings, objective: losses.ObjectiveSpec) -> TrainSettings:
    """``train`` with the batch size the run uses: the objective's own batch when its sampler fixes it.

    Switching ``loss`` alone switches the method: GE2E's batch is ``losses.ge2e.batch.singers x
    utterances`` (8 x 4 = 32 by default, the GE2E singer encoder's composition), whatever
    ``train.batch_size`` says; when they differ, ``train.batch_size`` is replaced by it (so the run,
    ``hyperparams.yaml`` and the checkpoint fingerprint all record the batch actually used) and a
    one-line note on stderr says so.
    """
    fixed = fixed_batch_size(objective)
    if fixed is None or fixed == tr.batch_size:
        return tr
    b = objective.batch
    print(f"train: note: {objective.name} batches hold losses.{objective.name}.batch.singers x utterances = "
          f"{b['singers']} x {b['utterances']} = {fixed} items; train.batch_size ({tr.batch_size}) is not used",
          file=sys.stderr, flush=True)
    return replace(tr, batch_size=fixed)


def resolve_select(select: str, auto_metric: str) -> tuple[str, str]:
    """``train.select`` -> (selection, validation metric it monitors); ``auto_metric`` is the objective's
    declared ``selection_metric``.

    The validation metric decides which weights are kept and when to stop early:

    - ``val_loss``: the objective's loss on fixed views of held-out singers (Torres et al. 2023 keeps the best
      ``loss/val``);
    - ``val_eer``: the in-batch EER (%) on the same views (two views of one recording = target, the other
      items = non-targets), comparable across objectives and across time;
    - ``last``: keep the final weights; early stopping still watches the ``auto`` metric;
    - ``auto``: the objective's ``selection_metric``: ``val_eer`` for objectives with a moving target
      (BYOL: the loss is measured against an EMA teacher that changes every step, so its values at
      different epochs are not comparable and its minimum sits at the start, before the student drifts
      from the teacher), ``val_loss`` otherwise.
    """
    if select == "auto":
        select = auto_metric
    if select == "last":
        return select, "eer" if auto_metric == "val_eer" else "loss"
    return select, "eer" if select == "val_eer" else "loss"
