"""Simulated multi-speaker recordings with known speaker turns, for developing the diarizer.

Single-speaker clips of one corpus (ASED's 65 home-recorded voices, EmoDB's 10 actors,
RAVDESS's 20) are laid out as a conversation: 2–7 speakers who take turns of one to three
utterances, with pauses between turns and, at a rate drawn per recording, the next
speaker starting before the previous one has finished (0–20 % of speech overlapped).
Each speaker gets a level and a room of their own (a synthetic impulse response at a
random direct-to-reverberant ratio, as if at a different distance from the microphone);
the whole recording may be band-limited and gets background noise at a random SNR and an
overall level from quiet far-field (−45 dBFS) to close-talk (−20 dBFS).

The reference holds one segment per utterance: where that speaker's trimmed clip sits in
the mix, so it matches the mixed audio exactly (``simulate(..., sources=True)`` returns
each speaker's own track to check it). A seeded set (``dev_set``) is what
``bench/diarization_eval.py`` scores and ``bench/diarization_tune.py`` tunes on; the six
real recordings are only checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ser.analysis.demo import Turn

SR = 16_000
CORPORA = {"ased16k": 0.5, "emodb16k": 0.25, "ravdess16k": 0.25}  # corpus of a recording, by probability


@dataclass(frozen=True)
class SimSettings:
    speakers: tuple[int, int] = (2, 7)
    duration_s: tuple[float, float] = (60.0, 300.0)
    overlap_rate: tuple[float, float] = (0.0, 0.6)  # chance that a turn starts before the previous ends
    overlap_s: tuple[float, float] = (0.4, 2.5)
    pause_s: tuple[float, float] = (0.1, 1.2)  # between turns
    inner_pause_s: tuple[float, float] = (0.1, 0.5)  # between utterances of one turn
    utterances_per_turn: tuple[int, int] = (1, 3)
    gain_db: tuple[float, float] = (-10.0, 0.0)  # per speaker
    reverb_p: float = 0.6  # per speaker
    band_limit_p: float = 0.2  # whole recording
    noise_p: float = 0.8
    snr_db: tuple[float, float] = (10.0, 35.0)
    level_dbfs: tuple[float, float] = (-45.0, -20.0)
    moods: int = 2  # > 0: each speaker's clips come from this many of their emotions (0: any emotion)


@dataclass
class Simulated:
    uri: str
    y: np.ndarray
    turns: list[Turn]
    info: dict = field(default_factory=dict)
    sources: dict[str, np.ndarray] | None = None


class SpeakerPool(dict):
    """``{corpus: {speaker: [clip paths]}}`` plus ``labels``: the emotion of every clip path."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.labels: dict[str, str] = {}


def speaker_pool(data_root: str | Path, corpora: Sequence[str] = tuple(CORPORA)) -> dict[str, dict[str, list[Path]]]:
    """``{corpus: {speaker: [clip paths]}}`` from the shared corpora under ``data_root``."""
    from ser.training.datasets import read_ased, read_emodb, read_ravdess

    readers = {"ased16k": read_ased, "emodb16k": read_emodb, "ravdess16k": read_ravdess}
    pool = SpeakerPool()
    for c in corpora:
        root = Path(data_root) / c
        if not root.is_dir():
            continue
        spk: dict[str, list[Path]] = {}
        for u in readers[c](root):
            spk.setdefault(u.speaker, []).append(u.path)
            pool.labels[str(u.path)] = u.label
        pool[c] = {s: sorted(p) for s, p in sorted(spk.items())}
    return pool


def _clip(path: Path) -> np.ndarray:
    from ser.audio.decode import load_audio
    from ser.emotion.features import trim_silence
    return trim_silence(load_audio(path).y, top_db=35.0)


