"""The segment stage: flatten a dataset into mono, resampled, fixed-length segments per singer.

:func:`run` (what ``stages/segment.py`` calls) segments the dataset folder ``src`` per its layout
(``datasets.<role>.<dataset>``, see :mod:`singer_ssl.data.layouts`) into the folder ``out``,
written atomically (built in a temporary sibling folder, renamed when complete):
``<singer>/<name>.wav`` (mono PCM_16 at ``audio.sample_rate``; names per
:mod:`singer_ssl.data.manifest`), ``manifest.csv`` (sorted by singer, source, start; ``recording`` from
the layout's recording rule) and
``skipped.csv`` (``source,reason``).

Per file: decode in blocks, mix to mono (channel mean), resample (soxr HQ, streaming), cut into
non-overlapping ``segment.seconds`` windows; ``remainder: drop`` drops the final partial window,
``pad`` zero-pads it when it holds at least half a window. Segments of digital silence are always
skipped; with ``silence_db`` set, also segments whose RMS is below it (dBFS). Skips are recorded in
skipped.csv: whole files as ``<kind>: <detail>`` (unreadable, empty, not audio, unsupported, corrupt,
truncated, non-finite, too short, silent, clipped, no singer label, error), folders the walk could not
read as ``unreadable folder: <why>``, single segments as ``silent segment <k>: ...``, and files kept
with samples hard-clipped (over full scale by at most 6 dB) as ``warning: clipped: ...``. Level rules
(anti-phase stereo is ``silent``, float samples beyond +6 dBFS are ``clipped``):
:func:`singer_ssl.core.audio.level_verdict`. Files are processed by a pool of ``segment.workers`` processes
(0/null = all cores), each streaming its file, so memory stays flat whatever the dataset's size;
the output does not depend on the number of workers. Inputs are only read.

Errors that stop the stage before anything is written (one line naming the dataset): missing
folder, no matching audio, fewer than 2 singers (before or after skipping), an output folder that
overlaps the input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from singer_ssl.core.audio import (
    DEFAULT_BLOCK_FRAMES,
    REMAINDERS,
    SILENT_PEAK,
    AudioError,
    SegmentReader,
    is_silent,
    rms_dbfs,
    write_wav,
)
from singer_ssl.core.errors import ConfigError
from singer_ssl.core.io import atomic_path
from singer_ssl.core.params import choice_param, dataset_spec, int_param, number_param, section
from singer_ssl.data.layouts import DatasetSpec, resolve_spec, scan_sources
from singer_ssl.data.manifest import (
    DatasetError,
    format_seconds,
    segment_name,
    source_prefixes,
    write_manifest,
    write_skipped,
)

AUDIO_KEYS = ("sample_rate",)
SEGMENT_KEYS = ("seconds", "remainder", "silence_db", "workers")
MIN_SEGMENT_SECONDS = 0.1  # segment.seconds below it are refused before any work (fail fast)


@dataclass(frozen=True)
class SegmentConfig:
    """Validated ``audio.sample_rate``, ``segment.*`` and (from :meth:`from_params`) the dataset's layout.

    ``workers`` is the resolved pool size (>= 1); ``block_frames`` the decoding block (frames per
    channel), the memory bound. ``dataset``/``layout`` are None when built directly (tests, API).
    """

    sample_rate: int = 44100
    seconds: float = 4.0
    remainder: str = "drop"
    silence_db: float | None = None
    workers: int = 1
    block_frames: int = DEFAULT_BLOCK_FRAMES  # decoding block (frames per channel): the memory bound
    dataset: str | None = None
    layout: DatasetSpec | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], dataset: str) -> SegmentConfig:
        """Validate ``datasets.<role>.<dataset>``, ``audio`` and ``segment``; nothing else is read.

        Every problem is a one-line ConfigError naming the dotted parameter (an unknown dataset
        lists the known ones).
        """
        role, spec = dataset_spec(dict(params), dataset)
        layout = resolve_spec(spec, f"datasets.{role}.{dataset}")
        audio = section(dict(params), "audio", AUDIO_KEYS)
        seg = section(dict(params), "segment", SEGMENT_KEYS)
        sr = int_param(audio.get("sample_rate", 44100), "audio.sample_rate", minimum=1)
        seconds = number_param(seg.get("seconds", 4.0), "segment.seconds", 0.0, low_open=True)
        if round(seconds * sr) < 1:
            raise ConfigError(f"segment.seconds: {seconds:g} s is shorter than one sample at {sr} Hz")
        if seconds < MIN_SEGMENT_SECONDS:  # fail fast: the features stage would refuse them after the work
            raise ConfigError(f"segment.seconds: {seconds:g} s is shorter than {MIN_SEGMENT_SECONDS:g} s, the "
                              "shortest window the front end and encoders are meant for (the published "
                              "systems use 1-4 s)")
        remainder = choice_param(seg.get("remainder", "drop"), "segment.remainder", REMAINDERS)
        silence_db = seg.get("silence_db")
        if silence_db is not None:
            silence_db = number_param(silence_db, "segment.silence_db", high=0.0)
        workers = seg.get("workers", 1)
        workers = 0 if workers is None else int_param(workers, "segment.workers", minimum=0)
        return cls(sr, seconds, remainder, silence_db, workers or os.cpu_count() or 1,
                   dataset=dataset, layout=layout)


def run(cfg: SegmentConfig, src: str | os.PathLike, out: str | os.PathLike) -> str:
    """Segment the dataset folder ``src`` (laid out as ``cfg.layout``) into ``out``; the summary line.

    ``src`` replaces the spec's ``path`` (``dvc.yaml`` passes the same folder, as the stage's dep).
    """
    if cfg.dataset is None or cfg.layout is None:
        raise ConfigError("segment: run() needs a SegmentConfig built by SegmentConfig.from_params")
    spec = dataclasses.replace(cfg.layout, path=Path(src))
    return segment_dataset(cfg.dataset, spec, out, cfg, progress=None).line()


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
        verdict = reader.level_verdict()
        if verdict is not None and verdict.startswith("warning:"):
            skipped.insert(0, (task.source, verdict))
        elif verdict is not None:
            reason = verdict
        elif not rows:
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
    warnings: Counter = field(default_factory=Counter)

    def skips_text(self) -> str:
        parts = []
        if self.skipped_files:
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(self.skipped_files.items()))
            parts.append(f"skipped {sum(self.skipped_files.values())} files ({kinds})")
        if self.skipped_segments:
            parts.append(f"skipped {self.skipped_segments} silent segments")
        if self.warnings:
            kinds = ", ".join(f"{k}: {n}" for k, n in sorted(self.warnings.items()))
            parts.append(f"kept {sum(self.warnings.values())} files with warnings ({kinds})")
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
    skipped.extend(listing.problems)  # folders the walk could not read: recorded, never silently dropped
    for _, why in listing.problems:
        summary.skipped_files[_kind(why)] += 1
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
        recording = {s.relpath: s.recording or s.relpath for s in listing.sources}  # the layout's recording rule
        for r in rows:
            r["recording"] = recording[r["source"]]
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
        warned = [why for _, why in res.skipped if why.startswith("warning:")]
        for why in warned:
            summary.warnings[_kind(why[len("warning:"):].strip())] += 1
        summary.skipped_segments += len(res.skipped) - len(warned)
        if res.rows:
            summary.n_files += 1
            summary.n_segments += len(res.rows)
            summary.singers.add(res.singer)
