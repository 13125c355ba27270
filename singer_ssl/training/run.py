"""The train stage: SSL training of the encoder chosen by ``loss`` and ``encoder``.

``train(params, root)`` reads the training datasets (every ``datasets.train.<name>``: features
``data/features/train/<name>.h5`` and segments ``data/segments/train/<name>/``), trains, and writes
the model folder ``data/model/`` (``model.pt``, ``model.ts``, ``hyperparams.yaml``; see
:mod:`singer_ssl.model.singer_model`). Parts: :mod:`singer_ssl.training` (data, samplers, loop, monitors,
checkpoints).

What a run does, in order:

1. **Validate** every parameter before any heavy work (:func:`resolve_settings`, then the checks that
   need the data's metadata): unknown loss/encoder/augmentation names, waveform encoders with
   spectrogram augmentations, GE2E batches that are not ``singers x utterances``, label-based
   objectives (supcon, semisupcon, ge2e) without singer labels, batches too small or too large.
2. **Data**: ``train.val_fraction`` of the training *singers* (seeded) are held out for validation.
   Views per ``augment.views``; waveform mode (segment audio read in the workers, waveform
   augmentations there, log-mel computed batched on the device) when the encoder takes waveforms or
   ``augment.waveform`` has an enabled entry, otherwise log-mel crops read from the HDF5.
   Batches per objective: random, GE2E ``singers x utterances``, SemiSupCon labelled/unlabelled mix.
3. **Loop**: Adam or SGD with an optional warm-up and cosine / multi-step schedule
   (:mod:`singer_ssl.training.optim`); bf16 autocast on CUDA (``train.amp``); BYOL's EMA teacher with the cosine τ
   schedule over the planned number of steps; validation (loss on fixed views + in-batch EER) at the
   end of every epoch; early stopping after ``train.patience`` epochs without improvement; the model
   with the best validation loss is kept. DDP under ``torchrun`` (see :mod:`singer_ssl.training.loop`
   for the ``loss * world_size`` rule); only rank 0 writes.
4. **Checkpoints** every ``train.checkpoint_every`` steps in ``data/checkpoints/last.pt``; a rerun with
   the same parameters and data resumes from it (a different fingerprint starts fresh and says so).
   A NaN/inf loss stops with :class:`~singer_ssl.training.loop.NonFiniteLoss` naming the step; the last
   good checkpoint is kept and no model folder is written.
5. **Logs**: dvclive in ``plots/train`` (step metrics ``train/*`` every ``train.log_every`` steps,
   ``val/*`` every epoch), a tqdm progress line and a final summary.

Planned steps: ``epochs * steps_per_epoch`` (``steps_per_epoch: null`` = one pass over the training
segments), capped by ``max_steps``. Same seed, data and device (CPU) give the same weights.
"""

from __future__ import annotations

import copy
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

from singer_ssl.core.device import resolve_device
from singer_ssl.core.errors import ConfigError
from singer_ssl.training.config import Settings, enabled, resolve_settings
from singer_ssl.training.optim import build_optimizer, lr_factor, set_lr
from singer_ssl.training.runtime import (
    Dist,
    all_rng_states,
    broadcast_flag,
    deterministic_mode,
    init_distributed,
    seed_all,
)

__all__ = ["TrainingRun", "plan_data", "resolve_settings", "train"]

MODEL_DIR = Path("data") / "model"
CHECKPOINT_DIR = Path("data") / "checkpoints"
LIVE_DIR = Path("plots") / "train"


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


