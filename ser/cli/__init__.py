"""The ``ser`` command line: parses, then calls the library.

Examples::

    ser predict clip.wav other.m4a                # one JSON object per file
    ser predict --model models/default --device cpu *.wav
    ser train --data ../shared/data/ravdess16k --corpus ravdess --out models/default
    ser train --data ../shared/data/ravdess16k --corpus ravdess --arch gru --no-final --out runs/gru
    ser evaluate --model default --data /corpora/ravdess --corpus ravdess --speakers 21 22 23 24
    ser calibrate models/default
    ser analyze meeting.wav --speakers 2 --format json,rttm,textgrid --out results/
    ser voices add Maria maria1.wav maria2.wav    # known voices: later analyses name Maria
    ser analyze recordings/ --min-speakers 2 --max-speakers 4 --diarizer pyannote --pyannote ~/models/community-1
"""

from __future__ import annotations

import argparse
import sys

from ser import __version__
from ser.errors import SERError
from ser.cli.analyze import cmd_analyze, cmd_hash_password, cmd_serve
from ser.cli.predict import cmd_calibrate, cmd_evaluate, cmd_predict, cmd_train, cmd_tune
from ser.cli import voices as _voices


def _engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local (default: this process, or --jobs processes for analyze) or ray (a Ray Data pipeline: "
                        "a local Ray sized to this machine, or the cluster at --address)")
    p.add_argument("--address", help="ray: a running cluster (auto, HOST:PORT or ray://HOST:10001); default: start "
                                     "one here")
    p.add_argument("--actors", type=int, help="ray: model actors (default: the cluster's CPUs / --cpus-per-actor)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="ray: CPUs per actor (default 1)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0,
                   help="ray: GPUs per actor (e.g. 0.25 shares one GPU between four; with --device auto)")


def _whisper_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--augment", type=int, help="whisper: channel-augmented copies encoded per clip (default 1)")
    p.add_argument("--head-c", type=float, help="whisper: inverse L2 strength of the logistic-regression head (0.1)")
    p.add_argument("--encoder", help="whisper: the encoder's source, a whisper model folder (default: default) or the "
                                     ".safetensors from scripts/convert_whisper.py")


def _add_predict(sub) -> None:
    """`ser predict`."""
    pr = sub.add_parser("predict", help="classify audio files; prints one JSON object per file")
    pr.add_argument("files", nargs="+", help="audio files (wav, flac, ogg, opus, mp3, m4a, webm), folders or globs")
    pr.add_argument("--model", default="default", help="model name under models/ or a model folder")
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    pr.add_argument("--adapt", default="none", choices=["none", "batch", "speaker"],
                    help="unsupervised adaptation: batch = centre all inputs of this run on their own statistics "
                         "(a study from one set-up; best with 30+ clips holding several emotions), speaker = each "
                         "speaker's clips (needs --speakers); default none")
    pr.add_argument("--speakers", help="with --adapt speaker: 'folder' (a file's parent folder is its speaker) or a "
                                       "CSV with columns file,speaker")
    _engine_args(pr)
    pr.set_defaults(func=cmd_predict)


def _add_train(sub) -> None:
    """`ser train`."""
    tr = sub.add_parser("train", help="speaker-grouped cross-validation, then train and save a model")
    tr.add_argument("--data", required=True, action="append",
                    help="corpus folder (or manifest/CSV file for dusha/csv); repeat with --corpus for several corpora")
    tr.add_argument("--corpus", action="append",
                    help="ravdess (default), ased, emodb, crema-d, tess, savee, dusha, csv; one per --data")
    tr.add_argument("--out", required=True, help="model folder to write (weights, card, CV metrics, config)")
    tr.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    tr.add_argument("--arch", help="architecture: whisper (default), sercnn, gru, cnn1d, cnn2d, m5, logreg")
    _whisper_args(tr)
    tr.add_argument("--arch-args", help='JSON object of architecture arguments, e.g. \'{"hidden": 64}\'')
    tr.add_argument("--label-set", help="ravdess8 (default), basic7, four, valence3, valence2")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    tr.add_argument("--folds", type=int)
    tr.add_argument("--seed", type=int)
    tr.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    tr.add_argument("--name", help="model name written in the card (default: the folder name)")
    tr.add_argument("--no-cv", action="store_true", help="skip cross-validation")
    tr.add_argument("--no-final", action="store_true", help="only cross-validate; save no model")
    tr.add_argument("--no-loco", action="store_true", help="skip leave-one-corpus-out (whisper, several corpora)")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=cmd_train)


