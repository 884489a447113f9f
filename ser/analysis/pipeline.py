"""One analysis: audio → speaker turns → emotion per turn and per window → Analysis.

    from ser.analysis.pipeline import analyze
    a = analyze("meeting.wav", num_speakers=2)
    a.speaker_summary()

Stages are cached in a :class:`StageCache` keyed by the audio's content hash and the
parameters each stage depends on: changing the speaker count re-runs only the cheap
clustering; changing the emotion model or window re-runs only the emotion scoring.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import numpy as np

from ser import __version__
from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn
from ser.audio.decode import Audio, load_audio
from ser.diarization.backends import BuiltinDiarizer, get_diarizer
from ser.diarization.base import Diarizer, Progress, _noop, check_speaker_counts
from ser.errors import ConfigError
from ser.threads import adjust as adjust_threads, job_threads, mode as thread_mode, parallel_map
from ser.threads import used as thread_counts_used


DEFAULT_WINDOW_S = 2.0
DEFAULT_HOP_S = 1.0


class _Flight:
    """One stage computation in progress: threads that want the same result wait for it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class StageCache:
    """A small LRU of stage results (embeddings, turns, window scores) per process.

    Shared by concurrent analyses (the API's workers, several dashboard sessions, the
    dashboard's start-up warm-up): the dictionary is guarded by a lock, and a result that
    another thread is computing right now is waited for instead of computed a second time
    beside it (on two cores that would make both wait about twice as long). If that other
    computation fails, the waiting thread computes the stage itself.
    """

    def __init__(self, max_items: int = 32):
        self.max_items = max_items
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def get_or_compute(self, stage: str, key: Hashable, fn: Callable[[], Any]) -> Any:
        k = (stage, key)
        while True:
            with self._lock:
                if k in self._d:
                    self._d.move_to_end(k)
                    self.hits[stage] = self.hits.get(stage, 0) + 1
                    return self._d[k]
                flight = self._flights.get(k)
                if flight is None:  # nobody computes it: this thread does
                    flight = self._flights[k] = _Flight()
                    self.misses[stage] = self.misses.get(stage, 0) + 1
                    break
            flight.done.wait()
            if flight.ok:
                with self._lock:
                    self.hits[stage] = self.hits.get(stage, 0) + 1
                return flight.value
            # the computation it waited for failed: try again (compute it here, or wait for another)
        try:
            value = fn()
            flight.value, flight.ok = value, True
            with self._lock:
                self._d[k] = value
                while len(self._d) > self.max_items:
                    self._d.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._flights.pop(k, None)
            flight.done.set()

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


DEFAULT_CACHE = StageCache()


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Window:
    start: int  # samples
    end: int
    turn: int  # index into turns


def plan_windows(turns: list[SpeakerTurn], sr: int, window_s: float, hop_s: float,
                 n_samples: int) -> list[_Window]:
    """Windows to score: a turn up to 1.5 × ``window_s`` is one window; a longer turn is covered
    by ``window_s`` windows every ``hop_s``, the last one aligned to the turn's end."""
    win, hop = int(round(window_s * sr)), int(round(hop_s * sr))
    out = []
    for i, t in enumerate(turns):
        a, b = int(round(t.start_s * sr)), min(n_samples, int(round(t.end_s * sr)))
        if b - a <= 1.5 * win:
            out.append(_Window(a, b, i))
            continue
        starts = list(range(a, b - win + 1, hop))
        if starts[-1] + win < b:
            starts.append(b - win)
        out.extend(_Window(s, s + win, i) for s in starts)
    return out


def _check_settings(window_s: float, hop_s: float, num_speakers: int | None, min_speakers: int | None,
                    max_speakers: int | None, adapt: str) -> None:
    """A clear ConfigError for a setting out of range, before any work."""
    from ser.emotion.adapt import ANALYZE_MODES, check_mode

    if not (0.5 <= window_s <= 30.0):
        raise ConfigError(f"window_s must be between 0.5 and 30 seconds (got {window_s}).")
    if not (0.1 <= hop_s <= window_s):
        raise ConfigError(f"hop_s must be between 0.1 s and window_s ({window_s} s); got {hop_s}.")
    check_speaker_counts(num_speakers, min_speakers, max_speakers)
    check_mode(adapt, ANALYZE_MODES)


