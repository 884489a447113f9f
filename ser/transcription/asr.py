"""Speech to words, offline: faster-whisper (CTranslate2) on the shipped Whisper-base.

The model lives in ``models/whisper-base`` (int8 safetensors, see :mod:`ser.transcription.ct2`);
it is rebuilt in memory and decoded by faster-whisper with word timestamps. faster-whisper's
own VAD is off: the analysis passes the speech regions its diarization found
(:func:`speech_regions`), which are decoded end to end (silence is never sent to the decoder,
where Whisper invents text) and the words' times mapped back to the recording.

    t = load_transcriber()
    words, info = t.transcribe(y, 16_000, regions=[(0.4, 12.9)], language=None)

Settings (measured in ``bench/transcript.py``, docs/transcript.md): greedy decoding
(``beam_size=1``), a temperature fallback of one greedy re-decode per step, no conditioning on
the previous window's text (it can repeat a hallucination), CPU int8 / CUDA float16, the
language detected from the first window's encoder output, which then decodes it (one encoder
pass instead of two). Threads: CTranslate2 fixes its thread count when a model is built, so
one instance is kept per thread count that :mod:`ser.threads` hands out.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ser.errors import AudioError, ConfigError

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "whisper-base"
SR = 16_000
BEAM_SIZE = 1
#: temperature fallback when a window's decoding looks wrong (repetition, low log-probability):
#: one greedy re-decode per step (best_of 1), not faster-whisper's five samples per step
TEMPERATURES = (0.0, 0.4, 0.8)
#: a recording needing more 30-s windows than this is decoded by the batched pipeline
SEQUENTIAL_MAX_WINDOWS = 3
#: a long recording goes to the decoder this many windows (8 minutes of speech) at a time: a
#: multiple of BATCH_SIZE, so the batches are the ones the whole recording would have made
GROUP_WINDOWS = 16
BATCH_SIZE = 2
WINDOW_S = 30.0
#: speech regions closer than this are decoded as one (Whisper reads a sentence across a short pause)
BRIDGE_S = 2.0
PAD_S = 0.2

_LOCK = threading.Lock()
_CACHE: dict[tuple, "Transcriber"] = {}


@dataclass(frozen=True)
class WordTiming:
    start_s: float
    end_s: float
    text: str
    probability: float
    segment: int  # index of the decoder segment (a sentence or so) it came from


def available(folder: str | Path | None = None) -> bool:
    folder = Path(folder or MODEL_DIR)
    return (folder / "meta.json").is_file()


def missing_message(folder: str | Path | None = None) -> str:
    folder = Path(folder or MODEL_DIR)
    return (f"The transcription model is not in {folder}. It ships with the project (models/whisper-base); "
            "restore it with `git checkout models/whisper-base`, or rebuild it with "
            "`python scripts/convert_whisper.py --asr models/whisper-base`. Everything else works without it.")


def check_language(language: str | None) -> str | None:
    """``language`` as a Whisper code (None: detect), or a clear ConfigError before any work."""
    if language in (None, "", "auto"):
        return None
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    lang = str(language).lower()
    if lang not in _LANGUAGE_CODES:
        raise ConfigError(f"Unknown transcript language {language!r}; use a Whisper language code "
                          f"such as en, de, fr, es, am (or leave it out to detect it).")
    return lang


def describe(folder: str | Path | None = None, device: str = "auto", threads: int = 1) -> dict:
    """What a transcript's provenance records about the model and how it runs."""
    import json

    folder = Path(folder or MODEL_DIR)
    dev = _device(device)
    meta = json.loads((folder / "meta.json").read_text())
    return {"model": "whisper-base (OpenAI, MIT) via faster-whisper/CTranslate2",
            "path": str(folder), "sha256": meta["sha256"][meta["shards"][0]][:16],
            "device": dev, "compute_type": "float16" if dev == "cuda" else "int8", "threads": int(threads),
            "beam_size": BEAM_SIZE}


def _device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if str(device).startswith("cuda") else "cpu"