def _add_tune(sub) -> None:
    """`ser tune`."""
    tu = sub.add_parser("tune", help="Optuna search of training options; objective: speaker-grouped CV UAR")
    tu.add_argument("--data", required=True, help="corpus folder (or manifest/CSV file for dusha/csv)")
    tu.add_argument("--corpus", default="ravdess")
    tu.add_argument("--trials", type=int, default=20, help="total trials in the study (resumes up to this many)")
    tu.add_argument("--study", default="runs/tune.sqlite", help="SQLite file holding the study (resumable)")
    tu.add_argument("--name", default="ser", help="study name inside that file")
    tu.add_argument("--out", default="configs/tuned.json", help="where the best configuration is written")
    tu.add_argument("--config", help="base TrainConfig JSON (the search varies learning rate, weight decay, "
                                     "label smoothing, mixup, crop, noise, gain, pitch and batch size)")
    tu.add_argument("--arch")
    tu.add_argument("--label-set")
    tu.add_argument("--epochs", type=int)
    tu.add_argument("--patience", type=int)
    tu.add_argument("--folds", type=int)
    tu.add_argument("--seed", type=int)
    tu.add_argument("--threads", type=int)
    tu.add_argument("--timeout", type=float, help="stop starting new trials after this many seconds")
    tu.set_defaults(func=cmd_tune)


def _add_evaluate(sub) -> None:
    """`ser evaluate`."""
    ev = sub.add_parser("evaluate", help="score a model on a labelled corpus (UAR, accuracy, macro-F1, confusion)")
    ev.add_argument("--model", default="default")
    ev.add_argument("--data", action="append", help="labelled corpus folder to score the model on "
                                                     "(repeat with --corpus for --protocol loco)")
    ev.add_argument("--protocol", default="model", choices=["model", "loco"],
                    help="model: score --model on --data; loco: leave-one-corpus-out over the --data corpora, "
                         "training a head per held-out corpus with --config's recipe")
    ev.add_argument("--config", help="TrainConfig JSON for --protocol loco (default: the built-in recipe)")
    ev.add_argument("--arch", help=argparse.SUPPRESS)
    ev.add_argument("--arch-args", help=argparse.SUPPRESS)
    ev.add_argument("--label-set", help=argparse.SUPPRESS)
    for flag in ("--epochs", "--patience", "--folds", "--seed", "--threads"):
        ev.add_argument(flag, type=int, help=argparse.SUPPRESS)
    _whisper_args(ev)
    ev.add_argument("--report", nargs="+", metavar="RUN_DIR",
                    help="instead: compare cross-validated runs (model folders from `ser train`) by label set "
                         "and gender; --out FILE.md writes it")
    ev.add_argument("--corpus", action="append", help="the reader of each --data (default ravdess)")
    ev.add_argument("--speakers", nargs="*", help="only these speaker ids (e.g. 21 22 23 24 for RAVDESS actors)")
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ev.add_argument("--out", help="folder for metrics.json and confusion.png (or the report's .md file)")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)


def _add_calibrate(sub) -> None:
    """`ser calibrate`."""
    ca = sub.add_parser("calibrate", help="fit temperature and the 'uncertain' margin from a model's CV predictions")
    ca.add_argument("model_dir", help="a model folder written by `ser train` with cross-validation")
    ca.add_argument("--target-accuracy", type=float, default=0.75,
                    help="held-out accuracy a prediction must reach to be called certain (default 0.75)")
    ca.set_defaults(func=cmd_calibrate)


