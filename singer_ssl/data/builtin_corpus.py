"""Built-in multi-singer singing corpus, synthesised with Praat (praat-parselmouth).

A *singer* is a fixed combination of an eSpeak voice variant, a language (accent and vowel
quality of the lyrics), a formant-shift ratio (vocal-tract length, i.e. timbre), a vocal range, an
articulation rate and a vibrato rate/depth/onset delay, all drawn from ``seed``. Each song is sung
by one singer and rendered phrase by phrase:

1. ``Create SpeechSynthesizer`` (language, voice variant) speaks the lyrics of one phrase, monotone
   (pitch range multiplier 0), with a phoneme TextGrid.
2. Formant shift: the sound's sampling frequency is overridden by ``formant_ratio`` (all spectral
   content, formants included, scales by the ratio; time shrinks by it). This is the resampling half
   of Praat's ``Change gender``; its PSOLA half (restore pitch and duration) is folded into step 3,
   so the audio goes through a single overlap-add pass.
3. ``To Manipulation`` -> the duration tier holds each syllable's vowel for its note's length
   (consonants keep their spoken length) -> the pitch tier is replaced by the melody (scale notes
   inside the singer's range, portamento between legato notes, an onset scoop, delayed vibrato at the
   singer's rate/depth, slow drift) -> ``Get resynthesis (overlap-add)`` (PSOLA).
4. Phrases are joined with breath rests; the song is resampled (soxr) to a random sample rate of
   ``sample_rates``, low-passed at 9 kHz (removes the formant-ratio-dependent band edge of the 22.05 kHz
   synthesiser, which would otherwise be a trivial singer cue), normalised to a random level (so
   loudness is no singer cue), given a faint noise floor and, for a ``stereo_fraction`` of the songs,
   made stereo with slightly different channel gains and an inter-channel delay.

Reproducibility: every song draws from ``SeedSequence([seed, 1, singer_index, song_index])``; Praat's
own generator (used by overlap-add) is seeded from it; and because eSpeak keeps state from one
utterance to the next, each singer (its probe phrases, then its songs in order) is rendered in a
fresh process. Same config -> byte-identical files, whatever the number of workers or their order.

Output (one folder per split, each written atomically)::

    <out_root>/builtin-train/<singer>/<album>/<NN_title>.wav         (also <singer>/<NN_title>.wav and
    <out_root>/builtin-test/...                                       <singer>/<album>/disc_N/<NN_title>.wav)
    <out_root>/builtin-ood/ood-sNN/<NN_title>.wav                    (n_ood_singers; a different synthesiser,
                                                                      :mod:`singer_ssl.data.ood_corpus`)
    <out_root>/<split>/singers.csv, corpus.json                       (descriptions at the dataset root)

The singer label is the first path component (the ``builtin`` dataset layout,
:mod:`singer_ssl.data.layouts`). The stage (``stages/corpus.py``) calls :func:`run`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import json
import math
import multiprocessing as mp
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from singer_ssl.core.errors import ConfigError
from singer_ssl.core.io import atomic_path, write_csv, write_text
from singer_ssl.core.params import int_param, mapping_param, number_param
from singer_ssl.core.praat import praat_seed as seeded_praat

# eSpeak voice variants shipped in parselmouth 0.4 (Praat 6.1) that produce voiced speech. Found by
# listing the variant files compiled into the library and synthesising with each: the Klatt variants
# produce no audio in this build, the whisper variants and Croak have (almost) no voicing to sing with.
VOICES: tuple[str, ...] = (
    "Andy", "Annie", "anxiousAndy", "Auntie", "Boris", "Denis", "Female1", "Female2", "Female3",
    "Female4", "Female5", "Gene", "Gene2", "Iven", "Iven2", "Iven3", "Jacky", "John", "Kaukovalta",
    "Lee", "Linda", "Male1", "Male2", "Male3", "Male4", "Male5", "Male6", "Male7", "Mario", "Max",
    "Michael", "Michel", "Mr_Serious", "norbert", "Quincy", "Rob", "Robert", "Steph", "Steph2",
    "Steph3", "Storm", "travis", "Tweaky", "Zac",
)  # fmt: skip

# Latin-script eSpeak languages in which Latin CV syllables ("la", "mo") are read as one syllable
# with one vowel nucleus each (checked on the phoneme tier). Danish (stød), Latvian and Maltese
# (spurious extra vowels) are left out.
LANGUAGES: tuple[str, ...] = (
    "Afrikaans", "Albanian", "Aragonese", "Basque", "Bosnian", "Catalan", "Croatian", "Czech", "Dutch",
    "English (America)", "English (Caribbean)", "English (Great Britain)", "English (Lancaster)",
    "English (Received Pronunciation)", "English (Scotland)", "English (West Midlands)", "Esperanto",
    "Estonian", "Finnish", "French (Belgium)", "French (France)", "Gaelic (Irish)", "Gaelic (Scottish)",
    "German", "Guarani", "Hungarian", "Icelandic", "Indonesian", "Interlingua", "Italian", "Latin",
    "Lingua Franca Nova", "Lithuanian", "Lojban", "Malay", "Nahuatl (Classical)", "Norwegian Bokmål",
    "Oromo", "Papiamento", "Polish", "Portuguese (Brazil)", "Portuguese (Portugal)", "Romanian",
    "Setswana", "Slovak", "Slovenian", "Spanish (Latin America)", "Spanish (Spain)", "Swahili",
    "Swedish", "Turkish", "Welsh",
)  # fmt: skip

SYNTH_RATE = 22050  # eSpeak's native rate; higher output rates would only be upsampled copies
LOWPASS_HZ = 9000.0  # below 22050 / 2 * min formant ratio, so the band edge carries no singer cue
FORMANT_RATIO = (0.88, 1.14)  # vocal-tract scaling range (Praat's Change gender "formant shift ratio")
VIBRATO_RATE_HZ = (4.8, 6.8)  # classical singers: ~5.5-6.5 Hz (Sundberg 1987)
VIBRATO_DEPTH_CENTS = (20.0, 90.0)  # semi-extent (peak deviation from the note)
LEVEL_DBFS = (-28.0, -18.0)  # per-file active RMS level range
PEAK_DBFS = -1.0
STEREO_MAX_DELAY_S = 0.0008
STEREO_MAX_GAIN_DB = 2.0  # largest left/right level difference
SUBTYPES = ("PCM_16", "PCM_16", "PCM_16", "PCM_24")  # drawn uniformly: 1/4 of the files are 24-bit
SONG_FOLDERS = ("album", "flat", "disc", "album")  # song folder layout cycle: depth 2, 1, 3, 2 below the singer
IPA_VOWELS = frozenset("aeiouyæøœɐɑɒɔəɘɛɜɞɤɨɪɯɵɶʉʊʌʏ")
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "major-pentatonic": (0, 2, 4, 7, 9),
    "minor-pentatonic": (0, 3, 5, 7, 10),
}
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

_FIRST = (
    "ada", "alba", "amir", "anouk", "aurelio", "bea", "bruno", "carmen", "cato", "dario", "edda", "elio",
    "esme", "fenna", "flavia", "gideon", "greta", "hana", "ines", "ivo", "jonas", "kaja", "lars",
    "leonie", "lior", "mael", "marta", "milan", "nadia", "nils", "odile", "oren", "paula", "quentin",
    "rosa", "ruben", "saskia", "tamsin", "teo", "ulla", "vera", "wim", "yara", "zeno",
)  # fmt: skip
_LAST = (
    "abbott", "almeida", "berg", "castell", "dalca", "dekker", "eriksen", "falk", "ferrante", "garnier",
    "halloran", "hartmann", "ibarra", "jansen", "kowal", "lindqvist", "lorenz", "marin", "moreau",
    "novak", "okafor", "oliveira", "pavlou", "quinn", "ramires", "rossi", "sandoval", "sauer", "tanaka",
    "toivonen", "urquhart", "valente", "vidal", "weiss", "winter", "yilmaz", "zanetti",
)  # fmt: skip
_ADJ = (
    "amber", "blue", "broken", "distant", "early", "golden", "hollow", "last", "little", "midnight",
    "northern", "paper", "quiet", "silver", "slow", "summer", "velvet", "wild", "winter", "young",
)  # fmt: skip
_NOUN = (
    "bells", "birds", "bridges", "candles", "coast", "echoes", "fields", "harbour", "hours", "lanterns",
    "letters", "lights", "moon", "rain", "rivers", "roads", "shadows", "songs", "stars", "tides",
)  # fmt: skip
_ONSETS = ("b", "d", "f", "g", "k", "l", "l", "m", "m", "n", "n", "p", "r", "s", "t", "v")
_VOWELS = ("a", "a", "e", "i", "o", "o", "u")


@dataclass(frozen=True)
class CorpusConfig:
    """Parameters of the built-in corpus (``params.yaml`` section ``corpus``).

    ``workers`` (processes, one singer each at a time) does not change the output.
    ``train_name``/``test_name``/``ood_name`` are the dataset folders (absent from params.yaml).
    ``n_ood_singers`` singers of the out-of-domain test set (:mod:`singer_ssl.data.ood_corpus`, a
    different synthesiser) share the length range, ``sample_rates`` and ``stereo_fraction``.
    ``test_songs_per_singer`` (None: ``songs_per_singer``) is the song count of every test singer,
    in-domain and out-of-domain: a test set's singer-level interval narrows with more singers far
    more than with more songs per singer, so the evaluation budget buys more singers with fewer songs.
    """

    seed: int = 123
    n_train_singers: int = 48
    n_test_singers: int = 16
    n_ood_singers: int = 16
    songs_per_singer: int = 3
    test_songs_per_singer: int | None = 3
    min_seconds: float = 8.0
    max_seconds: float = 20.0
    sample_rates: tuple[int, ...] = (22050, 44100, 48000)
    stereo_fraction: float = 0.25
    workers: int = 2
    train_name: str = "builtin-train"
    test_name: str = "builtin-test"
    ood_name: str = "builtin-ood"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CorpusConfig:
        """Build from the ``corpus`` section of the params tree; no other section is read."""
        return cls.from_dict(params.get("corpus"))

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any] | None) -> CorpusConfig:
        """Build and validate from a mapping; one-line ConfigError ``corpus.<key>: ...`` for an
        unknown key, a wrong type or a value out of range.

        ``workers`` 0 or null means one per CPU core.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        cfg = mapping_param(cfg, "corpus", known)
        kw: dict[str, Any] = {}
        for key, value in cfg.items():
            where = f"corpus.{key}"
            if key == "workers":
                kw[key] = int_param(value, where, minimum=0) if value is not None else 0
                kw[key] = kw[key] or os.cpu_count() or 1
            elif key == "sample_rates":
                rates = value if isinstance(value, (list, tuple)) else [value]
                kw[key] = tuple(int_param(r, where, minimum=1) for r in rates)
            elif key in ("min_seconds", "max_seconds"):
                kw[key] = number_param(value, where, 0.0, low_open=True)
            elif key == "stereo_fraction":
                kw[key] = number_param(value, where, 0.0, 1.0)
            elif key == "test_songs_per_singer":
                kw[key] = None if value is None else int_param(value, where, minimum=1)
            elif key in ("train_name", "test_name", "ood_name"):
                if not isinstance(value, str):
                    raise ConfigError(f"{where}: expected a folder name, got {value!r}")
                kw[key] = value
            else:
                kw[key] = int_param(value, where, minimum=0)
        out = cls(**kw)
        out.validate()
        return out

    def songs(self, split: str) -> int:
        """Songs per singer of ``split`` (``train``: ``songs_per_singer``; ``test``/``ood``: the test count)."""
        if split == "train" or self.test_songs_per_singer is None:
            return self.songs_per_singer
        return self.test_songs_per_singer

    def validate(self) -> None:
        """Raise a one-line ConfigError naming the first inconsistent parameter."""

        def bad(msg: str) -> ConfigError:
            return ConfigError(f"corpus.{msg}")

        if self.n_train_singers < 1:
            raise bad(f"n_train_singers: expected an integer >= 1, got {self.n_train_singers!r}")
        if self.n_test_singers < 0:
            raise bad(f"n_test_singers: expected an integer >= 0, got {self.n_test_singers!r}")
        if self.n_ood_singers < 0:
            raise bad(f"n_ood_singers: expected an integer >= 0, got {self.n_ood_singers!r}")
        if self.n_train_singers + self.n_test_singers > len(_FIRST) * len(_LAST):
            raise bad(f"n_train_singers + n_test_singers must be <= {len(_FIRST) * len(_LAST)}")
        if self.songs_per_singer < 1:
            raise bad(f"songs_per_singer: expected an integer >= 1, got {self.songs_per_singer!r}")
        if self.test_songs_per_singer is not None and self.test_songs_per_singer < 1:
            raise bad(f"test_songs_per_singer: expected an integer >= 1, got {self.test_songs_per_singer!r}")
        if self.seed < 0:
            raise bad(f"seed: expected an integer >= 0, got {self.seed!r}")
        if not 2.0 <= self.min_seconds <= self.max_seconds:
            raise bad(f"min_seconds/max_seconds: need 2 <= min_seconds <= max_seconds, got "
                      f"{self.min_seconds}, {self.max_seconds}")
        if not self.sample_rates or any(r < 2 * LOWPASS_HZ for r in self.sample_rates):
            raise bad(f"sample_rates: need at least one rate, each >= {2 * LOWPASS_HZ:.0f} Hz, "
                      f"got {list(self.sample_rates)}")
        if not 0.0 <= self.stereo_fraction <= 1.0:
            raise bad(f"stereo_fraction: expected a number >= 0.0 and <= 1.0, got {self.stereo_fraction}")
        if self.workers < 1:
            raise bad(f"workers: expected an integer >= 1, got {self.workers}")
        for name in (self.train_name, self.test_name, self.ood_name):
            if not name or name in (".", "..") or "/" in name or "\\" in name:
                raise bad(f"train_name/test_name/ood_name: expected plain folder names, got {name!r}")
        if len({self.train_name, self.test_name, self.ood_name}) < 3:
            raise bad("train_name/test_name/ood_name: must differ")


