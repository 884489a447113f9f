"""The live scorer's engine: settings, the update and stats types, and the worker that
resamples, runs voice activity and scores windows — in a thread, or in the child process
that :class:`ser.serve.live.LiveScorer` starts by default.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser.diarization.vad import load_vad
from ser.errors import AudioError, ConfigError


SR = 16_000
VAD_CHUNK = 512  # silero-vad's chunk at 16 kHz (32 ms)
SPEAKER = "mic"
MAX_PENDING = 2000  # frames waiting for the worker (40 s of 20 ms frames), whatever their age
MAX_GAP_S = 2.0  # a gap in frame timestamps up to this long is lost audio (filled with silence); longer is a restart


@dataclass(frozen=True)
class LiveSettings:
    window_s: float = 2.0  # audio scored per update
    hop_s: float = 0.5  # one update per hop
    first_s: float = 1.0  # the first update comes after this much audio (its window is what there is)
    vad_threshold: float = 0.5  # silero speech probability counted as speech
    min_speech_s: float = 0.5  # speech a window needs to be scored; otherwise "no speech"
    max_queue_s: float = 2.0  # a frame older than this when the worker gets to it is kept but not scored live
    max_session_s: float = 900.0  # audio and timeline kept for saving (15 min)

    def __post_init__(self):
        if not 0.5 <= self.window_s <= 10.0:
            raise ConfigError(f"window_s must be between 0.5 and 10 s, got {self.window_s}.")
        if not 0.1 <= self.hop_s <= self.window_s:
            raise ConfigError(f"hop_s must be between 0.1 s and window_s ({self.window_s} s), got {self.hop_s}.")
        if self.first_s < 0.5:
            raise ConfigError(f"first_s must be at least 0.5 s, got {self.first_s}.")
        if not 0.0 < self.vad_threshold < 1.0:
            raise ConfigError(f"vad_threshold must be between 0 and 1, got {self.vad_threshold}.")
        if not 0.0 <= self.min_speech_s <= self.window_s:
            raise ConfigError(f"min_speech_s must be between 0 and window_s, got {self.min_speech_s}.")
        if self.max_queue_s <= 0 or self.max_session_s <= self.window_s:
            raise ConfigError("max_queue_s must be positive and max_session_s longer than the window.")


@dataclass(frozen=True)
class LiveUpdate:
    """One point of the live timeline: the window [start_s, end_s] of the stream."""

    start_s: float
    end_s: float
    speech_s: float  # speech silero found in the window
    level_db: float  # RMS level of the window, dBFS
    emotion: str | None  # None: no speech (nothing was guessed)
    probabilities: dict[str, float] | None
    uncertain: bool
    arrived_at: float  # the scorer's clock when the frame with the window's last sample arrived
    ready_at: float  # the scorer's clock when the update was ready for display

    @property
    def no_speech(self) -> bool:
        return self.emotion is None

    @property
    def latency_s(self) -> float:
        return self.ready_at - self.arrived_at


@dataclass(frozen=True)
class LiveStats:
    received_s: float  # audio pushed so far (s)
    dropped_s: float  # audio dropped because over MAX_PENDING frames waited (the worker stuck or still loading)
    skipped_s: float  # audio not scored live because the worker fell behind by more than max_queue_s (still
    #                   kept in the recording, and scored with the rest when the session is saved)
    lost_s: float  # audio lost before it arrived (gaps in the frames' timestamps), filled with silence
    updates: int
    scored: int
    no_speech: int
    worker_cpu_s: float  # CPU time of the worker (the child process, or the worker thread)
    running: bool
    truncated: bool  # past max_session_s: no more audio/timeline kept for saving
    error: str | None  # what stopped the worker, if it failed


def frame_to_mono(frame: Any) -> tuple[np.ndarray, int]:
    """A PyAV ``AudioFrame`` (packed or planar, int or float) -> (mono float32 in [-1, 1], rate)."""
    x = frame.to_ndarray()
    channels = len(frame.layout.channels)
    fmt = frame.format
    if fmt.is_planar:  # (channels, n)
        x = x.reshape(channels, -1).T
    else:  # (1, n * channels), interleaved
        x = x.reshape(-1, channels)
    if x.dtype.kind == "i":
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max + 1)
    elif x.dtype.kind == "u":
        x = (x.astype(np.float32) - 128.0) / 128.0
    x = x.astype(np.float32, copy=False)
    return (x.mean(axis=1) if channels > 1 else x[:, 0]), int(frame.sample_rate)


class _Engine:
    """The scoring itself, single-threaded: frames in, :class:`LiveUpdate` out."""

    def __init__(self, model: Any, settings: LiveSettings, vad: Any, clock: Callable[[], float]):
        self.model, self.settings, self.vad, self.clock = model, settings, vad, clock
        vad.reset_states()
        s = settings
        self.win, self.hop = round(s.window_s * SR), round(s.hop_s * SR)
        self.max_samples = int(s.max_session_s * SR)
        self.recorded: list[np.ndarray] = []  # int16 chunks at 16 kHz, up to max_session_s
        self.recorded_n = 0
        self.vad_probs: list[float] = []  # one per VAD chunk, up to max_session_s
        self.truncated = False
        self.in_sr: int | None = None
        self.resampler: Any = None
        self.in_pos_s = 0.0  # input time received so far (s)
        self.arrivals: collections.deque = collections.deque(maxlen=4096)  # (input end time s, arrival)
        self.ring = np.zeros(self.win + 2 * self.hop, np.float32)  # the last samples at 16 kHz
        self.total = 0  # 16 kHz samples produced so far
        self.vad_rest = np.zeros(0, np.float32)
        self.vad_n = 0  # VAD chunks scored so far
        self.vad_recent: collections.deque = collections.deque(maxlen=(self.win + 2 * self.hop) // VAD_CHUNK + 8)
        self.next_end = min(self.win, round(s.first_s * SR))

    def feed(self, x: np.ndarray, sr: int, arrived: float, score: bool = True) -> list[LiveUpdate]:
        """Take one frame; the updates whose windows it completes. ``score=False`` (the worker fell
        behind): keep the audio and its VAD, but skip the windows that end in it."""
        import soxr

        if sr != self.in_sr:
            self.in_sr = sr
            self.resampler = None if sr == SR else soxr.ResampleStream(sr, SR, 1, dtype="float32", quality="HQ")
        self.in_pos_s += x.size / sr
        self.arrivals.append((self.in_pos_s, arrived))
        y = x if self.resampler is None else self.resampler.resample_chunk(x)
        out: list[LiveUpdate] = []
        for i in range(0, y.size, self.hop):  # a big block in pieces, so each window is still in the ring
            out += self._append(y[i:i + self.hop], score)
        return out

    def finish(self) -> list[LiveUpdate]:
        """The end of the stream: release what the resampler still holds (its filter delay).
        The engine takes no frames after this; a new session gets a new engine."""
        if self.resampler is None:
            return []
        tail = self.resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        out: list[LiveUpdate] = []
        for i in range(0, tail.size, self.hop):
            out += self._append(tail[i:i + self.hop])
        return out

    def _append(self, y: np.ndarray, score: bool = True) -> list[LiveUpdate]:
        # 16-bit, as it is kept: what was scored is exactly what is saved (and can be re-scored offline)
        q = np.round(np.clip(y, -1.0, 1.0) * 32767.0).astype(np.int16)
        y = q.astype(np.float32) / 32767.0
        n = y.size
        self.ring = np.roll(self.ring, -n)
        self.ring[-n:] = y
        self.total += n
        keep = min(n, self.max_samples - self.recorded_n)
        if keep > 0:
            self.recorded.append(q[:keep])
            self.recorded_n += keep
        if keep < n:
            self.truncated = True
        self._run_vad(y)
        out = []
        while self.total >= self.next_end:
            if score:
                out.append(self._score(self.next_end))
            self.next_end += self.hop
        return out

    def _run_vad(self, y: np.ndarray) -> None:
        import torch

        buf = np.concatenate([self.vad_rest, y]) if self.vad_rest.size else y
        n = buf.size // VAD_CHUNK
        if n:
            chunks = torch.from_numpy(np.ascontiguousarray(buf[: n * VAD_CHUNK]).reshape(n, VAD_CHUNK))
            with torch.inference_mode():
                for c in chunks:
                    p = float(self.vad(c, SR).item())
                    self.vad_recent.append((self.vad_n, p))
                    if self.vad_n * VAD_CHUNK < self.max_samples:
                        self.vad_probs.append(p)
                    self.vad_n += 1
        self.vad_rest = buf[n * VAD_CHUNK:].copy()

    def _arrival_of(self, t_s: float) -> float:
        """Arrival time of the frame that carried input time ``t_s``."""
        for end_s, arrived in self.arrivals:
            if end_s >= t_s - 1e-9:
                return arrived
        return self.arrivals[-1][1]

    def _score(self, end: int) -> LiveUpdate:
        s = self.settings
        stop = self.ring.size - (self.total - end)
        start = max(0, end - self.win)  # the first updates see less than a full window
        y = self.ring[stop - (end - start): stop]
        first, last = start // VAD_CHUNK, -(-end // VAD_CHUNK)
        speech = sum(VAD_CHUNK for i, p in self.vad_recent if first <= i < last and p >= s.vad_threshold) / SR
        rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) if y.size else 0.0
        emotion, probs, uncertain = None, None, False
        if speech >= s.min_speech_s:
            try:
                p = self.model.predict_proba(y, SR, name="the live window")
            except AudioError:  # too little sound after trimming: treat as no speech
                p = None
            if p is not None:
                r = self.model.result(np.asarray(p, dtype=np.float64))
                emotion, probs, uncertain = r["emotion"], r["probabilities"], bool(r["uncertain"])
        return LiveUpdate(start_s=round(start / SR, 3), end_s=round(end / SR, 3), speech_s=round(speech, 3),
                          level_db=round(20.0 * float(np.log10(max(rms, 1e-10))), 1), emotion=emotion,
                          probabilities=probs, uncertain=uncertain, arrived_at=self._arrival_of(end / SR),
                          ready_at=self.clock())

    def audio_int16(self) -> np.ndarray:
        return np.concatenate(self.recorded) if self.recorded else np.zeros(0, np.int16)


def _child(model_path: str, device: str, settings: LiveSettings, inq: Any, outq: Any) -> None:
    """The worker process: load the model and a VAD once, then serve sessions until told to quit."""
    import multiprocessing as mp
    import queue as queue_mod

    import torch

    torch.set_num_threads(1)
    try:
        from ser.emotion.model import load_model

        model = load_model(model_path, device=device)
        vad = load_vad()
        torch.set_num_threads(1)
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which shows it)
        outq.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    engine = _Engine(model, settings, vad, time.perf_counter)
    from ser.threads import policy

    outq.put(("ready", policy()))
    ready_at = time.perf_counter()  # frames that came while this process started are not "behind"
    cpu0 = time.process_time()
    parent = mp.parent_process()
    while True:
        try:
            msg = inq.get(timeout=1.0)
        except queue_mod.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        kind = msg[0]
        try:
            if kind == "frame":
                _, x, sr, arrived = msg
                # fell behind: keep the audio, skip its windows (the meter stays current)
                late = time.perf_counter() - max(arrived, ready_at) > engine.settings.max_queue_s
                if late:
                    outq.put(("skipped", x.size / sr, arrived))
                for u in engine.feed(x, sr, arrived, score=not late):
                    outq.put(("update", u, time.process_time() - cpu0))
            elif kind == "flush":  # the end of a session: everything it kept
                for u in engine.finish():
                    outq.put(("update", u, time.process_time() - cpu0))
                outq.put(("session", engine.audio_int16().tobytes(), list(engine.vad_probs), engine.in_sr,
                          engine.truncated, time.process_time() - cpu0))
            elif kind == "reset":
                engine = _Engine(model, msg[1], vad, time.perf_counter)
                cpu0 = time.process_time()
            elif kind == "quit":
                return
        except Exception as exc:  # noqa: BLE001  (reported to the parent, which shows it)
            outq.put(("error", f"{type(exc).__name__}: {exc}"))



def _read_loop(ref: Any, outq: Any, proc: Any) -> None:
    """The parent's reader of the worker's messages (see LiveScorer._on_message)."""
    import queue as queue_mod

    while True:
        try:
            msg = outq.get(timeout=1.0)
        except queue_mod.Empty:
            me = ref()
            if me is None:
                return
            if not proc.is_alive():
                me._inq.cancel_join_thread()  # the pipe may be full of frames the dead worker never read
                with me._lock:
                    if not me._closed and me._error is None:
                        me._error = "the live worker process ended unexpectedly"
                me._ready.set()
                me._stopped.set()
                return
            del me
            continue
        except (OSError, EOFError, ValueError):
            return
        me = ref()
        if me is None:
            return
        me._on_message(msg)
        del me


def _end_process(proc: Any, inq: Any) -> None:
    """Finalizer: a scorer that was dropped without close() still ends its worker."""
    if proc.is_alive():
        try:
            inq.put(("quit",))
        except (OSError, ValueError):
            pass
        proc.join(2)
        if proc.is_alive():
            proc.terminate()
    inq.cancel_join_thread()