def load_transcriber(folder: str | Path | None = None, device: str = "auto", threads: int | None = None) -> "Transcriber":
    """The transcriber for ``folder`` (default: the shipped model), cached per device and thread
    count. ``threads``: CTranslate2's intra-op threads (default: torch's count for this thread,
    which :func:`ser.threads.job_threads` sets per analysis)."""
    folder = Path(folder or MODEL_DIR)
    if not available(folder):
        raise ConfigError(missing_message(folder))
    dev = _device(device)
    if not threads:  # torch only when asked for its count: the transcriber's child never imports it (~450 MB)
        import torch

        threads = torch.get_num_threads()
    n = max(1, int(threads))
    key = (str(folder.resolve()), dev, n)
    with _LOCK:
        t = _CACHE.get(key)
        if t is None:
            t = _CACHE[key] = Transcriber(folder, dev, n)
    return t


class Transcriber:
    """One CTranslate2 Whisper; :meth:`transcribe` is safe to call from several threads (each
    call holds the model's lock: CTranslate2 runs one request at a time per model anyway)."""

    def __init__(self, folder: Path, device: str, threads: int):
        from faster_whisper import WhisperModel

        from ser.transcription.ct2 import model_files

        self.folder, self.device, self.threads = folder, device, threads
        self.compute_type = "float16" if device == "cuda" else "int8"
        try:
            files = model_files(folder)
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"The transcription model in {folder} could not be read ({exc}). "
                              + missing_message(folder)) from exc
        self.model = WhisperModel(str(folder), device=device, compute_type=self.compute_type,
                                  cpu_threads=threads, files=files)
        self.languages = set(self.model.supported_languages)
        self._lock = threading.Lock()
        self._batched = None

    def describe(self) -> dict:
        return describe(self.folder, self.device, self.threads)

    def transcribe(self, y: np.ndarray, sr: int, regions: list[tuple[float, float]] | None = None,
                   language: str | None = None) -> tuple[list[WordTiming], dict]:
        """Words with their times in the recording, and ``{"language", "language_probability"}``.
        ``regions``: (start, end) seconds to decode (default: all of it)."""
        return transcribe_pieces(self.decode_piece, y, sr, regions, language)

    def decode_piece(self, y: np.ndarray, chunks: list[tuple[float, float]], lang: str | None,
                     batched: bool) -> tuple[list[tuple], str, float | None]:
        """Decode one piece of compacted speech (its 30-s ``chunks`` in piece time): the words
        as ``(segment, start, end, text, probability)``, the language and, where detected, its
        probability. ``batched``: the long-recording path (:meth:`_decode_batched`)."""
        with self._lock:
            if batched:
                words, language, probability = self._decode_batched(y, chunks, lang)
            else:
                words, language, probability = self._decode(y, lang)
        return ([(k, float(w.start), float(w.end), w.word, float(w.probability)) for k, w in words],
                language, probability)

    def _decode_batched(self, y: np.ndarray, chunks: list[tuple[float, float]],
                        lang: str | None) -> tuple[list[tuple[int, Any]], str, float | None]:
        """faster-whisper's batched pipeline over ``chunks`` (each at most 30 s, one encoder pass
        each, BATCH_SIZE windows decoded at once; no timestamp tokens, words aligned afterwards):
        on a 10-minute meeting 55 s instead of 100 s for the sequential decoding on 2 cores."""
        from faster_whisper import BatchedInferencePipeline

        if self._batched is None:
            self._batched = BatchedInferencePipeline(self.model)
        segments, info = self._batched.transcribe(
            y, language=lang, beam_size=BEAM_SIZE, word_timestamps=True, vad_filter=False,
            clip_timestamps=[{"start": a, "end": b} for a, b in chunks], batch_size=BATCH_SIZE,
            without_timestamps=True, temperature=0.0, condition_on_previous_text=False)
        words = [(k, w) for k, seg in enumerate(segments) for w in (seg.words or [])]
        return words, info.language, None if lang else round(float(info.language_probability), 3)

    def _decode(self, y: np.ndarray, lang: str | None) -> tuple[list[tuple[int, Any]], str, float | None]:
        """faster-whisper's transcribe on ``y``, except that the language is detected from the
        encoder output of the first 30-s window, which then decodes that window too (faster-whisper
        encodes it twice: once to detect, once to decode; one encoder pass is ~1 s on 2 cores)."""
        import dataclasses

        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import TranscriptionOptions, get_suppressed_tokens

        m = self.model
        features = m.feature_extractor(y)
        first = None
        probability = None
        if lang is None:
            content = features.shape[-1] - 1
            first = m.encode(pad_or_trim(features[:, : min(m.feature_extractor.nb_max_frames, content)]))
            token, prob = m.model.detect_language(first)[0][0]
            lang, probability = token[2:-2], round(float(prob), 3)
        tokenizer = Tokenizer(m.hf_tokenizer, m.model.is_multilingual, task="transcribe", language=lang)
        defaults = {f.name: f.default for f in dataclasses.fields(TranscriptionOptions)
                    if f.default is not dataclasses.MISSING}
        options = TranscriptionOptions(**{
            **defaults, "beam_size": BEAM_SIZE, "best_of": 1, "patience": 1.0, "length_penalty": 1.0,
            "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "log_prob_threshold": -1.0,
            "no_speech_threshold": 0.6, "compression_ratio_threshold": 2.4, "condition_on_previous_text": False,
            "prompt_reset_on_temperature": 0.5, "temperatures": list(TEMPERATURES), "initial_prompt": None,
            "prefix": None, "suppress_blank": True, "suppress_tokens": get_suppressed_tokens(tokenizer, [-1]),
            "without_timestamps": False, "max_initial_timestamp": 1.0, "word_timestamps": True,
            "prepend_punctuations": "\"'“¿([{-", "append_punctuations": "\"'.。,，!！?？:：”)]}、",
            "multilingual": False, "max_new_tokens": None, "clip_timestamps": "0",
            "hallucination_silence_threshold": None, "hotwords": None})
        segments = m.generate_segments(features, tokenizer, options, False, first)
        return [(k, w) for k, seg in enumerate(segments) for w in (seg.words or [])], lang, probability


