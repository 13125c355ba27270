"""Out-of-domain built-in test corpus: Klatt formant synthesis (Praat's KlattGrid via parselmouth).

The training corpus (:mod:`singer_ssl.data.builtin_corpus`) sings eSpeak speech through PSOLA. This
corpus shares none of that machinery: every singer is a *source-filter* voice built from a
parametric glottal source and a cascade of formant resonators (Klatt 1980; Praat's ``KlattGrid``),
so an embedding that keys on artefacts of the eSpeak/PSOLA chain, on its languages or on its
recording constants gets no help here. A singer is drawn (``SeedSequence([seed, 10, i])``, a stream
the training corpus never uses) as:

- **speaker group** man / woman / child (2 : 2 : 1) and the group's vowel formants F1-F3 from
  Peterson & Barney (1952), Table II (averages of 33 men, 28 women and 15 children, ten American
  English vowels), scaled by a per-singer vocal-tract-length factor (0.90-1.10 around the group
  mean) with a per-singer, per-vowel idiosyncratic deviation (s.d. 4 %); F4-F7 from the group's
  mean F3 (uniform-tube series, then the same scaling); per-singer formant bandwidths; the
  cascade's output is differentiated (lip radiation);
- **glottal source** (Praat's phonation tier): open phase, the flow shape exponents ``power1`` and
  ``power2``, collision phase, spectral tilt, flutter, breathiness and aspiration amplitude;
  cycle-to-cycle **jitter** (per-period F0 perturbation, 0.2-1.2 %) and **shimmer** (per-period
  voicing amplitude perturbation, 0.1-0.7 dB) written into the pitch and voicing amplitude tiers;
- **vocal range** inside the group's tessitura (men MIDI 47-57 centre, women 57-68, children
  62-71; 10-17 semitones wide) and **vibrato** (rate 4.5-7 Hz, semi-extent 15-100 cents, onset
  delay, a matching amplitude tremolo).

Each song is a melody in its own key and scale (notes of the singer's range, random walk, tempo
60-140 bpm), one vowel per note with 40-90 ms formant transitions, voiced-consonant dips (F1 down,
level down) between some notes and rests between phrases, delayed vibrato, portamento and an
onset scoop. Each **recording** then gets its own microphone/room: a high-pass (35-120 Hz), a low
and a high shelf (+-4 dB), two peaking biquads (+-5 dB; RBJ Audio EQ Cookbook formulas,
scipy.signal.sosfilt), a synthetic reverb (exponentially decaying Gaussian-noise impulse response, RT60 0.1-0.7 s, a
pre-delay, mixed 8-22 dB below the direct sound), a random level and a noise floor; the
sample rate, channel count (a ``stereo_fraction`` of the songs, reverb decorrelated per channel)
and PCM subtype follow ``corpus.sample_rates``/``stereo_fraction`` as in the training corpus.

Reproducibility: every song draws from ``SeedSequence([seed, 11, singer, song])`` and Praat's
random generator (aspiration/breathiness noise) is seeded from it; KlattGrid keeps no state
between sounds, so the bytes depend on the config alone, not on workers or order.

Output: ``<out_root>/<ood_name>/ood-sNN/<NN_title>.wav`` plus ``singers.csv`` and ``corpus.json``
at the dataset root (the ``builtin`` layout: singer = first path component).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from singer_ssl.core.praat import praat_seed as seeded_praat
SYNTH_RATE = 44100  # KlattGrid "To Sound" rate; resampled (soxr HQ) to the song's sample rate
VOWELS: tuple[str, ...] = ("i", "ɪ", "ɛ", "æ", "ɑ", "ɔ", "ʊ", "u", "ʌ")
# Peterson, G. E. & Barney, H. L. (1952). Control methods used in a study of the vowels. JASA 24(2),
# 175-184, Table II: average formant frequencies (Hz) F1, F2, F3 of 33 men, 28 women, 15 children
# (/ɝ/ left out: r-coloured, not a sung vowel here).
PETERSON_BARNEY_1952: dict[str, dict[str, tuple[int, int, int]]] = {
    "man": {"i": (270, 2290, 3010), "ɪ": (390, 1990, 2550), "ɛ": (530, 1840, 2480), "æ": (660, 1720, 2410),
            "ɑ": (730, 1090, 2440), "ɔ": (570, 840, 2410), "ʊ": (440, 1020, 2240), "u": (300, 870, 2240),
            "ʌ": (640, 1190, 2390)},
    "woman": {"i": (310, 2790, 3310), "ɪ": (430, 2480, 3070), "ɛ": (610, 2330, 2990), "æ": (860, 2050, 2850),
              "ɑ": (850, 1220, 2810), "ɔ": (590, 920, 2710), "ʊ": (470, 1160, 2680), "u": (370, 950, 2670),
              "ʌ": (760, 1400, 2780)},
    "child": {"i": (370, 3200, 3730), "ɪ": (530, 2730, 3600), "ɛ": (690, 2610, 3570), "æ": (1010, 2320, 3320),
              "ɑ": (1030, 1370, 3170), "ɔ": (680, 1060, 3180), "ʊ": (560, 1410, 3310), "u": (430, 1170, 3260),
              "ʌ": (850, 1590, 3360)},
}  # fmt: skip
GROUPS = ("man", "woman", "woman", "man", "child")  # drawn uniformly: 2 : 2 : 1
RANGE_CENTRE_MIDI = {"man": (47.0, 57.0), "woman": (57.0, 68.0), "child": (62.0, 71.0)}
VTL_SCALE = (0.90, 1.10)  # multiplies every formant (shorter vocal tract -> higher formants)
# F4..F7 as multiples of the group's mean F3: a uniform tube's odd-quarter-wave series (2n - 1) c / 4L
# with F3 = 5 c / 4L, i.e. 7/5, 9/5, 11/5, 13/5. A cascade with nothing above F5 falls off at
# -60 dB/octave above it; the extra resonances keep the 4-8 kHz region at a voice-like level.
UPPER_FORMANTS = (1.4, 1.8, 2.2, 2.6)
N_FORMANTS = 7
BANDWIDTHS_HZ = ((45, 110), (60, 150), (90, 220), (150, 320), (200, 450), (300, 600), (400, 800))  # B1..B7
CONSONANT_F1_HZ = 250.0  # voiced-consonant constriction: F1 drops towards this
MAX_PEAK = 10 ** (-1.0 / 20)  # -1 dBFS
# per-recording microphone/room ranges (dB, s)
SHELF_DB = 4.0  # low and high shelf gains in [-SHELF_DB, SHELF_DB]
PEAK_DB = 5.0  # two peaking sections, gains in [-PEAK_DB, PEAK_DB]
RT60_S = (0.1, 0.7)
WET_DB = (-22.0, -8.0)  # reverb level relative to the direct sound
LEVEL_DBFS = (-30.0, -16.0)
SUBTYPES = ("PCM_16", "PCM_16", "PCM_16", "PCM_24")
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "harmonic-minor": (0, 2, 3, 5, 7, 8, 11),
    "major-pentatonic": (0, 2, 4, 7, 9),
}
_ADJ = ("bright", "cold", "deep", "faded", "green", "high", "lone", "open", "pale", "red", "soft", "still")
_NOUN = ("air", "bay", "dawn", "dune", "hill", "lake", "mist", "reed", "sail", "snow", "vale", "wind")


@dataclass(frozen=True)
class OodSinger:
    """One Klatt voice: everything fixed across its songs. Frequencies in Hz, levels in dB."""

    name: str
    index: int
    group: str  # man | woman | child (the Peterson & Barney row its formants come from)
    vtl_scale: float
    formants: dict[str, tuple[float, ...]]  # vowel -> (F1..F5) of this singer
    bandwidths: tuple[float, ...]  # B1..B5
    open_phase: float
    power1: float
    power2: float
    collision_phase: float
    spectral_tilt_db: float
    flutter: float
    breathiness_db: float
    aspiration_db: float
    jitter: float  # relative s.d. of the period, cycle to cycle
    shimmer_db: float  # s.d. of the per-period voicing amplitude
    low_midi: int
    high_midi: int
    vibrato_rate_hz: float
    vibrato_depth_cents: float
    vibrato_delay_s: float
    tremolo_db: float


@dataclass(frozen=True)
class OodSongPlan:
    """One file: its audio is a pure function of this and its singer."""

    singer: OodSinger
    song_index: int
    relpath: str
    frames: int
    sample_rate: int
    channels: int
    subtype: str
    level_dbfs: float
    seed: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def singer_name(index: int, n: int) -> str:
    """``ood-s00`` ... (at least two digits, more when ``n`` > 100)."""
    return f"ood-s{index:0{max(2, len(str(n - 1)))}d}"


def make_singer(seed: int, index: int, n: int) -> OodSinger:
    """OOD singer ``index`` of ``n``, drawn from ``SeedSequence([seed, 10, index])`` (no Praat call)."""
    r = np.random.default_rng(np.random.SeedSequence([seed, 10, index]))
    group = str(r.choice(GROUPS))
    k = float(r.uniform(*VTL_SCALE))
    table = PETERSON_BARNEY_1952[group]
    f3_mean = float(np.mean([v[2] for v in table.values()]))
    formants = {}
    for v in VOWELS:
        f123 = np.array(table[v], dtype=float) * np.exp(r.normal(0.0, 0.04, 3))
        f45 = f3_mean * np.array(UPPER_FORMANTS) * np.exp(r.normal(0.0, 0.02, len(UPPER_FORMANTS)))
        f = np.concatenate([f123, f45]) * k
        for j in range(1, N_FORMANTS):  # keep the resonances ordered and apart
            f[j] = max(f[j], f[j - 1] + 150.0)
        formants[v] = tuple(round(float(x), 1) for x in f)
    centre = float(r.uniform(*RANGE_CENTRE_MIDI[group]))
    span = int(r.integers(10, 18))
    low = int(round(centre - span / 2))
    power1 = float(r.uniform(2.0, 3.5))
    return OodSinger(
        name=singer_name(index, n), index=index, group=group, vtl_scale=round(k, 4), formants=formants,
        bandwidths=tuple(round(float(r.uniform(a, b)), 1) for a, b in BANDWIDTHS_HZ),
        open_phase=round(float(r.uniform(0.35, 0.75)), 3), power1=round(power1, 3),
        power2=round(power1 + float(r.uniform(0.7, 2.0)), 3),
        collision_phase=round(float(r.uniform(0.01, 0.08)), 3),
        spectral_tilt_db=round(float(r.uniform(0.0, 10.0)), 2), flutter=round(float(r.uniform(0.05, 0.5)), 3),
        breathiness_db=round(float(r.uniform(30.0, 60.0)), 1), aspiration_db=round(float(r.uniform(20.0, 50.0)), 1),
        jitter=round(float(r.uniform(0.002, 0.012)), 4), shimmer_db=round(float(r.uniform(0.1, 0.7)), 3),
        low_midi=low, high_midi=low + span,
        vibrato_rate_hz=round(float(r.uniform(4.5, 7.0)), 3),
        vibrato_depth_cents=round(float(r.uniform(15.0, 100.0)), 1),
        vibrato_delay_s=round(float(r.uniform(0.08, 0.4)), 3), tremolo_db=round(float(r.uniform(0.0, 2.5)), 2),
    )  # fmt: skip


def plan_songs(seed: int, singer: OodSinger, n_songs: int, min_seconds: float, max_seconds: float,
               sample_rates: tuple[int, ...], stereo_fraction: float) -> list[OodSongPlan]:
    """File names (``<singer>/<NN>_<adj>_<noun>.wav``), lengths, rates, channels and levels."""
    plans = []
    for j in range(n_songs):
        r = np.random.default_rng(np.random.SeedSequence([seed, 12, singer.index, j]))
        sr = int(r.choice(sample_rates))
        frames = int(round(r.uniform(min_seconds, max_seconds) * sr))
        frames = min(max(frames, math.ceil(min_seconds * sr)), math.floor(max_seconds * sr))
        title = f"{j + 1:02d}_{r.choice(_ADJ)}_{r.choice(_NOUN)}"
        plans.append(OodSongPlan(
            singer=singer, song_index=j, relpath=f"{singer.name}/{title}.wav", frames=frames, sample_rate=sr,
            channels=2 if r.random() < stereo_fraction else 1, subtype=str(r.choice(SUBTYPES)),
            level_dbfs=round(float(r.uniform(*LEVEL_DBFS)), 2), seed=seed,
        ))  # fmt: skip
    return plans


# ------------------------------------------------------------------------------------------ score


@dataclass
class Score:
    """What the KlattGrid sings, as control tracks (times in s at the synthesis clock).

    ``f0_*``: per-period pitch points (Hz, jitter included); ``amp_*``: voicing amplitude points (dB;
    shimmer, tremolo, consonant dips, silence = 0 dB far below speech); ``formant_*``: per-formant
    breakpoints (Hz); ``notes``: ``(onset, offset, midi, vowel)`` of every sung note.
    """

    f0_t: np.ndarray
    f0_hz: np.ndarray
    amp_t: np.ndarray
    amp_db: np.ndarray
    formant_t: np.ndarray
    formant_hz: np.ndarray  # (points, N_FORMANTS)
    notes: list[tuple[float, float, int, str]]
    duration: float


def _melody_notes(r: np.random.Generator, singer: OodSinger, scale: tuple[int, ...], tonic: int) -> list[int]:
    return [m for m in range(singer.low_midi, singer.high_midi + 1) if (m - tonic) % 12 in scale]


def compose(singer: OodSinger, r: np.random.Generator, seconds: float) -> Score:
    """A song of about ``seconds``: phrases of 3-8 notes, rests between phrases.

    F0 per note: previous note -> note portamento (smoothstep, 40-80 ms) or a 30-60 cent onset scoop,
    plus vibrato ``depth * ramp(u - delay, 0.25 s) * sin(2 pi rate (u - delay))`` and 6 cents of 0.3 Hz
    drift; jitter multiplies each period by ``1 + jitter * N(0, 1)``.
    """
    scale = SCALES[str(r.choice(list(SCALES)))]
    notes_pool = _melody_notes(r, singer, scale, int(r.integers(12)))
    beat = 60.0 / float(r.uniform(60.0, 140.0))
    pos = len(notes_pool) // 2
    t = float(r.uniform(0.1, 0.4))
    notes: list[tuple[float, float, int, str]] = []
    phrase_starts = []
    while t < seconds - 0.6:
        phrase_starts.append(len(notes))
        for _ in range(int(r.integers(3, 9))):
            step = int(r.choice((-3, -2, -1, -1, 0, 1, 1, 2, 3)))
            pos = int(np.clip(pos + step, 0, len(notes_pool) - 1))
            length = float(r.choice((0.5, 1.0, 1.0, 1.5, 2.0, 3.0))) * beat
            notes.append((t, t + length, notes_pool[pos], str(r.choice(VOWELS))))
            t += length
            if t >= seconds - 0.3:
                break
        t += float(r.choice((0.5, 1.0, 1.5))) * beat + 0.1
    duration = seconds

    # pitch contour on a 5 ms grid, then per-period jitter points
    grid = np.arange(0.0, duration, 0.005)
    cents = 6.0 * np.sin(2 * np.pi * 0.3 * grid + r.uniform(0, 2 * np.pi))
    midi = np.full_like(grid, float(notes[0][2]) if notes else float(singer.low_midi))
    amp = np.zeros_like(grid)  # dB re full voicing; -inf-like for silence handled below
    voiced = np.zeros(grid.shape, dtype=bool)
    ftrack = np.zeros((grid.size, N_FORMANTS))
    prev_vowel = notes[0][3] if notes else "ɑ"
    for k, (on, off, m, vowel) in enumerate(notes):
        sel = (grid >= on) & (grid < off)
        u = grid[sel] - on
        prev = notes[k - 1] if k and k not in phrase_starts else None
        glide = float(r.uniform(0.04, 0.08))
        x = np.clip(u / glide, 0.0, 1.0)
        s = x * x * (3.0 - 2.0 * x)
        start = (prev[2] - m) * 100.0 if prev else -float(r.uniform(30.0, 60.0))
        uv = u - singer.vibrato_delay_s
        ramp = np.clip(uv / 0.25, 0.0, 1.0)
        rate = singer.vibrato_rate_hz * float(r.uniform(0.96, 1.04))
        vib = np.sin(2 * np.pi * rate * uv)
        midi[sel] = m
        cents[sel] += start * (1.0 - s) + singer.vibrato_depth_cents * ramp * vib
        voiced[sel] = True
        amp[sel] = singer.tremolo_db * ramp * vib
        # formants: glide from the previous vowel; a voiced consonant (F1 and level dip) before some notes
        fa = np.array(singer.formants[prev_vowel if prev else vowel])
        fb = np.array(singer.formants[vowel])
        trans = np.clip(u / float(r.uniform(0.04, 0.09)), 0.0, 1.0)[:, None]
        ftrack[sel] = fa + (fb - fa) * trans
        if prev and r.random() < 0.6:
            dip = np.clip(1.0 - np.abs(u - 0.03) / 0.05, 0.0, 1.0)
            ftrack[sel, 0] = ftrack[sel, 0] * (1 - dip) + CONSONANT_F1_HZ * singer.vtl_scale * dip
            amp[sel] -= float(r.uniform(12.0, 25.0)) * dip
        fade_in = np.clip(u / 0.03, 0.0, 1.0) if not prev else 1.0
        phrase_end = k + 1 in phrase_starts or k + 1 == len(notes)
        fade_out = np.clip((off - grid[sel]) / 0.05, 0.0, 1.0) if phrase_end else 1.0
        amp[sel] += 20 * np.log10(np.maximum(fade_in * fade_out, 1e-3))
        prev_vowel = vowel
    # hold the last formants/pitch through rests (silent: voicing amplitude 0 dB)
    last = np.array(singer.formants[notes[0][3]]) if notes else np.array(singer.formants["ɑ"])
    for i in range(grid.size):
        if voiced[i]:
            last = ftrack[i]
        else:
            ftrack[i] = last
            if i:
                midi[i] = midi[i - 1]
    f0_grid = 440.0 * 2.0 ** ((midi - 69.0 + cents / 100.0) / 12.0)

    # per-period jitter/shimmer points: t_{k+1} = t_k + T(t_k) (1 + jitter N(0,1))
    periods = []
    tt = 0.0
    while tt < duration:
        periods.append(tt)
        tt += (1.0 / float(np.interp(tt, grid, f0_grid))) * (1.0 + singer.jitter * float(r.standard_normal()))
    f0_t = np.array(periods[:-1]) if len(periods) > 1 else np.array([0.0])
    f0_hz = 1.0 / np.maximum(np.diff(np.array(periods)), 1e-4) if len(periods) > 1 else f0_grid[:1]
    shimmer = r.normal(0.0, singer.shimmer_db, f0_t.size)
    amp_p = np.interp(f0_t, grid, amp) + shimmer
    on_p = np.interp(f0_t, grid, voiced.astype(float)) > 0.5
    amp_db = np.where(on_p, 90.0 + amp_p, 0.0)
    keep = np.ones(grid.size, dtype=bool)
    keep[1:-1] = np.any(np.abs(np.diff(ftrack, 2, axis=0)) > 1e-6, axis=1) | (np.arange(1, grid.size - 1) % 10 == 0)
    return Score(f0_t=f0_t, f0_hz=f0_hz, amp_t=f0_t, amp_db=amp_db, formant_t=grid[keep],
                 formant_hz=ftrack[keep], notes=notes, duration=duration)


# ---------------------------------------------------------------------------------------- Praat


def _read_tier(path: Path, text: str):
    import parselmouth

    path.write_text(text, encoding="utf-8")
    return parselmouth.read(str(path))


def _tier_text(kind: str, xmax: float, t: np.ndarray, v: np.ndarray) -> str:
    body = "".join(f"{a:.9g}\n{b:.9g}\n" for a, b in zip(t.tolist(), v.tolist()))
    return f'File type = "ooTextFile short"\n"{kind}"\n0\n{xmax!r}\n{len(t)}\n{body}'


def _formant_grid_text(xmax: float, t: np.ndarray, f: np.ndarray, bw: tuple[float, ...]) -> str:
    """A FormantGrid in Praat's short text format: n formant tiers, then n bandwidth tiers."""
    parts = [f'File type = "ooTextFile short"\n"FormantGrid"\n0\n{xmax!r}\n{f.shape[1]}\n']
    for j in range(f.shape[1]):
        parts.append(f"0\n{xmax!r}\n{len(t)}\n" + "".join(f"{a:.9g}\n{b:.9g}\n" for a, b in zip(t, f[:, j])))
    parts.append(f"{f.shape[1]}\n")
    for j in range(f.shape[1]):
        parts.append(f"0\n{xmax!r}\n1\n0\n{bw[j]:.9g}\n")
    return "".join(parts)


