"""Benchmark the features stage against Fonseca et al.'s extraction and a bare-compute floor.

    python benchmarks/features.py                      # 256 synthetic 4 s segments at 44.1 kHz
    python benchmarks/features.py --segments data/segments/test/builtin-test
    python benchmarks/features.py --n 512 --repeats 5 --json out.json

Every method processes the same N segments (wavs in the page cache after a warm-up pass) with the
same front end (n_fft 2048, hop 512, 128 mels by default) and reports segments per second (median
over ``--repeats`` timed runs, methods interleaved round-robin):

1. ``stage``: :func:`singer_ssl.features.extract_features` — decode + log-mel + HDF5 write + mean/std,
   exactly what ``python stages/features.py`` runs (through :func:`singer_ssl.features.run`).
2. ``fonseca2021``: Fonseca et al.'s way (uclser20 ``extract``): per clip ``librosa.load`` + ``librosa.feature.
   melspectrogram`` + log, each clip written to the HDF5 file as it is computed.
3. ``floor``: read the batch's audio (soundfile) then one batched ``torch.stft`` + mel matmul + log,
   default torch threads, nothing written — the naive "bare compute" lower bound of work.
4. ``nnaudio_cpu`` (reference): read + nnAudio ``MelSpectrogram`` (conv1d STFT) in batches + log, no write.

Ratios are against (2) and (3). Results depend on the machine and on what else runs on it; the
README table records the run it quotes.
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
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from singer_ssl.core.frontend import mel_filterbank, n_frames  # noqa: E402
from singer_ssl.core.io import write_csv  # noqa: E402
from singer_ssl.data.manifest import read_manifest  # noqa: E402
from singer_ssl.features import extract_features, segment_length  # noqa: E402


def make_synthetic_segments(folder: Path, n: int, sr: int, seconds: float, seed: int = 0) -> None:
    """``n`` PCM_16 segments (harmonic tones + noise) of 8 singers + manifest.csv, like the segment stage."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(sr * seconds))) / sr
    rows = []
    for i in range(n):
        singer = f"singer{i % 8}"
        f0 = rng.uniform(100, 700)
        x = sum(0.25 / h * np.sin(2 * np.pi * h * f0 * t * (1 + 0.01 * np.sin(2 * np.pi * 5 * t)))
                for h in range(1, 8))
        x = x + 0.01 * rng.standard_normal(t.size)
        seg = f"{singer}/take{i // 8}_{i}.wav"
        (folder / singer).mkdir(parents=True, exist_ok=True)
        sf.write(folder / seg, np.clip(x, -1, 1).astype(np.float32), sr, subtype="PCM_16")
        rows.append((seg, singer, f"{singer}/take{i // 8}.wav", 0, seconds, folder.name))
    write_csv(folder / "manifest.csv", ["segment", "singer", "source", "start_s", "end_s", "dataset"], rows)


def run_stage(folder: Path, out: Path, fe: dict, batch_size: int, workers: int | None) -> None:
    extract_features(folder, out, **fe, batch_size=batch_size, workers=workers, progress=False)


def run_fonseca2021(paths: list[Path], out: Path, fe: dict, n_samples: int) -> None:
    import librosa

    t = n_frames(n_samples, fe["hop"], fe["n_fft"])
    with h5py.File(out, "w") as h5:
        ds = h5.create_dataset("logmel", shape=(len(paths), fe["n_mels"], t), dtype="float32",
                               chunks=(1, fe["n_mels"], t))
        for i, p in enumerate(paths):
            y, sr = librosa.load(p, sr=fe["sample_rate"], mono=True)
            mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=fe["n_fft"], hop_length=fe["hop"],
                                                 n_mels=fe["n_mels"], pad_mode="reflect", power=2.0)
            ds[i] = np.log(mel + fe["log_offset"])


def _batches(paths: list[Path], n_samples: int, batch_size: int):
    buf = np.empty((batch_size, n_samples), dtype=np.float32)
    for s in range(0, len(paths), batch_size):
        chunk = paths[s:s + batch_size]
        for j, p in enumerate(chunk):
            sf.read(p, dtype="float32", out=buf[j])
        yield torch.from_numpy(buf[:len(chunk)])


def run_floor(paths: list[Path], fe: dict, n_samples: int, batch_size: int) -> None:
    window = torch.hann_window(fe["n_fft"])
    basis = mel_filterbank(fe["sample_rate"], fe["n_fft"], fe["n_mels"])
    with torch.inference_mode():
        for x in _batches(paths, n_samples, batch_size):
            spec = torch.stft(x, fe["n_fft"], fe["hop"], window=window, center=True, pad_mode="reflect",
                              return_complex=True)
            torch.log(torch.matmul(basis, spec.abs().square()) + fe["log_offset"])


