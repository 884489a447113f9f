"""Unattended analysis of many files: resumable, optionally parallel, one summary CSV.

``analyze_file(path, out_dir, options)`` is pure in the sense that matters for scaling
out: its result depends only on its arguments, it writes only its own output files
(atomically: a temporary name, then a rename), and it returns a summary row. A
distributed engine can map it over a corpus; ``run_batch`` maps it over a list of files
on one machine.

A file counts as done when its JSON result exists and records the same options; a
rerun after a crash or kill skips those, so every file is analysed exactly once.

Crash safety: results are written as ``.NAME.partPID`` and renamed; a run starts by
removing the temporaries of processes that no longer exist (a SIGKILL leaves one). Worker
processes (``jobs`` > 1) die with their parent (Linux parent-death signal, plus a watchdog
that checks the parent every 0.2 s) and check that the parent is alive before each
rename, so nothing is written after the main process is killed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ser.errors import SERError

SUMMARY = "summary.csv"
SUMMARY_FIELDS = ["file", "status", "duration_s", "speakers", "turns", "unscored_turns", "dominant_emotions",
                  "voices", "outputs", "error", "seconds"]


@dataclass(frozen=True)
class BatchOptions:
    formats: tuple[str, ...] = ("json", "csv")
    model: str = "default"
    device: str = "cpu"
    diarizer: str = "builtin"
    pyannote: str | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    window_s: float = 2.0
    hop_s: float = 1.0
    label_set: str | None = None
    adapt: str = "none"  # ser.emotion.adapt: none, recording, speaker
    threads: int = 0
    transcribe: bool = False  # ser.transcription: words with speakers and emotion
    language: str | None = None  # the transcript's language (a Whisper code; None: detected)
    voices: tuple = ()  # known voices: ((name, embedding as a tuple of floats), ...) (ser.serve.voices)

    def key(self) -> dict:
        """What decides a result (not how fast it is computed)."""
        d = asdict(self)
        d.pop("threads")
        d.pop("device")
        d["formats"] = sorted(d["formats"])
        d["voices"] = _voices_key(self.voices)
        return d

    def voice_list(self) -> list:
        from ser.diarization.voices import Voice, unit

        return [Voice(name, unit(np.asarray(vec, np.float32))) for name, vec in self.voices]


def _voices_key(voices: tuple) -> str | None:
    """The library as a result depends on it: its fingerprint (names, embeddings, thresholds)."""
    if not voices:
        return None
    from ser.diarization.voices import Voice, fingerprint, unit

    return fingerprint([Voice(n, unit(np.asarray(v, np.float32))) for n, v in voices])


def voices_option(voices: list) -> tuple:
    """``BatchOptions.voices`` from ``ser.diarization.voices.Voice`` objects (picklable, for workers)."""
    return tuple((v.name, tuple(float(x) for x in v.vector)) for v in voices)


@dataclass
class _Loaded:
    model: object = None
    diarizer: object = None
    opts: dict = field(default_factory=dict)


_STATE = _Loaded()  # per process: the model and diarizer are loaded once


def _resources(opts: BatchOptions):
    from ser.diarization.backends import get_diarizer
    from ser.emotion.model import load_model

    k = opts.key()
    if _STATE.model is None or _STATE.opts != k:
        _STATE.model = load_model(opts.model, device=opts.device)
        _STATE.diarizer = (get_diarizer("pyannote", source=opts.pyannote, device=opts.device)
                           if opts.diarizer == "pyannote" else get_diarizer("builtin"))
        _STATE.opts = k
    return _STATE.model, _STATE.diarizer


def prepare(opts: BatchOptions):
    """Load the model and diarizer for ``opts`` once in this process (errors surface before any file)."""
    loaded = _resources(opts)
    if opts.transcribe:  # a missing transcription model or an unknown language fails before any file
        from ser.errors import ConfigError
        from ser.transcription.asr import available, check_language, missing_message

        if not available():
            raise ConfigError(missing_message())
        check_language(opts.language)
    if opts.adapt != "none":
        from ser.emotion.adapt import ANALYZE_MODES, check_mode, model_adapt_head

        model_adapt_head(loaded[0], check_mode(opts.adapt, ANALYZE_MODES))
    return loaded


def _summary_fields(d: dict) -> dict:
    """The summary-row fields of an Analysis JSON."""
    prov = d.get("provenance", {})
    return {"status": "no speech" if prov.get("no_speech") else "ok", "duration_s": d["duration_s"],
            "speakers": len(d["speakers"]), "turns": len(d["turns"]),
            "unscored_turns": len(prov.get("unscored_turns", [])),
            "dominant_emotions": ";".join(f"{s}={v['dominant_emotion']}" for s, v in d["speakers"].items()),
            "voices": ";".join(sorted({m["voice"] for m in (prov.get("voices") or {}).get("speakers", [])
                                       if m.get("status") in ("named", "merged")}))}


#: longest output stem in bytes: room for ".textgrid", the ".partPID" of a temporary and a leading dot
MAX_STEM_BYTES = 200


def output_stem(path: Path, root: Path | None) -> str:
    """Output name: the path relative to the input folder (subfolders joined by "__"), without suffix.

    Always one plain file name inside the output folder: no separators, ``..``, control
    characters or leading dots survive, and a name too long for the file system is cut and
    made unique with a hash of the full one.
    """
    stem = path.stem
    if root is not None:
        try:
            stem = "__".join(path.relative_to(root).with_suffix("").parts)
        except ValueError:
            pass
    return safe_stem(stem)


def safe_stem(stem: str) -> str:
    """``stem`` as one plain file name of at most MAX_STEM_BYTES bytes (see output_stem)."""
    import hashlib

    clean = "".join("_" if (ord(c) < 32 or c in "/\\\x7f") else c for c in stem).lstrip(".") or "audio"
    raw = clean.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_STEM_BYTES:
        digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        clean = f"{raw[:MAX_STEM_BYTES - 13].decode('utf-8', 'ignore')}-{digest}"
    return clean


def _expected_diarizer(opts: BatchOptions) -> dict | None:
    """The builtin diarizer's settings as an Analysis JSON records them (None: not checked —
    a pyannote pipeline's are only known once it is loaded)."""
    if opts.diarizer != "builtin":
        return None
    from ser.diarization.backends import BuiltinDiarizer
    return json.loads(json.dumps(BuiltinDiarizer().settings()))