def synthesise(singer: OodSinger, score: Score, praat_seed: int, tmpdir: Path) -> np.ndarray:
    """Render ``score`` with a KlattGrid (cascade of ``N_FORMANTS`` oral formants), then lip radiation
    (first difference, +6 dB/octave; Klatt 1980): float64 mono at ``SYNTH_RATE``, ``score.duration`` long."""
    from parselmouth.praat import call

    xmax = score.duration
    kg = call("Create KlattGrid", "song", 0.0, xmax, N_FORMANTS, 0, 0, 0, 0, 0, 0)
    pitch = _read_tier(tmpdir / "p.PitchTier", _tier_text("PitchTier", xmax, score.f0_t, score.f0_hz))
    amp = _read_tier(tmpdir / "a.IntensityTier", _tier_text("IntensityTier", xmax, score.amp_t, score.amp_db))
    grid = _read_tier(tmpdir / "f.FormantGrid", _formant_grid_text(xmax, score.formant_t, score.formant_hz,
                                                                    singer.bandwidths))
    call([kg, pitch], "Replace pitch tier")
    call([kg, amp], "Replace voicing amplitude tier")
    call([kg, grid], "Replace oral formant grid")
    for command, value in (
        ("Add open phase point", singer.open_phase), ("Add power1 point", singer.power1),
        ("Add power2 point", singer.power2), ("Add collision phase point", singer.collision_phase),
        ("Add spectral tilt point", singer.spectral_tilt_db), ("Add flutter point", singer.flutter),
        ("Add breathiness amplitude point", singer.breathiness_db),
        ("Add aspiration amplitude point", singer.aspiration_db),
    ):  # fmt: skip
        call(kg, command, 0.0, float(value))
    with seeded_praat(praat_seed):
        sound = call(kg, "To Sound")
    x = np.diff(sound.values[0].astype(np.float64), prepend=0.0)  # lip radiation: first difference
    n = int(round(xmax * SYNTH_RATE))
    return np.pad(x, (0, max(0, n - x.size)))[:n]


