"""Simulated meetings: 3–5 people around one far-field microphone, talking over each other.

The conversations of :mod:`ser.diarization.simulate` are acted clips laid end to end, each voice
in a room of its own, with at most ~20 % of the speech overlapped. Real meetings (the AMI
excerpts in ``../shared/data/diarization``) are not like that: 7–61 % of their speech has two or
more people talking — backchannels ("mm", "yes") under someone's turn, interruptions, two people
starting at once — and everybody is in *one* room at their own distance from one microphone.
This module builds such recordings, with a known reference, from the shared corpora:

- **voices** from LibriSpeech (read speech whose voice is not split by acted moods: test-other's
  ten speakers with ten utterances each and train-clean-100's 251 speakers with one) or from one
  of the emotion corpora (each speaker's clips from two of their emotions); one source per
  meeting, so the speakers share a channel as people in one room do;
- **turns** of one to four stretches of speech — an utterance is cut at its pauses into stretches,
  so a long read sentence gives several natural chunks;
- **overlap**, at a level drawn per meeting: backchannels (0.2–0.8 s, the start of another
  speaker's stretch) inside the floor holder's turn, interruptions (the next speaker starts
  0.3–2.5 s before the turn ends) and simultaneous starts (after a pause two people start within
  0.3 s and one of them gives way after 0.4–1.5 s), all of them more and longer as the meeting's
  overlap level rises; each meeting draws the share of overlapped speech it wants from
  ``overlap`` and keeps the closest of up to ``tries`` draws (sub-seeds);
- **one shared room**: one reverberation time, each speaker at their own distance (direct
  path ∝ 1/distance, direct-to-reverberant ratio from the room's critical distance), their own
  loudness; background noise at 5–25 dB SNR; long silences now and then; far-field level.

The reference has one segment per stretch, where its dry samples sit in the mix (reverberation
is kept inside each stretch, as in :mod:`~ser.diarization.simulate`). ``meeting_set`` is the
seeded development set ``bench/diarization_eval.py --meeting`` scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ser.analysis.demo import Turn
from ser.diarization.simulate import (SR, Simulated, SpeakerPool, next_speaker, overlap_fraction, set_level,
                                     speaker_pool)

#: where a meeting's voices come from, by probability
SOURCES = {"librispeech16k": 0.55, "ased16k": 0.2, "emodb16k": 0.125, "ravdess16k": 0.125}


@dataclass(frozen=True)
class MeetingSettings:
    speakers: tuple[int, int] = (3, 5)
    duration_s: tuple[float, float] = (120.0, 300.0)
    overlap: tuple[float, float] = (0.05, 0.50)  # share of speech time with two or more talking
    stretches_per_turn: tuple[int, int] = (1, 4)
    pause_s: tuple[float, float] = (0.1, 1.0)
    long_silence_p: float = 0.06  # a pause of 3-8 s after a turn
    distance_m: tuple[float, float] = (0.5, 3.0)
    rt60_s: tuple[float, float] = (0.25, 0.8)
    loudness_db: tuple[float, float] = (-4.0, 4.0)  # a speaker's own level, before the distance
    snr_db: tuple[float, float] = (5.0, 25.0)
    level_dbfs: tuple[float, float] = (-40.0, -25.0)
    moods: int = 2  # emotion corpora: each speaker's clips from this many of their emotions
    tries: int = 12  # redraws (sub-seeds): the one closest to the overlap drawn for the meeting is kept


def meeting_pool(data_root: str | Path) -> SpeakerPool:
    """``{source: {speaker: [clip paths]}}``: LibriSpeech (both parts, one source) and the emotion
    corpora, from ``data_root`` (``../shared/data``); missing folders are left out."""
    root = Path(data_root)
    pool = speaker_pool(root)
    libri = root / "librispeech16k"
    spk: dict[str, list[Path]] = {}
    for f in sorted(libri.glob("test-other/*/*.flac")) + sorted(libri.glob("train-clean-100/*.flac")):
        spk.setdefault(f.name.split("-")[0], []).append(f)
    if spk:
        pool["librispeech16k"] = spk
    return pool


def stretches(y: np.ndarray, *, top_db: float = 35.0, min_pause_s: float = 0.15,
              min_len_s: float = 0.3) -> list[np.ndarray]:
    """``y`` cut at its pauses: runs of 20-ms frames more than ``top_db`` below the loudest frame,
    at least ``min_pause_s`` long. Pieces shorter than ``min_len_s`` join their neighbour."""
    hop = SR // 50
    n = len(y) // hop
    if n == 0:
        return []
    rms = np.sqrt(np.mean(y[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = 20 * np.log10(rms / rms.max()) > -top_db
    idx = np.flatnonzero(loud)
    if not len(idx):
        return []
    pieces, a, last = [], idx[0], idx[0]
    for i in idx[1:]:
        if (i - last - 1) * hop >= min_pause_s * SR:
            pieces.append((a, last + 1))
            a = i
        last = i
    pieces.append((a, last + 1))
    merged: list[list[int]] = []
    for a, b in pieces:
        if merged and ((b - a) * hop < min_len_s * SR or (merged[-1][1] - merged[-1][0]) * hop < min_len_s * SR):
            merged[-1][1] = b
        else:
            merged.append([a, b])
    return [y[a * hop: b * hop] for a, b in merged]


@lru_cache(maxsize=1024)
def _load(path: Path) -> np.ndarray:
    from ser.audio.decode import load_audio
    y = load_audio(path).y.astype(np.float32)
    y.setflags(write=False)
    return y


class _Voice:
    """One speaker's stretches, drawn without repeats until they run out."""

    def __init__(self, name: str, clips: Sequence[Path], rng: np.random.Generator, load):
        self.name, self.rng, self.load = name, rng, load
        self.clips = [clips[i] for i in rng.permutation(len(clips))]
        self.queue: list[np.ndarray] = []
        self.k = 0

    def next(self) -> np.ndarray:
        while not self.queue:
            self.queue = stretches(self.load(self.clips[self.k % len(self.clips)]))
            self.k += 1
            if self.k > 4 * len(self.clips) and not self.queue:
                raise ValueError(f"{self.name}: no speech found in its clips")
        return self.queue.pop(0)

    def short(self) -> np.ndarray:
        """A backchannel: 0.2–0.8 s, the beginning of one of this speaker's stretches."""
        s = self.next()
        n = int(self.rng.uniform(0.2, 0.8) * SR)
        if len(s) <= n:
            return s
        return s[:n] * (np.hanning(2 * n)[n:] ** 0.25).astype(np.float32)  # fades out: a cut-off word