@dataclass(frozen=True)
class Singer:
    """One synthetic singer: everything that makes its voice, fixed for all its songs."""

    name: str
    split: str  # "train" | "test"
    index: int  # global index over train + test singers (seeds its songs)
    voice: str  # eSpeak voice variant
    language: str  # eSpeak language
    formant_ratio: float  # >1: shorter vocal tract, brighter timbre
    words_per_minute: int  # articulation rate of the spoken syllables (consonant lengths)
    pitch_multiplier: float  # eSpeak pitch setting that puts the spoken pitch near the range bottom
    speech_f0_hz: float  # measured pitch of the formant-shifted speech before PSOLA
    low_midi: int  # lowest note of the vocal range (MIDI number)
    high_midi: int  # highest note
    vibrato_rate_hz: float
    vibrato_depth_cents: float  # semi-extent
    vibrato_delay_s: float  # vibrato starts this long after the note onset (then ramps in 0.25 s)
    layout: str  # "flat" | "album" | "disc" folder layout of its songs

    @property
    def low_hz(self) -> float:
        return midi_to_hz(self.low_midi)

    @property
    def high_hz(self) -> float:
        return midi_to_hz(self.high_midi)

    @property
    def voice_type(self) -> str:
        centre = (self.low_midi + self.high_midi) / 2
        for limit, name in ((50, "bass"), (54, "baritone"), (59, "tenor"), (64, "alto"), (67, "mezzo")):
            if centre < limit:
                return name
        return "soprano"


