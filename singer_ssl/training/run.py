"""The train stage: SSL training of the encoder chosen by ``loss`` and ``encoder``.

``run(cfg, features_dir, segments_dir, model_dir, checkpoints_dir, plots_dir)`` reads the training
datasets (every ``datasets.train.<name>``: features ``<features_dir>/<name>.h5`` and segments
``<segments_dir>/<name>/``), trains, and writes the model folder ``model_dir`` (``model.pt``,
``model.ts``, ``hyperparams.yaml``; see :mod:`singer_ssl.model.folder`); the pipeline's paths come
from ``dvc.yaml`` through ``stages/train.py``. Parts: :mod:`singer_ssl.training` (config, data,
samplers, loop, monitors, checkpoints).

What a run does, in order:

1. **Validate** every parameter before any heavy work (:class:`~singer_ssl.training.config.TrainConfig`,
   built by the caller, then the checks that need the data's metadata in :func:`plan_data`): unknown
   loss/encoder/augmentation names, waveform encoders with spectrogram augmentations, GE2E batches that
   are not ``singers x utterances``, label-based objectives (supcon, semisupcon, ge2e) without singer
   labels, batches too small or too large.
2. **Data**: ``train.val_fraction`` of the training *singers* (seeded) are held out for validation.
   Views per ``augment.views``; waveform mode (segment audio read in the workers, waveform
   augmentations there, log-mel computed batched on the device) when the encoder takes waveforms or
   ``augment.waveform`` has an enabled entry, otherwise log-mel crops read from the HDF5.
   Batches as the objective declares (``Objective.sampler``): random, GE2E ``singers x utterances``,
   SemiSupCon labelled/unlabelled mix (:func:`singer_ssl.training.sampler.make_batches`).
3. **Loop**: Adam or SGD with an optional warm-up and cosine / multi-step schedule
   (:mod:`singer_ssl.training.optim`); bf16 autocast on CUDA (``train.amp``); a momentum teacher with the
   cosine τ schedule over the planned number of steps when the objective declares ``momentum_tau``
   (BYOL); validation (loss on fixed views + in-batch EER) at the end of every epoch; early stopping
   after ``train.patience`` epochs without improvement; the weights chosen by ``train.select`` are kept
   (``auto`` = the objective's declared ``selection_metric``). DDP under ``torchrun`` (see
   :mod:`singer_ssl.training.loop` for the ``loss * world_size`` rule); only rank 0 writes.
4. **Checkpoints** every ``train.checkpoint_every`` steps in ``<checkpoints_dir>/last.pt``; a rerun of an
   *interrupted* run with the same parameters, data and code resumes from it (another fingerprint, a
   finished run's checkpoint or an unreadable file starts fresh and says so; see
   :mod:`singer_ssl.training.checkpoint`).
   A NaN/inf loss stops with :class:`~singer_ssl.training.loop.NonFiniteLoss` naming the step; the last
   good checkpoint is kept and no model folder is written.
5. **Logs**: dvclive in ``plots_dir`` (step metrics ``train/*`` every ``train.log_every`` steps,
   ``val/*`` every epoch), a tqdm progress bar only when stderr is a terminal (its ``in_batch_eer`` is the
   in-batch EER of the last logged batch), elsewhere (a log file, DVC's output) one line per log interval from
   the first step (:func:`~singer_ssl.training.monitors.step_line`: loss, in-batch EER, time, time left), one
   line per epoch (:func:`~singer_ssl.training.monitors.progress_line`: train loss, validation loss and in-batch
   EER, time) and a final summary. ``train.max_steps: 0`` trains nothing: the initial weights (random, or a
   published checkpoint's, ``encoders.<name>.init``) are logged at step 0 and kept (:meth:`TrainingRun._zero_steps`).
6. **Threshold**: ``threshold.json`` in the model folder, the EER threshold of all pairs of the held-out
   validation singers' segments embedded by the kept weights, the logistic-regression calibration of the same
   pairs' cosine scores to log-likelihood ratios (``singer-ssl verify`` decides with them) and the names of
   the validation singers (``val_singers``: the evaluate stage's calibration trials).

Planned steps: ``epochs * steps_per_epoch`` (``steps_per_epoch: null`` = one pass over the training
segments), capped by ``max_steps``. Same seed, data and device (CPU) give the same weights.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed
from dvclive import Live
from tqdm.auto import tqdm

from singer_ssl import augment, encoders
from singer_ssl.core.device import resolve_device
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.frontend import n_frames
from singer_ssl.model.folder import build_model, save_model_folder
from singer_ssl.training import checkpoint as ckpt
from singer_ssl.training.config import TrainConfig
from singer_ssl.training.data import (
    VAL_STREAM,
    ViewDataset,
    collate_views,
    load_segment_table,
    split_by_singer,
    training_centre_offset,
    worker_init,
)
from singer_ssl.training.hyperparams import hyperparams
from singer_ssl.training.loop import NonFiniteLoss, Trainer, TrainUnit
from singer_ssl.training.monitors import progress_line, step_line, validation_threshold
from singer_ssl.training.optim import build_optimizer, lr_factor, set_lr
from singer_ssl.training.runtime import (
    Dist,
    all_rng_states,
    broadcast_flag,
    deterministic_mode,
    init_distributed,
    seed_all,
)
from singer_ssl.training.sampler import BatchStream, fixed_batches, has_labelled_rows, make_batches

__all__ = ["TrainPaths", "TrainingRun", "plan_data", "run", "train"]


@dataclass(frozen=True)
class TrainPaths:
    """Where the train stage reads and writes (given by ``dvc.yaml`` through ``stages/train.py``).

    Attributes:
        features: folder of the training features, ``<name>.h5`` per dataset (``data/features/train``).
        segments: folder of the training segment folders, ``<name>/`` per dataset (``data/segments/train``).
        model: the model folder written at the end (``data/model``).
        checkpoints: where ``last.pt`` is kept between runs (``data/checkpoints``).
        plots: the dvclive folder (``plots/train``).
    """

    features: Path
    segments: Path
    model: Path
    checkpoints: Path
    plots: Path

    @classmethod
    def of(cls, features: str | os.PathLike, segments: str | os.PathLike, model: str | os.PathLike,
           checkpoints: str | os.PathLike, plots: str | os.PathLike) -> TrainPaths:
        return cls(Path(features), Path(segments), Path(model), Path(checkpoints), Path(plots))


@dataclass
class DataPlan:
    """The data side of a run: segment table, batch plans, step counts (see :func:`plan_data`)."""

    table: Any
    train_plan: Any
    val_plan: Any | None
    val_batches: int
    steps_per_epoch: int
    total_steps: int
    monitor_shift: int
    val_unit: str
    crop_samples: int
    n_train: int
    n_val: int
    train_idx: np.ndarray | None = None  # the training segments (the babble augmentation's pool)


def plan_data(cfg: TrainConfig, paths: TrainPaths, dist_info: Dist) -> DataPlan:
    """Load the segment table and run every data-dependent check; build the batch plans."""
    table = load_segment_table(paths.features, paths.segments, cfg.datasets)
    sr, hop, n_fft = int(table.attrs["sample_rate"]), int(table.attrs["hop"]), int(table.attrs["n_fft"])
    crop_seconds = cfg.augment.crop_seconds
    crop_samples = int(round(crop_seconds * sr))
    if crop_seconds > table.segment_seconds + 1.0 / sr:
        raise ConfigError(f"augment.crop_seconds ({crop_seconds} s) is longer than the training segments "
                          f"({table.segment_seconds:g} s); lower it or re-segment with longer segment.seconds")
    if not cfg.wave_mode and n_frames(crop_samples, hop) > table.n_frames:
        raise ConfigError(f"a {crop_seconds} s crop needs {n_frames(crop_samples, hop)} frames but the stored "
                          f"log-mels have {table.n_frames}")
    if cfg.wave_mode and cfg.encoder_kind == "logmel" and crop_samples <= n_fft // 2:
        raise ConfigError(f"augment.crop_seconds ({crop_seconds} s) is too short for n_fft {n_fft}")
    min_length = cfg.encoder_min_length
    have = crop_samples if cfg.encoder_kind == "waveform" else n_frames(crop_samples, hop)
    if have < min_length:
        unit = "samples" if cfg.encoder_kind == "waveform" else "frames"
        raise ConfigError(f"encoder {cfg.encoder!r} needs inputs of >= {min_length} {unit}, but a "
                          f"{crop_seconds} s crop gives {have}; raise augment.crop_seconds")
    if cfg.wave_mode:
        missing = [str(table.audio_path(i)) for i in range(len(table)) if not table.audio_path(i).is_file()]
        if missing:
            raise ConfigError(f"{len(missing)} training segment file(s) listed in the features are missing, e.g. "
                              f"{missing[0]}; re-run the segment and features stages")
    objective = cfg.objective
    n_known = len(np.unique(table.singer[table.singer >= 0]))
    label_rows = has_labelled_rows(objective.sampler, objective.batch, cfg.batch_size)
    if objective.needs_labels and label_rows and n_known < 2:
        raise ConfigError(f"loss {cfg.loss!r} needs singer labels, but the training data has {n_known} known "
                          "singer(s); use an SSL loss or a dataset layout with a singer rule")

    tr = cfg.train
    train_idx, val_idx, unit = split_by_singer(table, tr.val_fraction, cfg.seed)
    world = dist_info.world_size
    b = cfg.batch_size
    if (b // world) < 2 or b % world:
        raise ConfigError(f"train.batch_size ({b}) must be a multiple of the number of processes ({world}) with at "
                          "least 2 items per process (batch-norm and in-batch negatives)")
    train_plan = make_batches(objective.sampler, objective.batch, train_idx, table.singer, b, cfg.seed, "training",
                              cfg.loss)
    val_plan, val_batches = None, 0
    if len(val_idx):
        b_val = min(b, (len(val_idx) // world) * world)
        if b_val // world < 2:
            raise ConfigError(f"the validation set has {len(val_idx)} segments, too few for batches of >= 2 per "
                              "process; raise train.val_fraction or set it to 0")
        val_plan = make_batches(objective.sampler, objective.batch, val_idx, table.singer, b_val, cfg.seed + 1,
                                "validation", cfg.loss)
        cap = tr.val_batches
        val_batches = max(1, val_plan.one_pass if cap is None else min(cap, val_plan.one_pass))
    spe = tr.steps_per_epoch or max(1, train_plan.one_pass)
    total = spe * tr.epochs if tr.epochs is not None else tr.max_steps
    if tr.max_steps is not None:
        total = min(total, tr.max_steps)
    return DataPlan(table, train_plan, val_plan, val_batches, spe, int(total), train_plan.group_size, unit,
                    crop_samples, len(train_idx), len(val_idx), train_idx)


def _loader(dataset, batch_sampler, num_workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs = {"worker_init_fn": worker_init, "persistent_workers": True, "prefetch_factor": 4}
    # A private generator: creating a loader iterator draws a worker base seed, which must not consume
    # the global torch RNG (dropout), or a resumed run would diverge from an uninterrupted one.
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=num_workers, collate_fn=collate_views,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0), **kwargs)


# ----------------------------------------------------------------------------------------------
# the run


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _log(msg: str, dist_info: Dist) -> None:
    if dist_info.is_main:
        print(f"train: {msg}", file=sys.stderr, flush=True)


def run(cfg: TrainConfig, features_dir: str | os.PathLike, segments_dir: str | os.PathLike,
        model_dir: str | os.PathLike, checkpoints_dir: str | os.PathLike, plots_dir: str | os.PathLike,
        *, progress: bool = True) -> str:
    """The train stage: run (or resume) a training, write ``model_dir``; returns the one summary line
    (empty on the ranks > 0 of a DDP run). Paths: see :class:`TrainPaths`."""
    paths = TrainPaths.of(features_dir, segments_dir, model_dir, checkpoints_dir, plots_dir)
    summary = train(cfg, paths, progress=progress)
    if not summary["is_main"]:
        return ""
    return (f"train: {cfg.loss}/{cfg.encoder}, {summary['steps']} steps, {summary['epochs']} epochs"
            f"{' (early stop)' if summary['stopped_early'] else ''}, kept the weights of step "
            f"{summary['kept_step']} ({cfg.select}) -> {summary['model_dir']}")


def train(cfg: TrainConfig, paths: TrainPaths, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training; write the model folder ``paths.model``. Returns a summary dict.

    Keys of the summary: ``steps``, ``epochs``, ``total_steps``, ``stopped_early``, ``resumed_from``,
    ``select``, ``monitor``, ``best_val_loss``, ``best_value``, ``best_step``, ``kept_step``,
    ``final_loss``, ``seconds``, ``model_dir``, ``is_main``.
    """
    dist_info = init_distributed(cfg.train.device)
    try:
        device = resolve_device(cfg.train.device)
        if device.type == "cuda" and dist_info.world_size > 1:
            device = torch.device("cuda", dist_info.local_rank)
        with deterministic_mode(cfg.train.deterministic, device):
            return TrainingRun(cfg, paths, dist_info, device).fit(progress)
    finally:
        if dist_info.owns_group:
            torch.distributed.destroy_process_group()