# ------------------------------------------------------------------------------ microphone / room


def _active_rms(x: np.ndarray, sr: int) -> float:
    """RMS over 50 ms frames within 40 dB of the loudest frame (level independent of pauses)."""
    n = max(1, int(0.05 * sr))
    frames = x[: len(x) // n * n].reshape(-1, n)
    power = np.mean(frames**2, axis=1)
    active = power[power >= power.max() * 1e-4]
    return float(np.sqrt(np.mean(active))) if active.size else 0.0


def _biquad(kind: str, f0: float, gain_db: float, q: float, fs: float) -> np.ndarray:
    """One second-order section (RBJ Audio EQ Cookbook): ``peak``, ``lowshelf``, ``highshelf``, ``highpass``."""
    a = 10 ** (gain_db / 40)
    w = 2 * np.pi * f0 / fs
    cw, sw = np.cos(w), np.sin(w)
    alpha = sw / (2 * q)
    if kind == "peak":
        b0, b1, b2 = 1 + alpha * a, -2 * cw, 1 - alpha * a
        a0, a1, a2 = 1 + alpha / a, -2 * cw, 1 - alpha / a
    elif kind in ("lowshelf", "highshelf"):
        sq = 2 * np.sqrt(a) * alpha
        sgn = 1 if kind == "lowshelf" else -1
        b0 = a * ((a + 1) - sgn * (a - 1) * cw + sq)
        b1 = sgn * 2 * a * ((a - 1) - sgn * (a + 1) * cw)
        b2 = a * ((a + 1) - sgn * (a - 1) * cw - sq)
        a0 = (a + 1) + sgn * (a - 1) * cw + sq
        a1 = -sgn * 2 * ((a - 1) + sgn * (a + 1) * cw)
        a2 = (a + 1) + sgn * (a - 1) * cw - sq
    elif kind == "highpass":
        b0, b1, b2 = (1 + cw) / 2, -(1 + cw), (1 + cw) / 2
        a0, a1, a2 = 1 + alpha, -2 * cw, 1 - alpha
    else:
        raise ValueError(kind)
    return np.array([b0, b1, b2, a0, a1, a2]) / a0


def channel_sos(r: np.random.Generator, fs: float) -> np.ndarray:
    """The recording's microphone EQ: high-pass, low shelf, high shelf, two peaks; ``(5, 6)`` sos."""
    return np.stack([
        _biquad("highpass", float(r.uniform(35.0, 120.0)), 0.0, 0.707, fs),
        _biquad("lowshelf", float(r.uniform(100.0, 300.0)), float(r.uniform(-SHELF_DB, SHELF_DB)), 0.707, fs),
        _biquad("highshelf", float(r.uniform(3000.0, 8000.0)), float(r.uniform(-SHELF_DB, SHELF_DB)), 0.707, fs),
        _biquad("peak", float(np.exp(r.uniform(np.log(200.0), np.log(6000.0)))), float(r.uniform(-PEAK_DB, PEAK_DB)),
                float(r.uniform(0.7, 2.5)), fs),
        _biquad("peak", float(np.exp(r.uniform(np.log(200.0), np.log(6000.0)))), float(r.uniform(-PEAK_DB, PEAK_DB)),
                float(r.uniform(0.7, 2.5)), fs),
    ])  # fmt: skip


def room_ir(r: np.random.Generator, fs: float, rt60: float, channels: int) -> np.ndarray:
    """Reverb tail: Gaussian noise times ``exp(-6.91 t / rt60)`` (60 dB down at ``rt60``), low-passed
    by a one-pole (air/wall damping), unit energy; ``(samples, channels)``, independent per channel."""
    from scipy.signal import lfilter

    n = int(rt60 * fs)
    t = np.arange(n) / fs
    tail = r.standard_normal((n, channels)) * np.exp(-6.91 * t / rt60)[:, None]
    pole = float(r.uniform(0.2, 0.7))
    tail = lfilter([1 - pole], [1, -pole], tail, axis=0)
    return tail / np.sqrt(np.sum(tail**2, axis=0, keepdims=True))


def record(x: np.ndarray, plan: OodSongPlan, r: np.random.Generator) -> np.ndarray:
    """Microphone + room + level + noise floor: float32 ``(frames,)`` or ``(frames, 2)``."""
    from scipy.signal import fftconvolve, sosfilt

    sr = plan.sample_rate
    y = sosfilt(channel_sos(r, sr), x)
    rt60 = float(r.uniform(*RT60_S))
    predelay = int(r.uniform(0.005, 0.03) * sr)
    wet_db = float(r.uniform(*WET_DB))
    ir = room_ir(r, sr, rt60, plan.channels)
    wet = fftconvolve(y[:, None], ir, axes=0)[: y.size]
    wet = np.concatenate([np.zeros((predelay, plan.channels)), wet[: y.size - predelay]])
    gain = 10 ** (wet_db / 20) * np.sqrt(np.mean(y**2)) / max(np.sqrt(np.mean(wet**2)), 1e-12)
    out = y[:, None] + gain * wet
    fade = min(out.shape[0], int(0.03 * sr))
    out[out.shape[0] - fade :] *= np.linspace(1.0, 0.0, fade)[:, None]
    out *= 10 ** (plan.level_dbfs / 20) / max(_active_rms(out.mean(axis=1), sr), 1e-12)
    out += r.standard_normal(out.shape) * 10 ** ((plan.level_dbfs - float(r.uniform(45.0, 65.0))) / 20)
    peak = float(np.max(np.abs(out)))
    if peak > MAX_PEAK:
        out *= MAX_PEAK / peak
    return (out[:, 0] if plan.channels == 1 else out).astype(np.float32)


def render_song(plan: OodSongPlan, tmpdir: Path) -> np.ndarray:
    """Audio of one song at ``plan.sample_rate``: float32 ``(frames,)`` or ``(frames, 2)``."""
    import soxr

    r = np.random.default_rng(np.random.SeedSequence([plan.seed, 11, plan.singer.index, plan.song_index]))
    score = compose(plan.singer, r, plan.seconds + 0.05)
    x = synthesise(plan.singer, score, int(r.integers(2**31)), tmpdir)
    x = x / max(float(np.max(np.abs(x))), 1e-12)
    if plan.sample_rate != SYNTH_RATE:
        x = soxr.resample(x, SYNTH_RATE, plan.sample_rate, quality="HQ")
    x = np.pad(x, (0, max(0, plan.frames - x.size)))[: plan.frames]
    return record(x, plan, r)


def singer_row(s: OodSinger, n_songs: int) -> dict[str, Any]:
    """The ``singers.csv`` row (F1/F2 of /ɑ/ and /i/ as a summary of the formant table)."""
    return {
        "singer": s.name, "split": "ood", "synthesis": "klattgrid", "group": s.group, "vtl_scale": s.vtl_scale,
        "f1_a_hz": s.formants["ɑ"][0], "f2_a_hz": s.formants["ɑ"][1], "f1_i_hz": s.formants["i"][0],
        "f2_i_hz": s.formants["i"][1], "bandwidths_hz": " ".join(f"{b:g}" for b in s.bandwidths),
        "open_phase": s.open_phase, "power1": s.power1, "power2": s.power2, "collision_phase": s.collision_phase,
        "spectral_tilt_db": s.spectral_tilt_db, "flutter": s.flutter, "breathiness_db": s.breathiness_db,
        "aspiration_db": s.aspiration_db, "jitter": s.jitter, "shimmer_db": s.shimmer_db,
        "low_midi": s.low_midi, "high_midi": s.high_midi, "vibrato_rate_hz": s.vibrato_rate_hz,
        "vibrato_depth_cents": s.vibrato_depth_cents, "vibrato_delay_s": s.vibrato_delay_s,
        "tremolo_db": s.tremolo_db, "songs": n_songs,
    }  # fmt: skip


def singer_job(seed: int, index: int, n: int, songs: int, min_seconds: float, max_seconds: float,
               sample_rates: tuple[int, ...], stereo_fraction: float, root: str) -> tuple[dict[str, Any], list]:
    """Worker: draw OOD singer ``index``, render and write its songs under ``root``; (singers.csv row, song rows)."""
    import tempfile

    import soundfile as sf

    singer = make_singer(seed, index, n)
    rows = []
    with tempfile.TemporaryDirectory(prefix="singer-ssl-ood-") as tmp:
        for plan in plan_songs(seed, singer, songs, min_seconds, max_seconds, sample_rates, stereo_fraction):
            audio = render_song(plan, Path(tmp))
            path = Path(root) / plan.relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, audio, plan.sample_rate, subtype=plan.subtype, format="WAV")
            rows.append({"path": plan.relpath, "singer": singer.name, "seconds": round(plan.seconds, 6),
                         "sample_rate": plan.sample_rate, "channels": plan.channels, "subtype": plan.subtype,
                         "level_dbfs": plan.level_dbfs})  # fmt: skip
    return singer_row(singer, len(rows)), rows
