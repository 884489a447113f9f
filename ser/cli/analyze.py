"""The analysis and serving commands of the ``ser`` command line: analyze (files, folders,
batch and Ray engines), serve, hash-password.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ser.errors import SERError


def read_speakers(spec: str | None, files: list[str]) -> dict[str, str]:
    """The speaker of each file for ``--adapt speaker``: ``folder`` (each file's parent folder) or
    a CSV with ``file`` and ``speaker`` columns (``file`` as given, or its base name)."""
    from ser.training.datasets import read_csv_table

    if not spec:
        raise SERError("--adapt speaker needs --speakers: 'folder' (each file's parent folder is its speaker) "
                       "or a CSV file with columns file,speaker.")
    if spec == "folder":
        return {f: Path(f).parent.name for f in files}
    path = Path(spec)
    if not path.is_file():
        raise SERError(f"--speakers {spec}: no such file (give a CSV with columns file,speaker, or 'folder').")
    table = {row["file"]: row["speaker"] for row in read_csv_table(path, ("file", "speaker"))}
    out, missing = {}, []
    for f in files:
        s = table.get(f, table.get(Path(f).name))
        if s is None or not str(s).strip():
            missing.append(f)
        else:
            out[f] = str(s).strip()
    if missing:
        raise SERError(f"{spec} gives no speaker for {len(missing)} file(s), e.g. {missing[0]}; add rows for them.")
    return out


def _audio_exts() -> set[str]:
    """Suffixes a folder scan picks up: the audio door's formats plus their common aliases."""
    from ser.audio.decode import SUPPORTED_FORMATS

    return {f".{f}" for f in SUPPORTED_FORMATS} | {".oga", ".mp4", ".aiff", ".aif"}


def expand_inputs(items: list[str]) -> tuple[list[Path], dict[Path, Path]]:
    """Files, folders (their audio files, recursively) and glob patterns, in order, without repeats.
    Also returns, for files found in a folder, that folder (outputs mirror the subfolders)."""
    import glob

    out: list[Path] = []
    roots: dict[Path, Path] = {}
    for item in items:
        p = Path(item)
        if p.is_dir():
            exts = _audio_exts()
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            top = p.resolve()
            outside = [f for f in found if not f.resolve().is_relative_to(top)]
            if outside:  # a link planted in a shared folder must not make us read (and export) other files
                raise SERError(f"{len(outside)} file(s) in {p} are links to files outside it (e.g. {outside[0]} -> "
                               f"{outside[0].resolve()}); they are not followed. Give such a file by its own path "
                               "to analyse it.")
            out.extend(found)
            roots.update({f: p for f in found})
        elif any(c in item for c in "*?[") and not p.exists():
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise SERError(f"No file matches {item}.")
            out.extend(matches)
        else:
            out.append(p)
    seen: set[Path] = set()
    return [f for f in out if not (f in seen or seen.add(f))], roots


def _stage_bar(name: str):
    from tqdm import tqdm

    bar = tqdm(total=100, desc=name, leave=False, file=sys.stderr, disable=None, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def update(stage: str, frac: float) -> None:
        bar.set_postfix_str(stage)
        bar.n = int(100 * max(0.0, min(1.0, frac)))
        bar.refresh()

    return bar, update


def cmd_analyze(args: argparse.Namespace) -> int:
    import os

    from ser.cli.voices import library_voices
    from ser.serve.batch import BatchOptions, analyze_file, is_done, output_stem, prepare, run_batch, voices_option
    from ser.diarization.base import check_speaker_counts
    from ser.analysis.exports import FORMATS, TRANSCRIPT_FORMATS

    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS + TRANSCRIPT_FORMATS]
    if bad or not formats:
        raise SERError(f"Unknown format(s) {', '.join(bad) or '(none)'}; choose from "
                       f"{', '.join(FORMATS + TRANSCRIPT_FORMATS)}.")
    subs = [f for f in formats if f in TRANSCRIPT_FORMATS]
    if subs and not args.transcribe:
        raise SERError(f"--format {','.join(subs)} needs a transcript: add --transcribe.")
    if args.language and not args.transcribe:
        raise SERError("--language is the transcript's language: add --transcribe.")
    check_speaker_counts(args.speakers, args.min_speakers, args.max_speakers)
    if args.jobs < 1:
        raise SERError("--jobs must be at least 1.")
    files, roots = expand_inputs(args.files)
    if not files:
        raise SERError("No audio files found.")
    opts = BatchOptions(formats=tuple(formats), model=args.model, device=args.device, diarizer=args.diarizer,
                        pyannote=args.pyannote, num_speakers=args.speakers, min_speakers=args.min_speakers,
                        max_speakers=args.max_speakers, window_s=args.window, hop_s=args.hop,
                        label_set=args.label_set, adapt=args.adapt, transcribe=args.transcribe,
                        language=args.language, voices=voices_option(library_voices(args.voices)),
                        threads=args.threads or int(os.environ.get("SER_THREADS", "0") or 0))
    out = Path(args.out)
    prepare(opts)  # loads the model once here; a missing or broken model fails before any file
    if args.force:
        for f in files:
            (out / f"{output_stem(f, roots.get(f))}.json").unlink(missing_ok=True)
    if len(files) == 1 and args.engine == "local":  # one file: a stage-by-stage progress bar, no summary file
        stem = output_stem(files[0], roots.get(files[0]))
        if is_done(out / f"{stem}.json", opts):
            print(f"{files[0]}: already analysed with these options -> {out / (stem + '.json')} (--force redoes it)")
            return 0
        bar, update = _stage_bar(files[0].name)
        try:
            row = analyze_file(files[0], out, opts, stem=stem, progress=None if args.quiet else update)
        finally:
            bar.close()
        if row["status"] == "error":
            err = row["error"]  # the audio door's messages name the file already: say it once
            where = "" if err.startswith(files[0].name) else f"{files[0]}: "
            print(f"ser analyze: {where}{err}", file=sys.stderr)
            return 1
        summary = "no speech found" if row["status"] == "no speech" else (
            f"{row['speakers']} speaker(s), {row['turns']} turn(s)")
        if opts.voices:
            summary += f"; known voices: {row.get('voices') or 'none recognised'}"
        print(f"{files[0]}: {summary} -> {', '.join(str(out / n) for n in row['outputs'].split(';'))}", flush=True)
        return 0
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.engine == "ray":
        from ser.serve.scale import run_batch_ray

        r = run_batch_ray(files, out, opts, address=args.address, actors=args.actors,
                          cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor, roots=roots,
                          show_progress=not args.quiet, log=log)
    else:
        r = run_batch(files, out, opts, jobs=args.jobs, roots=roots, show_progress=not args.quiet, log=log)
    print(f"{r['done']} analysed, {r['skipped']} already done, {r['failed']} failed; summary: {r['summary']}",
          flush=True)
    return 1 if r["failed"] else 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print a password hash for ``[ser_auth] users`` in .streamlit/secrets.toml."""
    import getpass

    from ser.serve.auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SERError("The two passwords differ.")
    else:
        password = sys.stdin.readline().rstrip("\n")
    print(hash_password(password))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ser.serve.api import APISettings, serve
    from ser.serve.auth import is_loopback

    s = APISettings.from_env()
    if not is_loopback(args.host) and not (s.api_key or args.insecure):
        print(f"error: refusing to serve on {args.host} without an API key: anyone who can reach this machine "
              "could send recordings and read results. Set SER_API_KEY (clients then send X-API-Key), keep the "
              "default --host 127.0.0.1, or pass --insecure if a proxy in front of the server authenticates.",
              file=sys.stderr)
        return 2
    for k in ("model", "device", "workers", "queue", "max_upload_mb", "body_timeout_s"):
        v = getattr(args, k)
        if v is not None:
            setattr(s, k, v)
    from ser.emotion.model import load_model

    load_model(s.model, device=s.device)  # fail before listening if the model is missing
    serve(args.host, args.port, s)
    return 0