def run_nnaudio(paths: list[Path], fe: dict, n_samples: int, batch_size: int, layer) -> None:
    with torch.inference_mode():
        for x in _batches(paths, n_samples, batch_size):
            torch.log(layer(x) + fe["log_offset"])


def _cpu_busy_s() -> tuple[float, float]:
    """(seconds of CPU the whole machine spent busy, seconds this process used); Linux, else NaN."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    own = ru.ru_utime + ru.ru_stime
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return float("nan"), own
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0.0)  # minus idle, iowait
    return busy / os.sysconf("SC_CLK_TCK"), own


def timed(fn: Callable[[], None], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=Path, help="existing segment folder (manifest.csv + wavs)")
    ap.add_argument("--n", type=int, default=256, help="synthetic segments when --segments is not given")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--sample-rate", type=int, default=44100)
    ap.add_argument("--n-fft", type=int, default=2048)
    ap.add_argument("--hop", type=int, default=512)
    ap.add_argument("--n-mels", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="stage worker threads (default: all cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], choices=["stage", "fonseca2021", "floor", "nnaudio_cpu"])
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    fe = {"sample_rate": args.sample_rate, "n_fft": args.n_fft, "hop": args.hop, "n_mels": args.n_mels,
          "log_offset": 1e-8}
    with tempfile.TemporaryDirectory(prefix="singer-ssl-bench-") as tmp:
        tmp = Path(tmp)
        folder = args.segments
        if folder is None:
            folder = tmp / "segments"
            make_synthetic_segments(folder, args.n, args.sample_rate, args.seconds)
        rows = read_manifest(folder)
        paths = [folder / r["segment"] for r in rows]
        n_samples = segment_length(rows, args.sample_rate)
        n = len(paths)
        warm = paths[: min(n, 2 * args.batch_size)]
        methods: dict[str, tuple[Callable[[], None], Callable[[], None]]] = {
            "stage": (lambda: run_stage(folder, tmp / "stage.h5", fe, args.batch_size, args.workers),
                      lambda: run_stage(folder, tmp / "stage.h5", fe, args.batch_size, args.workers)),
            "fonseca2021": (lambda: run_fonseca2021(warm, tmp / "fonseca2021.h5", fe, n_samples),
                            lambda: run_fonseca2021(paths, tmp / "fonseca2021.h5", fe, n_samples)),
            "floor": (lambda: run_floor(warm, fe, n_samples, args.batch_size),
                      lambda: run_floor(paths, fe, n_samples, args.batch_size)),
        }
        if "nnaudio_cpu" not in args.skip:
            from nnAudio.features import MelSpectrogram

            layer = MelSpectrogram(sr=args.sample_rate, n_fft=args.n_fft, hop_length=args.hop,
                                   n_mels=args.n_mels, verbose=False)
            methods["nnaudio_cpu"] = (lambda: run_nnaudio(warm, fe, n_samples, args.batch_size, layer),
                                      lambda: run_nnaudio(paths, fe, n_samples, args.batch_size, layer))
        for name in args.skip:
            methods.pop(name, None)
        for warmup, _ in methods.values():  # page cache, librosa/numba and torch initialisation
            warmup()
        times: dict[str, list[float]] = {name: [] for name in methods}
        busy0, own0, t0 = *_cpu_busy_s(), time.perf_counter()
        for _ in range(args.repeats):  # round-robin, so background load hits every method alike
            for name, (_, run) in methods.items():
                times[name] += timed(run, 1)
        busy1, own1, t1 = *_cpu_busy_s(), time.perf_counter()
        background = ((busy1 - busy0) - (own1 - own0)) / (t1 - t0)  # other processes, in cores
        results = {name: {"median_s": statistics.median(t), "times_s": t,
                          "segments_per_s": n / statistics.median(t)} for name, t in times.items()}

    base = results.get("fonseca2021", {}).get("segments_per_s")
    floor = results.get("floor", {}).get("segments_per_s")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{n} segments x {n_samples} samples at {args.sample_rate} Hz, n_fft {args.n_fft}, hop {args.hop}, "
          f"{args.n_mels} mels; {cores} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), {platform.machine()}; median of {args.repeats}; "
          f"other processes used {max(background, 0.0):.2f} cores meanwhile")
    print(f"{'method':<12} {'seg/s':>8} {'vs fonseca2021':>15} {'vs floor':>9}")
    for name, r in results.items():
        sps = r["segments_per_s"]
        vs_base = f"{sps / base:.2f}x" if base else "-"
        vs_floor = f"{sps / floor:.2f}x" if floor else "-"
        print(f"{name:<12} {sps:8.1f} {vs_base:>15} {vs_floor:>9}")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "n_samples": n_samples, **fe, "background_cores": background,
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
