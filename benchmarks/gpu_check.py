"""The prepared GPU check: every CUDA code path of singer-ssl run once, checked and timed against its floor.

    python benchmarks/gpu_check.py --out DIR                     # on a GPU machine, < 8 min on one H200
    python benchmarks/gpu_check.py --out DIR --device cpu --small   # CI smoke run, < 60 s on 2 cores
    python benchmarks/gpu_check.py --out DIR --only resume,speed/train   # a subset (names containing a part)

Writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` (a Markdown table), rewritten atomically after every
record, so a run killed part-way leaves what it had measured. Exit status 0 when every correctness check
passed or was skipped, 1 when one failed; a bad argument is one line ``error: gpu_check: ...``.

Data: a synthetic training set written in-process in the pipeline's layout (harmonic "voices", one per
singer, through :func:`singer_ssl.data.manifest.write_manifest` and the features stage's
:func:`singer_ssl.features.extract_features`); nothing under ``data/`` is read. Every check drives the
project's own code: :class:`singer_ssl.training.run.TrainingRun` (loader, waveform augmentations, model and
objective construction, :class:`~singer_ssl.training.loop.Trainer`), the checkpoint resume of
``TrainingRun.fit``, :func:`singer_ssl.embed.embed_dataset`, :func:`singer_ssl.api.load_model` and
:func:`singer_ssl.model.folder.load_torchscript`.

Records (``checks`` in the JSON; each ``name``, ``kind``, ``status``, ``value``, ``tolerance``/``target``,
``reason``):

- correctness (``pass``/``fail``/``skip``): the features stage on the device (nnAudio on CUDA) vs the CPU
  ``LogMel`` on the same segments (max |delta log-mel| where mel power > 1e-6); for every objective x the
  default encoder and every encoder x NT-Xent, a few training steps from a fixed seed (bf16 autocast on CUDA,
  as ``train.amp``), loss finite and, at step 1, within a relative tolerance of the fp32 CPU loss (dropout
  is off for that first step on both sides: CPU and CUDA draw different random streams); embed on the
  device vs CPU (min cosine); the public API on the device vs CPU; resume from a checkpoint written on the
  device vs the uninterrupted run (max |delta weight|); ``model.ts`` loaded and run on the device vs the
  eager CPU model (min cosine).
- ddp: 2-process NCCL vs 1 process at twice the batch (loss, gradients) when > 1 GPU is visible, else skip.
- speed (``measured``; ratio to a floor measured in the same run): training samples/s through the real
  loader + augmentations + step vs the same step on log-mels already on the device, for the Torres et al.
  preset and the laptop default (``params.yaml``), with a sweep of loader workers (the fewest that reach
  >= 90 % of the floor); features stage segments/s vs bare batched ``torch.stft`` + mel on the device;
  embed stage throughput per model pass vs the forward floor; peak GPU memory per preset (``memory``).
  Speed sections are skipped (``skipped: time budget``) once ``--budget`` seconds have passed.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars from the stages (tqdm reads it when imported)

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATASET = "gpucheck"
PASS, FAIL, SKIP, MEASURED = "pass", "fail", "skip", "measured"
TRAIN_TARGET, FEATURES_TARGET, WORKER_TARGET = 0.9, 0.75, 0.9


@dataclass(frozen=True)
class Sizes:
    """How big everything is: the synthetic data (``singers x sources x segments`` segments of ``seconds`` s),
    the front end, the correctness runs (``batch``, ``crop`` s, ``steps``) and the speed runs."""

    sample_rate: int
    n_fft: int
    hop: int
    n_mels: int
    seconds: float
    singers: int
    sources: int
    segments: int
    batch: int
    crop: float
    steps: int
    speed_batch: int | None       # None = the preset's own batch
    speed_crop: float | None      # None = the preset's own crop
    speed_steps: int              # timed steps per block
    workers: tuple[int, ...]      # loader-worker sweep
    sweep_cap_s: float            # wall-clock cap per worker count
    budget_s: float               # default --budget


FULL = Sizes(44100, 2048, 512, 128, 4.0, 16, 2, 5, 8, 2.0, 3, None, None, 6, (0, 2, 4, 8, 12, 15), 15.0, 360.0)
# small: n_mels 40 is the fewest crnn accepts (frequency pools 5, 4, 2)
SMALL = Sizes(16000, 512, 256, 40, 4.0, 8, 2, 2, 4, 1.0, 2, 4, 1.0, 2, (0, 1), 4.0, 55.0)


# ---------------------------------------------------------------------------------------------- report


class Report:
    """The records, rewritten to ``<out>/gpu_check.json`` and ``.md`` (atomically) after every change."""

    def __init__(self, out: Path, meta: dict[str, Any]) -> None:
        self.out, self.meta, self.checks = out, meta, []
        self.t0, self.cpu = time.perf_counter(), time.process_time()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def add(self, name: str, kind: str, status: str, value: Any = None, tolerance: Any = None, reason: str = "",
            **details: Any) -> dict[str, Any]:
        cpu = time.process_time()
        details["cpu_s"] = round(cpu - self.cpu, 2)  # this process's CPU seconds since the previous record
        self.cpu = cpu
        rec = {"name": name, "kind": kind, "status": status, "value": _plain(value), "tolerance": _plain(tolerance),
               "reason": reason, "details": _plain(details)}
        self.checks.append(rec)
        mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip", "measured": "time"}[status]
        print(f"[{self.elapsed():6.1f} s] {mark} {name}: {_fmt(value)} {reason}", file=sys.stderr, flush=True)
        self.write()
        return rec

    def failed(self) -> list[str]:
        return [c["name"] for c in self.checks if c["kind"] in ("correctness", "ddp") and c["status"] == FAIL]

    def write(self, complete: bool = False) -> None:
        from singer_ssl.core.io import write_json, write_text

        self.meta.update(elapsed_s=round(self.elapsed(), 2), complete=complete)
        write_json(self.out / "gpu_check.json", {"meta": self.meta, "checks": self.checks})
        write_text(self.out / "gpu_check.md", self.markdown())

    def markdown(self) -> str:
        m = self.meta
        lines = [f"# GPU check ({m['device']}, {m['device_name']}, {'small' if m['small'] else 'full'} mode)", "",
                 f"{m['date']}, torch {m['torch']}, {m['cpus']} CPUs, {m['elapsed_s']} s"
                 f"{'' if m.get('complete') else ' (incomplete)'}", "",
                 "| check | kind | status | value | tolerance / target | reason |", "|---|---|---|---|---|---|"]
        for c in self.checks:
            reason = str(c["reason"]).replace("|", "\\|")
            lines.append(f"| {c['name']} | {c['kind']} | {c['status']} | {_fmt(c['value'])} | "
                         f"{_fmt(c['tolerance'])} | {reason} |")
        return "\n".join(lines) + "\n"


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.generic, torch.Tensor)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


# ---------------------------------------------------------------------------------------------- data


def make_dataset(root: Path, s: Sizes, seed: int = 0) -> tuple[Path, Path]:
    """Write the synthetic training set under ``root``: segments ``data/segments/train/<DATASET>/`` and
    features ``data/features/train/<DATASET>.h5`` (features computed on the CPU). Each singer is a harmonic
    tone with its own spectral envelope and vibrato; each source recording holds one note."""
    from singer_ssl.data.manifest import write_manifest, write_skipped
    from singer_ssl.features import extract_features

    seg_dir = root / "data" / "segments" / "train" / DATASET
    feat = root / "data" / "features" / "train" / f"{DATASET}.h5"
    rng = np.random.default_rng(seed)
    n = int(round(s.seconds * s.sample_rate))
    t = np.arange(n * s.segments) / s.sample_rate
    rows = []
    for i in range(s.singers):
        singer = f"singer{i:02d}"
        envelope = rng.uniform(0.1, 1.0, 8) / np.arange(1, 9) ** rng.uniform(0.5, 1.5)
        vibrato = rng.uniform(4.0, 7.0)
        (seg_dir / singer).mkdir(parents=True, exist_ok=True)
        for k in range(s.sources):
            f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
            phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * vibrato * t))) / s.sample_rate
            x = sum(a * np.sin(h * phase) for h, a in enumerate(envelope, 1) if h * f0 < s.sample_rate / 2)
            x = 0.3 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))
            for j in range(s.segments):
                name = f"{singer}/song{k}_{j:03d}.wav"
                sf.write(seg_dir / name, x[j * n:(j + 1) * n].astype(np.float32), s.sample_rate, subtype="PCM_16")
                rows.append({"segment": name, "singer": singer, "source": f"{singer}/song{k}.wav",
                             "start_s": j * s.seconds, "end_s": (j + 1) * s.seconds, "dataset": DATASET})
    write_manifest(seg_dir, rows)
    write_skipped(seg_dir, [])
    extract_features(seg_dir, feat, sample_rate=s.sample_rate, n_fft=s.n_fft, hop=s.hop, n_mels=s.n_mels,
                     device="cpu", dataset=DATASET, progress=False)
    return seg_dir, feat


def base_params(s: Sizes, small: bool) -> dict[str, Any]:
    """``params.yaml`` with the synthetic dataset and the check's front end."""
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["datasets"] = {"train": {DATASET: {"path": "synthetic"}}}
    params["audio"] = {"sample_rate": s.sample_rate}
    params["features"].update(n_fft=s.n_fft, hop=s.hop, n_mels=s.n_mels)
    if small:  # the CPU smoke run: the big recurrent encoder shrunk (same class, same code path)
        params["encoders"]["lstm"] = {"hidden": 64, "layers": 1, "embedding_dim": 64}
    return params