def _expected_model(opts: BatchOptions) -> str:
    """The emotion model's fingerprint (card + weights) as an Analysis JSON records it."""
    from ser.errors import ModelError
    from ser.emotion.folder import model_fingerprint, resolve_model_dir
    try:
        return model_fingerprint(resolve_model_dir(opts.model))
    except (ModelError, OSError):
        return "missing"  # never equal to a recorded one: the file is analysed again (and the error reported)


def is_done(json_path: Path, opts: BatchOptions) -> bool:
    """Whether ``json_path`` holds a finished analysis made with these options by this version
    of ser, of the builtin diarizer and of the emotion model (card and weights: a resumed batch
    after an upgrade or a retraining re-analyses, instead of keeping results an older diarizer or
    model made)."""
    if not json_path.is_file():
        return False
    try:
        d = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    prov = d.get("provenance", {}) if isinstance(d, dict) else {}
    if prov.get("batch_options") != opts.key():
        return False
    from ser import __version__
    if prov.get("ser_version") != __version__:
        return False
    if (prov.get("model") or {}).get("fingerprint") != _expected_model(opts):
        return False
    expected = _expected_diarizer(opts)
    return expected is None or prov.get("diarizer") == expected


def analyze_file(path: str | Path, out_dir: str | Path, opts: BatchOptions, *, stem: str | None = None,
                 progress: Callable[[str, float], None] | None = None, audio=None) -> dict:
    """Analyse one file and write its exports; returns its summary row (never raises for bad audio).

    ``audio``: the file already decoded through the audio door (an :class:`~ser.audio.Audio`),
    as a distributed engine's decode stage hands it over; else the file is read here."""
    from ser.analysis.exports import EXTENSIONS, WRITERS, write_eaf
    from ser.analysis.pipeline import analyze, relabel

    path, out = Path(path), Path(out_dir)
    stem = stem or path.stem
    row = {"file": str(path), "status": "ok", "error": "", "outputs": ""}
    t0 = time.perf_counter()
    try:
        model, dia = _resources(opts)
        a = analyze(path if audio is None else audio, diarizer=dia, model=model, num_speakers=opts.num_speakers,
                    min_speakers=opts.min_speakers, max_speakers=opts.max_speakers, window_s=opts.window_s,
                    hop_s=opts.hop_s, progress=progress, name=path.name, cache=None, adapt=opts.adapt,
                    threads=opts.threads or None,  # 0: ser.threads' policy
                    transcribe=opts.transcribe, language=opts.language, voices=opts.voice_list() or None)
        if opts.label_set and opts.label_set != model.card.label_set:
            a = relabel(a, opts.label_set)
        a.provenance["batch_options"] = opts.key()
        out.mkdir(parents=True, exist_ok=True)
        written = []
        # the JSON last: its presence marks the file as done
        for fmt in sorted(set(opts.formats) | {"json"}, key=lambda f: f == "json"):
            final = out / f"{stem}.{EXTENSIONS[fmt]}"
            tmp = out / f".{stem}.{EXTENSIONS[fmt]}.part{os.getpid()}"
            if fmt == "eaf":  # ELAN opens it with the recording: linked relative to the output folder
                write_eaf(a, tmp, media=os.path.relpath(path.resolve(), out.resolve()))
            else:
                WRITERS[fmt](a, tmp)
            if _orphaned():  # the run was killed while this worker computed: write nothing more
                tmp.unlink(missing_ok=True)
                os._exit(1)
            os.replace(tmp, final)
            written.append(final.name)
        row.update(_summary_fields(a.to_dict()), outputs=";".join(written))
    except SERError as exc:
        row.update(status="error", error=str(exc))
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def _worker(args: tuple) -> dict:
    path, out_dir, opts, stem = args
    return analyze_file(path, out_dir, opts, stem=stem)


