"""A seeded fuzzer for the audio door, run in child processes so a crash is counted, not fatal.

Every container the door accepts is encoded from a generated voice-like signal
(:func:`seed_files`), then mutated the way damaged uploads and hostile files are
(:func:`mutate`): bit flips, byte overwrites with boundary values, truncation, header
fields set to extreme values, huge declared sizes, splices of two files, inserted,
deleted, duplicated and zeroed regions. :func:`run` feeds the cases to worker processes
that call :func:`ser.audio.load_audio`; each case has a wall-clock limit, its peak
memory is measured, and anything it prints on stderr is caught.

Outcomes per case: ``ok`` (decoded and valid), ``refused`` (a :class:`~ser.errors.SERError`
with its message), ``exception`` (any other exception: a bug), ``crash`` (the worker
died: a signal or an abort), ``hang`` (over the time limit) and, orthogonally,
``stderr`` (Python printed something on stderr for the case: a traceback from a
callback or destructor, a warning) and ``library_messages`` (a C library wrote its own
diagnostics to file descriptor 2, as libmpg123 does when it resyncs a damaged MP3: not a
failure, but counted).

    from ser.audio.fuzz import run
    report = run(n_cases=3000, seed=0, workers=2)
    report.counts          # {"ok": ..., "refused": ..., "exception": 0, "crash": 0, "hang": 0, ...}

Case ``i`` of seed ``s`` is always the same bytes (:func:`case`), so a finding is
reproduced from its ``(seed, index)`` alone.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: channel layouts by channel count, for encoders that need one (FFmpeg names)
LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}

#: soundfile (libsndfile) formats: extension -> (format, default subtype)
_SF_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
               "mp3": ("MP3", "MPEG_LAYER_III"), "aiff": ("AIFF", "PCM_16"), "au": ("AU", "PCM_16"),
               "caf": ("CAF", "PCM_16"), "w64": ("W64", "PCM_16")}
#: PyAV (FFmpeg) formats: extension -> (container, codec)
_AV_FORMATS = {"m4a": ("ipod", "aac"), "aac": ("adts", "aac"), "webm": ("webm", "libopus"),
               "opus": ("ogg", "libopus"),
               # not advertised, but FFmpeg decodes them, so they pass the door and are fuzzed too
               "caf-alac": ("caf", "alac"), "ac3": ("ac3", "ac3"), "mp2": ("mp2", "mp2"),
               "mka": ("matroska", "pcm_s16le"), "amr": ("amr", "libopencore_amrnb"), "wv": ("wv", "wavpack"),
               "avi": ("avi", "mp3"), "mov": ("mov", "pcm_s24le"), "tta": ("tta", "tta")}
#: rates some encoders insist on
_AV_RATES = {"ac3": 48_000, "libopencore_amrnb": 8_000}
#: what the encoders can write, per extension: the most channels
MAX_CHANNELS = {**{f: 8 for f in (*_SF_FORMATS, *_AV_FORMATS)}, "mp3": 2, "mp2": 2, "amr": 1, "avi": 2}


def voice(duration_s: float = 1.0, sr: int = 16_000, f0: float = 150.0, seed: int = 0) -> np.ndarray:
    """A voiced-like signal (harmonics under a syllable-rate envelope, a little noise): (n,) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * sr)) / sr
    y = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))
    y = y + 0.01 * rng.standard_normal(len(t))
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def encode(y: np.ndarray, sr: int, fmt: str, *, channels: int = 1, subtype: str | None = None,
           channel_gains: bool = False) -> bytes:
    """Encode mono ``y`` as ``fmt`` with ``channels`` channels (copies of ``y``, or with
    ``channel_gains`` scaled from 1 down to 0.5 across channels); returns the bytes."""
    data = np.repeat(y[:, None], channels, axis=1) if channels > 1 else y
    if channels > 1 and channel_gains:
        data = data * np.linspace(1.0, 0.5, channels, dtype=np.float32)[None, :]
    if fmt in _SF_FORMATS:
        import soundfile as sf

        buf = io.BytesIO()
        container, default = _SF_FORMATS[fmt]
        sf.write(buf, data, sr, format=container, subtype=subtype or default)
        return buf.getvalue()
    if fmt in _AV_FORMATS:
        return _encode_pyav(data if data.ndim == 2 else data[:, None], sr, fmt, channels)
    raise ValueError(f"no encoder for {fmt!r}; choose from {', '.join([*_SF_FORMATS, *_AV_FORMATS])}")