def transcribe_pieces(decode, y: np.ndarray, sr: int, regions: list[tuple[float, float]] | None,
                      language: str | None) -> tuple[list[WordTiming], dict]:
    """The speech ``regions`` of ``y`` compacted end to end, cut into 30-s windows and sent to
    ``decode`` (:meth:`Transcriber.decode_piece`, here or in the child process) at most
    ``GROUP_WINDOWS`` windows at a time, so that a long recording's decoding holds minutes of
    audio and features, not all of them; the language found in the first piece decodes the
    rest. Returns the words in recording time and ``{"language", "language_probability"}``."""
    if sr != SR:
        raise AudioError(f"The transcriber takes {SR} Hz audio (got {sr} Hz).")
    lang = check_language(language)
    y = np.asarray(y, dtype=np.float32)
    duration = len(y) / SR
    regions = [(0.0, duration)] if regions is None else [(max(0.0, a), min(duration, b)) for a, b in regions]
    regions = [(a, b) for a, b in regions if b - a >= 0.1]
    if not regions:
        return [], {"language": lang, "language_probability": None}
    y, starts, offsets = _compact(y, regions)
    chunks = windows(y, [(0.0, len(y) / SR)])
    batched = len(chunks) > SEQUENTIAL_MAX_WINDOWS  # a long recording: its windows decoded in batches
    words: list[WordTiming] = []
    probability, first_segment = None, 0
    for g in range(0, len(chunks), GROUP_WINDOWS):
        part = chunks[g:g + GROUP_WINDOWS]
        a, b = part[0][0], part[-1][1]
        piece = y[int(round(a * SR)):int(round(b * SR))]
        got, found, p = decode(piece, [(round(c0 - a, 3), round(c1 - a, 3)) for c0, c1 in part], lang, batched)
        if g == 0:
            lang, probability = found, p
        for k, w0, w1, text, prob in got:
            if text.strip():
                words.append(WordTiming(*_restore(a + w0, a + w1, starts, offsets), text.strip(), round(prob, 4),
                                        first_segment + k))
        first_segment += 1 + max((k for k, *_ in got), default=-1)
    return words, {"language": lang, "language_probability": probability}