@dataclass(frozen=True)
class SongPlan:
    """What one file will be; its audio is a pure function of this and its singer."""

    singer: Singer
    song_index: int
    relpath: str  # relative to the dataset folder, "/"-separated
    frames: int  # length in samples at sample_rate
    sample_rate: int
    channels: int
    subtype: str
    level_dbfs: float
    seed: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def midi_to_hz(m: float) -> float:
    """Equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


def hz_to_midi(f: float) -> float:
    return 69.0 + 12.0 * math.log2(f / 440.0)


def note_name(m: int) -> str:
    """MIDI number -> scientific pitch name (60 -> C4)."""
    return f"{NOTE_NAMES[m % 12]}{m // 12 - 1}"


# --------------------------------------------------------------------------------------- singers


def _praat():
    import parselmouth
    from parselmouth.praat import call

    return parselmouth, call


def _synthesizer(language: str, voice: str, pitch_multiplier: float, words_per_minute: int):
    _, call = _praat()
    try:
        synth = call("Create SpeechSynthesizer", language, voice)
    except Exception as e:  # parselmouth.PraatError
        raise ConfigError(f"Praat has no language {language!r} / voice variant {voice!r}: {e}") from e
    # sampling frequency, gap between words (s), pitch multiplier, pitch range multiplier, wpm, codes
    call(synth, "Speech output settings", SYNTH_RATE, 0.0, float(pitch_multiplier), 0.0,
         int(words_per_minute), "IPA")
    return synth


def _speech_f0(language: str, voice: str, pitch_multiplier: float) -> float:
    """Median pitch (Hz) of a monotone probe phrase spoken by ``voice`` in ``language``."""
    _, call = _praat()
    synth = _synthesizer(language, voice, pitch_multiplier, 130)
    _, sound = call(synth, "To Sound", "la na mo ri de so", "yes")
    f0 = sound.to_pitch(0.01, 40.0, 900.0).selected_array["frequency"]
    voiced = f0[f0 > 0]
    if voiced.size < 10:
        raise RuntimeError(f"voice {voice!r} in {language!r} produced no voiced speech")
    return float(np.median(voiced))


def _unique_names(rng: np.random.Generator, n: int) -> list[str]:
    idx = rng.choice(len(_FIRST) * len(_LAST), size=n, replace=False)
    return [f"{_FIRST[i // len(_LAST)]}_{_LAST[i % len(_LAST)]}" for i in idx]


def _cycled(rng: np.random.Generator, pool: Sequence[str], n: int) -> list[str]:
    """``n`` draws from ``pool``: a random permutation, repeated (re-shuffled) when exhausted."""
    out: list[str] = []
    while len(out) < n:
        out += [pool[i] for i in rng.permutation(len(pool))]
    return out[:n]


def _singer_draws(cfg: CorpusConfig) -> list[dict[str, Any]]:
    """The random part of every singer (no Praat calls), train singers first, then test."""
    n = cfg.n_train_singers + cfg.n_test_singers
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0]))
    names = _unique_names(rng, n)
    voices = _cycled(rng, VOICES, n)
    languages = _cycled(rng, LANGUAGES, n)
    layout_offset = int(rng.integers(len(SONG_FOLDERS)))
    draws = []
    for i in range(n):
        split = "train" if i < cfg.n_train_singers else "test"
        k = i if split == "train" else i - cfg.n_train_singers
        draws.append({
            "name": names[i], "split": split, "index": i, "voice": voices[i], "language": languages[i],
            "formant_ratio": round(float(rng.uniform(*FORMANT_RATIO)), 4),
            "words_per_minute": int(rng.integers(100, 161)),
            "span": int(rng.integers(12, 18)),
            "above_speech": float(rng.uniform(9.0, 17.0)),
            "vibrato_rate_hz": round(float(rng.uniform(*VIBRATO_RATE_HZ)), 3),
            "vibrato_depth_cents": round(float(rng.uniform(*VIBRATO_DEPTH_CENTS)), 1),
            "vibrato_delay_s": round(float(rng.uniform(0.12, 0.35)), 3),
            "layout": SONG_FOLDERS[(k + layout_offset) % len(SONG_FOLDERS)],
        })  # fmt: skip
    return draws


def make_singer(cfg: CorpusConfig, index: int) -> Singer:
    """Singer ``index`` (train singers first, then test; names are unique across both).

    Voice variants and languages are dealt from shuffled decks, so singers share neither until a
    deck is exhausted (44 voices, 52 languages). The vocal range is set relative to the measured
    speaking pitch of the (formant-shifted) voice: its centre 9-17 semitones above it (singing sits
    above speech; eSpeak's voices speak low), 12-17 semitones wide, within MIDI 38-86 (D2-D6).

    Synthesises probe phrases: eSpeak keeps state between utterances, so the measured pitch (and
    hence the range) is exactly reproducible only in a fresh process (as ``generate_corpus`` does).
    """
    d = _singer_draws(cfg)[index]
    ratio, span = d["formant_ratio"], d["span"]
    # Pitch of the spoken voice as a function of eSpeak's pitch setting (not proportional, so
    # measured at three settings and interpolated), times the formant ratio after the shift.
    mults = (0.5, 1.0, 2.0)
    f0s = [_speech_f0(d["language"], d["voice"], m) * ratio for m in mults]
    centre = min(max(hz_to_midi(f0s[1]) + d["above_speech"], 38 + span / 2), 86 - span / 2)
    low = int(round(centre - span / 2))
    # speak near the bottom of the range: PSOLA then mostly raises the pitch (lowering sounds worse)
    mult = float(np.interp(midi_to_hz(low + 2), f0s, mults))
    return Singer(
        name=d["name"], split=d["split"], index=index, voice=d["voice"], language=d["language"],
        formant_ratio=ratio, words_per_minute=d["words_per_minute"], pitch_multiplier=round(mult, 4),
        speech_f0_hz=round(float(np.interp(mult, mults, f0s)), 2), low_midi=low, high_midi=low + span,
        vibrato_rate_hz=d["vibrato_rate_hz"], vibrato_depth_cents=d["vibrato_depth_cents"],
        vibrato_delay_s=d["vibrato_delay_s"], layout=d["layout"],
    )  # fmt: skip


def plan_songs(cfg: CorpusConfig, singer: Singer) -> list[SongPlan]:
    """File names, durations, rates, channels and levels of one singer's songs."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2, singer.index]))
    n = cfg.songs(singer.split)
    albums = [f"{a}_{b}" for a, b in zip(rng.choice(_ADJ, 3, replace=False), rng.choice(_NOUN, 3, replace=False))]
    titles = [f"{a}_{b}" for a, b in zip(rng.choice(_ADJ, n), rng.choice(_NOUN, n))]
    if singer.layout == "flat":
        folders = [""] * n
    else:
        n_albums = 1 if n < 4 else min(3, 1 + n // 4)
        per = math.ceil(n / n_albums)
        folders = [albums[j // per] for j in range(n)]
        if singer.layout == "disc":
            half = math.ceil(per / 2)
            folders = [f"{f}/disc_{1 + (j % per) // half}" for j, f in enumerate(folders)]
    plans = []
    track_in_folder: dict[str, int] = {}
    for j in range(n):
        track_in_folder[folders[j]] = track_in_folder.get(folders[j], 0) + 1
        fname = f"{track_in_folder[folders[j]]:02d}_{titles[j]}.wav"
        rel = "/".join(p for p in (singer.name, folders[j], fname) if p)
        song_rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 3, singer.index, j]))
        sr = int(song_rng.choice(cfg.sample_rates))
        frames = int(round(song_rng.uniform(cfg.min_seconds, cfg.max_seconds) * sr))
        frames = min(max(frames, math.ceil(cfg.min_seconds * sr)), math.floor(cfg.max_seconds * sr))
        plans.append(SongPlan(
            singer=singer, song_index=j, relpath=rel, frames=frames, sample_rate=sr,
            channels=2 if song_rng.random() < cfg.stereo_fraction else 1,
            subtype=str(song_rng.choice(SUBTYPES)),
            level_dbfs=round(float(song_rng.uniform(*LEVEL_DBFS)), 2),
            seed=cfg.seed,
        ))  # fmt: skip
    return plans


# ---------------------------------------------------------------------------------------- melody


def _lyrics(rng: np.random.Generator, n_syllables: int) -> str:
    """Words of 1-2 CV syllables (occasionally closed by n/l/s), e.g. ``"lamo ri desa"``."""
    words, left = [], n_syllables
    while left > 0:
        k = min(left, int(rng.integers(1, 3)))
        w = "".join(str(rng.choice(_ONSETS)) + str(rng.choice(_VOWELS)) for _ in range(k))
        if rng.random() < 0.12:
            w += str(rng.choice(("n", "l", "s")))
        words.append(w)
        left -= k
    return " ".join(words)


def _syllables(tg) -> tuple[list[tuple[float, float, float]], float]:
    """Syllable segmentation from the synthesiser's phoneme tier (tier 4).

    Returns ``[(start, vowel_start, vowel_end), ...]`` (seconds; one per vowel nucleus = maximal run
    of vowel phonemes; ``start`` = end of the previous nucleus, so onset consonants belong to their
    syllable) and the end time of the last phoneme.
    """
    _, call = _praat()
    n = int(call(tg, "Get number of intervals", 4))
    nuclei: list[list[float]] = []
    last_end, prev_vowel = 0.0, False
    for i in range(1, n + 1):
        label = call(tg, "Get label of interval", 4, i).strip()
        t0 = call(tg, "Get start time of interval", 4, i)
        t1 = call(tg, "Get end time of interval", 4, i)
        is_vowel = bool(label) and any(c in IPA_VOWELS for c in label)
        if is_vowel and prev_vowel:
            nuclei[-1][1] = t1
        elif is_vowel:
            nuclei.append([t0, t1])
        prev_vowel = is_vowel
        if label:
            last_end = t1
    out, start = [], 0.0
    for v0, v1 in nuclei:
        out.append((start, v0, v1))
        start = v1
    return out, max(last_end, start)


class _Melody:
    """Random walk over the notes of one scale inside the singer's range, drifting to the centre."""

    def __init__(self, rng: np.random.Generator, singer: Singer):
        self.rng = rng
        scale = SCALES[str(rng.choice(list(SCALES)))]
        tonic = int(rng.integers(12))
        self.notes = [m for m in range(singer.low_midi, singer.high_midi + 1) if (m - tonic) % 12 in scale]
        self.pos = len(self.notes) // 2 + int(rng.integers(-1, 2))

    def next(self) -> int:
        r = self.rng
        u = r.random()
        step = 0 if u < 0.08 else int(r.choice((-4, -3, 3, 4))) if u < 0.2 else int(r.choice((-2, -1, -1, 1, 1, 2)))
        centre = (len(self.notes) - 1) / 2
        if abs(self.pos + step - centre) > abs(self.pos - centre) and r.random() < 0.3:
            step = -step  # gentle pull towards the tessitura
        self.pos = int(np.clip(self.pos + step, 0, len(self.notes) - 1))
        return self.notes[self.pos]


def _note_beats(rng: np.random.Generator, n: int) -> np.ndarray:
    beats = rng.choice((0.5, 1.0, 1.0, 1.0, 1.5, 2.0), size=n)
    beats[-1] = rng.choice((2.0, 3.0, 4.0))
    return beats


def _pitch_contour(
    tau: np.ndarray, onset: float, length: float, midi: int, prev_midi: int | None,
    singer: Singer, rng: np.random.Generator, drift_phase: float,
) -> np.ndarray:
    """Target F0 (Hz) at output times ``tau`` inside one note.

    cents(u) = portamento from the previous note (smoothstep over min(70 ms, 0.3 L)) or an onset
    scoop from 30-60 cents below (phrase start) + vibrato ``depth * ramp(u - delay, 0.25 s) *
    sin(2 pi rate (u - delay))`` (rate jittered +-4 % per note) + 8-cent drift at 0.3 Hz.
    """
    u = tau - onset
    cents = 8.0 * np.sin(2 * np.pi * 0.3 * tau + drift_phase)
    g = min(0.07, 0.3 * length)
    start = (prev_midi - midi) * 100.0 if prev_midi is not None else -float(rng.uniform(30.0, 60.0))
    x = np.clip(u / g, 0.0, 1.0)
    cents += start * (1.0 - x * x * (3.0 - 2.0 * x))
    rate = singer.vibrato_rate_hz * float(rng.uniform(0.96, 1.04))
    uv = u - singer.vibrato_delay_s
    cents += singer.vibrato_depth_cents * np.clip(uv / 0.25, 0.0, 1.0) * np.sin(2 * np.pi * rate * uv)
    return midi_to_hz(midi) * 2.0 ** (cents / 1200.0)


def _write_tier(path: Path, kind: str, xmax: float, times: np.ndarray, values: np.ndarray):
    """Create a Praat PitchTier/DurationTier from arrays (via its short text format: ~100x faster
    than one ``Add point`` call per point)."""
    parselmouth, _ = _praat()
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'File type = "ooTextFile short"\n"{kind}"\n0\n{xmax:.9g}\n{len(times)}\n')
        f.write("".join(f"{t:.9g}\n{v:.9g}\n" for t, v in zip(times.tolist(), values.tolist())))
    return parselmouth.read(str(path))