class TrainingRun:
    """A prepared run: data plan, model, objective, trainer (with the momentum teacher the objective
    declares), optimiser, loaders, restored checkpoint.

    Construction does everything but train (no files written); :meth:`fit` trains, logs, checkpoints
    and writes the model folder. ``benchmarks/train.py`` drives ``train_loader`` and ``trainer``
    directly.
    """

    def __init__(self, cfg: TrainConfig, paths: TrainPaths, dist_info: Dist, device: torch.device) -> None:
        self.started = time.perf_counter()
        self.cfg, self.paths, self.dist, self.device = cfg, paths, dist_info, device
        tr = cfg.train
        self.data = data = plan_data(cfg, paths, dist_info)
        table = data.table
        self.signatures = {"data": ckpt.data_signature(table.names, table.keys, table.attrs, table.mean, table.std),
                           "code": ckpt.code_signature()}
        self.fingerprint = ckpt.fingerprint(cfg, self.signatures["data"], self.signatures["code"])
        # item_peak / item_loud: the training features' mean centre-to-mean distance (normalization.offset)
        self.centre_offset = (training_centre_offset(table, tr.input_scaling) if cfg.encoder_kind == "logmel"
                              else 0.0)

        # model, objective, optimiser: the same initial weights on every rank. The model is built first,
        # right after seeding, so that every objective starts from the weights of the embed stage's
        # random-init baseline (torch.manual_seed(seed); build_model(hparams)); the objective is built
        # once, right after it (its own parameters: BYOL predictor, COLA W, GE2E w and b).
        seed_all(cfg.seed)
        model = build_model(self._hyperparams(None))
        self.hparams = self._hyperparams(model.embedding_dim)
        objective = cfg.objective.build(dim=cfg.head.dim)
        unit = TrainUnit(model, objective).to(device)
        if dist_info.world_size > 1 and device.type == "cuda":
            unit = torch.nn.SyncBatchNorm.convert_sync_batchnorm(unit)
        self.unit = unit
        self.optimizer = build_optimizer(unit.model, unit.objective, tr.optimizer, tr.lr, tr.weight_decay, tr.momentum)
        spe = data.steps_per_epoch
        self.lr_factor = functools.partial(
            lr_factor, total_steps=data.total_steps, schedule=tr.schedule,
            warmup_steps=int(round(float(tr.warmup_epochs) * spe)),
            milestones=[int(round(float(m) * spe)) for m in tr.milestones], gamma=float(tr.gamma))
        self.spec_augment = None
        if unit.model.uses_logmel and cfg.augment.spectrogram_enabled:
            self.spec_augment = augment.build_spectrogram(cfg.augment.spectrogram).to(device)
        seed_all(cfg.seed * 1009 + 7919 * dist_info.rank + 1)  # per-rank dropout streams

        # the trainer keeps the momentum teacher when the objective declares one (momentum_tau)
        self.trainer = Trainer(unit, self.optimizer, device, spec_augment=self.spec_augment,
                               total_steps=data.total_steps, amp=tr.amp, grad_clip=tr.grad_clip,
                               monitor_shift=data.monitor_shift, seed=cfg.seed, rank=dist_info.rank,
                               world_size=dist_info.world_size)
        self.teacher = self.trainer.teacher

        self.ckpt_path = paths.checkpoints / ckpt.CHECKPOINT_NAME
        self.start_step, self.epoch, self.best, self.bad_epochs, self.history = 0, 0, None, 0, []
        self.resumed = self._resume()

        waveform_augment = None
        if cfg.wave_mode and cfg.augment.waveform_enabled:
            waveform_augment = augment.build_waveform(cfg.augment.waveform, int(table.attrs["sample_rate"]),
                                                      ramped=cfg.augment.ramp_augmentations)
        self.dataset = dataset = ViewDataset(table, "wave" if cfg.wave_mode else "logmel", cfg.augment.views,
                                             data.crop_samples, waveform_augment, babble_pool=data.train_idx,
                                             ramp_epochs=cfg.augment.ramp_epochs)
        workers = tr.num_workers
        self.train_loader = self.val_loader = None
        if self.start_step < data.total_steps:
            stream = BatchStream(data.train_plan, data.steps_per_epoch, self.start_step, data.total_steps,
                                 dist_info.rank, dist_info.world_size)
            self.train_loader = _loader(dataset, stream, workers, device)
        if data.val_plan is not None and (self.start_step < data.total_steps or data.total_steps == 0):
            specs = fixed_batches(data.val_plan, data.val_batches, dist_info.rank, dist_info.world_size, VAL_STREAM)
            self.val_loader = _loader(dataset, specs, workers, device)
        self.live = None

    def _hyperparams(self, embedding_dim: int | None) -> dict[str, Any]:
        table = self.data.table
        return hyperparams(self.cfg, table.attrs, table.mean, table.std, table.segment_seconds, embedding_dim,
                           self.centre_offset)

    def _resume(self) -> dict[str, Any] | None:
        """Load the checkpoint of an interrupted run with the same fingerprint; returns it (or None).

        A finished run's checkpoint is not reused (a rerun of the stage retrains), and an unreadable
        one is reported in one line and ignored (:func:`singer_ssl.training.checkpoint.load`)."""
        try:
            state = ckpt.load(self.ckpt_path)
        except ckpt.CheckpointError as err:
            _log(f"ignoring {err}; starting fresh", self.dist)
            return None
        if state is None:
            return None
        if state.get("fingerprint") != self.fingerprint:
            differ = ckpt.what_differs(state, self.cfg, self.signatures)
            _log(f"ignoring {self.ckpt_path}: it belongs to a run of other {differ} (fingerprint "
                 f"{state.get('fingerprint')} != {self.fingerprint}); starting fresh", self.dist)
            return None
        if state.get("finished"):
            _log(f"{self.ckpt_path} holds a finished run (step {state.get('step')}): only an interrupted run "
                 "is resumed; training from scratch", self.dist)
            return None
        self.unit.model.load_state_dict(state["model"])
        self.unit.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        if self.spec_augment is not None and state.get("spec_augment") is not None:
            ckpt.load_module_state(self.spec_augment, state["spec_augment"], self.device)  # mixup memory bank
        self.start_step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best, self.bad_epochs = state.get("best"), int(state.get("bad_epochs", 0))
        self.history = list(state.get("history", []))
        rngs = state.get("rng") or []
        if len(rngs) == self.dist.world_size:
            ckpt.set_rng_state(rngs[self.dist.rank])
        else:
            _log(f"checkpoint was written by {len(rngs)} process(es), now {self.dist.world_size}: "
                 "dropout random streams restart", self.dist)
        _log(f"resuming from {self.ckpt_path} at step {self.start_step}", self.dist)
        return state

    # ---- logging and checkpoints

    def log(self, name: str, value: float | None, step: int) -> None:
        if self.live is not None and value is not None and math.isfinite(value):
            self.live.step = step
            self.live.log_metric(name, float(value))

    def save_checkpoint(self, step: int, done: bool, stopped_early: bool = False) -> None:
        """Write ``last.pt`` (rank 0; every rank contributes its RNG states)."""
        rngs = all_rng_states(self.dist)
        if self.dist.is_main:
            ckpt.save(self.ckpt_path, {
                "fingerprint": self.fingerprint, "step": step, "epoch": self.epoch, "finished": done,
                "stopped_early": stopped_early,
                "model": self.unit.model.state_dict(), "objective": self.unit.objective.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "spec_augment": None if self.spec_augment is None else ckpt.module_state(self.spec_augment),
                "rng": rngs, "best": self.best, "bad_epochs": self.bad_epochs, "history": self.history,
                "world_size": self.dist.world_size,
                "params": ckpt.defining_params(self.cfg), "signatures": self.signatures,
            })

    def end_of_epoch(self, step: int) -> bool:
        """Validate; update the best model and the early-stopping counter. True = stop now."""
        self.log("epoch", float(self.epoch), step)
        if self.val_loader is None:
            return False
        metrics = self.trainer.validate(self.val_loader)
        for k, v in metrics.items():
            self.log(f"val/{k}", v, step)
        if self.live is not None:
            self.live.make_summary()
        self.history.append({"epoch": self.epoch, "step": step, **metrics})
        val_loss = metrics["loss"]
        if not math.isfinite(val_loss):
            raise NonFiniteLoss(step - 1, val_loss, "(validation loss)")
        key = self.cfg.monitor
        value = metrics[key]
        if self.best is None or value < self.best["value"]:
            keep = self.cfg.select != "last"
            self.best = {"value": value, "monitor": key, "val_loss": val_loss, "step": step, "epoch": self.epoch,
                         "state": _cpu_state(self.unit.model) if keep else None}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        patience = self.cfg.train.patience
        stop = patience is not None and self.bad_epochs >= patience
        if stop:
            _log(f"early stopping after epoch {self.epoch}: validation {key} did not improve for {self.bad_epochs} "
                 f"epochs (best {self.best['value']:.4f} at epoch {self.best['epoch']})", self.dist)
        return broadcast_flag(stop, self.dist)

    # ---- the loop

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Train from the current position to the planned step count (or early stop); write the model."""
        data, tr, trainer = self.data, self.cfg.train, self.trainer
        if self.dist.is_main:
            live_dir = self.paths.plots
            if self.resumed is not None:
                ckpt.truncate_live_logs(live_dir, self.start_step)
            self.live = Live(str(live_dir), resume=self.resumed is not None, dvcyaml=False, save_dvc_exp=False,
                             report=None)
            _log(_describe(self.cfg, data, self.device, self.dist, self.unit), self.dist)
            note = _input_note(self.cfg, self.hparams)
            if note:
                _log(note, self.dist)
        if data.total_steps == 0:
            return self._write_model(0, False, self._zero_steps())
        # the bar only on a terminal (disable=None); elsewhere (a log file, DVC's output) one line per log interval
        # from the first step, and one per epoch either way; no carriage returns in files
        talk = progress and self.dist.is_main
        bar = tqdm(total=data.total_steps, initial=self.start_step, unit="step", dynamic_ncols=True, file=sys.stderr,
                   desc=f"train {self.cfg.loss}/{self.cfg.encoder}", disable=None if talk else True)
        lines = talk and bar.disable
        loop_started = time.perf_counter()
        n_epochs, epoch_losses = math.ceil(data.total_steps / data.steps_per_epoch), []
        stopped_early = False  # a resumed run is an interrupted one: it had not stopped
        step, last_loss = self.start_step, float("nan")
        spe, log_every, ckpt_every = data.steps_per_epoch, tr.log_every, tr.checkpoint_every
        try:
            for batch in self.train_loader or ():
                set_lr(self.optimizer, self.lr_factor(step))
                result = trainer.train_step(batch, step)
                step += 1
                last_loss = result.loss
                epoch_losses.append(result.loss)
                bar.update(1)
                if step % log_every == 0 or step == 1:
                    monitors = trainer.monitors(result.z1, result.z2)
                    self.log("train/loss", result.loss, step)
                    self.log("train/lr", self.optimizer.param_groups[0]["lr"], step)
                    self.log("train/tau", result.tau, step)
                    for k, v in monitors.items():
                        self.log(f"train/{k}", v, step)
                    bar.set_postfix(loss=f"{result.loss:.4f}", in_batch_eer=f"{monitors['eer']:.1f}%", refresh=False)
                    if lines:
                        _log(step_line(step, data.total_steps, result.loss, monitors["eer"],
                                       time.perf_counter() - self.started,
                                       (time.perf_counter() - loop_started) / (step - self.start_step)), self.dist)
                end = step == data.total_steps
                if step % spe == 0 or end:
                    self.epoch = math.ceil(step / spe)
                    if self.val_loader is not None:
                        bar.set_postfix_str("validating", refresh=True)
                    n_hist = len(self.history)
                    stopped_early = self.end_of_epoch(step)
                    if talk:
                        val = self.history[-1] if len(self.history) > n_hist else None
                        tqdm.write("train: " + progress_line(self.epoch, n_epochs, step, data.total_steps,
                                                             float(np.mean(epoch_losses)), val,
                                                             time.perf_counter() - self.started, self.best),
                                   file=sys.stderr)
                    epoch_losses = []
                    if self.best is not None:
                        bar.set_postfix(loss=f"{result.loss:.4f}", best_val=f"{self.best['value']:.4f}",
                                        refresh=False)
                if step % ckpt_every == 0 or end or stopped_early:
                    self.save_checkpoint(step, end or stopped_early, stopped_early)
                if stopped_early:
                    break
        except NonFiniteLoss as err:
            kept = (f"the last good checkpoint is {self.ckpt_path} (step {_checkpoint_step(self.ckpt_path)})"
                    if self.ckpt_path.exists() else "no checkpoint was written yet")
            raise NonFiniteLoss(err.step, err.value, f"{kept}; no model folder was written. Lower train.lr, set "
                                "train.grad_clip, or check the data") from None
        finally:
            bar.close()
            if self.live is not None:
                self.live.end()
        return self._write_model(step, stopped_early, last_loss)

    def _zero_steps(self) -> float:
        """``train.max_steps: 0`` (e.g. a published encoder as an untrained baseline): the initial weights are
        the model. They are logged at step 0 as a training logs its steps (``train/*``: loss and monitors of
        the first training batch in eval mode, the learning rate, τ; ``epoch`` and ``val/*``), so the dvclive
        folder holds the same files as after a training (DVC's declared outputs exist and the tracked logs
        are rewritten, not lost); a finished checkpoint is saved. Returns the step-0 training loss."""
        try:
            first = fixed_batches(self.data.train_plan, 1, self.dist.rank, self.dist.world_size)
            metrics = self.trainer.validate(_loader(self.dataset, first, 0, self.device))
            set_lr(self.optimizer, self.lr_factor(0))
            for k, v in metrics.items():
                self.log(f"train/{k}", v, 0)
            self.log("train/lr", self.optimizer.param_groups[0]["lr"], 0)
            self.log("train/tau", self.trainer.momentum_tau, 0)
            self.end_of_epoch(0)
            self.save_checkpoint(0, True)
        finally:
            if self.live is not None:
                self.live.end()
        val = self.history[-1] if self.history else None
        _log(f"0 steps (train.max_steps: 0): the model keeps its initial weights; step 0: train loss "
             f"{metrics.get('loss', float('nan')):.4f}"
             + (f", val loss {val['loss']:.4f}, val in-batch EER {val['eer']:.1f}%" if val else ""), self.dist)
        return float(metrics.get("loss", float("nan")))

    def _write_model(self, step: int, stopped_early: bool, last_loss: float) -> dict[str, Any]:
        best = self.best
        kept = best if best is not None and best.get("state") is not None else None
        summary = {
            "steps": step, "epochs": self.epoch, "total_steps": self.data.total_steps,
            "stopped_early": bool(stopped_early), "resumed_from": self.start_step if self.resumed else None,
            "select": self.cfg.select, "monitor": self.cfg.monitor,
            "best_val_loss": None if best is None else best["val_loss"],
            "best_value": None if best is None else best["value"],
            "best_step": None if best is None else best["step"],
            "kept_step": kept["step"] if kept is not None else step, "final_loss": last_loss,
            "seconds": time.perf_counter() - self.started, "model_dir": str(self.paths.model),
            "is_main": self.dist.is_main,
        }
        if self.dist.is_main:
            final = build_model(self.hparams)  # plain modules (no DDP/SyncBN); proves the hparams suffice
            final.load_state_dict(kept["state"] if kept is not None else _cpu_state(self.unit.model))
            self.hparams["training"] = {k: summary[k] for k in ("steps", "epochs", "select", "monitor", "best_value",
                                                                "best_val_loss", "best_step", "kept_step")}
            threshold, cohort = self._threshold(final)
            save_model_folder(final, self.hparams, self.paths.model, threshold=threshold, cohort=cohort)
            best_txt = ("no validation" if best is None
                        else f"best val {best['monitor']} {best['value']:.4f} at step {best['step']}")
            best_txt += f", kept the weights of step {summary['kept_step']}"
            _log(f"done: {step} steps, {self.epoch} epochs{' (early stop)' if stopped_early else ''}, {best_txt}, "
                 f"{summary['seconds']:.0f} s -> {self.paths.model}", self.dist)
        return summary


    def _threshold(self, final: torch.nn.Module) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """``threshold.json`` and ``cohort.json`` of the model folder: the EER threshold and the calibrations of
        all pairs of the held-out validation singers' segments, embedded whole by the kept weights
        (:func:`validation_embeddings`), and the training singers' mean embeddings (a seeded subset of at most
        :data:`THRESHOLD_MAX_SEGMENTS` training segments) for S-norm/AS-norm; ``(None, None)`` (and a log line)
        when validation holds out no singers."""
        from singer_ssl.evaluation.backend import singer_cohort
        from singer_ssl.training.monitors import normalised_calibrations

        table, tr = self.data.table, self.cfg.train
        train_idx, val_idx, unit = split_by_singer(table, tr.val_fraction, self.cfg.seed)
        found = None
        if unit == "singer" and len(val_idx):
            emb, idx = validation_embeddings(final.to(self.device), table, val_idx, self.cfg.seed, self.device)
            found = validation_threshold(emb, table.singer[idx])
        if found is None:
            _log("no verification threshold stored (needs >= 2 held-out validation singers with >= 2 segments; "
                 "train.val_fraction)", self.dist)
            return None, None
        t_emb, t_idx = validation_embeddings(final, table, train_idx, self.cfg.seed, self.device)
        t_singers = np.array([table.singer_names[k] for k in table.singer[t_idx]])
        means, mean = singer_cohort(t_emb, t_singers)
        cohort = None
        if len(means) >= 2:
            cohort = {"singers": sorted(set(t_singers.tolist())), "segments": int(len(t_idx)), "mean": mean,
                      "cohort": means}
            found["calibration_norm"] = normalised_calibrations(emb, table.singer[idx], means, mean, COHORT_TOP_N)
        _log(f"verification threshold: cosine {found['eer_threshold']:.4f} at EER {found['eer']:.2f}% over "
             f"{found['n_trials']} pairs of {found['n_segments']} validation segments ({found['n_singers']} singers)",
             self.dist)
        return {"eer_threshold": found["eer_threshold"], "eer": found["eer"], "source": "validation singers",
                "representation": "embedding", **{k: v for k, v in found.items() if k.startswith("n_")},
                "calibration": {**found["calibration"], "score": "cosine"},
                **({"calibration_norm": found["calibration_norm"]} if "calibration_norm" in found else {}),
                "val_singers": sorted({table.singer_names[k] for k in table.singer[val_idx]})}, cohort


#: AS-norm's top-N for the model folder's normalised calibration (wespeaker's default; ``singer-ssl verify``)
COHORT_TOP_N = 100


#: most validation segments embedded for the stored threshold (a seeded subset beyond it)
THRESHOLD_MAX_SEGMENTS = 600


def validation_embeddings(model: torch.nn.Module, table: Any, val_idx: np.ndarray, seed: int,
                          device: torch.device, max_segments: int = THRESHOLD_MAX_SEGMENTS,
                          batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``(n, D)`` of validation segments and their table indices ``(n,)``.

    Each segment's wav file is embedded whole (one window: the segments have the model's window
    length), by ``model(wave)`` in eval mode without autograd, as :mod:`singer_ssl.api` embeds a
    window; at most ``max_segments`` segments (seeded subset, ascending).
    """
    import soundfile as sf

    idx = np.asarray(val_idx)
    if len(idx) > max_segments:
        idx = np.sort(np.random.default_rng([int(seed), 0x7E5]).choice(idx, max_segments, replace=False))
    model.eval()
    out: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            with torch.no_grad():
                out.append(model(torch.from_numpy(np.stack(batch)).to(device)).float().cpu().numpy())
            batch.clear()

    for i in idx:
        x, _ = sf.read(table.audio_path(int(i)), dtype="float32", always_2d=True)
        x = x.mean(axis=1)
        if batch and (len(x) != len(batch[0]) or len(batch) == batch_size):
            flush()
        batch.append(x)
    flush()
    return np.concatenate(out), idx


def _checkpoint_step(path: Path) -> int | str:
    try:
        return int(ckpt.load(path)["step"])
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def _input_note(cfg: TrainConfig, hparams: dict[str, Any]) -> str:
    """One line about the input of an encoder that starts from a published checkpoint (``encoders.<name>.init``):
    the recorded convention applied (:func:`singer_ssl.training.hyperparams.published_scaling`), or that the file
    name has none; empty without a checkpoint."""
    init = hparams["encoder"].get("init")
    if init is None:
        return ""
    path = encoders.init_path(cfg.encoder, init)
    convention = encoders.published_convention(cfg.encoder, path)
    if convention is None:
        known = sorted(k for k, c in encoders.PUBLISHED_INPUT.items() if c.encoder == cfg.encoder)
        return (f"{path}: no recorded input convention for this file name (known for {cfg.encoder}: "
                f"{', '.join(known) or 'none'}); the encoder gets train.input_scaling {cfg.train.input_scaling} as is")
    norm = hparams["normalization"]
    return (f"encoder input as {os.path.basename(path)} was trained ({convention.source}): "
            f"{norm.get('scaling', 'dataset_std')} scaling times gain {float(norm.get('gain', 1.0)):.4g} "
            f"(train.input_scaling: {cfg.train.input_scaling}); recorded in hyperparams.yaml (normalization)")


def _describe(cfg: TrainConfig, data: DataPlan, device: torch.device, dist_info: Dist, unit: TrainUnit) -> str:
    n_params = sum(p.numel() for p in unit.parameters())
    return (f"{cfg.loss} / {cfg.encoder} ({n_params / 1e6:.2f} M params) on {device}"
            f"{f' x {dist_info.world_size} processes' if dist_info.world_size > 1 else ''}; "
            f"{len(data.table)} segments of {len(data.table.names)} dataset(s), {data.n_train} for training, "
            f"validation on held-out {data.val_unit}s: {data.val_batches} batch(es); "
            f"{'waveform' if cfg.wave_mode else 'log-mel'} views ({cfg.augment.views}, {cfg.augment.crop_seconds} s); "
            f"{data.total_steps} steps ({data.steps_per_epoch}/epoch), batch {cfg.batch_size}")