def _make_plan(settings: Settings, pool: np.ndarray, labels: np.ndarray, batch_size: int, seed: int,
               what: str):
    """The batch sampler the objective asks for through its ``batch`` options (``losses.sampler_config``):
    ``singers``/``utterances`` -> singer-grouped batches, ``p_s``/``b_s`` -> semi-supervised, none -> random."""
    from singer_ssl.training.sampler import RandomBatches, SemiSupervisedBatches, SingerBatches

    if "utterances" in settings.sampler:
        singers = settings.sampler["singers"]
        if what == "validation":  # fewer held-out singers than a training batch: use them all
            eligible = sum(1 for s in np.unique(labels[pool])
                           if s >= 0 and np.sum(labels[pool] == s) >= settings.sampler["utterances"])
            singers = min(singers, eligible)
            if singers < 2:
                raise ConfigError(
                    f"{settings.loss} validation needs >= 2 held-out singers with >= {settings.sampler['utterances']} "
                    f"segments, found {eligible}; raise train.val_fraction or set it to 0")
        return SingerBatches(pool, labels, singers, settings.sampler["utterances"], seed, what)
    if "p_s" in settings.sampler:
        return SemiSupervisedBatches(pool, labels, batch_size, settings.sampler["p_s"], settings.sampler["b_s"], seed)
    return RandomBatches(pool, labels, batch_size, seed)