def _encode_pyav(data: np.ndarray, sr: int, fmt: str, channels: int) -> bytes:
    """(n, channels) float -> bytes through PyAV, with packed frames (any channel count)."""
    import av

    container, codec = _AV_FORMATS[fmt]
    rate = _AV_RATES.get(codec, sr)
    if codec == "libopus" and sr not in (8000, 12000, 16000, 24000, 48000):
        rate = 48_000
    # libopus has no 2.1 mapping; FC-first 3.0 is one it knows
    layout = "3.0" if codec == "libopus" and channels == 3 else LAYOUTS[channels]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data, dtype=np.float32).reshape(1, -1),
                                           format="flt", layout=layout)
        frame.sample_rate = sr
        resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def seed_files() -> dict[str, bytes]:
    """Valid files in every container the door accepts, at several rates and channel counts."""
    y16, y44, y8 = voice(1.2, 16_000), voice(1.2, 44_100, seed=1), voice(1.2, 8_000, seed=2)
    out: dict[str, bytes] = {}
    for sub in ("PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE", "ULAW"):
        out[f"wav-{sub.lower()}"] = encode(y16, 16_000, "wav", subtype=sub)
    out["wav-float-8ch"] = encode(y16, 16_000, "wav", channels=8, subtype="FLOAT")
    out["wav-44k-stereo"] = encode(y44, 44_100, "wav", channels=2)
    out["flac"] = encode(y44, 44_100, "flac", channels=2)
    out["flac-24-6ch"] = encode(y16, 16_000, "flac", channels=6, subtype="PCM_24")
    out["ogg-vorbis"] = encode(y44, 44_100, "ogg", channels=2)
    out["mp3"] = encode(y44, 44_100, "mp3", channels=2)
    out["mp3-8k"] = encode(y8, 8_000, "mp3")
    for fmt in ("aiff", "au", "caf", "w64"):
        out[fmt] = encode(y16, 16_000, fmt)
    out["m4a"] = encode(y44, 44_100, "m4a", channels=2)
    out["m4a-7.1"] = encode(y16, 16_000, "m4a", channels=8)
    out["aac-adts"] = encode(y16, 16_000, "aac")
    out["webm-opus"] = encode(y16, 16_000, "webm", channels=2)
    out["webm-opus-6ch"] = encode(y16, 16_000, "webm", channels=6)
    out["ogg-opus"] = encode(y16, 16_000, "opus")
    for fmt in ("caf-alac", "ac3", "mp2", "mka", "amr", "wv", "avi", "mov", "tta"):
        out[fmt] = encode(y16, 16_000, fmt)
    return out


# --- mutations -----------------------------------------------------------------------
_BOUNDARY8 = (0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)
_BOUNDARY_INTS = (0, 1, 2, 3, 7, 8, 9, 16, 255, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                  0xFFFFFFF0, 0xFFFFFFFF, 8000, 16000, 44100, 192000, 384000)


def _header_span(data: bytes) -> int:
    return min(len(data), 512)


def _bitflip(rng, data, _others):
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 17))):
        i = int(rng.integers(len(b)))
        b[i] ^= 1 << int(rng.integers(8))
    return bytes(b), "bit flips"


def _overwrite(rng, data, _others):
    b = bytearray(data)
    span = _header_span(b) if rng.random() < 0.7 else len(b)
    for _ in range(int(rng.integers(1, 9))):
        b[int(rng.integers(span))] = int(rng.choice(_BOUNDARY8))
    return bytes(b), "boundary bytes"


def _header_field(rng, data, _others):
    b = bytearray(data)
    width = int(rng.choice([2, 4]))
    span = max(1, _header_span(b) - width)
    pos = int(rng.integers(span))
    value = int(rng.choice(_BOUNDARY_INTS)) & ((1 << (8 * width)) - 1)
    b[pos:pos + width] = value.to_bytes(width, "little" if rng.random() < 0.5 else "big")
    return bytes(b), f"header field @{pos}={value:#x}"


def _huge_size(rng, data, _others):
    """Every 32-bit little- or big-endian integer in the header that equals a plausible size
    (close to the file length) is set to a huge value."""
    b = bytearray(data)
    n = len(b)
    hits = []
    for pos in range(0, min(n, 4096) - 3):
        for order in ("little", "big"):
            v = int.from_bytes(b[pos:pos + 4], order)
            if n // 4 <= v <= n + 64:
                hits.append((pos, order))
    if not hits:
        return _header_field(rng, data, _others)
    pos, order = hits[int(rng.integers(len(hits)))]
    big = int(rng.choice([0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF, n * 1000]))
    b[pos:pos + 4] = (big & 0xFFFFFFFF).to_bytes(4, order)
    return bytes(b), f"declared size @{pos} -> {big:#x}"