_PARENT: int | None = None  # in a worker: the pid of the run that started it


def _orphaned() -> bool:
    return _PARENT is not None and os.getppid() != _PARENT


def _bind_to_parent(parent: int) -> None:
    """Worker initializer: die with the main process, never outlive it."""
    global _PARENT
    _PARENT = parent
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: the kernel kills us when the parent dies
    except (OSError, AttributeError):  # not Linux: the watchdog alone
        pass
    if _orphaned():  # the parent died before the signal was armed
        os._exit(1)

    def watchdog() -> None:
        while not _orphaned():
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watchdog, name="ser-batch-watchdog", daemon=True).start()


def _pid_alive(pid: int) -> bool:
    """Whether another process with this pid runs (ours cannot be writing: the run has not started)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


_PART = re.compile(r"^\..+\.part(\d+)$")


def clean_stale_parts(out: Path) -> list[Path]:
    """Remove temporaries (``.NAME.partPID``) left in ``out`` by processes that no longer run."""
    removed = []
    for p in out.glob(".*.part*"):
        m = _PART.match(p.name)
        if not m or not p.is_file():
            continue
        if not _pid_alive(int(m.group(1))):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def run_batch(files: Sequence[Path], out_dir: str | Path, opts: BatchOptions, *, jobs: int = 1,
              roots: dict[Path, Path] | None = None, log: Callable[[str], None] | None = None,
              show_progress: bool = True) -> dict:
    """Analyse ``files`` (skipping those done with the same options) and write ``summary.csv``.

    ``jobs`` > 1 runs files in parallel processes, each loading the model once (torch on
    one thread per process). Returns {"done", "skipped", "failed", "summary"}.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stale = clean_stale_parts(out)
    if log and stale:
        log(f"removed {len(stale)} temporary file(s) left by an interrupted run")
    roots = roots or {}
    stems = {f: output_stem(f, roots.get(f)) for f in files}
    dup = {s for s in stems.values() if list(stems.values()).count(s) > 1}
    if dup:
        raise SERError(f"Several inputs would write the same output name ({', '.join(sorted(dup))}); "
                       "analyse them into different --out folders.")
    todo = [f for f in files if not is_done(out / f"{stems[f]}.json", opts)]
    skipped = len(files) - len(todo)
    if log and skipped:
        log(f"{skipped} file(s) already done with these options; skipping them")
    rows_new: dict[str, dict] = {}
    bar = tqdm(total=len(todo), desc="analyze", file=sys.stderr, disable=None if show_progress else True)
    if jobs > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        wopts = BatchOptions(**{**asdict(opts), "threads": opts.threads or 1})
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_bind_to_parent, initargs=(os.getpid(),)) as pool:
            futs = {pool.submit(_worker, (f, out, wopts, stems[f])): f for f in todo}
            for fut in as_completed(futs):
                row = fut.result()
                rows_new[row["file"]] = row
                _report(row, log)
                bar.update(1)
    else:
        for f in todo:
            row = analyze_file(f, out, opts, stem=stems[f])
            rows_new[row["file"]] = row
            _report(row, log)
            bar.update(1)
    bar.close()
    summary = write_summary(out, files, stems, rows_new, opts)
    failed = sum(1 for r in rows_new.values() if r["status"] == "error")
    return {"done": len(todo) - failed, "skipped": skipped, "failed": failed, "summary": str(summary)}