def plan_data(settings: Settings, root: Path, dist_info: Dist) -> DataPlan:
    """Load the segment table and run every data-dependent check; build the batch plans."""
    from singer_ssl import encoders, losses
    from singer_ssl.core.frontend import n_frames
    from singer_ssl.training.data import load_segment_table, split_by_singer

    table = load_segment_table(root, settings.datasets)
    sr, hop, n_fft = int(table.attrs["sample_rate"]), int(table.attrs["hop"]), int(table.attrs["n_fft"])
    crop_samples = int(round(settings.crop_seconds * sr))
    if settings.crop_seconds > table.segment_seconds + 1.0 / sr:
        raise ConfigError(f"augment.crop_seconds ({settings.crop_seconds} s) is longer than the training segments "
                          f"({table.segment_seconds:g} s); lower it or re-segment with longer segment.seconds")
    if not settings.wave_mode and n_frames(crop_samples, hop) > table.n_frames:
        raise ConfigError(f"a {settings.crop_seconds} s crop needs {n_frames(crop_samples, hop)} frames but the stored "
                          f"log-mels have {table.n_frames}")
    if settings.wave_mode and settings.encoder_kind == "logmel" and crop_samples <= n_fft // 2:
        raise ConfigError(f"augment.crop_seconds ({settings.crop_seconds} s) is too short for n_fft {n_fft}")
    min_length = int(getattr(encoders.ENCODERS[settings.encoder], "min_length", 1))
    have = crop_samples if settings.encoder_kind == "waveform" else n_frames(crop_samples, hop)
    if have < min_length:
        unit = "samples" if settings.encoder_kind == "waveform" else "frames"
        raise ConfigError(f"encoder {settings.encoder!r} needs inputs of >= {min_length} {unit}, but a "
                          f"{settings.crop_seconds} s crop gives {have}; raise augment.crop_seconds")
    if settings.wave_mode:
        missing = [str(table.audio_path(i)) for i in range(len(table)) if not table.audio_path(i).is_file()]
        if missing:
            raise ConfigError(f"{len(missing)} training segment file(s) listed in the features are missing, e.g. "
                              f"{missing[0]}; re-run the segment and features stages")
    cls = losses.objective_class(settings.loss)
    n_known = len(np.unique(table.singer[table.singer >= 0]))
    label_rows = "p_s" not in settings.sampler or losses.semisup_batch_counts(
        settings.batch_size, settings.sampler["b_s"], settings.sampler["p_s"])[0] > 0
    if cls.needs_labels and label_rows and n_known < 2:
        raise ConfigError(f"loss {settings.loss!r} needs singer labels, but the training data has {n_known} known "
                          "singer(s); use an SSL loss or a dataset layout with a singer rule")

    tr = settings.train
    train_idx, val_idx, unit = split_by_singer(table, tr["val_fraction"], settings.seed)
    world = dist_info.world_size
    b = settings.batch_size
    if (b // world) < 2 or b % world:
        raise ConfigError(f"train.batch_size ({b}) must be a multiple of the number of processes ({world}) with at "
                          "least 2 items per process (batch-norm and in-batch negatives)")
    train_plan = _make_plan(settings, train_idx, table.singer, b, settings.seed, "training")
    val_plan, val_batches = None, 0
    if len(val_idx):
        b_val = min(b, (len(val_idx) // world) * world)
        if b_val // world < 2:
            raise ConfigError(f"the validation set has {len(val_idx)} segments, too few for batches of >= 2 per "
                              "process; raise train.val_fraction or set it to 0")
        val_plan = _make_plan(settings, val_idx, table.singer, b_val, settings.seed + 1, "validation")
        cap = tr["val_batches"]
        val_batches = max(1, val_plan.one_pass if cap is None else min(cap, val_plan.one_pass))
    spe = tr["steps_per_epoch"] or max(1, train_plan.one_pass)
    total = spe * tr["epochs"] if tr["epochs"] is not None else tr["max_steps"]
    if tr["max_steps"] is not None:
        total = min(total, tr["max_steps"])
    return DataPlan(table, train_plan, val_plan, val_batches, spe, int(total), train_plan.group_size, unit,
                    crop_samples, len(train_idx), len(val_idx))


def _loader(dataset, batch_sampler, num_workers: int, device: torch.device):
    from singer_ssl.training.data import collate_views, worker_init

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


def train(params: dict[str, Any], root: str | os.PathLike = ".", *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) a training; write ``data/model/`` under ``root``. Returns a summary dict.

    Keys of the summary: ``steps``, ``epochs``, ``total_steps``, ``stopped_early``, ``resumed_from``,
    ``best_val_loss``, ``best_step``, ``final_loss``, ``seconds``, ``model_dir``.
    """
    settings = resolve_settings(params)
    root = Path(root)
    dist_info = init_distributed(settings.train["device"])
    try:
        device = resolve_device(settings.train["device"])
        if device.type == "cuda" and dist_info.world_size > 1:
            device = torch.device("cuda", dist_info.local_rank)
        with deterministic_mode(bool(settings.train["deterministic"]), device):
            return TrainingRun(params, settings, root, dist_info, device).fit(progress)
    finally:
        if dist_info.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


class TrainingRun:
    """A prepared run: data plan, model, objective, teacher, optimiser, loaders, restored checkpoint.

    Construction does everything but train (no files written); :meth:`fit` trains, logs, checkpoints
    and writes the model folder. ``benchmarks/train.py`` drives ``train_loader`` and ``trainer``
    directly.
    """

    def __init__(self, params: dict[str, Any], settings: Settings, root: Path, dist_info: Dist,
                 device: torch.device) -> None:
        from singer_ssl import augment, losses
        from singer_ssl.model.folder import build_model
        from singer_ssl.training import checkpoint as ckpt
        from singer_ssl.training.data import ViewDataset
        from singer_ssl.training.hyperparams import hyperparams_from_params
        from singer_ssl.training.loop import Trainer, TrainUnit
        from singer_ssl.training.sampler import VAL_STREAM, BatchStream, fixed_batches

        self.started = time.perf_counter()
        self.params, self.settings, self.root, self.dist, self.device = params, settings, root, dist_info, device
        tr = settings.train
        self.data = data = plan_data(settings, root, dist_info)
        table = data.table
        self.hparams = hyperparams_from_params(params, table.attrs, table.mean, table.std, table.segment_seconds,
                                               settings.datasets)
        signature = ckpt.data_signature(table.names, table.keys, table.attrs, table.mean, table.std)
        self.fingerprint = ckpt.fingerprint(params, signature)

        # model, objective, teacher, optimiser: the same initial weights on every rank. The model is built
        # first, right after seeding, so that every objective starts from the weights of the embed stage's
        # random-init baseline (torch.manual_seed(seed); build_model(hparams)).
        seed_all(settings.seed)
        model = build_model(self.hparams)
        objective = losses.get(settings.loss, dim=settings.head_dim, **settings.loss_params)
        unit = TrainUnit(model, objective).to(device)
        if dist_info.world_size > 1 and device.type == "cuda":
            unit = torch.nn.SyncBatchNorm.convert_sync_batchnorm(unit)
        self.unit = unit
        self.teacher = None
        if objective.needs_teacher:
            self.teacher = copy.deepcopy(unit.model).requires_grad_(False)
        self.optimizer = build_optimizer(unit.model, unit.objective, tr)
        spe = data.steps_per_epoch
        self.lr_factor = functools.partial(
            lr_factor, total_steps=data.total_steps, schedule=tr["schedule"],
            warmup_steps=int(round(float(tr["warmup_epochs"]) * spe)),
            milestones=[int(round(float(m) * spe)) for m in tr["milestones"]], gamma=float(tr["gamma"]))
        self.spec_augment = None
        if unit.model.uses_logmel and enabled(settings.spectrogram_cfg):
            self.spec_augment = augment.build_spectrogram(settings.spectrogram_cfg).to(device)
        seed_all(settings.seed * 1009 + 7919 * dist_info.rank + 1)  # per-rank dropout streams

        self.ckpt_path = root / CHECKPOINT_DIR / ckpt.CHECKPOINT_NAME
        self.start_step, self.epoch, self.best, self.bad_epochs, self.history = 0, 0, None, 0, []
        self.resumed = self._resume()
        self.finished = bool(self.resumed and self.resumed.get("finished"))

        self.trainer = Trainer(unit, self.optimizer, device, spec_augment=self.spec_augment, teacher=self.teacher,
                               total_steps=data.total_steps, amp=bool(tr["amp"]), grad_clip=tr["grad_clip"],
                               needs_labels=objective.needs_labels, monitor_shift=data.monitor_shift,
                               seed=settings.seed, rank=dist_info.rank, world_size=dist_info.world_size)

        waveform_augment = None
        if settings.wave_mode and enabled(settings.waveform_cfg):
            waveform_augment = augment.build_waveform(settings.waveform_cfg, int(table.attrs["sample_rate"]))
        dataset = ViewDataset(table, "wave" if settings.wave_mode else "logmel", settings.views, data.crop_samples,
                              waveform_augment)
        workers = int(tr["num_workers"])
        self.train_loader = self.val_loader = None
        if not self.finished and self.start_step < data.total_steps:
            stream = BatchStream(data.train_plan, data.steps_per_epoch, self.start_step, data.total_steps,
                                 dist_info.rank, dist_info.world_size)
            self.train_loader = _loader(dataset, stream, workers, device)
            if data.val_plan is not None:
                specs = fixed_batches(data.val_plan, data.val_batches, dist_info.rank, dist_info.world_size,
                                      VAL_STREAM)
                self.val_loader = _loader(dataset, specs, workers, device)
        self.live = None

    def _resume(self) -> dict[str, Any] | None:
        """Load the checkpoint when its fingerprint matches; returns it (or None)."""
        from singer_ssl.training import checkpoint as ckpt

        if not self.ckpt_path.exists():
            return None
        try:
            state = ckpt.load(self.ckpt_path)
        except Exception as err:  # noqa: BLE001 - a broken/foreign checkpoint must not block training
            _log(f"cannot read {self.ckpt_path} ({type(err).__name__}: {err}); starting fresh", self.dist)
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            found = state.get("fingerprint") if isinstance(state, dict) else None
            _log(f"ignoring {self.ckpt_path}: it belongs to other parameters or data (fingerprint "
                 f"{found} != {self.fingerprint}); starting fresh", self.dist)
            return None
        self.unit.model.load_state_dict(state["model"])
        self.unit.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher"])
        if self.spec_augment is not None and state.get("spec_augment") is not None:
            self.spec_augment = state["spec_augment"].to(self.device)  # whole module: mixup memory bank included
        self.start_step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best, self.bad_epochs = state.get("best"), int(state.get("bad_epochs", 0))
        self.history = list(state.get("history", []))
        rngs = state.get("rng") or []
        if len(rngs) == self.dist.world_size:
            ckpt.set_rng_state(rngs[self.dist.rank])
        else:
            _log(f"checkpoint was written by {len(rngs)} process(es), now {self.dist.world_size}: "
                 "dropout random streams restart", self.dist)
        if state.get("finished"):
            _log(f"{self.ckpt_path} holds a finished run with these parameters (step {self.start_step}): "
                 "writing the model folder from it", self.dist)
        else:
            _log(f"resuming from {self.ckpt_path} at step {self.start_step}", self.dist)
        return state

    # ---- logging and checkpoints

    def log(self, name: str, value: float | None, step: int) -> None:
        if self.live is not None and value is not None and math.isfinite(value):
            self.live.step = step
            self.live.log_metric(name, float(value))

    def save_checkpoint(self, step: int, done: bool, stopped_early: bool = False) -> None:
        from singer_ssl.training import checkpoint as ckpt

        rngs = all_rng_states(self.dist)
        if self.dist.is_main:
            ckpt.save(self.ckpt_path, {
                "fingerprint": self.fingerprint, "step": step, "epoch": self.epoch, "finished": done,
                "stopped_early": stopped_early,
                "model": self.unit.model.state_dict(), "objective": self.unit.objective.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None,
                "optimizer": self.optimizer.state_dict(), "spec_augment": self.spec_augment,
                "rng": rngs, "best": self.best, "bad_epochs": self.bad_epochs, "history": self.history,
                "world_size": self.dist.world_size,
                "params": {k: self.params.get(k) for k in ("seed", "loss", "encoder", "head", "augment", "train")},
            })

    def end_of_epoch(self, step: int) -> bool:
        """Validate; update the best model and the early-stopping counter. True = stop now."""
        from singer_ssl.training.loop import NonFiniteLoss

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
        key = self.settings.monitor
        value = metrics[key]
        if self.best is None or value < self.best["value"]:
            keep = self.settings.select != "last"
            self.best = {"value": value, "monitor": key, "val_loss": val_loss, "step": step, "epoch": self.epoch,
                         "state": _cpu_state(self.unit.model) if keep else None}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        patience = self.settings.train["patience"]
        stop = patience is not None and self.bad_epochs >= patience
        if stop:
            _log(f"early stopping after epoch {self.epoch}: validation {key} did not improve for {self.bad_epochs} "
                 f"epochs (best {self.best['value']:.4f} at epoch {self.best['epoch']})", self.dist)
        return broadcast_flag(stop, self.dist)

    # ---- the loop

    def fit(self, progress: bool = True) -> dict[str, Any]:
        """Train from the current position to the planned step count (or early stop); write the model."""
        from tqdm.auto import tqdm

        from singer_ssl.training import checkpoint as ckpt
        from singer_ssl.training.loop import NonFiniteLoss

        data, tr, trainer = self.data, self.settings.train, self.trainer
        if self.dist.is_main:
            from dvclive import Live

            live_dir = self.root / LIVE_DIR
            if self.resumed is not None:
                ckpt.truncate_live_logs(live_dir, self.start_step)
            self.live = Live(str(live_dir), resume=self.resumed is not None, dvcyaml=False, save_dvc_exp=False,
                             report=None)
            _log(_describe(self.settings, data, self.device, self.dist, self.unit), self.dist)
        bar = tqdm(total=data.total_steps, initial=self.start_step, unit="step", dynamic_ncols=True, file=sys.stderr,
                   desc=f"train {self.settings.loss}/{self.settings.encoder}",
                   disable=not (progress and self.dist.is_main))
        stopped_early = bool(self.resumed and self.resumed.get("stopped_early"))
        step, last_loss = self.start_step, float("nan")
        spe, log_every, ckpt_every = data.steps_per_epoch, int(tr["log_every"]), int(tr["checkpoint_every"])
        try:
            for batch in self.train_loader or ():
                set_lr(self.optimizer, self.lr_factor(step))
                result = trainer.train_step(batch, step)
                step += 1
                last_loss = result.loss
                bar.update(1)
                if step % log_every == 0 or step == 1:
                    monitors = trainer.monitors(result.z1, result.z2)
                    self.log("train/loss", result.loss, step)
                    self.log("train/lr", self.optimizer.param_groups[0]["lr"], step)
                    self.log("train/tau", result.tau, step)
                    for k, v in monitors.items():
                        self.log(f"train/{k}", v, step)
                    bar.set_postfix(loss=f"{result.loss:.4f}", eer=f"{monitors['eer']:.1f}%", refresh=False)
                end = step == data.total_steps
                if step % spe == 0 or end:
                    self.epoch = math.ceil(step / spe)
                    stopped_early = self.end_of_epoch(step)
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

    def _write_model(self, step: int, stopped_early: bool, last_loss: float) -> dict[str, Any]:
        from singer_ssl.model.folder import build_model, save_model_folder

        best = self.best
        kept = best if best is not None and best.get("state") is not None else None
        summary = {
            "steps": step, "epochs": self.epoch, "total_steps": self.data.total_steps,
            "stopped_early": bool(stopped_early), "resumed_from": self.start_step if self.resumed else None,
            "select": self.settings.select, "monitor": self.settings.monitor,
            "best_val_loss": None if best is None else best["val_loss"],
            "best_value": None if best is None else best["value"],
            "best_step": None if best is None else best["step"],
            "kept_step": kept["step"] if kept is not None else step, "final_loss": last_loss,
            "seconds": time.perf_counter() - self.started, "model_dir": str(self.root / MODEL_DIR),
        }
        if self.dist.is_main:
            final = build_model(self.hparams)  # plain modules (no DDP/SyncBN); proves the hparams suffice
            final.load_state_dict(kept["state"] if kept is not None else _cpu_state(self.unit.model))
            self.hparams["training"] = {k: summary[k] for k in ("steps", "epochs", "select", "monitor", "best_value",
                                                                "best_val_loss", "best_step", "kept_step")}
            save_model_folder(final, self.hparams, self.root / MODEL_DIR)
            best_txt = ("no validation" if best is None
                        else f"best val {best['monitor']} {best['value']:.4f} at step {best['step']}")
            best_txt += f", kept the weights of step {summary['kept_step']}"
            _log(f"done: {step} steps, {self.epoch} epochs{' (early stop)' if stopped_early else ''}, {best_txt}, "
                 f"{summary['seconds']:.0f} s -> {self.root / MODEL_DIR}", self.dist)
        return summary


def _checkpoint_step(path: Path) -> int | str:
    try:
        from singer_ssl.training.checkpoint import load

        return int(load(path)["step"])
    except Exception:  # noqa: BLE001 - only for the message
        return "?"


def _describe(settings: Settings, data: DataPlan, device: torch.device, dist_info: Dist, unit) -> str:
    n_params = sum(p.numel() for p in unit.parameters())
    return (f"{settings.loss} / {settings.encoder} ({n_params / 1e6:.2f} M params) on {device}"
            f"{f' x {dist_info.world_size} processes' if dist_info.world_size > 1 else ''}; "
            f"{len(data.table)} segments of {len(data.table.names)} dataset(s), {data.n_train} for training, "
            f"validation on held-out {data.val_unit}s: {data.val_batches} batch(es); "
            f"{'waveform' if settings.wave_mode else 'log-mel'} views ({settings.views}, {settings.crop_seconds} s); "
            f"{data.total_steps} steps ({data.steps_per_epoch}/epoch), batch {settings.batch_size}")