def _truncate(rng, data, _others):
    cut = int(rng.integers(1, len(data)))
    return data[:cut], f"truncated at {cut}"


def _splice(rng, data, others):
    other = others[int(rng.integers(len(others)))]
    a, c = int(rng.integers(1, len(data))), int(rng.integers(0, len(other)))
    return data[:a] + other[c:], f"splice at {a} with another file from {c}"


def _insert(rng, data, _others):
    pos, k = int(rng.integers(len(data))), int(rng.integers(1, 4097))
    return data[:pos] + rng.integers(0, 256, k, dtype=np.uint8).tobytes() + data[pos:], f"insert {k} at {pos}"


def _delete(rng, data, _others):
    pos = int(rng.integers(len(data)))
    k = int(rng.integers(1, max(2, min(4096, len(data) - pos))))
    return data[:pos] + data[pos + k:], f"delete {k} at {pos}"


def _duplicate(rng, data, _others):
    a = int(rng.integers(len(data)))
    k = int(rng.integers(1, max(2, min(8192, len(data) - a))))
    reps = int(rng.integers(1, 9))
    return data[:a] + data[a:a + k] * reps + data[a:], f"duplicate {k} at {a} x{reps}"


def _zero(rng, data, _others):
    b = bytearray(data)
    a = int(rng.integers(len(b)))
    k = int(rng.integers(1, max(2, min(4096, len(b) - a))))
    b[a:a + k] = bytes(k)
    return bytes(b), f"zero {k} at {a}"


MUTATORS: dict[str, Callable] = {"bitflip": _bitflip, "overwrite": _overwrite, "header_field": _header_field,
                                 "huge_size": _huge_size, "truncate": _truncate, "splice": _splice,
                                 "insert": _insert, "delete": _delete, "duplicate": _duplicate, "zero": _zero}


def mutate(data: bytes, rng: np.random.Generator, others: list[bytes]) -> tuple[bytes, str]:
    """One to three stacked mutations of ``data``; returns the bytes and what was done."""
    names = list(MUTATORS)
    done = []
    for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
        name = names[int(rng.integers(len(names)))]
        if len(data) < 2:
            break
        data, what = MUTATORS[name](rng, data, others)
        done.append(what)
    return data, "; ".join(done)


def case(seed: int, index: int, seeds: dict[str, bytes]) -> tuple[str, bytes]:
    """Case ``index`` of the run seeded ``seed``: ``(description, bytes)``, always the same."""
    rng = np.random.default_rng([seed, index])
    names = sorted(seeds)
    base = names[index % len(names)]
    data, what = mutate(seeds[base], rng, [seeds[n] for n in names])
    return f"{base}: {what}", data


# --- running ---------------------------------------------------------------------------
@dataclass
class Finding:
    index: int
    outcome: str
    description: str
    detail: str


@dataclass
class Report:
    seed: int
    n_cases: int
    counts: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    peak_rss_mb_max: float = 0.0
    seconds_max: float = 0.0
    wall_s: float = 0.0
    refusals: dict[str, int] = field(default_factory=dict)  # first words of each refusal message

    @property
    def failures(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("exception", "crash", "hang", "stderr", "memory"))

    def to_dict(self) -> dict:
        return {"seed": self.seed, "cases": self.n_cases, "counts": self.counts, "failures": self.failures,
                "peak_rss_mb_max_per_case": round(self.peak_rss_mb_max, 1),
                "case_seconds_max": round(self.seconds_max, 3), "wall_s": round(self.wall_s, 1),
                "refusal_kinds": dict(sorted(self.refusals.items(), key=lambda kv: -kv[1])),
                "findings": [f.__dict__ for f in self.findings[:50]]}


def _rss_peak_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _reset_rss_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset the peak resident set size (Linux)
    except OSError:
        pass


