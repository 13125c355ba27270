"""Stage `features`: log-mel features of one dataset's segments into one HDF5 file.

    python stages/features.py <dataset>

Reads ``data/segments/<role>/<dataset>/`` (``manifest.csv`` + wavs), ``audio.sample_rate`` and
``features.{n_fft, hop, n_mels, fmin, fmax, log_offset, dtype, batch_size, device}`` from params.yaml;
writes ``data/features/<role>/<dataset>.h5`` atomically (``logmel`` (N, n_mels, T), ``key``/``singer``/
``source``, attrs = front-end params + dataset mean/std; see :func:`singer_ssl.features.extract_features`).
The mel filterbank is designed for ``audio.sample_rate`` (Torres et al. 2023 left nnAudio at 22.05 kHz).
``device: auto`` computes on CUDA (nnAudio) when available, else on CPU (torch.stft path, same output).

Errors (exit status 1, one line): unknown dataset or bad parameter, missing/empty manifest, or a
segment wav that is unreadable or not the length/rate the manifest implies (names the file).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python stages/features.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.device import resolve_device  # noqa: E402
from singer_ssl.core.frontend import n_frames  # noqa: E402
from singer_ssl.core.params import ConfigError, dataset_spec, load_params  # noqa: E402
from singer_ssl.features import SegmentError, extract_features  # noqa: E402

# `workers` (decode+compute threads, default: all cores) is optional and absent from params.yaml.
FEATURE_KEYS = ("n_fft", "hop", "n_mels", "fmin", "fmax", "log_offset", "dtype", "batch_size", "device",
                "workers")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python stages/features.py <dataset>", file=sys.stderr)
        return 2
    name = argv[0]
    try:
        params = load_params()  # needs no model/loss registries
        role, _ = dataset_spec(params, name)
        cfg = dict(params.get("features") or {})
        unknown = sorted(set(cfg) - set(FEATURE_KEYS))
        if unknown:
            raise ConfigError(f"features: unknown key(s) {', '.join(unknown)}; "
                              f"valid: {', '.join(FEATURE_KEYS)}")
        device = resolve_device(cfg.pop("device", "auto"))
        sample_rate = int((params.get("audio") or {}).get("sample_rate", 44100))
        out = Path("data/features") / role / f"{name}.h5"
        t0 = time.perf_counter()
        attrs = extract_features(Path("data/segments") / role / name, out, sample_rate=sample_rate,
                                 device=device, dataset=name, **cfg)
    except (ConfigError, SegmentError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    dt = time.perf_counter() - t0
    n = attrs["n_segments"]
    frames = n_frames(attrs["segment_samples"], attrs["hop"], attrs["n_fft"])
    print(f"{name}: {n} segments -> {out} ({attrs['n_mels']} mels x {frames} frames, {attrs['dtype']}, "
          f"{attrs['extractor']} on {device}); mean {attrs['mean']:.3f}, "
          f"std {attrs['std']:.3f}; {dt:.1f} s ({n / max(dt, 1e-9):.0f} segments/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