def _report(row: dict, log: Callable[[str], None] | None) -> None:
    if log:
        if row["status"] == "error":
            log(f"{row['file']}: {row['error']}")
        else:
            log(f"{row['file']}: {row['status']}, {row.get('speakers', 0)} speaker(s), {row.get('turns', 0)} turn(s)"
                f" -> {row['outputs']}")


def write_summary(out: Path, files: Sequence[Path], stems: dict[Path, str], new_rows: dict[str, dict],
                  opts: BatchOptions) -> Path:
    """One row per input, in input order: fresh rows, else rebuilt from the JSON written earlier."""
    rows = []
    for f in files:
        row = new_rows.get(str(f))
        if row is None:
            jp = out / f"{stems[f]}.json"
            if is_done(jp, opts):
                d = json.loads(jp.read_text(encoding="utf-8"))
                row = {"file": str(f), **_summary_fields(d), "outputs": "(earlier run)", "error": "", "seconds": ""}
            else:
                row = {"file": str(f), "status": "error", "error": "no result"}
        rows.append(row)
    from ser.analysis.exports import csv_cell

    path = out / SUMMARY
    tmp = out / f".{SUMMARY}.part{os.getpid()}"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: csv_cell(r.get(k, "")) for k in SUMMARY_FIELDS})
    os.replace(tmp, path)
    if opts.voices:
        write_voice_summary(out, files, stems, opts)
    return path


VOICE_SUMMARY = "voices.csv"


def write_voice_summary(out: Path, files: Sequence[Path], stems: dict[Path, str], opts: BatchOptions) -> Path:
    """``voices.csv``: per recording, each named voice's talk time, turns and emotion mix."""
    from ser.analysis.exports import csv_cell
    from ser.serve.voices import VOICE_FIELDS, voice_rows

    rows = []
    for f in files:
        jp = out / f"{stems[f]}.json"
        if is_done(jp, opts):
            d = json.loads(jp.read_text(encoding="utf-8"))
            rows.extend({"file": str(f), **r} for r in voice_rows(d))
    path = out / VOICE_SUMMARY
    tmp = out / f".{VOICE_SUMMARY}.part{os.getpid()}"
    labels = sorted({k for r in rows for k in r if k.startswith("p_")}, key=lambda k: k)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["file", *VOICE_FIELDS, *labels], extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: csv_cell(r.get(k, "")) for k in ["file", *VOICE_FIELDS, *labels]})
    os.replace(tmp, path)
    return path
