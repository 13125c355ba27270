"""Stage `segment`: flatten a dataset into mono, resampled, fixed-length segments per singer.

    python stages/segment.py <dataset>

Reads ``datasets.<role>.<dataset>`` (layout, see :mod:`singer_ssl.data.layouts`), ``audio.sample_rate``
and ``segment.{seconds, remainder, silence_db, workers}`` from params.yaml; writes
``data/segments/<role>/<dataset>/`` atomically (built in a temporary sibling folder, renamed when
complete): ``<singer>/<name>.wav`` (mono PCM_16 at ``audio.sample_rate``), ``manifest.csv``
(sorted by singer, source, start) and ``skipped.csv`` (``source,reason``).

Per file: decode in blocks, mix to mono (channel mean), resample (soxr HQ, streaming), cut into
non-overlapping ``segment.seconds`` windows; ``remainder: drop`` drops the final partial window,
``pad`` zero-pads it when it holds at least half a window. Segments of digital silence are always
skipped; with ``silence_db`` set, also segments whose RMS is below it (dBFS). Skips are recorded in
skipped.csv: whole files as ``<kind>: <detail>`` (unreadable, empty, not audio, unsupported, corrupt,
truncated, non-finite, too short, silent, no singer label, error) and single segments as
``silent segment <k>: ...``. Files are processed by a pool of ``segment.workers`` processes
(0/null = all cores), each streaming its file, so memory stays flat whatever the dataset's size;
the output does not depend on the number of workers. Inputs are only read.

Errors that stop the stage before anything is written (exit status 1, one line naming the
dataset): missing folder, no matching audio, fewer than 2 singers (before or after skipping).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

if __package__ in (None, ""):  # run as `python stages/segment.py` without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from singer_ssl.core.audio import (  # noqa: E402
    DEFAULT_BLOCK_FRAMES,
    REMAINDERS,
    SILENT_PEAK,
    AudioError,
    SegmentReader,
    is_silent,
    rms_dbfs,
    write_wav,
)
from singer_ssl.core.io import atomic_path  # noqa: E402
from singer_ssl.core.params import ConfigError, choice_error, dataset_spec, load_params  # noqa: E402
from singer_ssl.data.layouts import (  # noqa: E402
    DatasetError,
    DatasetSpec,
    format_seconds,
    resolve_spec,
    scan_sources,
    segment_name,
    source_prefixes,
    write_manifest,
    write_skipped,
)


@dataclass(frozen=True)
class SegmentConfig:
    """Validated ``audio.sample_rate`` and ``segment.*`` parameters."""

    sample_rate: int = 44100
    seconds: float = 4.0
    remainder: str = "drop"
    silence_db: float | None = None
    workers: int = 1
    block_frames: int = DEFAULT_BLOCK_FRAMES  # decoding block (frames per channel): the memory bound


def segment_config(params: Mapping[str, Any]) -> SegmentConfig:
    """Build a :class:`SegmentConfig` from the params tree; ConfigError names a bad value."""
    audio = params.get("audio") or {}
    seg = params.get("segment") or {}
    sr = audio.get("sample_rate", 44100)
    if isinstance(sr, bool) or not isinstance(sr, int) or sr <= 0:
        raise ConfigError(f"audio.sample_rate: expected a positive integer (Hz), got {sr!r}")
    seconds = seg.get("seconds", 4.0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise ConfigError(f"segment.seconds: expected a positive number, got {seconds!r}")
    if round(seconds * sr) < 1:
        raise ConfigError(f"segment.seconds: {seconds} s is shorter than one sample at {sr} Hz")
    remainder = seg.get("remainder", "drop")
    if remainder not in REMAINDERS:
        raise choice_error("segment.remainder", remainder, REMAINDERS)
    silence_db = seg.get("silence_db")
    if silence_db is not None and (isinstance(silence_db, bool) or not isinstance(silence_db, (int, float))
                                   or silence_db > 0):
        raise ConfigError(f"segment.silence_db: expected null or a level <= 0 dBFS, got {silence_db!r}")
    workers = seg.get("workers", 1)
    if workers is None:
        workers = 0
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"segment.workers: expected an integer >= 0 (0 = all cores), got {workers!r}")
    workers = workers or os.cpu_count() or 1
    return SegmentConfig(sr, float(seconds), remainder, None if silence_db is None else float(silence_db),
                         workers)


class FileTask(NamedTuple):
    """One source file to segment: absolute ``path``, manifest ``source``, ``singer``, name ``prefix``."""

    path: str
    source: str
    singer: str
    prefix: str


class FileResult(NamedTuple):
    """What one file gave: manifest ``rows``, per-segment ``skipped`` rows, or a whole-file ``reason``."""

    source: str
    singer: str
    rows: list[dict[str, Any]]
    skipped: list[tuple[str, str]]
    reason: str | None


def _kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def segment_file(task: FileTask, out_dir: str, cfg: SegmentConfig, dataset: str) -> FileResult:
    """Segment one file into ``out_dir/<singer>/``; never raises for bad audio (it becomes ``reason``).

    When the file turns out bad after some segments were written (a decode error, NaN samples
    mid-way), those segments are removed again, so a file contributes all its segments or none.
    """
    sr = cfg.sample_rate
    folder = Path(out_dir) / task.singer
    reader = SegmentReader(task.path, sr, cfg.seconds, cfg.remainder, cfg.block_frames)
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    written: list[Path] = []
    n_silent_db = 0
    try:
        for k, start, end, x in reader:
            start_s, end_s = start / sr, end / sr
            span = f"{format_seconds(start_s)}-{format_seconds(end_s)} s"
            content = x[: end - start]
            if is_silent(content):
                skipped.append((task.source, f"silent segment {k}: digital silence ({span})"))
                continue
            if cfg.silence_db is not None:
                level = rms_dbfs(content)
                if level < cfg.silence_db:
                    n_silent_db += 1
                    skipped.append((task.source, f"silent segment {k}: RMS {level:.1f} dBFS < "
                                                 f"{cfg.silence_db:g} dBFS ({span})"))
                    continue
            name = segment_name(task.prefix, k, start_s, end_s, cfg.seconds)
            folder.mkdir(parents=True, exist_ok=True)
            write_wav(folder / name, x, sr)
            written.append(folder / name)
            rows.append({"segment": f"{task.singer}/{name}", "singer": task.singer, "source": task.source,
                         "start_s": start_s, "end_s": end_s, "dataset": dataset})
    except AudioError as e:
        reason = e.reason
    except Exception as e:  # one bad file must never stop the stage
        reason = f"error: {type(e).__name__}: {e}"
    else:
        reason = None
        if not rows:
            duration = reader.n_samples / sr
            if reader.n_samples < reader.min_samples():
                need = (f"{format_seconds(cfg.seconds)} s" if cfg.remainder == "drop"
                        else f"{format_seconds(cfg.seconds / 2)} s (half a segment, remainder: pad)")
                reason = f"too short: {duration:.2f} s < {need}"
            elif reader.peak < SILENT_PEAK:
                reason = "silent: digital silence throughout"
            elif n_silent_db == 0:
                reason = f"silent: all {len(skipped)} segments are digital silence"
            else:
                reason = f"silent: all {len(skipped)} segments below {cfg.silence_db:g} dBFS RMS"
    if reason is not None:
        for p in written:
            p.unlink(missing_ok=True)
        return FileResult(task.source, task.singer, [], [], reason)
    return FileResult(task.source, task.singer, rows, skipped, None)


@dataclass
class SegmentSummary:
    """Counts of one run; :meth:`line` is the one-line report the stage prints."""

    dataset: str
    out: Path
    n_segments: int = 0
    n_files: int = 0
    singers: set[str] = field(default_factory=set)
    skipped_files: Counter = field(default_factory=Counter)
    skipped_segments: int = 0

    def skips_text(self) -> str:
        parts = []
        if self.skipped_files:
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(self.skipped_files.items()))
            parts.append(f"skipped {sum(self.skipped_files.values())} files ({kinds})")
        if self.skipped_segments:
            parts.append(f"skipped {self.skipped_segments} silent segments")
        return "; ".join(parts)

    def line(self) -> str:
        head = (f"{self.dataset}: {self.n_segments} segments from {self.n_files} files of "
                f"{len(self.singers)} singers")
        skips = self.skips_text()
        return head + (f"; {skips}" if skips else "") + f" -> {self.out}"


def _check_paths(name: str, spec: DatasetSpec, out: Path) -> None:
    src, dst = spec.path.resolve(), out.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise ConfigError(f"dataset {name!r}: output {out} and input {spec.path} overlap; "
                          "the stage replaces its output folder and must never touch its inputs")


def segment_dataset(name: str, spec: DatasetSpec | Mapping[str, Any], out: str | os.PathLike,
                    cfg: SegmentConfig, progress: bool | None = False) -> SegmentSummary:
    """Segment dataset ``name`` into folder ``out`` (replaced atomically); return the summary.

    Raises DatasetError (nothing written) for a missing folder, no matching audio files, or fewer
    than 2 singers before or after skipping bad files. ``progress`` shows a tqdm bar (None: only on
    a terminal).
    """
    from tqdm import tqdm

    spec = spec if isinstance(spec, DatasetSpec) else resolve_spec(spec)
    out = Path(out)
    _check_paths(name, spec, out)
    listing = scan_sources(spec, name)
    if not listing.sources:
        n_unlabelled = len(listing.unlabelled)
        extra = f" ({n_unlabelled} matching files had no singer label)" if n_unlabelled else ""
        raise DatasetError(f"dataset {name!r}: no audio files under {spec.path} match "
                           f"{list(spec.glob)}{extra}")
    listed_singers = sorted({s.singer for s in listing.sources})
    if len(listed_singers) < 2:
        raise DatasetError(f"dataset {name!r}: needs at least 2 singers, found {len(listed_singers)} "
                           f"({', '.join(listed_singers)}) in {len(listing.sources)} files; "
                           "check its singer rule")
    prefixes = source_prefixes(listing.sources)
    tasks = [FileTask(str((spec.path / s.relpath).absolute()), s.relpath, s.singer, prefixes[s.relpath])
             for s in listing.sources]
    summary = SegmentSummary(name, out)
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = [(rel, "no singer label: the singer rule found none") for rel in
                                      listing.unlabelled]
    if listing.unlabelled:
        summary.skipped_files["no singer label"] = len(listing.unlabelled)
    workers = max(1, min(cfg.workers, len(tasks)))
    with atomic_path(out, is_dir=True) as tmp, contextlib.ExitStack() as stack:
        work = functools.partial(segment_file, out_dir=str(tmp), cfg=cfg, dataset=name)
        if workers == 1:
            results = map(work, tasks)
        else:  # pool first: no tqdm monitor thread exists yet when the workers fork
            pool = stack.enter_context(multiprocessing.get_context().Pool(workers))
            results = pool.imap(work, tasks, chunksize=max(1, min(16, len(tasks) // (8 * workers))))
        bar = stack.enter_context(tqdm(total=len(tasks), desc=f"segment {name}", unit="file", file=sys.stderr,
                                       disable=None if progress is None else not progress))
        _collect(results, summary, rows, skipped, bar)
        stack.close()
        for folder in tmp.iterdir():  # singers whose every file was skipped
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if len(summary.singers) < 2:
            skips = summary.skips_text()
            raise DatasetError(f"dataset {name!r}: needs at least 2 singers with segments, got "
                               f"{len(summary.singers)} ({', '.join(sorted(summary.singers)) or 'none'})"
                               + (f"; {skips}" if skips else ""))
        rows.sort(key=lambda r: (r["singer"], r["source"], r["start_s"]))
        skipped.sort(key=lambda r: r[0])  # stable: a file's segment rows keep their order
        write_manifest(tmp, rows)
        write_skipped(tmp, skipped)
    return summary


def _collect(results, summary: SegmentSummary, rows: list, skipped: list, bar) -> None:
    for res in results:
        bar.update(1)
        if res.reason is not None:
            summary.skipped_files[_kind(res.reason)] += 1
            skipped.append((res.source, res.reason))
            continue
        rows.extend(res.rows)
        skipped.extend(res.skipped)
        summary.skipped_segments += len(res.skipped)
        if res.rows:
            summary.n_files += 1
            summary.n_segments += len(res.rows)
            summary.singers.add(res.singer)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python stages/segment.py <dataset>", file=sys.stderr)
        return 2
    name = argv[0]
    try:
        params = load_params()  # this stage needs no model/loss registries (no torch import)
        role, spec = dataset_spec(params, name)
        cfg = segment_config(params)
        summary = segment_dataset(name, spec, Path("data/segments") / role / name, cfg, progress=None)
    except (ConfigError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