def analyze(audio: Audio | Any, *, diarizer: str | Diarizer = "builtin", model: Any = "default",
            num_speakers: int | None = None, min_speakers: int | None = None, max_speakers: int | None = None,
            window_s: float = DEFAULT_WINDOW_S, hop_s: float = DEFAULT_HOP_S, device: str = "auto",
            progress: Progress | None = None, cache: StageCache | None = DEFAULT_CACHE,
            name: str | None = None, adapt: str = "none", threads: int | None = None,
            transcribe: bool = False, language: str | None = None, voices: list | None = None) -> Analysis:
    """Analyse one recording.

    ``audio``: an :class:`~ser.audio.Audio` or anything ``load_audio`` takes (path, bytes,
    file object). ``diarizer``: "builtin", "pyannote" or a Diarizer. ``model``: an
    EmotionModel or a model name/folder. ``window_s``/``hop_s``: the sliding windows that
    score long turns. ``progress(stage, fraction)`` is called as stages advance. ``adapt``:
    "none" (the default), "recording" (centre the encoder features of all windows on the
    recording's own statistics) or "speaker" (each diarized speaker's windows on their own); a
    group with too few windows or that seems to hold one emotion is not adapted, and
    ``provenance["adaptation"]`` says what was done; see ser.emotion.adapt (and
    bench/adapt_conversations.py for why neither is the default).
    ``threads``: torch threads for this analysis (default: :mod:`ser.threads`' policy — one
    for recordings up to two minutes, the free cores for longer ones). ``transcribe``: add the
    transcript (words with speakers, utterances with emotion; ser.transcription), in ``language``
    (a Whisper code; default: detected). ``voices``: enrolled voices (``ser.diarization.voices.Voice``,
    e.g. ``VoiceLibrary().voices()``): a diarized speaker whose voice matches one takes its name
    (``provenance["voices"]`` says who matched how well; ser.diarization.voices).

    Turns shorter than the model's minimum duration keep their speaker but get no emotion
    (listed in ``provenance["unscored_turns"]``). A recording without speech gives an
    Analysis with no turns and ``provenance["no_speech"] = True``.
    """
    from ser.emotion.model import EmotionModel, load_model

    progress = progress or _noop
    cache = cache or StageCache(max_items=8)
    _check_settings(window_s, hop_s, num_speakers, min_speakers, max_speakers, adapt)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    progress("decoding", 0.0)
    t0 = time.perf_counter()
    if not isinstance(audio, Audio):
        audio = load_audio(audio, name=name)
    y, sr = audio.y, audio.sr
    digest = audio.content_hash()
    timings["decode_s"] = time.perf_counter() - t0
    progress("decoding", 1.0)

    with job_threads(audio.duration_s, threads) as n_threads:  # the thread policy, ser.threads
        progress = _adjusting(progress)
        reused: list[str] = []  # stages this call took from the cache instead of computing

        def stage(name: str, key: Hashable, fn: Callable[[], Any]) -> Any:
            ran: list[bool] = []
            out = cache.get_or_compute(name, key, lambda: ran.append(True) or fn())
            if not ran:
                reused.append(name)
            return out

        dia = get_diarizer(diarizer) if isinstance(diarizer, str) else diarizer
        dia_settings = dia.settings()
        counts = {"num_speakers": num_speakers, "min_speakers": min_speakers, "max_speakers": max_speakers}
        t0 = time.perf_counter()
        builtin = isinstance(dia, BuiltinDiarizer)  # its embeddings are a stage of their own
        emb = stage("embeddings", (digest, _key(dia_settings)), lambda: dia.embed(y, sr, progress=progress)) \
            if builtin else None
        turns = stage("turns", (digest, _key(dia_settings), _key(counts)),
                      (lambda: dia.assign(emb, progress=progress, **counts)) if builtin
                      else (lambda: dia(y, sr, progress=progress, **counts)))
        timings["diarization_s"] = time.perf_counter() - t0
        turns, identification = (_identify(stage, y, sr, digest, turns, list(voices), progress, emb, timings,
                                           num_speakers or min_speakers or 1) if voices else (turns, None))

        em = model if isinstance(model, EmotionModel) else load_model(model, device=device)
        _check_adaptable(em, adapt)
        model_key = (str(em.path), em.id, _key(em.card.to_dict()))
        t0 = time.perf_counter()
        windows = plan_windows(turns, sr, window_s, hop_s, len(y))

        def score() -> tuple[np.ndarray, np.ndarray, dict]:
            return _score_windows(em, y, sr, windows, turns, adapt, progress)

        turns_key = _key([(t.start_s, t.end_s, t.speaker) for t in turns])
        probs, adapted, adapt_reports = stage("emotion", (digest, model_key, window_s, hop_s, turns_key, adapt), score)
        timings["emotion_s"] = time.perf_counter() - t0

        from ser.emotion.adapt import GROUP_KIND, adapted_margin, summary
        segments, window_segs, unscored = _segments(em, turns, windows, probs, adapted, adapted_margin(em, adapt), sr)
        words, utterances, transcript = [], [], None
        if transcribe:
            t0 = time.perf_counter()
            words, utterances, transcript = _transcript(stage, audio, digest, turns, segments, language, device,
                                                         progress)
            timings["transcript_s"] = time.perf_counter() - t0
        progress("done", 1.0)
        provenance = {
            "ser_version": __version__,
            "model": {"id": em.id, "name": em.card.name, "architecture": em.card.architecture,
                      "label_set": em.card.label_set, "temperature": em.card.temperature,
                      "uncertain_margin": em.card.uncertain_margin, "path": str(em.path) if em.path else None,
                      "fingerprint": em.fingerprint, "device": str(em.device)},
            "diarizer": dia_settings,
            "speaker_counts": counts,
            "window_s": window_s, "hop_s": hop_s,
            "adaptation": summary(adapt, adapted, adapt_reports, GROUP_KIND.get(adapt, "")),
            "audio": {"sha256": digest, "duration_s": round(audio.duration_s, 3), "source_sample_rate": audio.source_sr,
                      "source_channels": audio.source_channels, "codec": audio.codec},
            "no_speech": len(turns) == 0,
            "unscored_turns": unscored,
            "min_turn_s_scored": em.card.min_duration_s,
            "reused_stages": reused,  # e.g. ["embeddings", "turns", "emotion"]: shown from an earlier analysis
            # how it ran (ser.threads): torch's intra-op threads, and how that count was chosen
            "threads": {"torch": n_threads, "mode": thread_mode(threads),
                        **({"adjusted": adjusted} if (adjusted := thread_counts_used()[1:]) else {})},
            "timings_s": {**{k: round(v, 3) for k, v in timings.items()},
                          "total_s": round(time.perf_counter() - t_start, 3)},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **{k: v for k, v in (("transcript", transcript), ("voices", identification)) if v},
        }
        return Analysis(name=audio.name or name or "audio", duration_s=round(audio.duration_s, 3),
                        labels=list(em.labels), turns=list(turns), segments=segments, windows=window_segs,
                        provenance=provenance, words=words, utterances=utterances)