def train_params(base: dict[str, Any], *, loss: str, encoder: str, batch: int, crop: float, steps: int,
                 device: torch.device, workers: int = 0, preset: str | None = None,
                 checkpoint_every: int = 1000) -> dict[str, Any]:
    """A train configuration on the synthetic set: no validation, ``steps`` steps, ``workers`` loader workers."""
    from singer_ssl.encoders import encoder_class
    from singer_ssl.presets import load_preset, merge

    p = copy.deepcopy(base)
    if preset is not None:
        over = load_preset(preset, REPO / "presets")
        over.pop("audio", None)
        over.pop("features", None)  # the front end is the synthetic set's
        p = merge(p, over)
    p["loss"], p["encoder"] = loss, encoder
    cls = encoder_class(encoder)
    if cls.input_kind == "waveform":  # e.g. SampleCNN needs >= 59049 samples
        crop = max(crop, math.ceil(100 * (cls.min_length + 1) / base["audio"]["sample_rate"]) / 100)
    p["augment"]["crop_seconds"] = crop
    if loss == "ge2e":
        p["losses"]["ge2e"]["batch"] = {"singers": batch // 2, "utterances": 2}
    p["train"].update(batch_size=batch, num_workers=workers, val_fraction=0.0, max_steps=steps, epochs=100,
                      steps_per_epoch=None, device=str(device), amp=True, checkpoint_every=checkpoint_every,
                      log_every=1000, patience=None)
    return p


def paths_under(root: Path, name: str) -> Any:
    from singer_ssl.training.run import TrainPaths

    run = root / "runs" / name
    return TrainPaths.of(root / "data" / "features" / "train", root / "data" / "segments" / "train", run / "model",
                         run / "checkpoints", run / "plots")


# ---------------------------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stochastic(modules: list[nn.Module | None]) -> list[nn.Module]:
    """Dropout-like submodules (an attribute ``p`` used in training mode: ``nn.Dropout*``, stochastic depth)."""
    out = []
    for m in modules:
        for sub in (m.modules() if m is not None else ()):
            name = type(sub).__name__
            if ("Dropout" in name or "StochasticDepth" in name) and isinstance(getattr(sub, "p", None), float):
                out.append(sub)
    return out


@contextmanager
def no_dropout(modules: list[nn.Module | None]) -> Iterator[None]:
    """Dropout and stochastic depth off (``p = 0``), restored on exit."""
    subs = stochastic(modules)
    saved = [m.p for m in subs]
    for m in subs:
        m.p = 0.0
    try:
        yield
    finally:
        for m, p in zip(subs, saved):
            m.p = p


def make_run(params: dict[str, Any], paths: Any, device: torch.device) -> Any:
    from singer_ssl.training.config import TrainConfig
    from singer_ssl.training.run import TrainingRun
    from singer_ssl.training.runtime import Dist

    return TrainingRun(TrainConfig.from_params(params), paths, Dist(), device)


def run_steps(run: Any, n: int, first_without_dropout: bool = True) -> list[float]:
    """``n`` optimiser steps exactly as ``TrainingRun.fit`` makes them (lr schedule + ``Trainer.train_step``);
    the first without dropout (comparable across devices). Returns the losses."""
    from singer_ssl.training.optim import set_lr

    losses: list[float] = []
    for step, batch in enumerate(run.train_loader):
        set_lr(run.optimizer, run.lr_factor(step))
        if step == 0 and first_without_dropout:
            with no_dropout([run.unit, run.teacher]):
                losses.append(run.trainer.train_step(batch, step).loss)
        else:
            losses.append(run.trainer.train_step(batch, step).loss)
        if len(losses) >= n:
            break
    return losses


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(num / np.maximum(den, 1e-30)))


