"""Live emotion from a microphone stream, scored off the caller's thread.

The dashboard's WebRTC frame callback (or any producer) hands each frame to
:meth:`LiveScorer.push` and returns at once. A worker then

1. turns frames into mono float32 and resamples them to 16 kHz with one streaming
   soxr resampler (no clicks at frame edges),
2. runs silero-vad over 32 ms chunks (its own model instance; state carries over),
3. every ``hop_s`` scores the last ``window_s`` of audio with the emotion model, or
   records "no speech" when the window holds less than ``min_speech_s`` of speech.

The worker is a child process by default (``worker="process"``): the dashboard's server
is one Python process whose other threads (page reruns, WebRTC) hold the GIL most of the
time, and a scoring thread there waits for it (measured: a median latency of 8 s with one
busy Python thread beside it, against 40 ms alone). ``worker="thread"`` runs the same
engine in a thread of this process (tests, notebooks, a CLI).

Every bound is explicit: a frame that waited more than ``max_queue_s`` for the worker is
dropped and counted (the meter stays current when the machine cannot keep up), at most
``MAX_PENDING`` frames wait at all, and at most ``max_session_s`` of audio and timeline is
kept for saving (scoring goes on past it; :attr:`LiveStats.truncated` says so).

Latency of an update = from the arrival of the frame that carried the window's last
sample to the update being ready for display (resampler hold-back, VAD, queueing and
the model included). ``bench/live_latency.py`` measures it.

    scorer = LiveScorer(load_model("default"))
    scorer.push(samples, 48_000)        # from any thread, cheap
    scorer.updates()                    # what the page draws
    scorer.stop()                       # score what is queued
    scorer.to_analysis("live")          # the session, for History and exports
    scorer.reset()                      # a new session (the worker stays warm)
    scorer.close()                      # end the worker
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from . import __version__
from .analysis import Analysis, EmotionSegment, SpeakerTurn
from .diarization import load_vad
from .errors import AudioError, ConfigError

SR = 16_000
VAD_CHUNK = 512  # silero-vad's chunk at 16 kHz (32 ms)
SPEAKER = "mic"
MAX_PENDING = 2000  # frames waiting for the worker (40 s of 20 ms frames), whatever their age


@dataclass(frozen=True)
class LiveSettings:
    window_s: float = 2.0  # audio scored per update
    hop_s: float = 0.5  # one update per hop
    first_s: float = 1.0  # the first update comes after this much audio (its window is what there is)
    vad_threshold: float = 0.5  # silero speech probability counted as speech
    min_speech_s: float = 0.5  # speech a window needs to be scored; otherwise "no speech"
    max_queue_s: float = 2.0  # a frame older than this when the worker gets to it is dropped
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
    dropped_s: float  # audio dropped because the worker fell behind by more than max_queue_s
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

    def feed(self, x: np.ndarray, sr: int, arrived: float) -> list[LiveUpdate]:
        import soxr

        if sr != self.in_sr:
            self.in_sr = sr
            self.resampler = None if sr == SR else soxr.ResampleStream(sr, SR, 1, dtype="float32", quality="HQ")
        self.in_pos_s += x.size / sr
        self.arrivals.append((self.in_pos_s, arrived))
        y = x if self.resampler is None else self.resampler.resample_chunk(x)
        out: list[LiveUpdate] = []
        for i in range(0, y.size, self.hop):  # a big block in pieces, so each window is still in the ring
            out += self._append(y[i:i + self.hop])
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

    def _append(self, y: np.ndarray) -> list[LiveUpdate]:
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
        from .models import load_model

        model = load_model(model_path, device=device)
        vad = load_vad()
        torch.set_num_threads(1)
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which shows it)
        outq.put(("error", f"{type(exc).__name__}: {exc}"))
        return
    engine = _Engine(model, settings, vad, time.perf_counter)
    outq.put(("ready", None))
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
                if time.perf_counter() - arrived > engine.settings.max_queue_s:  # fell behind: drop, say so
                    outq.put(("dropped", x.size / sr, arrived))
                    continue
                for u in engine.feed(x, sr, arrived):
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


class LiveScorer:
    """Scores a live stream off the caller's thread; see the module docstring.

    ``model``: an :class:`ser.models.EmotionModel` (16 kHz). ``worker``: "process" (a child
    process that loads the model from ``model.path``; the default) or "thread". ``vad``: a
    silero-vad model for the thread worker (default: a fresh one). ``clock``: seconds,
    monotonic and shared by processes (``time.perf_counter`` on Linux).
    """

    def __init__(self, model: Any, settings: LiveSettings | None = None, *, worker: str = "process",
                 vad: Any = None, clock: Callable[[], float] = time.perf_counter):
        if getattr(model.card, "sample_rate", SR) != SR:
            raise ConfigError(f"Live scoring runs at {SR} Hz; this model expects {model.card.sample_rate} Hz.")
        if worker not in ("process", "thread"):
            raise ConfigError(f'worker must be "process" or "thread", got {worker!r}.')
        if worker == "process" and model.path is None:
            raise ConfigError("A process worker loads the model from its folder; this model has no path.")
        self.model, self.settings, self.clock, self.worker = model, settings or LiveSettings(), clock, worker
        self._cond = threading.Condition()  # guards the producer side and the session state below
        self._lock = threading.Lock()  # guards what readers see
        self._vad = vad
        self._closed = False
        self._proc = self._inq = self._outq = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._new_session()
        if worker == "process":
            self._start_process()

    # --- sessions -------------------------------------------------------------------------
    def _new_session(self) -> None:
        s = self.settings
        self._pending: collections.deque = collections.deque()  # thread worker: (x, sr, arrival)
        self._in_flight: collections.deque = collections.deque()  # process worker: arrival of each frame sent
        self._dropped_s = 0.0
        self._pushed_s = 0.0
        self._stopping = False
        self._stopped = threading.Event()
        self._updates: collections.deque[LiveUpdate] = collections.deque(maxlen=int(s.max_session_s / s.hop_s) + 1)
        self._latest: LiveUpdate | None = None
        self._n_updates = self._n_scored = self._n_gated = 0
        self._cpu_s = 0.0
        self._error: str | None = None
        self._session: tuple | None = None  # (int16 audio, vad probs, input rate, truncated) after stop

    def reset(self, settings: LiveSettings | None = None) -> None:
        """Start a new session (after :meth:`stop`), with new settings if given; the worker stays warm."""
        self.stop()
        with self._cond:
            if settings is not None:
                self.settings = settings
            self._new_session()
            if self.worker == "process":
                self._inq.put(("reset", self.settings))
            else:
                self._thread = None

    def close(self) -> None:
        """End the worker (idempotent)."""
        self.stop()
        self._closed = True
        if self._proc is not None:
            try:
                self._inq.put(("quit",))
            except (OSError, ValueError):
                pass
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.terminate()
            self._inq.cancel_join_thread()  # frames nobody will read must not hold up the interpreter's exit

    def __enter__(self) -> LiveScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- producer side: cheap, any thread ------------------------------------------------
    def push(self, samples: np.ndarray, sr: int, *, arrived: float | None = None) -> None:
        """Queue one frame of mono audio (float in [-1, 1], or int16) at rate ``sr``."""
        if sr <= 0:
            raise AudioError(f"A frame's sample rate must be positive, got {sr}.")
        x = np.asarray(samples)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        if not x.size:
            return
        t = self.clock() if arrived is None else arrived
        dur = x.size / sr
        with self._cond:
            if self._stopping or self._closed:
                return
            self._pushed_s += dur
            if self.worker == "process":
                if len(self._in_flight) >= MAX_PENDING:  # the worker is stuck or still loading
                    self._dropped_s += dur
                    return
                self._in_flight.append(t)
                self._inq.put(("frame", x, int(sr), t))
                return
            self._pending.append((x, int(sr), t))
            while len(self._pending) > MAX_PENDING:
                old, old_sr, _ = self._pending.popleft()
                self._dropped_s += old.size / old_sr
            if self._thread is None:
                self._thread = threading.Thread(target=self._run_thread, name="ser-live", daemon=True)
                self._thread.start()
            self._cond.notify()

    def push_frame(self, frame: Any) -> None:
        """Queue a PyAV ``AudioFrame`` (what streamlit-webrtc hands its sink callback)."""
        t = self.clock()
        y, sr = frame_to_mono(frame)
        self.push(y, sr, arrived=t)

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until the worker has loaded its models; True when it is ready, False when it
        failed (:attr:`LiveStats.error` says why) or ``timeout`` passed."""
        return self._ready.wait(timeout) and self.stats().error is None

    def stop(self, timeout: float = 30.0) -> None:
        """Score what is queued, then end the session (the audio and timeline stay readable)."""
        with self._cond:
            if self._stopping:
                already = True
            else:
                already, self._stopping = False, True
            self._cond.notify()
            thread = self._thread
        if already:
            self._stopped.wait(timeout)
            return
        if self.worker == "process":
            if self._proc is not None and self._proc.is_alive():
                self._inq.put(("flush",))
                self._stopped.wait(timeout)
            else:
                self._stopped.set()
        else:
            if thread is not None:
                thread.join(timeout)
            self._stopped.set()

    @property
    def running(self) -> bool:
        if self.worker == "process":
            return self._proc is not None and self._proc.is_alive() and not self._stopping
        return self._thread is not None and self._thread.is_alive()

    # --- workers --------------------------------------------------------------------------
    def _deliver(self, u: LiveUpdate, cpu_s: float) -> None:
        u = dataclasses.replace(u, ready_at=self.clock())  # ready here, where the page reads it
        with self._lock:
            self._latest = u
            if u.end_s <= self.settings.max_session_s:
                self._updates.append(u)
            self._n_updates += 1
            if u.no_speech:
                self._n_gated += 1
            else:
                self._n_scored += 1
            self._cpu_s = cpu_s

    def _run_thread(self) -> None:
        if self._vad is None:
            self._vad = load_vad()
        self._ready.set()
        engine = _Engine(self.model, self.settings, self._vad, self.clock)
        cpu0 = time.thread_time()
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stopping:
                        self._cond.wait(0.5)
                    items = list(self._pending)
                    self._pending.clear()
                    done = self._stopping and not items
                if done:
                    for u in engine.finish():
                        self._deliver(u, time.thread_time() - cpu0)
                    break
                for x, sr, t in items:
                    if self.clock() - t > self.settings.max_queue_s:  # fell behind: keep the meter current
                        with self._cond:
                            self._dropped_s += x.size / sr
                        continue
                    for u in engine.feed(x, sr, t):
                        self._deliver(u, time.thread_time() - cpu0)
        except Exception as exc:  # noqa: BLE001  (a bug or a broken model: stop and say so, never hang the page)
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._cpu_s = time.thread_time() - cpu0
                self._session = (engine.audio_int16(), list(engine.vad_probs), engine.in_sr, engine.truncated)

    def _start_process(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._inq, self._outq = ctx.Queue(), ctx.Queue()
        self._proc = ctx.Process(target=_child, args=(str(self.model.path), str(self.model.device), self.settings,
                                                      self._inq, self._outq), name="ser-live-worker", daemon=True)
        self._proc.start()
        # the reader holds only a weak reference, so a scorer dropped without close() is collected
        # and its finalizer ends the worker (a browser tab that went away)
        threading.Thread(target=_read_loop, args=(weakref.ref(self), self._outq, self._proc),
                         name="ser-live-reader", daemon=True).start()
        weakref.finalize(self, _end_process, self._proc, self._inq)

    def _on_message(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            self._ready.set()
        elif kind == "update":
            u = msg[1]
            with self._cond:
                while self._in_flight and self._in_flight[0] <= u.arrived_at:
                    self._in_flight.popleft()
            self._deliver(u, msg[2])
        elif kind == "dropped":
            with self._cond:
                self._dropped_s += msg[1]
                while self._in_flight and self._in_flight[0] <= msg[2]:
                    self._in_flight.popleft()
        elif kind == "session":
            _, raw, probs, in_sr, truncated, cpu_s = msg
            with self._lock:
                self._session = (np.frombuffer(raw, dtype=np.int16), probs, in_sr, truncated)
                self._cpu_s = cpu_s
            with self._cond:
                self._in_flight.clear()
            self._stopped.set()
        elif kind == "error":
            with self._lock:
                self._error = msg[1]
            self._ready.set()
            self._stopped.set()

    # --- readers: any thread --------------------------------------------------------------
    def updates(self) -> list[LiveUpdate]:
        """The kept timeline, oldest first."""
        with self._lock:
            return list(self._updates)

    @property
    def latest(self) -> LiveUpdate | None:
        with self._lock:
            return self._latest

    def stats(self) -> LiveStats:
        with self._cond:
            dropped, pushed = self._dropped_s, self._pushed_s
        with self._lock:
            session = self._session
            return LiveStats(received_s=round(pushed, 3), dropped_s=round(dropped, 3),
                             updates=self._n_updates, scored=self._n_scored, no_speech=self._n_gated,
                             worker_cpu_s=self._cpu_s, running=self.running,
                             truncated=bool(session and session[3]) or pushed > self.settings.max_session_s,
                             error=self._error)

    def _kept(self) -> tuple:
        if self._session is None:
            if self._error:
                raise ConfigError(f"The live worker failed ({self._error}); nothing of this session was kept.")
            raise ConfigError("The session's audio is available after stop().")
        return self._session

    def audio(self) -> np.ndarray:
        """The kept session audio after :meth:`stop`, mono float32 at 16 kHz (at most ``max_session_s``)."""
        with self._lock:
            raw = self._kept()[0]
        return raw.astype(np.float32) / 32767.0

    def wav_bytes(self) -> bytes:
        import io

        import soundfile as sf

        buf = io.BytesIO()
        sf.write(buf, self.audio(), SR, format="WAV", subtype="PCM_16")
        return buf.getvalue()

    def to_analysis(self, name: str = "live session") -> Analysis:
        """The kept session as an :class:`Analysis`: speech runs (silero) as one speaker's turns,
        each turn's emotion the overlap-weighted mean of its windows, and every scored window."""
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        y = self.audio()
        with self._lock:
            _, probs, in_sr, _ = self._kept()
            updates = list(self._updates)
        s = self.settings
        ts = get_speech_timestamps_from_probs(probs, sampling_rate=SR, threshold=s.vad_threshold,
                                              min_speech_duration_ms=250, min_silence_duration_ms=300,
                                              speech_pad_ms=100, audio_length_samples=len(y)) if probs else []
        turns = [SpeakerTurn(round(t["start"] / SR, 3), round(t["end"] / SR, 3), SPEAKER) for t in ts]
        scored = [u for u in updates if not u.no_speech]
        labels = list(self.model.labels)
        windows = [EmotionSegment(u.start_s, u.end_s, SPEAKER, u.emotion, u.probabilities, u.uncertain, "window")
                   for u in scored]
        segments, unscored = [], []
        for i, t in enumerate(turns):
            w = np.array([max(0.0, min(t.end_s, u.end_s) - max(t.start_s, u.start_s)) for u in scored])
            if not w.size or w.sum() <= 0:
                unscored.append(i)
                continue
            p = sum(wi * np.array([u.probabilities[k] for k in labels]) for wi, u in zip(w, scored)) / w.sum()
            r = self.model.result(p)
            segments.append(EmotionSegment(t.start_s, t.end_s, SPEAKER, r["emotion"], r["probabilities"],
                                           r["uncertain"], "turn"))
        st = self.stats()
        card = self.model.card
        provenance = {
            "ser_version": __version__,
            "source": "live microphone",
            "model": {"id": self.model.id, "name": card.name, "architecture": card.architecture,
                      "label_set": card.label_set, "temperature": card.temperature,
                      "uncertain_margin": card.uncertain_margin,
                      "path": str(self.model.path) if self.model.path else None, "device": str(self.model.device)},
            "diarizer": {"backend": "live (silero-vad, one speaker)", "vad_threshold": s.vad_threshold},
            "live": {**asdict(s), "worker": self.worker, "updates": st.updates,
                     "latency_ms": self.latency_summary(), "no_speech_windows": st.no_speech,
                     "dropped_s": st.dropped_s, "truncated": st.truncated, "worker_cpu_s": round(st.worker_cpu_s, 3),
                     "input_sample_rate": in_sr},
            "window_s": s.window_s, "hop_s": s.hop_s,
            "audio": {"sha256": hashlib.sha256(y.tobytes()).hexdigest(), "duration_s": round(len(y) / SR, 3),
                      "source_sample_rate": in_sr, "source_channels": 1, "codec": "webrtc"},
            "no_speech": not turns,
            "unscored_turns": unscored,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return Analysis(name=name, duration_s=round(len(y) / SR, 3), labels=labels, turns=turns,
                        segments=segments, windows=windows, provenance=provenance)

    def latency_summary(self) -> dict:
        """Median, p95 and max latency of the kept updates, in ms (empty before the first)."""
        lat = np.array([u.latency_s for u in self.updates()]) * 1000
        if not lat.size:
            return {}
        return {"n": int(lat.size), "median": round(float(np.median(lat)), 1),
                "p95": round(float(np.percentile(lat, 95)), 1), "max": round(float(lat.max()), 1)}

    def timeline_rows(self) -> list[dict]:
        """Every kept update as a flat row (no-speech windows included), for CSV export."""
        labels = list(self.model.labels)
        return [{"start_s": u.start_s, "end_s": u.end_s, "speech_s": u.speech_s, "level_db": u.level_db,
                 "emotion": u.emotion or "no speech", "uncertain": u.uncertain,
                 **{k: (u.probabilities[k] if u.probabilities else None) for k in labels},
                 "latency_ms": round(u.latency_s * 1000, 1)} for u in self.updates()]



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


def ice_servers(value: Any = None) -> list[dict]:
    """The ICE (STUN/TURN) servers for WebRTC: ``[]`` unless configured, so that nothing reaches
    out to a public STUN server; on localhost and a LAN the browser and the server connect
    through their host addresses alone.

    ``value``: a list of ``{"urls", "username", "credential"}`` or JSON text of one; ``None``
    reads ``$SER_ICE_SERVERS``. The dashboard passes ``[webrtc] ice_servers`` from
    ``.streamlit/secrets.toml`` when it is set.
    """
    import json
    import os

    if value is None:
        value = os.environ.get("SER_ICE_SERVERS", "").strip() or []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"The ICE server setting is not valid JSON ({exc}); expected a list such as "
                              '[{"urls": "turn:turn.example.org:3478", "username": "u", "credential": "p"}].') from exc
    if isinstance(value, dict):
        value = [value]
    out = []
    for server in value if isinstance(value, (list, tuple)) else [None]:
        if not hasattr(server, "get") or not server.get("urls"):
            raise ConfigError(f"Each ICE server needs 'urls' (stun:… or turn:…), got {server!r}.")
        out.append({k: server[k] for k in ("urls", "username", "credential") if server.get(k) is not None})
    return out


__all__ = ["LiveScorer", "LiveSettings", "LiveStats", "LiveUpdate", "frame_to_mono", "ice_servers", "load_vad"]