def _transcript(stage: Callable, audio: Audio, digest: str, turns: list[SpeakerTurn],
                segments: list[EmotionSegment], language: str | None, device: str, progress: Progress) -> tuple:
    """The transcript stage: words over the turns' speech regions (cached per recording, regions
    and language), then attached to speakers and emotion; and its provenance."""
    import torch

    from ser.transcription import isolated
    from ser.transcription.asr import MODEL_DIR, available, check_language, describe, missing_message, speech_regions
    from ser.transcription.attach import attach

    progress("transcript", 0.0)
    if not available():
        raise ConfigError(missing_message())
    lang = check_language(language)
    regions = speech_regions(turns, audio.duration_s)
    info = {**describe(MODEL_DIR, device, torch.get_num_threads()),
            "process": "this one" if isolated.in_process() else "child (ser.transcription.isolated)"}
    raw, detected = stage("transcript", (digest, _key(regions), lang, _key({k: info[k] for k in ("sha256", "beam_size")})),
                          lambda: isolated.transcribe(audio.y, audio.sr, regions, lang, folder=str(MODEL_DIR),
                                                      device=info["device"], threads=info["threads"]))
    words, utterances = attach(raw, turns, segments)
    progress("transcript", 1.0)
    return words, utterances, {**info, **detected, "language_given": lang is not None, "regions": len(regions),
                               "words": len(words), "utterances": len(utterances)}