def _plan(voices: list[_Voice], rng: np.random.Generator, target_s: float, level: float,
          s: MeetingSettings) -> list[tuple[float, int, np.ndarray]]:
    """(start s, speaker, samples) of every stretch; ``level`` in [0, 1] sets how much they overlap."""
    n = len(voices)
    weights = rng.dirichlet(np.full(n, 2.0))
    bc_rate = 0.03 + 0.30 * level  # backchannels per second of the floor holder's speech
    p_interrupt, p_together = min(0.9, 0.05 + 0.6 * level), min(0.6, 0.03 + 0.25 * level)
    talk_over_s = 1.0 + 4.0 * level  # how far an interruption reaches back into the turn (a heated meeting: far)
    plan: list[tuple[float, int, np.ndarray]] = []
    order = list(rng.permutation(n))  # everybody takes the floor once, early
    t, floor = 0.5, -1
    while t < target_s or order:
        k = next_speaker(order, weights, floor, rng)
        start = t
        if plan and rng.random() < p_interrupt:  # the next one starts before this turn ends
            start = max(plan[-1][0] + 0.3, t - rng.uniform(0.3, talk_over_s))
        elif plan:
            start = t + (rng.uniform(3.0, 8.0) if rng.random() < s.long_silence_p else rng.uniform(*s.pause_s))
        u = start
        for _ in range(rng.integers(s.stretches_per_turn[0], s.stretches_per_turn[1] + 1)):
            piece = voices[k].next()
            plan.append((u, k, piece))
            u += len(piece) / SR + rng.uniform(0.05, 0.4)
        end = u
        if n > 1 and rng.random() < p_together:  # someone else starts at the same moment, then gives way
            other = int(rng.choice([j for j in range(n) if j != k]))
            piece = voices[other].next()[: int(rng.uniform(0.4, 1.5 + 2.0 * level) * SR)]
            plan.append((start + rng.uniform(-0.3, 0.3) if start > 0.8 else start, other, piece))
        t_bc = start + rng.exponential(1.0 / bc_rate)
        while n > 1 and t_bc < end - 0.5:  # backchannels under the turn
            other = int(rng.choice([j for j in range(n) if j != k]))
            plan.append((t_bc, other, voices[other].short()))
            t_bc += 0.8 + rng.exponential(1.0 / bc_rate)
        t, floor = max(t, end), k
    return plan


