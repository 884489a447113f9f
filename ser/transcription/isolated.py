"""The transcriber in a child process, so that CTranslate2 never runs in an analysing process.

Why: once CTranslate2 has run on two threads in a process (it brings its own copy of GNU
OpenMP), torch's later analyses in that process are 1.6–1.9× slower for good — the 30-s AMI
excerpt 1.3–1.5 s → 2.0–2.7 s, diarization 1.0 → 1.7–2.0 s (``bench/transcript.py after``;
docs/transcript.md). A server (dashboard, API, batch worker) transcribes and analyses again and
again, so the transcript runs in one long-lived child per process instead, started on first use
(about 2 s: imports and the model) and kept; requests take turns (CTranslate2 runs one at a
time anyway). ``SER_TRANSCRIBE_IN_PROCESS=1`` runs it in the calling process instead.

    words, info = transcribe(y, 16_000, regions, language=None, threads=2)
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np

from ser.errors import AudioError, ConfigError, SERError

_LOCK = threading.Lock()
_CHILD: dict[str, Any] = {}  # "proc", "conn"


def in_process() -> bool:
    return os.environ.get("SER_TRANSCRIBE_IN_PROCESS", "0") == "1"


def _serve(conn: Any) -> None:
    """The child: (folder, device, threads, piece, chunks, language, batched) in — one piece
    of compacted speech, :func:`ser.transcription.asr.transcribe_pieces` — ("ok", words,
    language, probability) or ("error", kind, message) out, until the pipe closes."""
    import ser  # noqa: F401  (the thread environment, before numpy starts its pools)
    from ser.transcription.asr import load_transcriber

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        folder, device, threads, piece, chunks, language, batched = msg
        try:
            words, found, probability = load_transcriber(folder, device, threads).decode_piece(
                piece, chunks, language, batched)
            conn.send(("ok", words, found, probability))
        except Exception as exc:  # noqa: BLE001  (sent to the parent, which raises it there)
            conn.send(("error", type(exc).__name__, str(exc)))


def _child() -> tuple[Any, Any]:
    proc, conn = _CHILD.get("proc"), _CHILD.get("conn")
    if proc is not None and proc.is_alive():
        return proc, conn
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(child,), name="ser-transcriber", daemon=True)
    proc.start()
    child.close()
    if not _CHILD.get("atexit"):
        import atexit

        atexit.register(stop)
    _CHILD.update(proc=proc, conn=parent, atexit=True)
    return proc, parent


def transcribe(y: np.ndarray, sr: int, regions: list[tuple[float, float]] | None, language: str | None, *,
               folder: str | None = None, device: str = "cpu", threads: int = 1) -> tuple[list, dict]:
    """:meth:`ser.transcription.asr.Transcriber.transcribe`, run in the child process (or here,
    with ``SER_TRANSCRIBE_IN_PROCESS=1``). A child that died is restarted once."""
    if in_process():
        from ser.transcription.asr import load_transcriber

        return load_transcriber(folder, device, threads).transcribe(y, sr, regions, language)
    from ser.threads import trim_heap
    from ser.transcription.asr import transcribe_pieces

    trim_heap()  # the analysis's freed pages back before the child decodes (1540 -> 1238 MB at 60 min)
    with _LOCK:  # one recording at a time: its pieces go in order
        return transcribe_pieces(lambda piece, chunks, lang, batched: _ask(
            (folder, device, int(threads), np.ascontiguousarray(piece, dtype=np.float32), chunks, lang, batched)),
            y, sr, regions, language)


def _ask(msg: tuple) -> tuple[list, str, float | None]:
    """One piece to the child and its answer; a child that died is restarted once."""
    for attempt in range(2):
        proc, conn = _child()
        try:
            conn.send(msg)
            reply = conn.recv()
            break
        except (EOFError, OSError, BrokenPipeError) as exc:
            proc.join(timeout=1)
            _CHILD.pop("proc", None), _CHILD.pop("conn", None)
            if attempt:
                raise SERError(f"The transcriber process stopped (exit code {proc.exitcode}); "
                               "the analysis without a transcript still works.") from exc
    if reply[0] == "ok":
        return reply[1], reply[2], reply[3]
    kind, message = reply[1], reply[2]
    raise {"ConfigError": ConfigError, "AudioError": AudioError}.get(kind, SERError)(
        message if kind in ("ConfigError", "AudioError") else f"The transcriber failed: {kind}: {message}")


def stop() -> None:
    """End the child (tests; a server's exit ends it anyway: it is a daemon)."""
    with _LOCK:
        proc, conn = _CHILD.pop("proc", None), _CHILD.pop("conn", None)
    if proc is None:
        return
    try:
        conn.send(None)
    except (OSError, BrokenPipeError):
        pass
    proc.join(timeout=5)
    if proc.is_alive():
        proc.kill()