def _sing_phrase(
    synth, text: str, melody: _Melody, beat_s: float, singer: Singer,
    rng: np.random.Generator, drift_phase: float, tmpdir: Path,
) -> np.ndarray | None:
    """Speak ``text``, then sing it: one note per vowel nucleus. Returns mono float64 at
    ``SYNTH_RATE * formant_ratio`` Hz, or None when the synthesiser produced no vowel."""
    _, call = _praat()
    tg, sound = call(synth, "To Sound", text, "yes")
    sylls, end = _syllables(tg)
    if not sylls:
        return None
    r = singer.formant_ratio
    sound.override_sampling_frequency(SYNTH_RATE * r)  # formant shift; times scale by 1/r
    xmax = sound.duration
    sylls = [(a / r, b / r, c / r) for a, b, c in sylls]
    end = min(end / r, xmax)
    notes = [melody.next() for _ in sylls]
    lengths = _note_beats(rng, len(sylls)) * beat_s

    # piecewise-constant stretch: consonants 1x, each vowel held for the rest of its note
    bounds, factors = [0.0], []
    for k, (s, v0, v1) in enumerate(sylls):
        coda = (end - v1) if k == len(sylls) - 1 else 0.0
        consonants = (v0 - s) + coda
        factors += [1.0, max(0.5, (lengths[k] - consonants) / max(v1 - v0, 1e-3))]
        bounds += [v0, v1]
    factors.append(1.0)
    bounds.append(xmax)
    bounds_a, factors_a = np.array(bounds), np.array(factors)
    out_bounds = np.concatenate([[0.0], np.cumsum(np.diff(bounds_a) * factors_a)])

    eps = 1e-4
    dt_times = np.stack([bounds_a[:-1] + eps, bounds_a[1:] - eps], axis=1).ravel()
    dt_vals = np.repeat(factors_a, 2)
    keep = np.diff(np.concatenate([[-1.0], dt_times])) > 0
    duration_tier = _write_tier(tmpdir / "d.DurationTier", "DurationTier", xmax, dt_times[keep], dt_vals[keep])

    # note k spans output time [out(start_k), out(start_k+1)); the last note runs to the end
    note_on = np.interp([s for s, _, _ in sylls], bounds_a, out_bounds)
    note_off = np.append(note_on[1:], out_bounds[-1])
    taus, f0s = [], []
    for k in range(len(sylls)):
        tau = np.arange(note_on[k], note_off[k], 0.01)
        prev = notes[k - 1] if k else None
        taus.append(tau)
        f0s.append(_pitch_contour(tau, note_on[k], note_off[k] - note_on[k], notes[k], prev, singer, rng,
                                  drift_phase))
    tau = np.concatenate(taus)
    t_orig = np.interp(tau, out_bounds, bounds_a)  # output time -> original time (monotone)
    t_orig, idx = np.unique(t_orig, return_index=True)
    pitch_tier = _write_tier(tmpdir / "p.PitchTier", "PitchTier", xmax, t_orig, np.concatenate(f0s)[idx])

    manip = call(sound, "To Manipulation", 0.01, 0.6 * singer.speech_f0_hz, 1.8 * singer.speech_f0_hz)
    call([manip, pitch_tier], "Replace pitch tier")
    call([manip, duration_tier], "Replace duration tier")
    # Praat's overlap-add draws random numbers (lengthened unvoiced stretches): seed its generator
    with seeded_praat(int(rng.integers(2**31))):
        sung = call(manip, "Get resynthesis (overlap-add)")
    return sung.values[0].astype(np.float64)