def windows(y: np.ndarray, regions: list[tuple[float, float]], max_s: float = WINDOW_S,
            join_gap_s: float = BRIDGE_S) -> list[tuple[float, float]]:
    """The regions packed into decoding windows of at most ``max_s``: neighbours closer than
    ``join_gap_s`` share a window while it fits; a longer region is cut at its quietest 50 ms
    between 2/3 and all of ``max_s`` (a pause, rarely a word). The analysis calls it on the
    compacted speech (one region), so it only cuts."""
    pieces: list[tuple[float, float]] = []
    hop = int(0.05 * SR)
    for a, b in regions:
        while b - a > max_s:
            lo, hi = int((a + max_s * 2 / 3) * SR), int((a + max_s - 0.1) * SR)
            seg = y[lo:hi]
            n = len(seg) // hop
            if n < 1:
                cut = a + max_s - 0.1
            else:
                energy = (seg[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
                cut = (lo + int(np.argmin(energy)) * hop + hop // 2) / SR
            pieces.append((a, round(cut, 3)))
            a = round(cut, 3)
        pieces.append((a, b))
    out: list[list[float]] = []
    for a, b in pieces:
        if out and a - out[-1][1] < join_gap_s and b - out[-1][0] <= max_s:
            out[-1][1] = b
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


class _Compacted:
    """The regions' audio end to end, assembled only where it is sliced: ``len()`` and
    ``[a:b]`` (a new array) of the compacted audio, without a copy of all of it — an hour's
    speech would be ~230 MB more in the analysing process while its child decodes."""

    def __init__(self, y: np.ndarray, bounds: list[tuple[int, int]]):
        self.y, self.bounds = y, bounds
        self.at = np.cumsum([0] + [j - i for i, j in bounds])

    def __len__(self) -> int:
        return int(self.at[-1])

    def __getitem__(self, s: slice | int) -> np.ndarray:
        if isinstance(s, (int, np.integer)):
            return self[int(s):int(s) + 1][0]
        start, stop, _ = s.indices(len(self))
        out = np.empty(max(0, stop - start), np.float32)
        k = max(0, int(np.searchsorted(self.at, start, side="right")) - 1)
        a = start
        while a < stop and k < len(self.bounds):
            i = self.bounds[k][0]
            lo, hi = a - self.at[k], min(stop, self.at[k + 1]) - self.at[k]
            out[a - start: a - start + hi - lo] = self.y[i + lo: i + hi]
            a, k = self.at[k] + hi, k + 1
        return out


def _compact(y: np.ndarray, regions: list[tuple[float, float]]) -> tuple[_Compacted, list[float], list[float]]:
    """The regions' audio end to end (Whisper encodes whole 30-s windows: decoding each region
    apart would encode a window per region), with each region's start in the recording and in
    the compacted audio. The compacted audio is assembled piece by piece (:class:`_Compacted`)."""
    bounds, starts, offsets, at = [], [], [], 0
    for a, b in regions:
        i, j = int(round(a * SR)), min(len(y), int(round(b * SR)))
        bounds.append((i, j))
        starts.append(i / SR)
        offsets.append(at / SR)
        at += j - i
    return _Compacted(np.asarray(y, dtype=np.float32), bounds), starts, offsets


def _restore(start: float, end: float, starts: list[float], offsets: list[float]) -> tuple[float, float]:
    """A word's times in the compacted audio → in the recording; a word that runs past its
    region's end (into the next region) ends with its region."""
    import bisect

    i = max(0, bisect.bisect_right(offsets, float(start)) - 1)
    j = max(i, bisect.bisect_left(offsets, float(end)) - 1)
    lo = starts[i] + float(start) - offsets[i]
    hi = starts[j] + float(end) - offsets[j]
    if j != i:
        hi = starts[i] + offsets[i + 1] - offsets[i]
    return round(lo, 3), round(max(lo, hi), 3)


def speech_regions(turns: list[Any], duration_s: float, *, bridge_s: float = BRIDGE_S,
                   pad_s: float = PAD_S) -> list[tuple[float, float]]:
    """The union of the speaker turns, padded by ``pad_s`` and with gaps under ``bridge_s``
    bridged: what the decoder reads (every speaker's speech, overlap included, no long silence)."""
    spans = sorted((max(0.0, t.start_s - pad_s), min(duration_s, t.end_s + pad_s)) for t in turns)
    out: list[list[float]] = []
    for a, b in spans:
        if out and a - out[-1][1] < bridge_s:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(round(a, 3), round(b, 3)) for a, b in out]
