"""CPU time lost to page faults: the encoder with glibc's default malloc vs. the tuned thresholds, in one run.

    python benchmarks/allocator.py [--encoder audiontt2020] [--embed-batch 64] [--train-batch 32] [--repeat 3]

Each configuration runs in its own process (malloc settings are per process): one with
``SINGER_SSL_DEFAULT_MALLOC=1`` (glibc's defaults: large buffers mmapped and unmapped on every pass),
one with :func:`singer_ssl.core.allocator.keep_large_allocations`. Both time, after a warm-up, the same
randomly initialised SingerModel on the same random 4 s log-mel batches (128 mels x 345 frames):

- embed: ``embed_logmel`` under ``torch.inference_mode`` (the embed stage's forward pass);
- train step: forward, a loss, backward and an Adam step on a batch (the train stage's inner loop).

Prints the best-of-``repeat`` time, user and system CPU seconds and peak resident memory per configuration,
and the ratio default / tuned (higher is better).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_WORKER = textwrap.dedent("""
    import json, os, resource, sys, time
    sys.path.insert(0, {root!r})
    from singer_ssl.core.allocator import keep_large_allocations
    applied = keep_large_allocations()
    import torch
    from singer_ssl.model.folder import build_model
    torch.manual_seed(0)
    enc = {encoder!r}
    hp = {{"frontend": {{"sample_rate": 44100, "n_fft": 2048, "hop": 512, "n_mels": 128, "fmin": 0.0, "fmax": None,
                       "log_offset": 1e-8}}, "normalization": {{"mean": -10.0, "std": 5.0}},
          "encoder": {{"name": enc, "kwargs": {{"n_mels": 128}} if enc == "audiontt2020" else {{}}}},
          "head": {{"kind": "silu_linear", "dim": 128, "hidden": 512}}, "segment_seconds": 4.0}}
    model = build_model(hp)
    x_embed = torch.randn({embed_batch}, 128, 345) * 5 - 10
    x_train = torch.randn({train_batch}, 128, 345) * 5 - 10
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def embed():
        model.eval()
        with torch.inference_mode():
            model.embed_logmel(x_embed)

    def step():
        model.train()
        h, z = model.embed_logmel(x_train)
        z.pow(2).mean().backward()
        opt.step()
        opt.zero_grad()

    out = {{"applied": applied}}
    for name, fn in (("embed", embed), ("train step", step)):
        fn()  # warm-up
        best, cpu = float("inf"), None
        for _ in range({repeat}):
            t0, r0 = time.perf_counter(), os.times()
            fn()
            dt, r1 = time.perf_counter() - t0, os.times()
            if dt < best:
                best, cpu = dt, (r1.user - r0.user, r1.system - r0.system)
        out[name] = {{"seconds": best, "user": cpu[0], "sys": cpu[1]}}
    out["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
""")


def run(default_malloc: bool, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "SINGER_SSL_DEFAULT_MALLOC")}
    if default_malloc:
        env["SINGER_SSL_DEFAULT_MALLOC"] = "1"
    code = _WORKER.format(root=str(ROOT), encoder=args.encoder, embed_batch=args.embed_batch,
                          train_batch=args.train_batch, repeat=args.repeat)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="audiontt2020")
    ap.add_argument("--embed-batch", type=int, default=64)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    default, tuned = run(True, args), run(False, args)
    if not tuned["applied"]:
        print("glibc mallopt not available here: nothing to compare")
        return
    print(f"load average {os.getloadavg()[0]:.1f}, cpus {os.cpu_count()}, encoder {args.encoder}")
    print("| benchmark | configuration | tuned malloc | glibc default | ratio |")
    print("|---|---|---|---|---|")
    for name, batch in (("embed", args.embed_batch), ("train step", args.train_batch)):
        t, d = tuned[name], default[name]
        print(f"| {name} | {args.encoder}, batch {batch} x 128 x 345, CPU | {t['seconds']:.2f} s "
              f"(user {t['user']:.1f}, sys {t['sys']:.1f}) | {d['seconds']:.2f} s "
              f"(user {d['user']:.1f}, sys {d['sys']:.1f}) | "
              f"{d['seconds'] / t['seconds']:.2f}x |")
    print(f"| peak memory | both benchmarks | {tuned['max_rss_mib']:.0f} MiB | {default['max_rss_mib']:.0f} MiB | "
          f"{default['max_rss_mib'] / tuned['max_rss_mib']:.2f}x |")


if __name__ == "__main__":
    main()
