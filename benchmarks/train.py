"""Benchmark a training step through the real data path against the compute-only floor.

    python benchmarks/train.py                         # EfficientNet-B0, batch 32, default augmentations
    python benchmarks/train.py --workers 1 --loss ntxent --steps 6 --json out.json
    python benchmarks/train.py --batch 16 --waveform previous   # the chain before the recording-channel one

Data: a synthetic training set in the pipeline layout (4 s segments at 44.1 kHz, 128 mels, written by
the segment/features writers). Configuration: ``params.yaml`` defaults with ``encoder:
efficientnet_b0``, ``train.batch_size: 32``, no validation; the default waveform augmentations (the
recording-channel chain, ``--waveform`` to swap it; crops of two segments of the same recording) put the
run in waveform mode: DataLoader workers read the crops' audio (and the babble's) and augment them, the
main process computes the log-mel of the views batched (``LogMel``) then trains.

Two measurements in one process, samples (batch items) per second = batch / median step time, after
``--warmup`` steps of each, in ``--rounds`` alternating blocks of ``--steps`` steps (floor, pipeline,
floor, ...) so that a drifting machine load affects both alike:

1. ``pipeline``: :class:`singer_ssl.training.run.TrainingRun`'s own loader and ``Trainer.train_step``
   (exactly what ``stages/train.py`` runs, minus logging and checkpoints).
2. ``floor``: ``Trainer.train_step`` on one batch of the same views as *log-mels already in memory*:
   standardise + forward (student and, for BYOL, teacher) + backward + Adam + EMA; no I/O, no
   augmentation, no front end.

The ratio pipeline / floor is the share of the model's compute speed the data path preserves
(target >= 0.9). Timings depend on what else runs on the machine; the README records the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import yaml  # noqa: E402

from singer_ssl.training.config import TrainConfig  # noqa: E402
from singer_ssl.training.data import collate_views  # noqa: E402
from singer_ssl.training.run import TrainingRun  # noqa: E402
from singer_ssl.training.runtime import Dist, deterministic_mode  # noqa: E402
from tests.synthetic import make_training_set, pipeline_paths  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


#: the default ``augment.waveform`` before the recording-channel chain (issue 21), for ``--waveform previous``
PREVIOUS_WAVEFORM = {"gaussian_noise": {"p": 0.5, "min_amplitude": 0.001, "max_amplitude": 0.05},
                     "gain": {"p": 1.0, "min_gain_db": -20.0, "max_gain_db": 6.0},
                     "time_mask": {"p": 0.5, "max_band_part": 0.125}}


def bench_params(loss: str, workers: int, batch: int, steps: int, waveform: dict | None = None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    if waveform is not None:
        params["augment"]["waveform"] = waveform
    params["datasets"] = {"train": {"bench": {"path": "synthetic"}}}
    params["loss"] = loss
    params["encoder"] = "efficientnet_b0"
    params["train"].update(batch_size=batch, num_workers=workers, val_fraction=0.0, max_steps=steps,
                           steps_per_epoch=None, device="cpu")
    return params


def time_steps(step_fn, n: int, cpu: list[float] | None = None, pids: list[int] = ()) -> list[float]:
    """Wall-clock seconds of ``n`` calls; appends the block's CPU seconds per call (this process +
    ``pids``) to ``cpu``."""
    out = []
    c0 = time.process_time() + sum(proc_cpu(p) for p in pids)
    for _ in range(n):
        t = time.perf_counter()
        step_fn()
        out.append(time.perf_counter() - t)
    if cpu is not None:
        cpu.append((time.process_time() + sum(proc_cpu(p) for p in pids) - c0) / n)
    return out


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` from /proc (0 where unavailable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        make_training_set(root, "bench", n_singers=8, sources_per_singer=2, segments_per_source=4, seconds=4.0,
                          sample_rate=44100, n_fft=2048, hop=512, n_mels=128)
        print(f"synthetic data: 64 segments of 4 s in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        n_total = args.warmup + args.rounds * args.steps + 8 * args.workers
        waveform = {"default": None, "previous": PREVIOUS_WAVEFORM}.get(args.waveform)
        if args.waveform not in ("default", "previous"):
            waveform = yaml.safe_load(args.waveform)
        params = bench_params(args.loss, args.workers, args.batch, n_total + 1, waveform)
        cfg = TrainConfig.from_params(params)
        device = torch.device("cpu")
        with deterministic_mode(cfg.train.deterministic, device):
            tr = TrainingRun(cfg, pipeline_paths(root), Dist(), device)
            trainer, train_loader = tr.trainer, tr.train_loader
            # the floor's batch: the same views (first global batch), as log-mels in memory
            specs = next(iter(train_loader.batch_sampler))
            first = collate_views([train_loader.dataset[s] for s in specs])
            with torch.no_grad():
                frontend = tr.unit.model.frontend
                mem = {"x1": frontend(first["x1"]), "x2": frontend(first["x2"]), "labels": first["labels"]}
            step = [0]
            waits: list[float] = []

            def floor_step():
                trainer.train_step(mem, step[0])
                step[0] += 1

            loader = iter(train_loader)  # workers start (and prefetch) from here on

            def pipeline_step():
                t = time.perf_counter()
                batch = next(loader)
                waits.append(time.perf_counter() - t)
                trainer.train_step(batch, step[0])
                step[0] += 1

            time_steps(floor_step, args.warmup)
            time_steps(pipeline_step, args.warmup)
            workers = [w.pid for w in getattr(loader, "_workers", [])]
            waits.clear()
            floor, pipe, floor_cpu, pipe_cpu = [], [], [], []
            for _ in range(args.rounds):  # alternate blocks so that drifting machine load hits both alike
                time.sleep(1.0)  # workers finish refilling the prefetch queue: none of their work in the floor
                floor += time_steps(floor_step, args.steps, floor_cpu)
                # worker CPU counted with the pipeline block it serves (its refills, incl. during the sleep)
                c0 = sum(proc_cpu(p) for p in workers)
                pipe += time_steps(pipeline_step, args.steps, pipe_cpu)
                time.sleep(1.0)
                pipe_cpu[-1] += (sum(proc_cpu(p) for p in workers) - c0) / args.steps
            if hasattr(loader, "_shutdown_workers"):
                loader._shutdown_workers()
    b = args.batch
    result = {
        "config": {"encoder": "efficientnet_b0", "loss": args.loss, "batch": b, "segments_s": 4.0,
                   "crop_s": float(params["augment"]["crop_seconds"]), "waveform": args.waveform,
                   "sample_rate": 44100, "n_mels": 128, "workers": args.workers,
                   "torch_threads": torch.get_num_threads(), "warmup": args.warmup, "steps": args.steps,
                   "rounds": args.rounds,
                   "cpus": len(os.sched_getaffinity(0)), "machine": platform.processor() or platform.machine(),
                   "torch": torch.__version__},
        "floor_samples_per_s": b / statistics.median(floor),
        "pipeline_samples_per_s": b / statistics.median(pipe),
        "floor_step_s": [round(x, 3) for x in floor],
        "pipeline_step_s": [round(x, 3) for x in pipe],
        "pipeline_wait_s": [round(x, 3) for x in waits],
        "floor_cpu_s_per_step": statistics.median(floor_cpu),
        "pipeline_cpu_s_per_step": statistics.median(pipe_cpu),
    }
    result["ratio"] = result["pipeline_samples_per_s"] / result["floor_samples_per_s"]
    result["cpu_ratio"] = result["floor_cpu_s_per_step"] / result["pipeline_cpu_s_per_step"]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loss", default="byol", help="objective (default: params.yaml's default, byol)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (train.num_workers)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0 = default)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per block")
    ap.add_argument("--rounds", type=int, default=3, help="floor/pipeline block pairs (alternated)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument("--waveform", default="default",
                    help="augment.waveform: default (params.yaml), previous (the pre-channel-chain default: "
                         "gaussian_noise, gain, time_mask) or a YAML mapping")
    args = ap.parse_args(argv)
    result = run(args)
    c = result["config"]
    print(f"train step, {c['encoder']} / {c['loss']}, batch {c['batch']}, {c['workers']} workers, "
          f"{c['torch_threads']} torch threads, {c['cpus']} CPUs")
    print(f"  floor    (log-mels in memory)      {result['floor_samples_per_s']:7.2f} samples/s  "
          f"steps {result['floor_step_s']}")
    print(f"  pipeline (loader + augment + front end) {result['pipeline_samples_per_s']:7.2f} samples/s  "
          f"steps {result['pipeline_step_s']}")
    print(f"  waiting for the loader: {result['pipeline_wait_s']}")
    print(f"  CPU seconds per step (all processes): floor {result['floor_cpu_s_per_step']:.2f}, "
          f"pipeline {result['pipeline_cpu_s_per_step']:.2f} -> CPU-work ratio {result['cpu_ratio']:.3f}")
    print(f"  ratio pipeline / floor (wall clock): {result['ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
