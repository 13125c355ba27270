"""Verification trials: generation (Torres et al.'s ``create_speaker_pairs``, fixed), parsing and writing.

Torres et al. 2023 (``preprocess/create_speaker_pairs.py``) draws 20,000 trials with replacement: each draw is
positive with probability 1/2 (one singer, two files *with replacement*, so a positive can pair a file
with itself: 35 such trials in its VocalSet list) else negative (two distinct singers, one file each),
and pairs can repeat (as in Torres et al. 2023, SonyCSLParis/ssl-singer-identity). Here, with the same singer weighting:

- exactly ``n_pairs // 2`` positives and ``n_pairs - n_pairs // 2`` negatives when that many distinct
  pairs exist (otherwise all there are, with a warning; the classes are not re-balanced);
- no trial pairs a file with itself, and no unordered pair appears twice;
- positives are spread evenly over the singers (water-filling: each singer gets its share, capped by
  its number of distinct pairs); within a singer a pair is drawn as a uniform first segment and a
  uniform partner; with ``cross_recording`` the partner comes from another recording whenever
  the singer has more than one (positives are then never two cuts of the same take); a recording is
  the manifest's ``recording`` (the dataset layout's rule: by default the source file, for M4Singer the
  song folder, so two phrases of one song never make a cross-recording target);
- negatives: a uniform pair of distinct singers, then a uniform segment of each (Torres et al.'s process),
  repeated draws rejected;
- sampling is vectorised (rejection of duplicates in batches); all candidate pairs are enumerated only
  where the request is a sizeable fraction of them (then weighted sampling without replacement,
  Efraimidis & Spirakis 2006, with the same process's weights), never the O(N^2) pair set of a big set.
  Output order is shuffled and each pair's orientation random; everything follows from ``seed``.

The stage (:func:`run`, called by ``stages/trials.py``) reads a test dataset's ``manifest.csv`` (and its
scan listing, which marks byte-identical copies of a file) and writes its trial list: the one named by
``trials.external.<dataset>`` (validated against the manifest line by line: known keys, labels that agree
with the singers, no repeated pair, no self-pair, no pair of two copies of one stretch of audio; written
normalised) or one drawn by :func:`generate_trials` from the segments less the copies (``trials.n_pairs``,
``trials.seed`` or else the top-level ``seed``, ``trials.cross_recording``); :class:`TrialsConfig`
validates those parameters.

File format (Torres et al.'s): one ``label,key1,key2`` line per trial, label 1 = same singer, keys = the
manifest's ``segment`` (``<singer>/<file>.wav``); keys containing a comma or quote are CSV-quoted.
:func:`read_trials` also reads Kaldi/wespeaker lists (``enroll test target|nontarget``) and
whitespace-separated VoxCeleb lists (``label key1 key2``), auto-detected.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.io import write_text
from singer_ssl.core.params import bool_param, dataset_items, int_param, section, test_dataset
from singer_ssl.data.manifest import read_manifest

Trial = tuple[int, str, str]
TRIAL_FORMATS = ("csv", "kaldi", "voxceleb")
_KALDI_LABELS = {"target": 1, "nontarget": 0}
_DENSE_FACTOR = 4  # enumerate the candidates when the request is >= 1/4 of them
_MAX_SINGER_ROUNDS = 64  # singer-uniform negative draws before falling back to segment-uniform ones
TRIALS_KEYS = ("n_pairs", "seed", "cross_recording", "external")


class TrialsError(ValueError):
    """A trial list cannot be generated or does not fit the dataset; the message says why."""


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TrialsConfig:
    """Validated ``trials.*`` (and the top-level ``seed`` when ``trials.seed`` is null) for one test dataset.

    ``external``: this dataset's entry of ``trials.external`` (a trial list to use instead of
    generating one), None when it has none.
    """

    dataset: str
    n_pairs: int = 20000
    seed: int = 0
    cross_recording: bool = True
    external: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any], dataset: str) -> TrialsConfig:
        """Validate ``trials`` (every ``trials.external`` key must name a test dataset) and ``seed``.

        Every problem is a one-line ConfigError naming the dotted parameter; nothing else is read.
        """
        params = dict(params)
        test_dataset(params, dataset, "trials")
        cfg = section(params, "trials", TRIALS_KEYS)
        n_pairs = int_param(cfg.get("n_pairs", 20000), "trials.n_pairs", minimum=2)
        seed = cfg.get("seed")
        seed = (int_param(params.get("seed", 0), "seed", minimum=0) if seed is None
                else int_param(seed, "trials.seed", minimum=0))
        cross = bool_param(cfg.get("cross_recording", True), "trials.cross_recording")
        external = _external_lists(cfg.get("external"), [n for n, _, _ in dataset_items(params, "test")])
        return cls(dataset, n_pairs, seed, cross, external.get(dataset))


#: the folder (relative to the repository root) that dvc.yaml declares as a dep of every trials stage
EXTERNAL_DIR = "trials"


def _check_tracked(path: str, where: str) -> None:
    """Under DVC (``DVC_ROOT`` set, as in every ``dvc repro`` stage command) an external list must lie in
    ``<root>/trials/``, the dep DVC hashes: a list elsewhere could change without re-running trials."""
    root = os.environ.get("DVC_ROOT")
    if not root:
        return
    folder = Path(root, EXTERNAL_DIR).resolve()
    if folder not in Path(path).resolve().parents:
        raise ConfigError(f"{where}: {path} is outside {EXTERNAL_DIR}/, the folder dvc.yaml declares as the "
                          f"trials stage's dependency; move the list into {EXTERNAL_DIR}/ so editing it re-runs trials")


def _external_lists(value: Any, test_names: Sequence[str]) -> dict[str, str]:
    """``trials.external`` as ``{test dataset: path}`` (null/empty entries dropped); ConfigError names a bad key
    or, under DVC, a list outside ``trials/`` (:func:`_check_tracked`)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"trials.external: expected a mapping {{<test dataset>: path/to/trials.txt}}, got {value!r}")
    out = {}
    for key, path in value.items():
        if key not in test_names:
            raise ConfigError(f"trials.external.{key}: not a test dataset; test datasets: "
                              f"{', '.join(sorted(test_names)) or '(none)'}")
        if path is None or path == "":
            continue
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(f"trials.external.{key}: expected the path of a trial list, got {path!r}")
        _check_tracked(str(path), f"trials.external.{key}")
        out[key] = str(path)
    return out