def _room(rng: np.random.Generator, n: int, s: MeetingSettings) -> tuple[list[np.ndarray], list[dict]]:
    """One room: a reverberation time, a critical distance; per speaker a distance, an impulse
    response whose direct-to-reverberant ratio follows it, and a gain (loudness / distance)."""
    rt60 = rng.uniform(*s.rt60_s)
    crit = rng.uniform(0.6, 1.2)
    irs, info = [], []
    for _ in range(n):
        d = rng.uniform(*s.distance_m)
        m = int(SR * min(1.0, rt60 * 1.2))
        t = np.arange(m) / SR
        tail = rng.standard_normal(m) * np.exp(-6.9 * t / rt60)
        tail[: int(SR * (0.002 + 0.004 * d))] = 0.0
        drr = float(np.clip(20 * np.log10(crit / d), -8.0, 15.0))
        tail *= 10 ** (-drr / 20) / (np.sqrt(np.sum(tail ** 2)) + 1e-9)
        tail[0] = 1.0
        gain_db = rng.uniform(*s.loudness_db) - 20 * np.log10(d)
        irs.append(tail.astype(np.float32))
        info.append({"distance_m": round(d, 2), "drr_db": round(drr, 1), "gain_db": round(float(gain_db), 1)})
    return irs, [dict(i, rt60_s=round(rt60, 2)) for i in info]


def simulate_meeting(pool: Mapping[str, Mapping[str, Sequence[Path]]], seed: int,
                     settings: MeetingSettings = MeetingSettings(), *, load=_load, sources: bool = False) -> Simulated:
    """One meeting, fully determined by ``seed`` (and the pool). ``info`` has the source, the
    speakers' distances and levels, the overlapped share, the SNR and the sub-seed used."""
    s = settings
    names = [c for c in SOURCES if c in pool and len(pool[c]) >= s.speakers[0]]
    if not names:
        raise ValueError(f"A meeting needs a corpus with at least {s.speakers[0]} speakers "
                         f"(one of {', '.join(SOURCES)} under the data folder).")
    rng0 = np.random.default_rng([seed, 0])
    p = np.array([SOURCES[c] for c in names])
    source = names[rng0.choice(len(names), p=p / p.sum())]
    lo, hi = s.overlap
    want = rng0.uniform(lo, hi)
    best = None
    for sub in range(s.tries):
        rng = np.random.default_rng([seed, 1, sub])
        voices_all = list(pool[source])
        n = int(min(rng.integers(s.speakers[0], s.speakers[1] + 1), len(voices_all)))
        chosen = [voices_all[i] for i in rng.choice(len(voices_all), n, replace=False)]
        clips = {v: list(pool[source][v]) for v in chosen}
        labels = getattr(pool, "labels", {})
        if source != "librispeech16k" and s.moods > 0 and labels:
            for v in chosen:
                emos = sorted({labels.get(str(c), "") for c in clips[v]})
                keep = set(rng.choice(emos, min(s.moods, len(emos)), replace=False))
                clips[v] = [c for c in clips[v] if labels.get(str(c), "") in keep]
        voices = [_Voice(f"{source}:{v}", clips[v], rng, load) for v in chosen]
        level = float(np.clip(want / 0.4 + rng.normal(0, 0.1), 0.0, 1.5))
        plan = _plan(voices, rng, rng.uniform(*s.duration_s), level, s)
        turns = _turns(plan, voices)
        ovl = overlap_fraction(turns)
        if best is None or _miss(ovl, want, lo, hi) < _miss(best[4], want, lo, hi):
            best = (sub, n, voices, plan, ovl, turns, rng)
        if _miss(ovl, want, lo, hi) <= 0.03:
            break
    sub, n, voices, plan, ovl, turns, rng = best
    y, tracks, rooms, snr, lvl = _mix(plan, voices, turns, rng, s)
    info = {"source": source, "speakers": n, "duration_s": round(len(y) / SR, 2), "overlap_fraction": round(ovl, 3),
            "overlap_wanted": round(want, 3), "sub_seed": sub, "snr_db": round(snr, 1), "level_dbfs": round(lvl, 1),
            "voices": [dict(r, speaker=v.name) for r, v in zip(rooms, voices)]}
    return Simulated(f"meet{seed:04d}", y, turns, info,
                     {v.name: tracks[k] for k, v in enumerate(voices)} if sources else None)