def simulate(pool: Mapping[str, Mapping[str, Sequence[Path]]], seed: int, settings: SimSettings = SimSettings(), *,
             sources: bool = False, clip=_clip) -> Simulated:
    """One recording, fully determined by ``seed`` (and the pool)."""
    from ser.audio.augment import room_impulse_response
    from scipy.signal import fftconvolve

    s = settings
    rng = np.random.default_rng(seed)
    names = [c for c in CORPORA if c in pool and len(pool[c]) >= s.speakers[0]] or [c for c in pool if len(pool[c]) >= 2]
    if not names:
        raise ValueError("The speaker pool needs a corpus with at least two speakers.")
    p = np.array([CORPORA.get(c, 1.0) for c in names])
    corpus = names[rng.choice(len(names), p=p / p.sum())]
    voices = list(pool[corpus])
    n_spk = int(min(rng.integers(s.speakers[0], s.speakers[1] + 1), len(voices)))
    chosen = [voices[i] for i in rng.choice(len(voices), n_spk, replace=False)]
    target = rng.uniform(*s.duration_s)
    ovl_rate = rng.uniform(*s.overlap_rate)
    weights = rng.dirichlet(np.full(n_spk, 1.5))  # some people talk more than others

    clips_of = {v: list(pool[corpus][v]) for v in chosen}
    labels = getattr(pool, "labels", {})
    if s.moods > 0 and labels:  # a separate generator: the rest of the recording is drawn as without moods
        mood_rng = np.random.default_rng([seed, 1])
        for v in chosen:
            emos = sorted({labels.get(str(p), "") for p in clips_of[v]})
            keep = set(mood_rng.choice(emos, min(s.moods, len(emos)), replace=False))
            clips_of[v] = [p for p in clips_of[v] if labels.get(str(p), "") in keep]
    order = list(rng.permutation(n_spk))  # everybody speaks at least once, early
    plan: list[tuple[float, int, np.ndarray]] = []  # (start, speaker index, clip)
    t, prev_end, prev = 0.5, 0.5, -1
    while t < target or order:
        k = next_speaker(order, weights, prev, rng)
        clips = [clip(Path(clips_of[chosen[k]][rng.integers(len(clips_of[chosen[k]]))]))
                 for _ in range(rng.integers(s.utterances_per_turn[0], s.utterances_per_turn[1] + 1))]
        if plan and rng.random() < ovl_rate:
            start = max(prev_end - rng.uniform(*s.overlap_s), plan[-1][0] + 0.3)
        else:
            start = prev_end + (rng.uniform(*s.pause_s) if plan else 0.0)
        u = start
        for c in clips:
            plan.append((u, k, c))
            u += len(c) / SR + rng.uniform(*s.inner_pause_s)
        prev_end = max(prev_end, plan[-1][0] + len(plan[-1][2]) / SR)
        t, prev = prev_end, k
    total = int((prev_end + 0.5) * SR)

    tracks = np.zeros((n_spk, total), np.float32)
    turns = []
    for start, k, c in plan:  # on a 1-ms grid, so the millisecond reference times are exact
        a = int(round(start * 1000)) * (SR // 1000)
        c = c[: len(c) // (SR // 1000) * (SR // 1000)]
        tracks[k, a:a + len(c)] += c
        turns.append(Turn(round(a / SR, 3), round((a + len(c)) / SR, 3), f"{corpus}:{chosen[k]}"))
    rooms = []
    for k in range(n_spk):
        active = np.abs(tracks[k]) > 0
        rms = float(np.sqrt(np.mean(tracks[k][active] ** 2))) if active.any() else 1.0
        g = 10 ** (rng.uniform(*s.gain_db) / 20) * 0.1 / (rms + 1e-9)  # every voice at -20 dBFS, then its gain
        wet = rng.random() < s.reverb_p
        if wet:  # reverberation stays inside the speaker's turns (the reference is the dry extent)
            rir = room_impulse_response(rng)
            tr = fftconvolve(tracks[k], rir)[:total].astype(np.float32)
            tracks[k] = tr * active
        tracks[k] *= g
        rooms.append({"speaker": f"{corpus}:{chosen[k]}", "gain": round(float(20 * np.log10(g * rms + 1e-12)), 1),
                      "reverb": bool(wet)})
    y = tracks.sum(0)
    band = rng.random() < s.band_limit_p
    if band:
        from ser.audio.augment import band_limit
        y = band_limit(y, rng)
    snr = None
    speech = np.abs(y) > 0
    if rng.random() < s.noise_p:
        snr = float(rng.uniform(*s.snr_db))
        n = rng.standard_normal(total)
        colour = int(rng.integers(3))
        if colour:
            spec = np.fft.rfft(n)
            f = np.maximum(np.fft.rfftfreq(total), 1.0 / total)
            n = np.fft.irfft(spec / f ** (0.5 * colour), total)
        pw = float(np.mean(y[speech] ** 2)) if speech.any() else 1e-6
        y = y + (n * np.sqrt(pw / 10 ** (snr / 10) / (np.mean(n ** 2) + 1e-12))).astype(np.float32)
    level = rng.uniform(*s.level_dbfs)
    y, gain = set_level(y, speech, level)
    turns.sort(key=lambda x: (x.start_s, x.speaker))
    info = {"corpus": corpus, "speakers": n_spk, "duration_s": round(total / SR, 2), "overlap_rate": round(ovl_rate, 3),
            "overlap_fraction": round(overlap_fraction(turns), 3), "band_limited": bool(band),
            "snr_db": None if snr is None else round(snr, 1), "level_dbfs": round(level, 1), "voices": rooms}
    return Simulated(f"sim{seed:04d}", y, turns, info,
                     {f"{corpus}:{chosen[k]}": tracks[k] * gain for k in range(n_spk)} if sources else None)


def next_speaker(order: list, weights: np.ndarray, prev: int, rng: np.random.Generator) -> int:
    """Who takes the floor next: the first of ``order`` while it lasts (everybody speaks early),
    then drawn by ``weights`` (some talk more), never ``prev`` twice in a row."""
    if order:
        return int(order.pop(0))
    w = weights.copy()
    if prev >= 0:
        w[prev] = 0.0
    return int(rng.choice(len(w), p=w / w.sum()))


def set_level(y: np.ndarray, speech: np.ndarray, level_dbfs: float) -> tuple[np.ndarray, float]:
    """``y`` scaled so that its speech (the ``speech`` mask) is at ``level_dbfs`` RMS, peaks kept
    under 0.99; the scaled audio (float32) and the gain."""
    gain = 10 ** (level_dbfs / 20) / (float(np.sqrt(np.mean(y[speech] ** 2))) + 1e-9 if speech.any() else 1.0)
    peak = float(np.max(np.abs(y))) * gain
    if peak > 0.99:
        gain *= 0.99 / peak
    return (y * gain).astype(np.float32), gain


def overlap_fraction(turns: Sequence[Turn]) -> float:
    """Fraction of speech time where two or more speakers talk."""
    if not turns:
        return 0.0
    ev = sorted([(t.start_s, 1) for t in turns] + [(t.end_s, -1) for t in turns])
    active, last, speech, ovl = 0, ev[0][0], 0.0, 0.0
    for x, d in ev:
        if active >= 1:
            speech += x - last
        if active >= 2:
            ovl += x - last
        active, last = active + d, x
    return ovl / speech if speech else 0.0


def dev_set(data_root: str | Path, n: int = 40, *, first_seed: int = 0, settings: SimSettings = SimSettings()):
    """The seeded development set: ``n`` recordings, seeds ``first_seed …``, built on the fly."""
    pool = speaker_pool(data_root)
    return [simulate(pool, first_seed + i, settings) for i in range(n)]