def guarded(report: Report, name: str, kind: str, fn: Callable[[], None]) -> None:
    """Run one check; an exception becomes a ``fail`` record naming it (the run goes on)."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - every failure is recorded, not raised
        last = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{Path(last.filename).name}:{last.lineno}"
        report.add(name, kind, FAIL, None, None, f"{type(e).__name__} at {where}: {str(e).splitlines()[0][:300]}"
                   if str(e) else f"{type(e).__name__} at {where}")


# ---------------------------------------------------------------------------------------------- correctness


def check_features(ctx: Ctx) -> None:
    """The features stage on the device vs ``LogMel`` on the CPU, same decoded segments."""
    from singer_ssl.core.frontend import LogMel
    from singer_ssl.data.manifest import read_manifest
    from singer_ssl.features import FeatureStore, extract_features, read_segments

    s, dev = ctx.sizes, ctx.device
    out = ctx.root / "check" / "features_device.h5"
    attrs = extract_features(ctx.seg_dir, out, sample_rate=s.sample_rate, n_fft=s.n_fft, hop=s.hop,
                             n_mels=s.n_mels, device=dev, dataset=DATASET, progress=False)
    rows = read_manifest(ctx.seg_dir, DATASET)
    waves = read_segments([ctx.seg_dir / r["segment"] for r in rows],
                          np.empty((len(rows), attrs["segment_samples"]), np.float32), s.sample_rate)
    ref_mod = LogMel(s.sample_rate, s.n_fft, s.hop, s.n_mels)
    with torch.inference_mode():
        ref = ref_mod(torch.from_numpy(waves)).numpy()
    with FeatureStore(out) as store:
        got = store.batch(np.arange(len(store)))
    mask = np.exp(ref) > 1e-6
    delta = float(np.abs(got - ref)[mask].max())
    tol = 1e-3 if dev.type == "cuda" else 1e-5
    ctx.report.add("correctness/features", "correctness", PASS if delta <= tol else FAIL, delta, tol,
                   f"features stage on {dev} ({attrs['extractor']}) vs CPU LogMel, max |delta log-mel| where "
                   f"mel power > 1e-6", segments=len(rows), masked_fraction=float(1 - mask.mean()))


def check_training(ctx: Ctx, loss: str, encoder: str) -> None:
    """A few steps on the device (bf16 autocast on CUDA) vs the fp32 CPU loss at step 1."""
    from singer_ssl.encoders import encoder_class
    from singer_ssl.training.runtime import deterministic_mode

    s, dev, cpu = ctx.sizes, ctx.device, torch.device("cpu")
    name = f"correctness/train/{loss}/{encoder}"
    t = time.perf_counter()
    # small mode: a waveform encoder (SampleCNN, >= 59049 samples per view) on the fewest items a batch may hold
    batch = 2 if ctx.small and encoder_class(encoder).input_kind == "waveform" else s.batch
    p_dev = train_params(ctx.base, loss=loss, encoder=encoder, batch=batch, crop=s.crop, steps=s.steps, device=dev)
    with deterministic_mode(True, dev):
        run = make_run(p_dev, ctx.paths("train"), dev)
        got = run_steps(run, s.steps)
        amp = run.trainer.amp
        del run
    p_cpu = train_params(ctx.base, loss=loss, encoder=encoder, batch=batch, crop=s.crop, steps=s.steps, device=cpu)
    with deterministic_mode(True, cpu):
        ref = run_steps(make_run(p_cpu, ctx.paths("train"), cpu), 1)[0]
    rel = abs(got[0] - ref) / max(1.0, abs(ref))
    tol = 5e-2 if amp else 1e-5
    finite = all(math.isfinite(v) for v in got)
    ok = finite and rel <= tol
    why = ("non-finite loss " if not finite else "") + (
        f"{len(got)} steps ({'bf16 autocast' if amp else 'fp32: the Trainer autocasts on CUDA only'}); "
        f"step-1 |loss - fp32 CPU loss| / max(1, |CPU loss|)")
    ctx.report.add(name, "correctness", PASS if ok else FAIL, rel, tol, why, losses=got, cpu_loss=ref,
                   seconds=round(time.perf_counter() - t, 2))


def check_resume_and_model(ctx: Ctx) -> None:
    """Resume from a checkpoint written on the device; then the model folder: TorchScript, embed, API."""
    from singer_ssl.model.folder import read_state_dict
    from singer_ssl.training.runtime import deterministic_mode

    s, dev = ctx.sizes, ctx.device
    loss, encoder = ctx.base["loss"], ctx.base["encoder"]
    steps = max(4, s.steps)
    params = train_params(ctx.base, loss=loss, encoder=encoder, batch=s.batch, crop=s.crop, steps=steps, device=dev,
                          checkpoint_every=2)
    full, part = ctx.paths("uninterrupted"), ctx.paths("resumed")
    with deterministic_mode(True, dev):
        make_run(params, full, dev).fit(progress=False)
        first = make_run(params, part, dev)
        run_steps(first, steps // 2, first_without_dropout=False)
        first.save_checkpoint(steps // 2, False)
        del first
        second = make_run(params, part, dev)
        resumed_from = second.start_step
        second.fit(progress=False)
    ctx.model_dir = full.model
    a, b = read_state_dict(full.model / "model.pt"), read_state_dict(part.model / "model.pt")
    delta = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
    tol = 1e-4 if dev.type == "cuda" else 1e-6  # deterministic algorithms: a broken resume moves Adam weights ~lr
    ok = resumed_from == steps // 2 and delta <= tol
    ctx.report.add("correctness/resume", "correctness", PASS if ok else FAIL, delta, tol,
                   f"{loss}/{encoder}: checkpoint written on {dev} at step {steps // 2} of {steps}, resumed at step "
                   f"{resumed_from}; max |delta weight| vs the uninterrupted run")


def check_torchscript(ctx: Ctx) -> None:
    from singer_ssl.model.folder import load_eager, load_torchscript

    s, dev = ctx.sizes, ctx.device
    ts = load_torchscript(ctx.model_dir, dev)
    eager = load_eager(ctx.model_dir, "cpu")
    wave = 0.1 * torch.randn(4, int(s.crop * s.sample_rate), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        got = ts(wave.to(dev)).float().cpu().numpy()
        ref = eager(wave).numpy()
    cos = min_cosine(got, ref)
    ctx.report.add("correctness/torchscript", "correctness", PASS if cos >= 0.999 else FAIL, cos, 0.999,
                   f"model.ts loaded on {dev} and run there vs the eager model on CPU, min cosine")


def check_embed(ctx: Ctx) -> None:
    from singer_ssl.embed import embed_dataset

    dev = ctx.device
    out = ctx.root / "check"
    t = time.perf_counter()
    got = embed_dataset(ctx.feat, ctx.seg_dir, ctx.model_dir, out / "emb_device.h5", device=str(dev),
                        batch_size=int(ctx.base["embed"]["batch_size"]), random_inits=1)
    ctx.embed_seconds = time.perf_counter() - t
    ref = embed_dataset(ctx.feat, ctx.seg_dir, ctx.model_dir, out / "emb_cpu.h5", device="cpu",
                        batch_size=int(ctx.base["embed"]["batch_size"]), random_inits=1)
    cos = min(min_cosine(got.vectors[k], ref.vectors[k]) for k in ("embedding", "projection"))
    ctx.report.add("correctness/embed", "correctness", PASS if cos >= 0.999 else FAIL, cos, 0.999,
                   f"embed stage on {dev} vs CPU, min cosine over {len(got.keys)} segments (embedding, projection)")


def check_api(ctx: Ctx) -> None:
    from singer_ssl.api import load_model

    files = sorted(ctx.seg_dir.glob("*/*.wav"))[:4]
    got = load_model(ctx.model_dir, device=str(ctx.device)).embed_files(files)
    ref = load_model(ctx.model_dir, device="cpu").embed_files(files)
    cos = min_cosine(got, ref)
    ctx.report.add("correctness/api", "correctness", PASS if cos >= 0.999 else FAIL, cos, 0.999,
                   f"singer_ssl.api.load_model(device={ctx.device}).embed_files vs CPU, min cosine")


# ---------------------------------------------------------------------------------------------- DDP


def check_ddp(ctx: Ctx) -> None:
    """2-process NCCL vs 1 process at twice the batch (needs >= 2 visible GPUs)."""
    n_gpu = torch.cuda.device_count() if ctx.device.type == "cuda" else 0
    if n_gpu < 2:
        why = f"skipped: {n_gpu} GPU visible" if ctx.device.type == "cuda" else "skipped: device cpu (no GPU)"
        ctx.report.add("ddp/nccl_2proc_vs_1proc", "ddp", SKIP, None, None, why)
        return
    import torch.multiprocessing as mp

    s = ctx.sizes
    params = train_params(ctx.base, loss=ctx.base["loss"], encoder=ctx.base["encoder"], batch=2 * s.batch,
                          crop=s.crop, steps=1, device=torch.device("cuda"))
    out = ctx.root / "ddp"
    out.mkdir(parents=True, exist_ok=True)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29500 + os.getpid() % 1000))
    mp.start_processes(_ddp_rank, args=(2, params, str(ctx.root), str(out)), nprocs=2, start_method="spawn")
    two = torch.load(out / "rank0.pt", weights_only=True)
    one = _one_step_grads(params, ctx.paths("ddp1"), torch.device("cuda", 0))
    dloss = abs(two["loss"] - one["loss"]) / max(1.0, abs(one["loss"]))
    dgrad = float((two["grad"] - one["grad"]).norm() / one["grad"].norm().clamp_min(1e-12))
    tol = 2e-2
    ctx.report.add("ddp/nccl_2proc_vs_1proc", "ddp", PASS if max(dloss, dgrad) <= tol else FAIL,
                   max(dloss, dgrad), tol, "2 processes (NCCL, SyncBatchNorm) vs 1 process at twice the batch: "
                   "max(relative loss difference, relative gradient-norm difference)", loss_rel=dloss, grad_rel=dgrad)


def _one_step_grads(params: dict[str, Any], paths: Any, device: torch.device, dist_info: Any = None) -> dict[str, Any]:
    from singer_ssl.training.config import TrainConfig
    from singer_ssl.training.run import TrainingRun
    from singer_ssl.training.runtime import Dist, deterministic_mode

    with deterministic_mode(True, device):
        run = TrainingRun(TrainConfig.from_params(params), paths, dist_info or Dist(), device)
        loss = run_steps(run, 1)[0]
        grads = [p.grad.detach().float().flatten().cpu() for p in run.unit.parameters() if p.grad is not None]
    return {"loss": loss, "grad": torch.cat(grads)}


def _ddp_rank(rank: int, world: int, params: dict[str, Any], root: str, out: str) -> None:
    import torch.distributed as dist

    from singer_ssl.training.runtime import init_distributed

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    info = init_distributed("cuda")
    try:
        res = _one_step_grads(params, paths_under(Path(root), f"ddp2_{rank}"), torch.device("cuda", rank), info)
        if rank == 0:
            torch.save(res, Path(out) / "rank0.pt")
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------- speed


def speed_training(ctx: Ctx, label: str, preset: str | None) -> None:
    """Samples/s of the real loader + augmentations + step vs the same step on log-mels already on the device,
    over a sweep of loader workers; peak GPU memory."""
    from singer_ssl.training.data import collate_views
    from singer_ssl.training.runtime import deterministic_mode

    s, dev = ctx.sizes, ctx.device
    merged = copy.deepcopy(ctx.base)
    if preset is not None:
        from singer_ssl.presets import load_preset, merge

        merged = merge(merged, load_preset(preset, REPO / "presets"))
    loss, encoder = merged["loss"], merged["encoder"]
    batch = s.speed_batch or int(merged["train"]["batch_size"])
    crop = s.speed_crop or float(merged["augment"]["crop_seconds"])
    default_workers = int(merged["train"].get("num_workers", 2))
    steps_total = 10_000
    params = train_params(ctx.base, loss=loss, encoder=encoder, batch=batch, crop=crop, steps=steps_total, device=dev,
                          preset=preset)
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    deterministic = bool(params["train"].get("deterministic", True))
    with deterministic_mode(deterministic, dev):  # as the train stage runs (params.yaml: deterministic algorithms)
        run = make_run(params, ctx.paths(f"speed_{label}"), dev)
        trainer, dataset = run.trainer, run.train_loader.dataset
        specs = next(iter(run.train_loader.batch_sampler))
        first = collate_views([dataset[sp] for sp in specs])
        with torch.no_grad():
            fe = run.unit.model.frontend.to(dev)
            mem = {"x1": fe(first["x1"].to(dev)), "x2": fe(first["x2"].to(dev)), "labels": first["labels"].to(dev)}
        step = [0]

        def floor_step() -> None:
            trainer.train_step(mem, step[0])
            step[0] += 1

        for _ in range(2):
            floor_step()
        sync(dev)
        t = time.perf_counter()
        for _ in range(s.speed_steps):
            floor_step()
        sync(dev)
        floor = batch * s.speed_steps / (time.perf_counter() - t)

        sweep, reached, best = [], None, 0.0
        candidates = [w for w in s.workers if w <= max(1, (os.cpu_count() or 1) - 1)]
        for w in sorted(set(candidates) | {default_workers if default_workers <= max(candidates) else 0}):
            if ctx.over_budget():
                sweep.append({"workers": w, "skipped": "time budget"})
                break
            try:
                rate, n, waits, warm_s = _pipeline_rate(ctx, run, dataset, w, batch, steps_total, step)
            except Exception as e:  # noqa: BLE001 - e.g. workers killed (shared memory): recorded, sweep stops
                sweep.append({"workers": w, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
                break
            ratio = rate / floor
            best = max(best, ratio)
            sweep.append({"workers": w, "samples_per_s": rate, "ratio": ratio, "timed_steps": n,
                          "wait_s_per_step": waits / n, "warmup_s": round(warm_s, 2)})
            if ratio >= WORKER_TARGET and reached is None:
                reached = w
                if w >= default_workers:
                    break
        del run
    measured = [r for r in sweep if "ratio" in r]
    if not measured:
        raise RuntimeError(f"no loader configuration could be timed: {sweep}")
    at_default = next((r for r in measured if r["workers"] == default_workers), None)
    head = at_default or max(measured, key=lambda r: r["ratio"])
    target = TRAIN_TARGET if preset == "torres2023" else None
    config = (f"{loss}/{encoder}, batch {batch}, {crop} s crops, augment {sorted(params['augment']['waveform'])}"
              f"{', deterministic' if deterministic else ''}")
    ctx.report.add(f"speed/train/{label}", "speed", MEASURED, head["ratio"], target,
                   f"{config}: {head['samples_per_s']:.1f} samples/s with {head['workers']} workers vs floor "
                   f"{floor:.1f} samples/s (log-mels on {dev}); best ratio {best:.3f}",
                   floor_samples_per_s=floor, sweep=sweep, default_workers=default_workers,
                   meets_target=None if target is None else head["ratio"] >= target)
    ctx.report.add(f"speed/workers/{label}", "speed", MEASURED, reached,
                   WORKER_TARGET, f"fewest loader workers reaching >= {WORKER_TARGET:.0%} of the floor"
                   if reached is not None else f"not reached with workers {[r['workers'] for r in measured]} "
                   f"(best ratio {best:.3f})", sweep_workers=[r["workers"] for r in measured])
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**30
        ctx.report.add(f"memory/train/{label}", "memory", MEASURED, peak, None,
                       f"peak torch.cuda.max_memory_allocated (GiB), {config}")
    else:
        ctx.report.add(f"memory/train/{label}", "memory", SKIP, None, None, "device cpu: no CUDA memory statistics")


def _pipeline_rate(ctx: Ctx, run: Any, dataset: Any, workers: int, batch: int, steps_total: int,
                   step: list[int]) -> tuple[float, int, float, float]:
    """Samples/s of ``Trainer.train_step`` fed by the train stage's own DataLoader with ``workers`` workers, after
    draining the workers' first batches (``workers + 2`` warm-up steps). Returns (rate, timed steps, seconds waited
    for the loader, warm-up seconds)."""
    from singer_ssl.training.run import _loader
    from singer_ssl.training.sampler import BatchStream

    s, dev, trainer = ctx.sizes, ctx.device, run.trainer
    stream = BatchStream(run.data.train_plan, run.data.steps_per_epoch, 0, steps_total)
    it = iter(_loader(dataset, stream, workers, dev))
    try:
        t0 = time.perf_counter()
        for _ in range(workers + 2 if workers else 1):
            trainer.train_step(next(it), step[0])
            step[0] += 1
        sync(dev)
        t, n, waits = time.perf_counter(), 0, 0.0
        least = 1 if workers == 0 and not ctx.small else 2  # no workers: the loader's work is serial, one step tells
        while n < s.speed_steps and (n < least or time.perf_counter() - t < s.sweep_cap_s):
            tw = time.perf_counter()
            b = next(it)
            waits += time.perf_counter() - tw
            trainer.train_step(b, step[0])
            step[0] += 1
            n += 1
        sync(dev)
        return batch * n / (time.perf_counter() - t), n, waits, t - t0
    finally:
        if hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


def speed_features(ctx: Ctx) -> None:
    """The features stage (decode + log-mel + HDF5 write) vs bare batched torch.stft + mel on the device."""
    from singer_ssl.core.frontend import make_extractor, mel_filterbank
    from singer_ssl.data.manifest import read_manifest
    from singer_ssl.features import default_workers, extract_features, read_segments

    s, dev = ctx.sizes, ctx.device
    rows = read_manifest(ctx.seg_dir, DATASET)
    paths = [ctx.seg_dir / r["segment"] for r in rows]
    n, n_samples, bs = len(rows), int(round(s.seconds * s.sample_rate)), 32
    stage = []
    for i in range(3):
        t = time.perf_counter()
        extract_features(ctx.seg_dir, ctx.root / "check" / f"speed_{i}.h5", sample_rate=s.sample_rate,
                         n_fft=s.n_fft, hop=s.hop, n_mels=s.n_mels, batch_size=bs, device=dev, dataset=DATASET,
                         progress=False)
        stage.append(n / (time.perf_counter() - t))
    stage_rate = max(stage)
    workers = default_workers()

    def decode(start: int) -> None:
        read_segments(paths[start:start + bs], np.empty((bs, n_samples), np.float32), s.sample_rate)

    with ThreadPoolExecutor(workers) as pool:
        t = time.perf_counter()
        list(pool.map(decode, range(0, n, bs)))
        decode_rate = n / (time.perf_counter() - t)
    waves = read_segments(paths, np.empty((n, n_samples), np.float32), s.sample_rate)
    x = torch.from_numpy(waves).to(dev)
    window = torch.hann_window(s.n_fft, device=dev)
    basis = mel_filterbank(s.sample_rate, s.n_fft, s.n_mels).to(dev)
    extractor = make_extractor(dev, sample_rate=s.sample_rate, n_fft=s.n_fft, hop=s.hop, n_mels=s.n_mels)

    def floor_pass() -> None:
        for i in range(0, n, bs):
            spec = torch.stft(x[i:i + bs], s.n_fft, s.hop, window=window, center=True, pad_mode="reflect",
                              return_complex=True)
            torch.log(torch.matmul(basis, spec.abs().square()) + 1e-8)

    def extractor_pass() -> None:
        for i in range(0, n, bs):
            extractor(x[i:i + bs])

    rates = {}
    with torch.inference_mode():
        for label, fn in (("floor", floor_pass), ("extractor", extractor_pass)):
            fn()
            sync(dev)
            best = math.inf
            for _ in range(3):
                t = time.perf_counter()
                fn()
                sync(dev)
                best = min(best, time.perf_counter() - t)
            rates[label] = n / best
    ratio = stage_rate / rates["floor"]
    target = FEATURES_TARGET if dev.type == "cuda" else None
    ctx.report.add("speed/features", "speed", MEASURED, ratio, target,
                   f"stage {stage_rate:.0f} seg/s ({n} x {s.seconds:g} s at {s.sample_rate} Hz, decode + "
                   f"{type(extractor).__name__} + HDF5 write) vs floor {rates['floor']:.0f} seg/s (bare batched "
                   f"torch.stft + mel on {dev}); decode alone {decode_rate:.0f} seg/s with {workers} threads",
                   stage_segments_per_s=stage, floor_segments_per_s=rates["floor"],
                   extractor_segments_per_s=rates["extractor"], decode_segments_per_s=decode_rate,
                   decode_bound=decode_rate < rates["floor"],
                   meets_target=None if target is None else ratio >= target)


def speed_embed(ctx: Ctx) -> None:
    """The embed stage per model pass vs the model's forward on log-mels already on the device."""
    from singer_ssl.embed import embed_dataset
    from singer_ssl.features import FeatureStore
    from singer_ssl.model.folder import load_eager

    dev, bs = ctx.device, int(ctx.base["embed"]["batch_size"])
    dt = ctx.embed_seconds if ctx.small else 0.0  # small: reuse the correctness check's (cold) run on the device
    if not dt:
        t = time.perf_counter()
        embed_dataset(ctx.feat, ctx.seg_dir, ctx.model_dir, ctx.root / "check" / "emb_speed.h5", device=str(dev),
                      batch_size=bs, random_inits=1)
        dt = time.perf_counter() - t
    with FeatureStore(ctx.feat) as store:
        n = len(store)
        x = torch.from_numpy(store.batch(np.arange(n))).to(dev)
    model = load_eager(ctx.model_dir, dev)
    with torch.inference_mode():
        model.embed_logmel(x[:bs])
        sync(dev)
        t = time.perf_counter()
        for i in range(0, n, bs):
            model.embed_logmel(x[i:i + bs])
        sync(dev)
        floor = n / (time.perf_counter() - t)
    stage = 2 * n / dt  # two encoder passes per segment: trained + one random-init baseline
    ctx.report.add("speed/embed", "speed", MEASURED, stage / floor, None,
                   f"embed stage {stage:.0f} seg/s per model pass ({n} segments, batch {bs}, incl. HDF5 read, model "
                   f"load, MFCC baseline, write) vs forward floor {floor:.0f} seg/s on {dev}",
                   stage_segments_per_s=stage, floor_segments_per_s=floor)


