"""Training settings: validate ``params.yaml`` for the train stage before any heavy work.

:func:`resolve_settings` checks everything that needs no data (names, types, ranges, combinations)
and returns :class:`Settings`; the checks that need the data's metadata live in
:func:`singer_ssl.training.run.plan_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from singer_ssl.core.device import resolve_device
from singer_ssl.core.params import ConfigError, choice_error, dataset_items
from singer_ssl.training.optim import OPTIMIZERS, SCHEDULES

TRAIN_DEFAULTS: dict[str, Any] = {
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 1e-3,
    "weight_decay": 1e-5,
    "momentum": 0.9,
    "schedule": "constant",
    "warmup_epochs": 0,
    "milestones": [],
    "gamma": 0.1,
    "epochs": 100,
    "max_steps": None,
    "steps_per_epoch": None,
    "val_fraction": 0.2,
    "val_batches": 10,
    "patience": 5,
    "checkpoint_every": 50,
    "num_workers": 2,
    "device": "auto",
    "amp": True,
    "log_every": 10,
    "grad_clip": None,
    "deterministic": True,
    "select": "auto",
}
#: which weights the train stage keeps (see :func:`resolve_settings`)
SELECTS = ("auto", "val_loss", "val_eer", "last")

@dataclass
class Settings:
    """Resolved, validated training settings (from ``params.yaml``)."""

    seed: int
    loss: str
    loss_params: dict[str, Any]
    sampler: dict[str, Any]
    encoder: str
    encoder_kind: str
    head_dim: int
    views: str
    crop_seconds: float
    waveform_cfg: dict[str, Any]
    spectrogram_cfg: dict[str, Any]
    wave_mode: bool
    datasets: list[str]
    train: dict[str, Any] = field(default_factory=dict)
    select: str = "val_loss"   # resolved train.select: val_loss | val_eer | last
    monitor: str = "loss"      # validation metric for keeping the best model and early stopping: loss | eer

    @property
    def batch_size(self) -> int:
        return int(self.train["batch_size"])


def _int(value: Any, name: str, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}{' or null' if allow_none else ''}, got {value!r}")
    return value


def _number(value: Any, name: str, minimum: float = 0.0, allow_none: bool = False) -> float | None:
    """Validated float. Accepts numeric strings such as ``"1e-4"``: YAML 1.1 (PyYAML) reads ``lr: 1e-4``,
    written without a dot, as a string."""
    if value is None and allow_none:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ConfigError(f"{name} must be a number >= {minimum}{' or null' if allow_none else ''}, got {value!r}")
    return float(value)


def enabled(cfg: dict[str, Any] | None) -> list[str]:
    """Names of augmentation entries with ``p > 0`` (``p`` defaults to 1)."""
    out = []
    for name, entry in (cfg or {}).items():
        p = (entry or {}).get("p", 1.0) if isinstance(entry, dict) else 1.0
        if p and float(p) > 0:
            out.append(name)
    return out


def resolve_settings(params: dict[str, Any]) -> Settings:
    """Validate the training parameters (everything that needs no data) -> :class:`Settings`.

    Raises ConfigError naming the parameter and, for names, the valid choices.
    """
    from singer_ssl import augment, encoders, losses

    loss = params.get("loss")
    if loss not in losses.NAMES:
        raise choice_error("loss", loss, losses.NAMES)
    encoder = params.get("encoder")
    if encoder not in encoders.NAMES:
        raise choice_error("encoder", encoder, encoders.NAMES)
    aug = dict(params.get("augment") or {})
    augment.validate(aug)
    loss_params = dict((params.get("losses") or {}).get(loss) or {})
    sampler = losses.sampler_config(loss, loss_params)
    head = dict(params.get("head") or {})
    head_dim = _int(head.get("dim", 128), "head.dim", 1)
    losses.get(loss, dim=head_dim, **loss_params)  # validates the objective's parameters (cheap)
    from singer_ssl.model.heads import KINDS

    if head.get("kind", "silu_linear") not in KINDS:
        raise choice_error("head.kind", head.get("kind"), KINDS)
    _int(head.get("hidden", 512), "head.hidden", 1)
    accepted = encoders.accepted_params(encoder)
    unknown = sorted(set((params.get("encoders") or {}).get(encoder) or {}) - set(accepted))
    if unknown:
        raise ConfigError(f"encoders.{encoder}: unknown parameter(s) {', '.join(unknown)}; "
                          f"accepted: {', '.join(accepted) or 'none'}")

    raw_train = dict(params.get("train") or {})
    unknown = sorted(set(raw_train) - set(TRAIN_DEFAULTS))
    if unknown:
        raise ConfigError(f"train: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(TRAIN_DEFAULTS)}")
    tr = {**TRAIN_DEFAULTS, **raw_train}
    if tr["select"] not in SELECTS:
        raise choice_error("train.select", tr["select"], SELECTS)
    if tr["optimizer"] not in OPTIMIZERS:
        raise choice_error("train.optimizer", tr["optimizer"], OPTIMIZERS)
    _int(tr["batch_size"], "train.batch_size", 2)
    tr["lr"] = _number(tr["lr"], "train.lr", 0.0)
    if not tr["lr"] > 0:
        raise ConfigError(f"train.lr must be > 0, got {tr['lr']!r}")
    tr["weight_decay"] = _number(tr["weight_decay"], "train.weight_decay")
    tr["momentum"] = _number(tr["momentum"], "train.momentum")
    if tr["schedule"] not in SCHEDULES:
        raise choice_error("train.schedule", tr["schedule"], SCHEDULES)
    tr["warmup_epochs"] = _number(tr["warmup_epochs"], "train.warmup_epochs")
    milestones = tr["milestones"]
    if not isinstance(milestones, (list, tuple)) or any(
            isinstance(m, bool) or not isinstance(m, (int, float)) or m < 0 for m in milestones):
        raise ConfigError(f"train.milestones must be a list of epochs >= 0, got {milestones!r}")
    tr["gamma"] = _number(tr["gamma"], "train.gamma")
    _int(tr["epochs"], "train.epochs", 1, allow_none=True)
    _int(tr["max_steps"], "train.max_steps", 1, allow_none=True)
    if tr["epochs"] is None and tr["max_steps"] is None:
        raise ConfigError("train.epochs and train.max_steps are both null: set at least one")
    _int(tr["steps_per_epoch"], "train.steps_per_epoch", 1, allow_none=True)
    tr["val_fraction"] = _number(tr["val_fraction"], "train.val_fraction")
    if tr["val_fraction"] >= 1:
        raise ConfigError(f"train.val_fraction must lie in [0, 1), got {tr['val_fraction']!r}")
    _int(tr["val_batches"], "train.val_batches", 1, allow_none=True)
    _int(tr["patience"], "train.patience", 1, allow_none=True)
    _int(tr["checkpoint_every"], "train.checkpoint_every", 1)
    _int(tr["num_workers"], "train.num_workers", 0)
    _int(tr["log_every"], "train.log_every", 1)
    tr["grad_clip"] = _number(tr["grad_clip"], "train.grad_clip", 0.0, allow_none=True)
    try:
        resolve_device(tr["device"])
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"train.device: {err}") from None

    if "utterances" in sampler:
        b = sampler["singers"] * sampler["utterances"]
        if tr["batch_size"] != b:
            raise ConfigError(
                f"{loss} batches hold losses.{loss}.batch.singers x utterances = {sampler['singers']} x "
                f"{sampler['utterances']} = {b} items, but train.batch_size is {tr['batch_size']}; "
                f"set train.batch_size={b} or change losses.{loss}.batch")

    kind = str(encoders.ENCODERS[encoder].input_kind)
    spec_enabled = enabled(aug.get("spectrogram"))
    if kind == "waveform" and spec_enabled:
        raise ConfigError(f"encoder {encoder!r} takes waveforms, so spectrogram augmentations cannot apply; "
                          f"remove augment.spectrogram entries {spec_enabled} (or set their p to 0)")
    views = aug.get("views", "file")
    crop = float(aug.get("crop_seconds", 3.0))
    names = [n for n, _, _ in dataset_items(params, "train")]
    if not names:
        raise ConfigError("no training dataset: add one under datasets.train in params.yaml")
    seed = params.get("seed", 0)
    _int(seed, "seed", 0)
    select, monitor = resolve_select(tr["select"], losses.objective_class(loss).needs_teacher)
    return Settings(
        select=select, monitor=monitor,
        seed=int(seed), loss=loss, loss_params=loss_params, sampler=sampler, encoder=encoder, encoder_kind=kind,
        head_dim=int(head_dim), views=views, crop_seconds=crop,
        waveform_cfg=dict(aug.get("waveform") or {}), spectrogram_cfg=dict(aug.get("spectrogram") or {}),
        wave_mode=kind == "waveform" or bool(enabled(aug.get("waveform"))), datasets=names, train=tr,
    )


def resolve_select(select: str, moving_target: bool) -> tuple[str, str]:
    """``train.select`` -> (selection, validation metric it monitors).

    The validation metric decides which weights are kept and when to stop early:

    - ``val_loss``: the objective's loss on fixed views of held-out singers (Torres et al. 2023 keeps the best
      ``loss/val``);
    - ``val_eer``: the in-batch EER (%) on the same views (two views of one recording = target, the other
      items = non-targets), comparable across objectives and across time;
    - ``last``: keep the final weights; early stopping still watches the ``auto`` metric;
    - ``auto``: ``val_eer`` for objectives with a moving target (BYOL: the loss is measured against an EMA
      teacher that changes every step, so its values at different epochs are not comparable and its
      minimum sits at the start, before the student drifts from the teacher), ``val_loss`` otherwise.
    """
    if select == "auto":
        select = "val_eer" if moving_target else "val_loss"
    if select == "last":
        return select, "eer" if moving_target else "loss"
    return select, "eer" if select == "val_eer" else "loss"
