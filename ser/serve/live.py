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

Every bound is explicit: a frame that waited more than ``max_queue_s`` for the running worker
is kept in the recording but its windows are not scored live (the meter stays current when the
machine cannot keep up; :attr:`LiveStats.skipped_s` counts it, and the saved session scores it
with the rest); frames that arrive while the worker is still starting wait for it, so a user who
presses Start at once loses nothing and the first updates come later. At most ``MAX_PENDING``
frames wait at all (more are dropped: :attr:`LiveStats.dropped_s`), and at most
``max_session_s`` of audio and timeline is kept for saving (scoring goes on past it;
:attr:`LiveStats.truncated` says so). Packets lost on the way (gaps in the WebRTC frames'
timestamps) become silence, so the recording stays in real time (:attr:`LiveStats.lost_s`).

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
from dataclasses import asdict
from typing import Any

import numpy as np

from ser import __version__
from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn
from ser.diarization.vad import load_vad
from ser.errors import AudioError, ConfigError
from ser.serve.live_engine import SR, LiveSettings, LiveStats, LiveUpdate, MAX_PENDING, SPEAKER, _Engine, MAX_GAP_S, _child, _end_process, _read_loop, frame_to_mono


class LiveScorer:
    """Scores a live stream off the caller's thread; see the module docstring.

    ``model``: an :class:`ser.emotion.model.EmotionModel` (16 kHz). ``worker``: "process" (a child
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
        # the worker's thread policy once it is ready (ser.threads.policy(): the environment and
        # torch's thread count in the worker process or thread); for tests and bug reports
        self.worker_policy: dict | None = None
        self._new_session()
        if worker == "process":
            self._start_process()

    # --- sessions -------------------------------------------------------------------------
    def _new_session(self) -> None:
        s = self.settings
        self._pending: collections.deque = collections.deque()  # thread worker: (x, sr, arrival)
        self._in_flight: collections.deque = collections.deque()  # process worker: arrival of each frame sent
        self._dropped_s = self._skipped_s = 0.0
        self._pushed_s = 0.0
        self._lost_s = 0.0  # gaps in the frames' timestamps (packets lost on the way), filled with silence
        self._next_pts_s: float | None = None
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
        """Queue a PyAV ``AudioFrame`` (what streamlit-webrtc hands its sink callback).

        Frames carry their RTP timestamp: where packets were lost on the way (a busy machine, a
        bad network) the gap is filled with silence, up to ``MAX_GAP_S``, so that the timeline and
        the kept recording stay in real time; :attr:`LiveStats.lost_s` counts it."""
        t = self.clock()
        y, sr = frame_to_mono(frame)
        gap = self._gap_before(frame, y.size / sr)
        if gap:
            self.push(np.zeros(round(gap * sr), np.float32), sr, arrived=t)
            with self._cond:
                self._lost_s += gap
        self.push(y, sr, arrived=t)

    def _gap_before(self, frame: Any, dur: float) -> float:
        """Seconds missing between the previous frame and this one, from their timestamps (0 when
        there are none, the first frame, or a jump that is no loss: backwards or over MAX_GAP_S)."""
        pts, base = getattr(frame, "pts", None), getattr(frame, "time_base", None)
        if pts is None or base is None:
            return 0.0
        start = float(pts * base)
        with self._cond:
            expected, self._next_pts_s = self._next_pts_s, start + dur
        if expected is None:
            return 0.0
        gap = start - expected
        return gap if dur / 2 < gap <= MAX_GAP_S else 0.0

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
        from ser.threads import job_threads, policy

        with job_threads(None):  # live windows are short: one torch thread, like the worker process
            if self._vad is None:
                self._vad = load_vad()
            self.worker_policy = policy()
            self._thread_loop()

    def _thread_loop(self) -> None:
        ready_at = self.clock()  # frames that came while the worker started are not "behind"
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
                    # fell behind (counted from when the worker was running): keep the audio, skip its
                    # windows, so the meter stays current
                    late = self.clock() - max(t, ready_at) > self.settings.max_queue_s
                    if late:
                        with self._cond:
                            self._skipped_s += x.size / sr
                    for u in engine.feed(x, sr, t, score=not late):
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
            self.worker_policy = msg[1]
            self._ready.set()
        elif kind == "update":
            u = msg[1]
            with self._cond:
                while self._in_flight and self._in_flight[0] <= u.arrived_at:
                    self._in_flight.popleft()
            self._deliver(u, msg[2])
        elif kind == "skipped":
            with self._cond:
                self._skipped_s += msg[1]
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
            dropped, skipped, pushed, lost = self._dropped_s, self._skipped_s, self._pushed_s, self._lost_s
        with self._lock:
            session = self._session
            return LiveStats(received_s=round(pushed, 3), dropped_s=round(dropped, 3),
                             skipped_s=round(skipped, 3), lost_s=round(lost, 3),
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
                     "dropped_s": st.dropped_s, "skipped_s": st.skipped_s, "lost_s": st.lost_s, "truncated": st.truncated, "worker_cpu_s": round(st.worker_cpu_s, 3),
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