def _worker(conn, stderr_path: str) -> None:  # runs in the child
    import io
    import sys

    from ser.audio.decode import load_audio
    from ser.errors import SERError

    # C libraries (libmpg123's resync notes) write to file descriptor 2; Python (tracebacks,
    # "Exception ignored", warnings) writes to sys.stderr: the two are counted apart
    clib = open(stderr_path, "w+b", buffering=0)
    os.dup2(clib.fileno(), 2)
    pyerr = io.StringIO()
    sys.stderr = pyerr
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        index, data = msg
        clib.seek(0)
        clib.truncate()
        pyerr.seek(0)
        pyerr.truncate()
        _reset_rss_peak()
        t0 = time.perf_counter()
        try:
            audio = load_audio(data, name=f"case{index}")
            assert np.isfinite(audio.y).all(), "non-finite samples passed the door"
            outcome, detail = "ok", f"{audio.codec} {audio.duration_s:.2f}s {audio.source_channels}ch"
        except SERError as exc:
            outcome, detail = "refused", str(exc)
        except BaseException as exc:  # noqa: BLE001 - the point is to count what escapes
            outcome, detail = "exception", f"{type(exc).__name__}: {exc}"[:500]
        seconds = time.perf_counter() - t0
        import gc
        gc.collect()  # destructors run now, so what they print is this case's
        clib.seek(0)
        library = clib.read().decode("utf-8", "replace")
        conn.send((index, outcome, detail, pyerr.getvalue()[-2000:], library[-500:], _rss_peak_mb(), seconds))


class _Slot:
    """One worker process and its pipe; restarted after a crash or a hang."""

    def __init__(self, ctx, tmpdir: str, k: int):
        self.ctx, self.path = ctx, os.path.join(tmpdir, f"stderr{k}.txt")
        self.proc = None
        self.start()

    def start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.path), daemon=True)
        self.proc.start()
        child.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.join(5)
        self.conn.close()

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        if self.proc is not None:
            self.proc.join(5)
        self.kill()


def run(n_cases: int = 3000, seed: int = 0, *, workers: int = 2, timeout_s: float = 20.0,
        max_case_rss_mb: float = 1024.0, start: int = 0, log: Callable[[str], None] | None = None) -> Report:
    """Run cases ``start .. start + n_cases`` of ``seed`` through ``load_audio`` in ``workers``
    child processes; returns the counts and the first findings."""
    import tempfile

    seeds = seed_files()
    report = Report(seed=seed, n_cases=n_cases)
    lock = threading.Lock()
    todo = iter(range(start, start + n_cases))
    t_start = time.perf_counter()
    ctx = mp.get_context("spawn")

    def record(index: int, outcome: str, description: str, detail: str) -> None:
        report.counts[outcome] = report.counts.get(outcome, 0) + 1
        if outcome not in ("ok", "refused"):
            report.findings.append(Finding(index, outcome, description, detail[:1000]))
            if log:
                log(f"case {index} ({description}): {outcome}: {detail[:300]}")

    def drive(slot: _Slot) -> None:
        while True:
            with lock:
                index = next(todo, None)
            if index is None:
                return
            description, data = case(seed, index, seeds)
            try:
                slot.conn.send((index, data))
                ready = slot.conn.poll(timeout_s)
                reply = slot.conn.recv() if ready else None
            except (EOFError, OSError):
                ready, reply = True, None
            with lock:
                if reply is None:
                    if not ready:
                        record(index, "hang", description, f"no answer within {timeout_s:g} s")
                    else:
                        slot.proc.join(5)
                        record(index, "crash", description, f"worker exit code {slot.proc.exitcode}")
                    slot.kill()
                    slot.start()
                    continue
                _, outcome, detail, printed, library, rss, seconds = reply
                record(index, outcome, description, detail)
                if library.strip():
                    report.counts["library_messages"] = report.counts.get("library_messages", 0) + 1
                if outcome == "refused":
                    kind = " ".join(detail.replace(f"case{index}", "").split()[:4])
                    report.refusals[kind] = report.refusals.get(kind, 0) + 1
                if printed.strip():
                    record(index, "stderr", description, printed)
                if rss > max_case_rss_mb:
                    record(index, "memory", description, f"peak RSS {rss:.0f} MB")
                report.peak_rss_mb_max = max(report.peak_rss_mb_max, rss)
                report.seconds_max = max(report.seconds_max, seconds)

    with tempfile.TemporaryDirectory() as tmp:
        slots = [_Slot(ctx, tmp, k) for k in range(max(1, workers))]
        threads = [threading.Thread(target=drive, args=(s,), daemon=True) for s in slots]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in slots:
            s.stop()
    report.wall_s = time.perf_counter() - t_start
    return report