def _active_rms(x: np.ndarray, sr: int) -> float:
    """RMS over 50 ms frames within 40 dB of the loudest frame (level independent of pauses)."""
    n = max(1, int(0.05 * sr))
    frames = x[: len(x) // n * n].reshape(-1, n)
    power = np.mean(frames**2, axis=1)
    active = power[power >= power.max() * 1e-4]
    return float(np.sqrt(np.mean(active))) if active.size else 0.0


def render_song(plan: SongPlan) -> np.ndarray:
    """Audio of one song: float32 ``(plan.frames,)`` or ``(plan.frames, 2)`` at ``plan.sample_rate``.

    Deterministic given ``plan`` and the eSpeak state of the process (see ``_run_singer_jobs``).
    """
    import soxr
    from scipy.signal import butter, sosfilt

    singer = plan.singer
    rng = np.random.default_rng(np.random.SeedSequence([plan.seed, 1, singer.index, plan.song_index]))
    synth = _synthesizer(singer.language, singer.voice, singer.pitch_multiplier, singer.words_per_minute)
    work_sr = SYNTH_RATE * singer.formant_ratio
    beat_s = 60.0 / float(rng.uniform(72.0, 132.0))
    melody = _Melody(rng, singer)
    drift_phase = float(rng.uniform(0, 2 * np.pi))
    total = int(round(plan.seconds * work_sr))
    pieces = [np.zeros(int(rng.uniform(0.15, 0.6) * work_sr))]
    filled = len(pieces[0])
    with tempfile.TemporaryDirectory(prefix="singer-ssl-corpus-") as tmp:
        for _ in range(200):
            if filled >= total - int(0.3 * work_sr):
                break
            phrase = _sing_phrase(synth, _lyrics(rng, int(rng.integers(4, 10))), melody, beat_s, singer, rng,
                                  drift_phase, Path(tmp))
            if phrase is None:
                continue
            rest = np.zeros(int(rng.choice((0.5, 1.0, 1.5)) * beat_s * work_sr) + int(0.15 * work_sr))
            pieces += [phrase, rest]
            filled += len(phrase) + len(rest)
    x = np.concatenate(pieces)[:total]
    x = np.pad(x, (0, total - len(x)))

    sr = plan.sample_rate
    n_out = plan.frames
    y = soxr.resample(x, work_sr, sr, quality="HQ")
    y = np.pad(y, (0, max(0, n_out - len(y))))[:n_out]
    y = sosfilt(butter(8, LOWPASS_HZ, btype="low", fs=sr, output="sos"), y)
    fade = min(n_out, int(0.03 * sr))
    y[n_out - fade :] *= np.linspace(1.0, 0.0, fade)
    y *= 10 ** (plan.level_dbfs / 20) / max(_active_rms(y, sr), 1e-12)
    noise_db = plan.level_dbfs - float(rng.uniform(50.0, 62.0))
    if plan.channels == 2:
        delay = int(rng.integers(0, int(STEREO_MAX_DELAY_S * sr) + 1))
        # each channel +-STEREO_MAX_GAIN_DB / 2, so the left/right level difference is at most the max
        gains = 10 ** (rng.uniform(-STEREO_MAX_GAIN_DB, STEREO_MAX_GAIN_DB, size=2) / 40)
        right = np.concatenate([np.zeros(delay), y[: n_out - delay]])
        y = np.stack([y * gains[0], right * gains[1]], axis=1)
    y = y + rng.standard_normal(y.shape) * 10 ** (noise_db / 20)
    peak = np.max(np.abs(y))
    limit = 10 ** (PEAK_DBFS / 20)
    if peak > limit:
        y *= limit / peak
    return y.astype(np.float32)


# ------------------------------------------------------------------------------------ generation


def _singer_job(cfg: CorpusConfig, index: int, root: str) -> tuple[Singer, list[dict[str, Any]]]:
    """Worker (fresh process): build singer ``index``, render and write its songs under ``root``."""
    import soundfile as sf

    singer = make_singer(cfg, index)
    rows = []
    for plan in plan_songs(cfg, singer):
        audio = render_song(plan)
        path = Path(root) / plan.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio, plan.sample_rate, subtype=plan.subtype, format="WAV")
        rows.append({
            "path": plan.relpath, "singer": singer.name, "seconds": round(plan.seconds, 6),
            "sample_rate": plan.sample_rate, "channels": plan.channels, "subtype": plan.subtype,
            "level_dbfs": plan.level_dbfs,
        })  # fmt: skip
    return singer, rows