def _identify(stage: Callable, y: np.ndarray, sr: int, digest: str, turns: list[SpeakerTurn], voices: list,
              progress: Progress, emb: Any, timings: dict, min_speakers: int) -> tuple[list[SpeakerTurn], dict]:
    """Known voices: one embedding per solo stretch of each diarized speaker (cached per recording
    and turns; from the builtin diarizer's own window embeddings ``emb`` where it has them),
    matched with the enrolled voices; the renamed turns and the provenance of the decision."""
    from ser.diarization.voices import Thresholds, apply, fingerprint, identify, pool, screen, stretch_vectors

    progress("voices", 0.0)
    t0 = time.perf_counter()
    th = Thresholds()
    stretches = stage("speaker_stretches", (digest, _key([(t.start_s, t.end_s, t.speaker) for t in turns]),
                                            emb is not None),
                      lambda: stretch_vectors(y, sr, turns, emb))
    matches = identify(turns, pool(stretches), voices, th, min_speakers=min_speakers)  # never below a given count
    named = screen(apply(turns, matches), stretches, matches, voices, th.stretch_floor)
    for m in matches:  # the three closest voices are enough to explain a decision
        m.candidates = dict(sorted(m.candidates.items(), key=lambda kv: -kv[1])[:3])
    progress("voices", 1.0)
    timings["voices_s"] = time.perf_counter() - t0
    return named, {"library": len(voices), "fingerprint": fingerprint(voices, th),
                   "thresholds": dict(th.__dict__), "speakers": [m.to_dict() for m in matches]}


def _adjusting(progress: Progress) -> Progress:
    """``progress`` that also lets the thread policy re-read the free cores (ser.threads.adjust)."""
    def wrapped(stage: str, frac: float) -> None:
        adjust_threads()
        progress(stage, frac)

    return wrapped


def _check_adaptable(em: Any, adapt: str) -> None:
    """A clear error before any work when the model cannot adapt as asked."""
    if adapt != "none":
        from ser.emotion.adapt import model_adapt_head

        model_adapt_head(em, adapt)


