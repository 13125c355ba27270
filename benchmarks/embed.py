"""Embedding throughput of the embed stage vs. the encoder's forward-pass floor, in one run.

    python benchmarks/embed.py [--n 256] [--encoder audiontt2020] [--batch 64]

- stage: ``singer_ssl.embed.embed_dataset`` on a features HDF5 of N 4 s segments
  (trained model + one random-init baseline + MFCC baseline + HDF5 write), reported per model pass;
- floor: the same SingerModel's ``embed_logmel`` on tensors already in memory, same batch size.
Prints segments/s and the ratio stage/floor (1.0 = the stage adds no overhead).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.embed import embed_dataset  # noqa: E402
from singer_ssl.model.folder import build_model, save_model_folder  # noqa: E402


def make_features(path: Path, n: int, n_mels: int = 128, frames: int = 345) -> dict:
    rng = np.random.default_rng(0)
    attrs = {"sample_rate": 44100, "n_fft": 2048, "hop": 512, "n_mels": n_mels, "fmin": 0.0, "fmax": 22050.0,
             "log_offset": 1e-8, "center": True, "window": "hann", "mel": "slaney", "mean": -10.0, "std": 5.0}
    s = h5py.string_dtype("utf-8")
    with h5py.File(path, "w") as f:
        f.create_dataset("logmel", data=rng.normal(-10, 5, (n, n_mels, frames)).astype(np.float32),
                         chunks=(1, n_mels, frames))
        f.create_dataset("key", data=np.array([f"s{i % 8}/x{i}.wav" for i in range(n)], dtype=object), dtype=s)
        f.create_dataset("singer", data=np.array([f"s{i % 8}" for i in range(n)], dtype=object), dtype=s)
        sources = np.array([f"s{i % 8}/r{i // 16}.wav" for i in range(n)], dtype=object)
        f.create_dataset("source", data=sources, dtype=s)
        for k, v in attrs.items():
            f.attrs[k] = v
    return attrs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--encoder", default="audiontt2020")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        attrs = make_features(tmp / "f.h5", args.n)
        frontend = {k: attrs[k] for k in ("sample_rate", "n_fft", "hop", "n_mels", "fmin", "log_offset")}
        frontend["fmax"] = None
        hp = {"frontend": frontend, "normalization": {"mean": -10.0, "std": 5.0},
              "encoder": {"name": args.encoder, "kwargs": {"n_mels": 128} if args.encoder == "audiontt2020" else {}},
              "head": {"kind": "silu_linear", "dim": 128, "hidden": 512}, "segment_seconds": 4.0}
        model = build_model(hp).eval()
        save_model_folder(model, hp, tmp / "model")
        x = torch.from_numpy(h5py.File(tmp / "f.h5")["logmel"][()])
        with torch.inference_mode():
            model.embed_logmel(x[: args.batch])  # warm-up
            t = time.perf_counter()
            for i in range(0, args.n, args.batch):
                model.embed_logmel(x[i : i + args.batch])
            floor = args.n / (time.perf_counter() - t)
        t = time.perf_counter()
        embed_dataset(tmp / "f.h5", tmp / "seg", tmp / "model", tmp / "e.h5", batch_size=args.batch, device="cpu",
                      random_inits=1)
        dt = time.perf_counter() - t
        stage = 2 * args.n / dt  # two encoder passes (trained + random-init) per segment
    print(f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}, encoder {args.encoder}, N {args.n}")
    print("| benchmark | configuration | result | baseline | ratio |")
    print("|---|---|---|---|---|")
    print(f"| embed stage | {args.encoder}, {args.n} x 4 s, batch {args.batch}, CPU | {stage:.1f} segments/s per "
          f"model pass (incl. HDF5 read, MFCC baseline, write) | forward floor {floor:.1f} segments/s "
          f"| {stage / floor:.2f} |")


if __name__ == "__main__":
    main()