def _singer_row(s: Singer, n_songs: int) -> dict[str, Any]:
    return {
        "singer": s.name, "split": s.split, "voice": s.voice, "language": s.language,
        "formant_ratio": s.formant_ratio, "voice_type": s.voice_type,
        "low_note": note_name(s.low_midi), "high_note": note_name(s.high_midi),
        "low_hz": round(s.low_hz, 2), "high_hz": round(s.high_hz, 2),
        "vibrato_rate_hz": s.vibrato_rate_hz, "vibrato_depth_cents": s.vibrato_depth_cents,
        "vibrato_delay_s": s.vibrato_delay_s, "words_per_minute": s.words_per_minute,
        "pitch_multiplier": s.pitch_multiplier, "speech_f0_hz": s.speech_f0_hz, "layout": s.layout,
        "songs": n_songs,
    }  # fmt: skip


def _fresh_process_context():
    """Fork server where available (fast: children fork from a clean, preloaded process), else spawn."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["numpy", "scipy.signal", "soxr", "soundfile", "parselmouth",
                                    "singer_ssl.data.builtin_corpus", "singer_ssl.data.ood_corpus"])  # fmt: skip
        return ctx
    return mp.get_context("spawn")


def _run_singer_jobs(cfg: CorpusConfig, roots: dict[str, Path]) -> list[tuple[Any, list[dict[str, Any]]]]:
    """Run one job per singer, each in a new process; results in job order.

    Jobs: ``_singer_job`` for every train/test singer (results ``(Singer, song rows)``), then
    :func:`singer_ssl.data.ood_corpus.singer_job` for every OOD singer (``(singers.csv row, song rows)``),
    all in one pool. eSpeak (inside Praat) keeps global state between utterances (e.g. the glottal
    oscillator's phase), so an utterance depends on everything synthesised before it in the same
    process. A fresh process per singer makes its audio a function of the config alone (KlattGrid
    keeps no such state; its jobs share the pool). A worker's exception (or a dead worker) stops
    the run: pending singers are cancelled and the error is re-raised.
    """
    from singer_ssl.data import ood_corpus

    jobs: list[tuple[Any, tuple]] = [
        (_singer_job, (cfg, d["index"], str(roots[d["split"]]))) for d in _singer_draws(cfg) if d["split"] in roots
    ]
    if "ood" in roots:
        jobs += [(ood_corpus.singer_job, (cfg.seed, i, cfg.n_ood_singers, cfg.songs("ood"), cfg.min_seconds,
                                          cfg.max_seconds, cfg.sample_rates, cfg.stereo_fraction, str(roots["ood"])))
                 for i in range(cfg.n_ood_singers)]  # fmt: skip
    workers = max(1, min(cfg.workers, len(jobs)))
    ctx = _fresh_process_context()
    if sys.version_info < (3, 11):  # no max_tasks_per_child in concurrent.futures
        with ctx.Pool(processes=workers, maxtasksperchild=1) as mp_pool:
            return [r.get() for r in [mp_pool.apply_async(fn, job) for fn, job in jobs]]
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, max_tasks_per_child=1)
    try:
        futures = [pool.submit(fn, *job) for fn, job in jobs]
        results = [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


def write_dataset_description(
    root: Path, name: str, split: str, config: CorpusConfig, singers: list[Singer], songs: list[dict[str, Any]]
) -> None:
    """``singers.csv`` (one row per singer) and ``corpus.json`` (config, singers, songs) at ``root``."""
    singer_rows = [_singer_row(s, sum(r["singer"] == s.name for r in songs)) for s in singers]
    write_csv(root / "singers.csv", list(singer_rows[0]), [list(r.values()) for r in singer_rows])
    meta = {
        "description": "Synthetic singing corpus made by singer_ssl.data.builtin_corpus: Praat/eSpeak voices sung "
        "with PSOLA melodies. Singer label = first path component.",
        "dataset": name,
        "split": split,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "workers"},
        "singers": singer_rows,
        "songs": songs,
    }
    write_text(root / "corpus.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def _write_ood_description(root: Path, name: str, config: CorpusConfig, singers: list[dict[str, Any]],
                           songs: list[dict[str, Any]]) -> None:
    """``singers.csv`` and ``corpus.json`` of the out-of-domain dataset (rows from ``ood_corpus.singer_row``)."""
    write_csv(root / "singers.csv", list(singers[0]), [list(r.values()) for r in singers])
    keep = ("seed", "n_ood_singers", "songs_per_singer", "test_songs_per_singer", "min_seconds", "max_seconds",
            "sample_rates", "stereo_fraction")
    meta = {
        "description": "Out-of-domain synthetic singing corpus made by singer_ssl.data.ood_corpus: Klatt formant "
        "synthesis (Praat KlattGrid), Peterson & Barney (1952) vowel formants, per-recording EQ and reverb. "
        "Singer label = first path component.",
        "dataset": name,
        "split": "ood",
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k in keep},
        "singers": singers,
        "songs": songs,
    }
    write_text(root / "corpus.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def generate_corpus(out_root: str | os.PathLike, **cfg: Any) -> dict[str, Any]:
    """Synthesise the train, test and out-of-domain test datasets under ``out_root``.

    Keyword arguments are ``CorpusConfig`` fields (or pass ``config=CorpusConfig(...)``). The dataset
    folders are built in temporary siblings and renamed into place only when every file is written;
    on any error none is changed. A dataset with 0 singers is not written. Work runs in a pool of
    ``workers`` processes (call this from under ``if __name__ == "__main__":`` in scripts). Returns a summary::

        {"seconds": wall time, "datasets": {name: {"path", "split", "singers", "songs", "audio_seconds"}}}
    """
    config = cfg.pop("config", None)
    if config is None:
        config = CorpusConfig.from_dict(cfg)
    elif cfg or not isinstance(config, CorpusConfig):
        raise ConfigError("generate_corpus: pass either config=CorpusConfig(...) or keyword parameters")
    config.validate()
    out_root = Path(out_root)
    t0 = time.perf_counter()
    names = {"train": config.train_name, "test": config.test_name, "ood": config.ood_name}
    counts = {"train": config.n_train_singers, "test": config.n_test_singers, "ood": config.n_ood_singers}
    summary: dict[str, Any] = {"datasets": {}}
    with contextlib.ExitStack() as stack:
        roots = {
            split: stack.enter_context(atomic_path(out_root / names[split], is_dir=True))
            for split in names
            if counts[split] > 0
        }
        results = _run_singer_jobs(config, roots)
        for split, root in roots.items():
            if split == "ood":
                ood = [(s, rows) for s, rows in results if isinstance(s, dict)]
                singers = [s for s, _ in ood]
                songs = [row for _, rows in ood for row in rows]
                _write_ood_description(root, names[split], config, singers, songs)
            else:
                singers = [s for s, _ in results if isinstance(s, Singer) and s.split == split]
                songs = [row for s, rows in results if isinstance(s, Singer) and s.split == split for row in rows]
                write_dataset_description(root, names[split], split, config, singers, songs)
            summary["datasets"][names[split]] = {
                "path": str(out_root / names[split]), "split": split, "singers": len(singers),
                "songs": len(songs), "audio_seconds": round(sum(r["seconds"] for r in songs), 2),
            }  # fmt: skip
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


def summary_line(summary: dict[str, Any], out: str | os.PathLike) -> str:
    """``corpus: builtin-train 24 singers, 144 songs (34.2 min); ... in 18.6 s -> data/raw``."""
    parts = [
        f"{name} {d['singers']} singers, {d['songs']} songs ({d['audio_seconds'] / 60:.1f} min)"
        for name, d in summary["datasets"].items()
    ]
    return f"corpus: {'; '.join(parts)} in {summary['seconds']:.1f} s -> {out}"


def run(cfg: CorpusConfig, out: str | os.PathLike) -> str:
    """Synthesise the datasets under folder ``out`` (see :func:`generate_corpus`); the summary line."""
    return summary_line(generate_corpus(out, config=cfg), out)