def _score_windows(em: Any, y: np.ndarray, sr: int, windows: list[_Window], turns: list[SpeakerTurn], adapt: str,
                   progress: Progress) -> tuple[np.ndarray, np.ndarray, dict]:
    """The emotion stage: probabilities per window (rows of NaN where a window is too short),
    which windows were adapted, and the adaptation's reports per group."""
    progress("emotion", 0.0)
    width = len(em.labels) if adapt == "none" else 2 * em.net.encoder.conv1.out_channels * len(em.net.layers)
    out = np.full((len(windows), width), np.nan, dtype=np.float32)
    by_turn: dict[int, list[int]] = {}
    for j, w in enumerate(windows):
        by_turn.setdefault(w.turn, []).append(j)
    def turn(rows: list[int]) -> np.ndarray:  # each turn is encoded once; its windows pool their frames
        a, b = windows[rows[0]].start, max(windows[j].end for j in rows)
        spans = [(windows[j].start - a, windows[j].end - a) for j in rows]
        return em.predict_proba_spans(y[a:b], sr, spans) if adapt == "none" else em.pooled_spans(y[a:b], sr, spans)

    tasks = sorted(by_turn.values(), key=lambda rows: windows[rows[0]].start - max(windows[j].end for j in rows))
    for rows, p in zip(tasks, parallel_map(turn, tasks, on_done=lambda k: progress("emotion", k / len(tasks)))):
        out[rows] = p
    if adapt == "none":
        return out, np.zeros(len(windows), bool), {}
    from ser.emotion.adapt import adapt_probabilities

    groups = [turns[w.turn].speaker if adapt == "speaker" else "recording" for w in windows]
    p, adapted, reports = adapt_probabilities(em, out, groups, adapt, unit="emotion window")
    return p.astype(np.float32), adapted, reports


def _segments(em: Any, turns: list[SpeakerTurn], windows: list[_Window], probs: np.ndarray, adapted: np.ndarray,
              adapted_margin: float | None, sr: int) -> tuple[list[EmotionSegment], list[EmotionSegment], list[int]]:
    """Turn segments (the duration-weighted mean of their windows), window segments, and the
    indices of turns too short to score."""
    margins = {False: None, True: adapted_margin}
    segments, window_segs, unscored = [], [], []
    by_turn: dict[int, list[int]] = {}
    for j, w in enumerate(windows):
        by_turn.setdefault(w.turn, []).append(j)
    for i, t in enumerate(turns):
        rows = [j for j in by_turn.get(i, []) if not np.isnan(probs[j]).any()]
        if not rows:
            unscored.append(i)
            continue
        weights = np.array([windows[j].end - windows[j].start for j in rows], dtype=np.float64)
        p = (probs[rows] * weights[:, None]).sum(0) / weights.sum()
        segments.append(_segment(em, t.start_s, t.end_s, t.speaker, p, "turn", margins[bool(adapted[rows].all())]))
        for j in rows:
            w = windows[j]
            window_segs.append(_segment(em, round(w.start / sr, 3), round(w.end / sr, 3), t.speaker, probs[j],
                                        "window", margins[bool(adapted[j])]))
    return segments, window_segs, unscored


def _segment(em: Any, start: float, end: float, speaker: str, p: np.ndarray, kind: str,
             margin: float | None = None) -> EmotionSegment:
    p = np.asarray(p, dtype=np.float64)
    r = em.result(p) if margin is None else em.result(p, margin=margin)
    return EmotionSegment(start_s=start, end_s=end, speaker=speaker, emotion=r["emotion"],
                          probabilities=r["probabilities"], uncertain=r["uncertain"], kind=kind)


def relabel(a: Analysis, label_set: str) -> Analysis:
    """The same analysis with probabilities carried into another label set (8 → 7, 4, valence)."""
    from ser.emotion.labels import get_label_set, map_probabilities

    labels = list(get_label_set(label_set).labels)

    def conv(s: EmotionSegment) -> EmotionSegment:
        p = map_probabilities(s.probabilities, label_set)
        order = sorted(p, key=p.get, reverse=True)
        margin = p[order[0]] - (p[order[1]] if len(order) > 1 else 0.0)
        thr = a.provenance.get("model", {}).get("uncertain_margin", 0.0)
        return EmotionSegment(s.start_s, s.end_s, s.speaker, order[0], {k: round(v, 6) for k, v in p.items()},
                              margin < thr, s.kind)

    from ser.transcription.attach import with_emotion

    prov = {**a.provenance, "label_set": label_set}
    segments = [conv(s) for s in a.segments]
    return Analysis(a.name, a.duration_s, labels, list(a.turns), segments, [conv(s) for s in a.windows], prov,
                    words=list(a.words), utterances=[with_emotion(u, segments) for u in a.utterances])