def _miss(ovl: float, want: float, lo: float, hi: float) -> float:
    """How far a draw's overlap is from the wanted one; outside the set's range counts as far."""
    return abs(ovl - want) + (0.0 if lo <= ovl <= hi else 1.0)


def _grid(start: float) -> int:
    return int(round(start * 1000)) * (SR // 1000)


def _turns(plan, voices) -> list[Turn]:
    out = []
    for start, k, c in plan:  # on a 1-ms grid, so the millisecond reference times are exact
        a, m = _grid(start), len(c) // (SR // 1000) * (SR // 1000)
        out.append(Turn(round(a / SR, 3), round((a + m) / SR, 3), voices[k].name))
    return sorted(out, key=lambda x: (x.start_s, x.speaker))


def _mix(plan, voices, turns, rng, s: MeetingSettings) -> tuple[np.ndarray, np.ndarray, list[dict], float, float]:
    from scipy.signal import fftconvolve

    n = len(voices)
    total = int((max(t.end_s for t in turns) + 0.5) * SR)
    tracks = np.zeros((n, total), np.float32)
    for start, k, c in plan:
        a, m = _grid(start), len(c) // (SR // 1000) * (SR // 1000)
        tracks[k, a:a + m] += c[:m]
    irs, rooms = _room(rng, n, s)
    for k in range(n):
        active = np.abs(tracks[k]) > 0
        rms = float(np.sqrt(np.mean(tracks[k][active] ** 2))) if active.any() else 1.0
        wet = fftconvolve(tracks[k], irs[k])[:total].astype(np.float32) * active
        tracks[k] = wet * (10 ** (rooms[k]["gain_db"] / 20) * 0.1 / (rms + 1e-9))
    y = tracks.sum(0)
    speech = np.abs(y) > 0
    snr = float(rng.uniform(*s.snr_db))
    noise = rng.standard_normal(total)
    spec = np.fft.rfft(noise)
    f = np.maximum(np.fft.rfftfreq(total), 1.0 / total)
    noise = np.fft.irfft(spec / f ** (0.5 * rng.uniform(0.0, 2.0)), total)  # white to brown, like a room's hum and hiss
    pw = float(np.mean(y[speech] ** 2)) if speech.any() else 1e-6
    y = y + (noise * np.sqrt(pw / 10 ** (snr / 10) / (np.mean(noise ** 2) + 1e-12))).astype(np.float32)
    level = float(rng.uniform(*s.level_dbfs))
    y, gain = set_level(y, speech, level)
    return y, tracks * np.float32(gain), rooms, snr, level


def meeting_set(data_root: str | Path, n: int = 40, *, first_seed: int = 5000,
                settings: MeetingSettings = MeetingSettings()) -> list[Simulated]:
    """The seeded meeting development set: ``n`` meetings, seeds ``first_seed …``, built on the fly."""
    pool = meeting_pool(data_root)
    return [simulate_meeting(pool, first_seed + i, settings) for i in range(n)]