# ---------------------------------------------------------------------------------------------- driver


class Ctx:
    """What the checks share: device, sizes, data, the report, the model folder of the resume check."""

    def __init__(self, device: torch.device, sizes: Sizes, small: bool, root: Path, report: Report,
                 budget: float, only: list[str] | None = None) -> None:
        self.device, self.sizes, self.small, self.root, self.report = device, sizes, small, root, report
        self.budget, self.only = budget, only or []
        self.base = base_params(sizes, small)
        self.seg_dir, self.feat = make_dataset(root, sizes)
        self.model_dir: Path | None = None
        self.embed_seconds = 0.0
        self._n = 0

    def paths(self, name: str) -> Any:
        self._n += 1
        return paths_under(self.root, f"{name}_{self._n}")

    def over_budget(self) -> bool:
        return self.report.elapsed() > self.budget


def run_all(ctx: Ctx) -> None:
    """Every check in order (correctness, DDP, speed), or those whose name contains one of ``ctx.only``."""
    from singer_ssl.encoders import ENCODERS
    from singer_ssl.losses import NAMES

    rep = ctx.report

    def want(name: str) -> bool:
        return not ctx.only or any(part in name for part in ctx.only)

    def check(name: str, kind: str, fn: Callable[[], None]) -> None:
        if want(name):
            guarded(rep, name, kind, fn)

    check("correctness/features", "correctness", lambda: check_features(ctx))
    default_encoder = ctx.base["encoder"]
    for loss in NAMES:
        check(f"correctness/train/{loss}/{default_encoder}", "correctness",
              lambda loss=loss: check_training(ctx, loss, default_encoder))
    for encoder in ENCODERS:
        if encoder != default_encoder:
            check(f"correctness/train/ntxent/{encoder}", "correctness",
                  lambda encoder=encoder: check_training(ctx, "ntxent", encoder))
    on_model = [("correctness/torchscript", check_torchscript), ("correctness/embed", check_embed),
                ("correctness/api", check_api)]
    if any(want(n) for n in ("correctness/resume", "speed/embed", *(n for n, _ in on_model))):
        guarded(rep, "correctness/resume", "correctness", lambda: check_resume_and_model(ctx))  # writes the model
    for name, fn in on_model:
        if not want(name):
            continue
        if ctx.model_dir is None:
            rep.add(name, "correctness", SKIP, None, None, "skipped: no model folder (the resume check failed)")
        else:
            guarded(rep, name, "correctness", lambda fn=fn: fn(ctx))
    check("ddp/nccl_2proc_vs_1proc", "ddp", lambda: check_ddp(ctx))
    speed: list[tuple[str, Callable[[], None]]] = [  # the short ones first
        ("speed/features", lambda: speed_features(ctx)),
        ("speed/embed", lambda: speed_embed(ctx)),
        ("speed/train/torres2023", lambda: speed_training(ctx, "torres2023", "torres2023")),
        ("speed/train/laptop", lambda: speed_training(ctx, "laptop", None)),
    ]
    for name, fn in speed:
        if not want(name):
            continue
        if ctx.over_budget():
            rep.add(name, "speed", SKIP, None, None, "skipped: time budget")
        elif name == "speed/embed" and ctx.model_dir is None:
            rep.add(name, "speed", SKIP, None, None, "skipped: no model folder (the resume check failed)")
        else:
            guarded(rep, name, "speed", fn)