def _add_analyze(sub) -> None:
    """`ser analyze`."""
    an = sub.add_parser("analyze", help="who spoke when, feeling what: diarize, score emotions, export")
    an.add_argument("files", nargs="+", help="audio files, folders or glob patterns")
    cnt = an.add_mutually_exclusive_group()
    cnt.add_argument("--speakers", type=int, help="exact number of speakers (default: automatic)")
    cnt.add_argument("--min-speakers", type=int, help="at least this many speakers")
    an.add_argument("--max-speakers", type=int, help="at most this many speakers")
    an.add_argument("--diarizer", default="builtin", choices=["builtin", "pyannote"],
                    help="builtin (offline, default) or pyannote (local pipeline folder or Hugging Face token)")
    an.add_argument("--pyannote", help="pyannote pipeline folder or Hugging Face id (token from $SER_HF_TOKEN or "
                                       "$HF_TOKEN); default $SER_PYANNOTE_PIPELINE or community-1")
    an.add_argument("--format", default="json,csv",
                    help="comma-separated: json,csv,rttm,textgrid,eaf,audacity; with --transcribe also srt,vtt")
    an.add_argument("--transcribe", action="store_true",
                    help="add the transcript: words with their speaker, utterances with their emotion (Whisper-base, "
                         "offline; in the JSON, CSV, TextGrid and EAF, and as SRT/VTT subtitles)")
    an.add_argument("--language", help="the speech's language for --transcribe, a Whisper code such as en, de, fr "
                                       "(default: detected)")
    an.add_argument("--voices", default="auto", choices=["auto", "none"],
                    help="name the speakers whose voice is in the library (`ser voices add`); auto (default) when "
                         "the library has voices, none to keep every speaker anonymous")
    an.add_argument("--out", default=".", help="output folder (default: the current folder)")
    an.add_argument("--model", default="default", help="emotion model name under models/ or a model folder")
    an.add_argument("--label-set", help="report probabilities in this label set: ravdess8, basic7, four, valence3, "
                                         "valence2")
    an.add_argument("--adapt", default="none", choices=["none", "recording", "speaker"],
                    help="unsupervised adaptation of the emotion model: recording = centre the features of all its "
                         "windows on the recording's own statistics, speaker = each diarized speaker's on their own "
                         "(a group that seems to hold one emotion, or has too few windows, is left as it is). "
                         "Off by default: in conversations, where a speaker shows one or two emotions, per-speaker "
                         "centring lost accuracy (bench/results/adapt_conversations.json)")
    an.add_argument("--window", type=float, default=2.0, help="emotion window length in seconds (default 2)")
    an.add_argument("--hop", type=float, default=1.0, help="emotion window hop in seconds (default 1)")
    an.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"],
                    help="where the emotion model runs (default cpu; auto picks CUDA when present)")
    an.add_argument("--threads", type=int, help="torch CPU threads per file (default: one for recordings up to 2 "
                                                "minutes, the free cores for longer ones; or $SER_THREADS)")
    an.add_argument("--jobs", type=int, default=1, help="files analysed in parallel processes (default 1)")
    _engine_args(an)
    an.add_argument("--force", action="store_true", help="redo files already analysed with the same options")
    an.add_argument("--quiet", action="store_true", help="no progress bar")
    an.set_defaults(func=cmd_analyze)


def _add_serve(sub) -> None:
    """`ser hash-password` and `ser serve`."""
    hp = sub.add_parser("hash-password", help="a password hash for the dashboard's sign-in (secrets.toml "
                                               "[ser_auth] users); reads the password from the prompt or stdin")
    hp.set_defaults(func=cmd_hash_password)
    sv = sub.add_parser("serve", help="the REST API: POST /v1/classify, /v1/analyze; GET /v1/models, /healthz")
    sv.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: this machine only)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--insecure", action="store_true",
                    help="allow a non-loopback --host without SER_API_KEY (only behind an authenticating proxy)")
    sv.add_argument("--model", help="model name or folder (default $SER_API_MODEL or default)")
    sv.add_argument("--device", choices=["auto", "cpu", "cuda"])
    sv.add_argument("--workers", type=int, help="analyses run at once (default: CPU cores)")
    sv.add_argument("--queue", type=int, help="requests allowed to wait for a worker (default 2 × workers); "
                                                "beyond that: 429 with Retry-After")
    sv.add_argument("--max-upload-mb", type=float, help="upload size limit (default 50), enforced while the body "
                                                         "streams in")
    sv.add_argument("--body-timeout-s", type=float, help="longest pause while a request body arrives; then 408 "
                                                          "(default 30)")
    sv.set_defaults(func=cmd_serve)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ser", description="Speech emotion recognition: train, evaluate, predict.")
    p.add_argument("--version", action="version", version=f"ser {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    _add_predict(sub)
    _add_train(sub)
    _add_tune(sub)
    _add_evaluate(sub)
    _add_calibrate(sub)
    _add_analyze(sub)
    _add_serve(sub)
    _voices.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args._argv = argv
    try:
        return args.func(args)
    except SERError as exc:
        print(f"ser {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ser {args.command}: interrupted", file=sys.stderr)
        return 130


