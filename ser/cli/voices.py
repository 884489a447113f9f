"""``ser voices``: the voice library from the command line (``ser.serve.voices``).

    ser voices add Maria maria1.wav maria2.m4a   # enrol (or add samples to) a voice
    ser voices list
    ser voices rename Maria "Maria G."
    ser voices merge "M. Garcia" "Maria G."       # the first's samples join the second
    ser voices delete "Maria G."

The library is the History database's (``$SER_HISTORY_DB``, default
``~/.cache/ser/history.sqlite``); ``ser analyze`` names the speakers it recognises
(``--voices none`` turns that off).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ser.errors import SERError


def add_parser(sub) -> None:
    vo = sub.add_parser("voices", help="known voices: enrol people once, and analyses name them (add, list, rename, "
                                       "merge, delete)")
    vs = vo.add_subparsers(dest="voices_command", required=True)
    a = vs.add_parser("add", help="enrol NAME from clips of that person talking alone (a few seconds or more each)")
    a.add_argument("name")
    a.add_argument("clips", nargs="+", help="audio files of this one person")
    ls = vs.add_parser("list", help="the voices, with how much speech each was enrolled from")
    ls.add_argument("--json", action="store_true", help="as JSON")
    r = vs.add_parser("rename", help="rename a voice")
    r.add_argument("old")
    r.add_argument("new")
    m = vs.add_parser("merge", help="move every sample of SOURCE into INTO (one person enrolled twice)")
    m.add_argument("source")
    m.add_argument("into")
    d = vs.add_parser("delete", help="delete a voice and its embeddings")
    d.add_argument("name")
    for p in (a, ls, r, m, d):
        p.add_argument("--db", help="the library's database (default $SER_HISTORY_DB or ~/.cache/ser/history.sqlite)")
    vo.set_defaults(func=cmd_voices)


def cmd_voices(args: argparse.Namespace) -> int:
    from ser.serve.voices import VoiceLibrary

    lib = VoiceLibrary(args.db)
    c = args.voices_command
    if c == "add":
        from ser.serve.voices import enrol_clips

        v = enrol_clips(lib, args.name, [(f, Path(f).name) for f in args.clips])
        print(f"{v.name}: {v.samples} sample(s), {v.seconds:.1f} s of speech (embeddings only; no audio is kept)")
    elif c == "list":
        voices = lib.list()
        if args.json:
            print(json.dumps([v.__dict__ for v in voices], indent=1))
        elif not voices:
            print(f"No voices yet in {lib.path}. Enrol one with: ser voices add NAME clip.wav")
        else:
            for v in voices:
                print(f"{v.name}\t{v.samples} sample(s)\t{v.seconds:.1f} s\tsince {v.created}")
    elif c == "rename":
        lib.rename(args.old, args.new)
        print(f"{args.old} -> {args.new}")
    elif c == "merge":
        v = lib.merge(args.source, args.into)
        print(f"{args.source} merged into {v.name}: {v.samples} sample(s), {v.seconds:.1f} s")
    elif c == "delete":
        if not lib.delete(args.name):
            raise SERError(f"No voice named {args.name!r} in the library.")
        print(f"deleted {args.name}")
    return 0


def library_voices(choice: str, db: str | None = None) -> list:
    """The voices ``ser analyze --voices`` uses: ``auto`` = the library's, if it exists and is not
    empty (reading it never creates it); ``none`` = none."""
    if choice == "none":
        return []
    from ser.serve.store import default_path
    from ser.serve.voices import VoiceLibrary

    path = Path(db) if db else default_path()
    if not path.exists() and not os.environ.get("SER_VOICES_REQUIRED"):
        return []
    return VoiceLibrary(path).voices()