def ensure_dvclive(meta: dict[str, Any]) -> None:
    """The train stage logs through dvclive (imported by ``singer_ssl.training.run``); where it is not installed
    (the GPU machine's image lacks dvc's large dependency tree) a no-op stand-in takes its place: logging only,
    no CUDA path. Recorded in ``meta["dvclive"]``."""
    try:
        import dvclive  # noqa: F401
        meta["dvclive"] = "installed"
    except ImportError:
        class Live:  # the subset TrainingRun.fit uses
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                self.step = 0

            def log_metric(self, *args: Any, **kwargs: Any) -> None: ...

            def make_summary(self, *args: Any, **kwargs: Any) -> None: ...

            def end(self) -> None: ...

        stub = types.ModuleType("dvclive")
        stub.Live = Live  # type: ignore[attr-defined]
        sys.modules["dvclive"] = stub
        meta["dvclive"] = "not installed: a no-op stand-in (logging only, no CUDA path)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        print(f"error: gpu_check: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = _Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--small", action="store_true", help="tiny sizes (the CPU smoke run: < 60 s on 2 cores)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds after which the remaining speed sections are skipped (default 360; small 55)")
    ap.add_argument("--only", default="", help="comma-separated parts of check names: run only those checks "
                    "(e.g. --only speed/train,resume); default: all")
    args = ap.parse_args(argv)
    args.only = [p.strip() for p in args.only.split(",") if p.strip()]
    try:
        args.device = torch.device(args.device)
    except (RuntimeError, ValueError):
        ap.error(f"--device: expected cuda, cuda:N or cpu, got {args.device!r}")
    if args.device.type not in ("cuda", "cpu"):
        ap.error(f"--device: expected cuda, cuda:N or cpu, got {args.device.type!r}")
    if args.device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda requested but CUDA is not available here; use --device cpu")
    if args.budget is not None and not args.budget > 0:
        ap.error(f"--budget: expected seconds > 0, got {args.budget}")
    if args.out.exists() and not args.out.is_dir():
        ap.error(f"--out: {args.out} exists and is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = SMALL if args.small else FULL
    dev = args.device
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"device": str(dev), "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else (platform.processor() or platform.machine()), "gpus_visible": torch.cuda.device_count(),
            "small": bool(args.small), "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "sizes": sizes.__dict__, "budget_s": args.budget or sizes.budget_s, "only": args.only}
    ensure_dvclive(meta)
    report = Report(args.out, meta)
    report.write()
    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        ctx = Ctx(dev, sizes, args.small, root, report, args.budget or sizes.budget_s, args.only)
        report.meta["setup_s"] = round(report.elapsed(), 2)
        run_all(ctx)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report.write(complete=True)
    failed = report.failed()
    counts = {k: sum(c["status"] == k for c in report.checks) for k in (PASS, FAIL, SKIP, MEASURED)}
    print(f"gpu_check: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped, {counts[MEASURED]} "
          f"measured in {report.elapsed():.0f} s -> {args.out / 'gpu_check.json'}"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