# ------------------------------------------------------------------------------------------ generation


def _water_fill(caps: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integer quotas ``q <= caps`` summing to ``min(total, caps.sum())``, as even as the caps allow.

    Every quota is ``min(cap, L)`` or ``L + 1`` for one level ``L``; the ``+1`` go to random entries.
    """
    caps = caps.astype(np.int64)
    total = int(min(total, caps.sum()))
    if total <= 0:
        return np.zeros_like(caps)
    lo, hi = 0, int(caps.max())
    while lo < hi:  # largest level L with sum(min(caps, L)) <= total
        mid = (lo + hi + 1) // 2
        if np.minimum(caps, mid).sum() <= total:
            lo = mid
        else:
            hi = mid - 1
    quotas = np.minimum(caps, lo)
    rest = total - int(quotas.sum())
    if rest:
        room = np.flatnonzero(caps > lo)
        quotas[rng.choice(room, size=rest, replace=False)] += 1
    return quotas


def _efraimidis_spirakis(weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``k`` items drawn without replacement with probability proportional to ``weights``."""
    keys = np.log(rng.random(weights.shape[0])) / weights  # larger is better (Efraimidis & Spirakis A-ES)
    return np.argpartition(-keys, k - 1)[:k] if k < weights.shape[0] else np.arange(weights.shape[0])


def _first_new(codes: np.ndarray, taken: np.ndarray, need: int) -> np.ndarray:
    """Positions of the first ``need`` codes not in ``taken`` and not repeated earlier in ``codes``."""
    fresh = ~np.isin(codes, taken)
    _, first = np.unique(codes, return_index=True)
    keep = np.zeros(codes.shape[0], dtype=bool)
    keep[first] = True
    return np.flatnonzero(fresh & keep)[:need]


def _partner(p: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int | np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """A uniform position in ``[0, n)`` outside the block ``[lo, hi)`` (which contains ``p``)."""
    width = hi - lo
    r = rng.integers(0, n - width)  # array bounds: one draw per position
    return r + (r >= lo) * width


def _pairs_beyond(first_b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``(a, b)`` with ``first_b[a] <= b < n``, vectorised (``first_b[a] > a``)."""
    counts = n - first_b
    a = np.repeat(np.arange(first_b.shape[0]), counts)
    offsets = np.repeat(np.cumsum(counts) - counts, counts)
    return a, np.arange(a.shape[0]) - offsets + np.repeat(first_b, counts)


def _singer_positives(n_s: int, blk_lo: np.ndarray, blk_hi: np.ndarray, quota: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``quota`` distinct positive pairs (positions within one singer), partners outside the own block."""
    width = blk_hi - blk_lo
    cap = (n_s * n_s - int(width.sum())) // 2  # unordered pairs with q outside p's block (sum_p |B(p)|)
    if quota >= cap or _DENSE_FACTOR * quota >= cap:
        a, b = _pairs_beyond(blk_hi, n_s)  # sorted by block: b > a is outside a's block iff b >= its end
        if quota >= a.shape[0]:
            return a, b
        w = 1.0 / (n_s - width[a]) + 1.0 / (n_s - width[b])
        pick = _efraimidis_spirakis(w, quota, rng)
        return a[pick], b[pick]
    got_a = np.zeros(0, dtype=np.int64)
    got_b = np.zeros(0, dtype=np.int64)
    while got_a.shape[0] < quota:
        need = quota - got_a.shape[0]
        p = rng.integers(0, n_s, size=2 * need + 16)
        q = _partner(p, blk_lo[p], blk_hi[p], n_s, rng)
        a, b = np.minimum(p, q), np.maximum(p, q)
        sel = _first_new(a * n_s + b, got_a * n_s + got_b, need)
        got_a = np.concatenate([got_a, a[sel]])
        got_b = np.concatenate([got_b, b[sel]])
    return got_a, got_b


def _negatives(singer_start: np.ndarray, singer_count: np.ndarray, seg_singer: np.ndarray, k: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``k`` distinct cross-singer pairs of positions in singer-sorted order (all if fewer exist)."""
    n = int(seg_singer.shape[0])
    n_singers = int(singer_count.shape[0])
    available = (n * n - int((singer_count.astype(np.int64) ** 2).sum())) // 2
    k = min(k, available)
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if _DENSE_FACTOR * k >= available:
        # Enumerate (a, b), a < b, b beyond a's singer block.
        a, b = _pairs_beyond((singer_start + singer_count)[seg_singer], n)
        if k >= a.shape[0]:
            return a, b
        w = 1.0 / (singer_count[seg_singer[a]] * singer_count[seg_singer[b]])
        pick = _efraimidis_spirakis(w.astype(np.float64), k, rng)
        return a[pick], b[pick]
    got = np.zeros(0, dtype=np.int64)
    rounds = 0
    while got.shape[0] < k:
        need = k - got.shape[0]
        m = 2 * need + 64
        if rounds < _MAX_SINGER_ROUNDS:  # Torres et al.'s process: uniform singer pair, uniform segments
            s1 = rng.integers(0, n_singers, size=m)
            s2 = rng.integers(0, n_singers - 1, size=m)
            s2 = s2 + (s2 >= s1)
            p = singer_start[s1] + rng.integers(0, singer_count[s1])
            q = singer_start[s2] + rng.integers(0, singer_count[s2])
        else:  # saturated small singers: uniform segment, uniform partner of another singer
            p = rng.integers(0, n, size=m)
            s = seg_singer[p]
            q = _partner(p, singer_start[s], singer_start[s] + singer_count[s], n, rng)
        a, b = np.minimum(p, q), np.maximum(p, q)
        codes = a * n + b
        sel = _first_new(codes, got, need)
        got = np.concatenate([got, codes[sel]])
        rounds += 1
    return got // n, got % n


def generate_trials(keys: Sequence[str], singers: Sequence[str], sources: Sequence[str], n_pairs: int,
                    seed: int, cross_recording: bool = True) -> list[Trial]:
    """Draw ``n_pairs`` verification trials ``(label, key1, key2)`` (label 1 = same singer).

    ``keys``, ``singers`` and ``sources`` are parallel sequences (one entry per segment; ``sources`` =
    the recording each segment was cut from: the manifest's ``recording``, e.g. an M4Singer song folder).
    See the module docstring for the sampling scheme.
    Raises TrialsError when keys repeat, or when no positive (no singer with two segments) or no
    negative (a single singer) trial exists. Warns when fewer distinct pairs exist than requested.
    """
    keys, singers, sources = list(map(str, keys)), list(map(str, singers)), list(map(str, sources))
    if not len(keys) == len(singers) == len(sources):
        raise TrialsError(f"keys, singers and sources differ in length ({len(keys)}, {len(singers)}, "
                          f"{len(sources)})")
    if int(n_pairs) < 2:
        raise TrialsError(f"n_pairs must be >= 2 (one trial of each class), got {n_pairs}")
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        dups = sorted({k for k in keys if k in seen or seen.add(k)})
        raise TrialsError(f"{len(dups)} segment key(s) appear more than once, e.g. {', '.join(dups[:5])}")
    rng = np.random.default_rng(seed)
    singer_names, singer_id = np.unique(np.asarray(singers, dtype=object), return_inverse=True)
    _, source_id = np.unique(np.asarray(sources, dtype=object), return_inverse=True)
    order = np.lexsort((np.arange(len(keys)), source_id, singer_id))  # by singer, then source
    seg_singer = singer_id[order]
    seg_source = source_id[order]
    singer_count = np.bincount(seg_singer, minlength=len(singer_names)).astype(np.int64)
    singer_start = np.concatenate([[0], np.cumsum(singer_count)[:-1]]).astype(np.int64)
    if len(singer_names) < 2:
        raise TrialsError(f"all {len(keys)} segments belong to one singer ({singer_names[0]!r}); "
                          "negative trials need at least two singers")

    # Exclusion blocks (positions within the singer): own source block, or just the segment itself.
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    caps = np.zeros(len(singer_names), dtype=np.int64)
    for s in range(len(singer_names)):
        lo0, n_s = int(singer_start[s]), int(singer_count[s])
        src = seg_source[lo0:lo0 + n_s]
        change = np.flatnonzero(np.diff(src)) + 1
        bounds = np.concatenate([[0], change, [n_s]])
        if cross_recording and bounds.shape[0] > 2:
            sizes = np.diff(bounds)
            blk_lo = np.repeat(bounds[:-1], sizes)
            blk_hi = np.repeat(bounds[1:], sizes)
        else:
            blk_lo = np.arange(n_s)
            blk_hi = blk_lo + 1
        blocks.append((blk_lo, blk_hi))
        width = blk_hi - blk_lo
        caps[s] = (n_s * n_s - int(width.sum())) // 2  # sum over positions of |own block| = sum |B|^2
    if caps.sum() == 0:
        raise TrialsError(f"no singer has two segments ({len(keys)} segments, {len(singer_names)} singers); "
                          "positive trials are impossible")

    n_pos, n_neg = int(n_pairs) // 2, int(n_pairs) - int(n_pairs) // 2
    quotas = _water_fill(caps, n_pos, rng)
    pos_a, pos_b = [], []
    for s in np.flatnonzero(quotas):
        blk_lo, blk_hi = blocks[s]
        a, b = _singer_positives(int(singer_count[s]), blk_lo, blk_hi, int(quotas[s]), rng)
        pos_a.append(a + singer_start[s])
        pos_b.append(b + singer_start[s])
    pa, pb = np.concatenate(pos_a), np.concatenate(pos_b)
    na, nb = _negatives(singer_start, singer_count, seg_singer, n_neg, rng)
    short = []
    if pa.shape[0] < n_pos:
        short.append(f"{pa.shape[0]} of {n_pos} positive")
    if na.shape[0] < n_neg:
        short.append(f"{na.shape[0]} of {n_neg} negative")
    if short:
        warnings.warn(f"only {' and '.join(short)} distinct trial pairs exist in {len(keys)} segments of "
                      f"{len(singer_names)} singers; using all of them", stacklevel=2)

    a = np.concatenate([pa, na])
    b = np.concatenate([pb, nb])
    labels = np.concatenate([np.ones(pa.shape[0], dtype=np.int64), np.zeros(na.shape[0], dtype=np.int64)])
    swap = rng.random(a.shape[0]) < 0.5
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    perm = rng.permutation(a.shape[0])
    ia, ib = order[a[perm]], order[b[perm]]
    return [(int(lab), keys[i], keys[j])
            for lab, i, j in zip(labels[perm].tolist(), ia.tolist(), ib.tolist())]


# --------------------------------------------------------------------------------------- reading/writing


def format_trials(trials: Iterable[Trial]) -> str:
    """``label,key1,key2`` lines (CSV-quoted only where a key needs it)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for label, k1, k2 in trials:
        w.writerow((int(label), k1, k2))
    return buf.getvalue()


def write_trials(path: str | os.PathLike, trials: Iterable[Trial]) -> None:
    """Atomically write ``label,key1,key2`` lines to ``path``."""
    write_text(path, format_trials(trials))


def _detect_format(line: str) -> str:
    if "," in line:
        return "csv"
    parts = line.split()
    if len(parts) == 3 and parts[2].lower() in _KALDI_LABELS:
        return "kaldi"
    if len(parts) == 3 and parts[0] in ("0", "1"):
        return "voxceleb"
    raise TrialsError(f"unrecognised trial line {line!r}; expected 'label,key1,key2' (Torres et al. 2023), "
                      "'enroll test target|nontarget' (Kaldi) or 'label key1 key2' (VoxCeleb)")


def _norm_key(key: str) -> str:
    key = key.strip().replace("\\", "/")
    return key[2:] if key.startswith("./") else key


def parse_trials(text: str, source: str = "<trials>") -> tuple[np.ndarray, list[str], list[str], str]:
    """Parse a trial list, format auto-detected from its first line; ``(labels, key1, key2, format)``.

    Blank lines and ``#`` comments are skipped, and a ``label,key1,key2``-style header row too.
    Errors (TrialsError) name ``source`` and the line number.
    """
    return _parse_lines(text, source)[:4]


def _parse_lines(text: str, source: str) -> tuple[np.ndarray, list[str], list[str], str, list[int]]:
    """:func:`parse_trials` plus the line number (1-based) of each trial in ``text``."""
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines())
             if ln.strip() and not ln.lstrip().startswith("#")]
    labels: list[int] = []
    key1: list[str] = []
    key2: list[str] = []
    if not lines:
        return np.zeros(0, dtype=np.int64), key1, key2, "csv", []
    first = lines[0][1].strip()
    if first.split(",")[0].strip().lower() in ("label", "target"):
        lines = lines[1:]
        if not lines:
            return np.zeros(0, dtype=np.int64), key1, key2, "csv", []
    fmt = _detect_format(lines[0][1].strip())
    if fmt == "csv":
        rows = csv.reader([ln for _, ln in lines], skipinitialspace=True)
    else:
        rows = (ln.split() for _, ln in lines)
    for (lineno, line), row in zip(lines, rows):
        if len(row) != 3:
            raise TrialsError(f"{source}:{lineno}: expected 3 fields ({fmt} format), "
                              f"got {len(row)}: {line!r}")
        if fmt == "kaldi":
            lab = _KALDI_LABELS.get(row[2].strip().lower())
            k1, k2 = row[0], row[1]
        else:
            lab = {"0": 0, "1": 1}.get(row[0].strip())
            k1, k2 = row[1], row[2]
        if lab is None:
            raise TrialsError(f"{source}:{lineno}: bad label in {line!r} ({fmt} format)")
        labels.append(lab)
        key1.append(_norm_key(k1))
        key2.append(_norm_key(k2))
    return np.asarray(labels, dtype=np.int64), key1, key2, fmt, [n for n, _ in lines]


def read_trials(path: str | os.PathLike) -> tuple[np.ndarray, list[str], list[str]]:
    """Read a trial file: ``(labels (M,) int64, key1, key2)``; any format :func:`parse_trials` knows."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trial list not found: {path}")
    labels, key1, key2, _ = parse_trials(_read_list(path), str(path))
    return labels, key1, key2


def validate_trials(labels: np.ndarray, key1: Sequence[str], key2: Sequence[str], known_keys: Iterable[str],
                    source: str = "trial list", dataset: str = "the dataset") -> None:
    """TrialsError unless the list is non-empty, has both classes and only keys of ``known_keys``."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise TrialsError(f"{source}: no trials")
    known = set(known_keys)
    unknown = sorted({k for k in (*key1, *key2) if k not in known})
    if unknown:
        example = min(known) if known else "<singer>/<file>.wav"
        raise TrialsError(
            f"{source}: {len(unknown)} key(s) are not segments of {dataset}, e.g. {', '.join(unknown[:5])} "
            f"(keys must be the manifest's 'segment' column, like {example!r})")
    n_pos = int((labels == 1).sum())
    if n_pos == 0 or n_pos == labels.size:
        kind = "target (same-singer)" if n_pos else "non-target (different-singer)"
        raise TrialsError(f"{source}: all {labels.size} trials are {kind}; EER needs both classes")


def _read_list(path: Path) -> str:
    """A trial list's text; TrialsError naming the file for a binary (non-UTF-8) or unreadable one."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TrialsError(f"trial list {path}: not UTF-8 text (byte {e.start}); expected 'label,key1,key2' "
                          "or 'enroll test target|nontarget' lines") from None
    except OSError as e:
        raise TrialsError(f"trial list {path}: cannot be read: {e.strerror or e}") from None


def check_trial_lines(labels: np.ndarray, key1: Sequence[str], key2: Sequence[str], lines: Sequence[int],
                      source: str, singer_of: Mapping[str, str], content_of: Mapping[str, Any] | None = None) -> None:
    """Check each trial against the segments it names: TrialsError ``<source>:<line>: ...`` at the first trial
    that pairs a segment with itself, repeats an earlier pair (either order), carries a label its singers
    contradict (label 1 = same singer in ``singer_of``, 0 = different singers), or pairs two byte-identical
    copies of one recording (equal ``content_of``, see :func:`content_ids`). Keys must be in ``singer_of``."""
    seen: dict[frozenset[str], int] = {}
    for label, a, b, line in zip(np.asarray(labels).tolist(), key1, key2, lines):
        where = f"{source}:{line}"
        if a == b:
            raise TrialsError(f"{where}: pairs segment {a!r} with itself; not a trial (lists drawn with replacement, "
                              f"as Torres et al. 2023's, hold such lines: remove them)")
        pair = frozenset((a, b))
        if pair in seen:
            raise TrialsError(f"{where}: the pair {a}, {b} repeats line {seen[pair]}; each pair may appear once "
                              f"(a repeat would count twice in the EER: remove it)")
        seen[pair] = line
        same = singer_of[a] == singer_of[b]
        if bool(label) != same:
            claim = "target (same-singer)" if label else "non-target (different-singer)"
            raise TrialsError(f"{where}: labelled {claim}, but {a} is singer {singer_of[a]!r} and {b} is singer "
                              f"{singer_of[b]!r} in the manifest")
        if content_of is not None and content_of[a] == content_of[b]:
            raise TrialsError(f"{where}: {a} and {b} are the same stretch of byte-identical files ({content_of[a][0]} "
                              f"and its copy, see the scan listing's duplicate_of); not a trial")


def load_external_trials(path: str | os.PathLike, known_keys: Iterable[str], dataset: str = "the dataset",
                         singer_of: Mapping[str, str] | None = None,
                         content_of: Mapping[str, Any] | None = None) -> list[Trial]:
    """Read and validate a user-supplied trial list (Torres et al. 2023 csv or Kaldi), as ``(label, key1, key2)``.

    Keys must be ``known_keys`` (the first unknown one is named with its line); with ``singer_of``
    (segment -> singer), every trial is also checked by :func:`check_trial_lines` (labels, repeats,
    self-pairs; with ``content_of``, copies of one recording). TrialsError names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise TrialsError(f"external trial list for {dataset} not found: {path}")
    labels, key1, key2, _, lines = _parse_lines(_read_list(path), str(path))
    known = set(known_keys)
    first_bad = next((n for a, b, n in zip(key1, key2, lines) if a not in known or b not in known), None)
    if first_bad is None and singer_of is not None:  # a wrong line is named before the list-wide class check
        check_trial_lines(labels, key1, key2, lines, str(path), singer_of, content_of)
    validate_trials(labels, key1, key2, known, str(path) if first_bad is None else f"{path}:{first_bad}", dataset)
    return [(int(lab), a, b) for lab, a, b in zip(labels.tolist(), key1, key2)]


def content_ids(rows: Sequence[Mapping[str, Any]], duplicates: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Segment key -> what it holds, for manifest ``rows``: ``(first copy, start_s, end_s)`` for a segment of a
    file that has byte-identical copies (``duplicates``: copy -> first copy, :func:`singer_ssl.scan.read_duplicates`),
    equal for the same stretch of every copy; ``(key,)`` (distinct) for the segments of every other file."""
    copied = set(duplicates) | set(duplicates.values())
    return {r["segment"]: (duplicates.get(r["source"], r["source"]), str(r["start_s"]), str(r["end_s"]))
            if r["source"] in copied else (r["segment"],) for r in rows}


def summarize_trials(trials: Sequence[Trial], singer_of: dict[str, str], source_of: dict[str, str]) -> dict:
    """Counts for the log: trials, positives, singers involved, same-recording positives."""
    pos = [(a, b) for lab, a, b in trials if lab == 1]
    return {
        "trials": len(trials),
        "positives": len(pos),
        "negatives": len(trials) - len(pos),
        "singers": len({singer_of[k] for _, a, b in trials for k in (a, b) if k in singer_of}),
        "same_recording_positives": sum(source_of.get(a) == source_of.get(b) for a, b in pos),
    }


# ----------------------------------------------------------------------------------------------- stage


def run(cfg: TrialsConfig, manifest: str | os.PathLike, out: str | os.PathLike,
        duplicates: Mapping[str, str] | None = None) -> str:
    """Write the trial list of ``cfg.dataset`` (segments listed in ``manifest``) to ``out``; the summary line.

    ``manifest``: the dataset's ``manifest.csv`` or its segment folder; ``duplicates``: the byte-identical
    copies among its files (copy -> first copy, from the scan listing: :func:`singer_ssl.scan.read_duplicates`):
    a generated list leaves a copy's segments out (a warning on stderr counts them), an external list may not
    pair two copies of one stretch (:func:`check_trial_lines`, which also checks its labels against the
    manifest's singers). Warnings of :func:`generate_trials` (fewer distinct pairs than requested) go to
    stderr, one line each. Raises SegmentError (bad manifest) or TrialsError (an invalid external list,
    naming the file and line; one class impossible).
    """
    name = cfg.dataset
    rows = read_manifest(manifest, name)
    content = content_ids(rows, duplicates or {})
    if cfg.external is not None:
        trials = load_external_trials(cfg.external, content, dataset=name,
                                      singer_of={r["segment"]: r["singer"] for r in rows}, content_of=content)
        how = f"external list {cfg.external}"
    else:
        firsts = {c: k for k, c in reversed(content.items())}  # the first segment of each stretch
        copies = len(rows) - len(firsts)
        rows = [r for r in rows if firsts[content[r["segment"]]] == r["segment"]]
        keys = [r["segment"] for r in rows]
        if copies:
            print(f"warning: {name}: {copies} segments of byte-identical copies left out of the trials "
                  f"(the scan listing's duplicate_of column)", file=sys.stderr)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trials = generate_trials(keys, [r["singer"] for r in rows], [r["recording"] for r in rows],
                                     n_pairs=cfg.n_pairs, seed=cfg.seed, cross_recording=cfg.cross_recording)
        for w in caught:
            print(f"warning: {name}: {w.message}", file=sys.stderr)
        how = f"generated, seed {cfg.seed}"
    write_trials(out, trials)
    s = summarize_trials(trials, {r["segment"]: r["singer"] for r in rows},
                         {r["segment"]: r["recording"] for r in rows})
    return (f"{name}: {s['trials']} trials ({s['positives']} target, {s['negatives']} non-target; "
            f"{s['singers']} singers; {s['same_recording_positives']} same-recording targets; {how}) -> {out}")


__all__ = [
    "TRIAL_FORMATS", "Trial", "TrialsConfig", "TrialsError", "check_trial_lines", "content_ids", "format_trials",
    "generate_trials", "load_external_trials",
    "parse_trials", "read_trials", "run", "summarize_trials", "validate_trials", "write_trials",
]
