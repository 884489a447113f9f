"""The ``ser`` command line: parses, then calls the library.

Examples::

    ser predict clip.wav other.m4a                # one JSON object per file
    ser predict --model models/default --device cpu *.wav
    ser train --data ../shared/data/ravdess16k --corpus ravdess --out models/default
    ser train --data ../shared/data/ravdess16k --corpus ravdess --arch gru --no-final --out runs/gru
    ser evaluate --model default --data /corpora/ravdess --corpus ravdess --speakers 21 22 23 24
    ser calibrate models/default
    ser analyze meeting.wav --speakers 2 --format json,rttm,textgrid --out results/
    ser analyze recordings/ --min-speakers 2 --max-speakers 4 --diarizer pyannote --pyannote ~/models/community-1
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from . import __version__
from .errors import SERError


def _progress_bar(desc: str):
    """A tqdm-backed (stage, done, total) callback, to stderr."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None or bar.total != total or done < bar.n:
            if bar is not None:
                bar.close()
            bar = bars[stage] = tqdm(total=total, desc=f"{desc}: {stage}", leave=False, file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            bars.pop(stage, None)

    return update


def cmd_predict(args: argparse.Namespace) -> int:
    from .audio import AudioLimits, load_audio
    from .models import load_model

    files = [str(f) for f in expand_inputs(args.files)[0]]
    if not files:
        raise SERError("No audio files found.")
    if args.engine == "ray":
        from .scale import predict_ray

        if args.adapt != "none":
            raise SERError("--adapt needs the statistics of the whole run in one place; use --engine local with it.")
        results = predict_ray(files, model=args.model, device=args.device, address=args.address, actors=args.actors,
                              cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                              log=lambda m: print(m, file=sys.stderr, flush=True))
        for r in results:
            if "error" in r:
                print(f"ser predict: {r['error']}", file=sys.stderr)
            print(json.dumps(r), flush=True)
        return 1 if any("error" in r for r in results) else 0
    model = load_model(args.model, device=args.device)
    if args.adapt != "none":
        return _predict_adapted(model, files, args)
    limits = AudioLimits(min_duration_s=model.card.min_duration_s)
    failed = 0
    for file in files:
        try:
            audio = load_audio(file, limits=limits)
            result = {"file": file, **model.predict(audio.y, audio.sr, name=file), "model": model.id}
        except SERError as exc:
            failed += 1
            result = {"file": file, "error": str(exc)}
            print(f"ser predict: {exc}", file=sys.stderr)
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


def _predict_adapted(model, files: list[str], args: argparse.Namespace) -> int:
    """``ser predict --adapt batch|speaker``: pooled features of every file first, then each group
    (the whole run, or each speaker) centred on its own statistics (ser.adapt)."""
    import numpy as np

    from .adapt import adapt_probabilities, adapted_margin, model_adapt_head
    from .audio import AudioLimits, load_audio

    model_adapt_head(model, args.adapt)  # fail before decoding anything when the model has no such head
    speakers = read_speakers(args.speakers, files) if args.adapt == "speaker" else {}
    limits = AudioLimits(min_duration_s=model.card.min_duration_s)
    rows, feats, errors = [], [], {}
    for i, file in enumerate(files):
        try:
            audio = load_audio(file, limits=limits)
            feats.append(model.pooled(audio.y, audio.sr, name=file))
            rows.append(i)
        except SERError as exc:
            errors[i] = str(exc)
            print(f"ser predict: {exc}", file=sys.stderr)
    results: dict[int, dict] = {i: {"file": files[i], "error": e} for i, e in errors.items()}
    if rows:
        groups = [speakers[files[i]] if args.adapt == "speaker" else "batch" for i in rows]
        p, adapted, reports = adapt_probabilities(model, np.stack(feats), groups, args.adapt)
        head_margin = adapted_margin(model, args.adapt)
        for k, i in enumerate(rows):
            margin = head_margin if adapted[k] else None
            rep = reports[str(groups[k])]
            results[i] = {"file": files[i], **model.result(p[k], margin=margin), "model": model.id,
                          "adaptation": {"mode": args.adapt, "group": str(groups[k]),
                                         **{key: rep[key] for key in ("used", "clips", "weight", "spread", "reason")
                                            if key in rep}}}
        for g, rep in reports.items():
            print(f"ser predict: adapt={args.adapt} group {g!r}: {rep['clips']} clips, "
                  + ("adapted" if rep["used"] == "adapted" else f"not adapted ({rep['reason']})"), file=sys.stderr)
    for i in range(len(files)):
        print(json.dumps(results[i]), flush=True)
    return 1 if errors else 0


def read_speakers(spec: str | None, files: list[str]) -> dict[str, str]:
    """The speaker of each file for ``--adapt speaker``: ``folder`` (each file's parent folder) or
    a CSV with ``file`` and ``speaker`` columns (``file`` as given, or its base name)."""
    from .datasets import read_csv_table

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


def _train_config(args: argparse.Namespace):
    from .train import load_config

    overrides = {"arch": args.arch, "epochs": args.epochs, "patience": args.patience, "folds": args.folds, "seed": args.seed,
                 "label_set": args.label_set, "threads": args.threads, "augment": args.augment,
                 "head_c": args.head_c, "encoder": args.encoder}
    if args.arch_args:
        overrides["arch_args"] = json.loads(args.arch_args)
    return load_config(args.config, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from .multicorpus import parse_sources
    from .train import run_training, stderr_log

    cfg = _train_config(args)
    sources = parse_sources(args.data, args.corpus or ["ravdess"])
    command = "ser " + " ".join(shlex.quote(a) for a in args._argv)
    progress = None if args.quiet else _progress_bar("train")
    if cfg.arch == "whisper":
        from .multicorpus import run_training as run_whisper

        run_whisper(sources, args.out, cfg, cv=not args.no_cv, final=not args.no_final, loco=not args.no_loco,
                    command=command, log=stderr_log, progress=progress, name=args.name)
        return 0
    if len(sources) > 1:
        raise SERError(f"--arch {cfg.arch} trains on one corpus; several --data folders need --arch whisper.")
    run_training(sources[0].path, sources[0].corpus, args.out, cfg, cv=not args.no_cv, final=not args.no_final,
                 command=command, log=stderr_log, progress=progress, name=args.name)
    return 0


def cmd_evaluate_loco(args: argparse.Namespace) -> int:
    """``ser evaluate --protocol loco``: leave-one-corpus-out with the training recipe of --config."""
    import numpy as np

    from .labels import get_label_set
    from .multicorpus import build_net, encode_corpus, leave_one_corpus_out, parse_sources, read_sources
    from .train import stderr_log

    cfg = _train_config(args)
    if cfg.arch != "whisper":
        raise SERError("--protocol loco trains one head per held-out corpus; it needs --arch whisper (the default).")
    ls = get_label_set(cfg.label_set)
    labels = list(ls.labels)
    utts = [u for u in read_sources(parse_sources(args.data, args.corpus or ["ravdess"])) if ls.mapping.get(u.label)]
    y = np.array([labels.index(ls.mapping[u.label]) for u in utts])
    net = build_net(labels, cfg.arch_args, cfg.encoder)
    X = encode_corpus(utts, net, augment=cfg.augment, seed=cfg.seed, trim_db=cfg.features.trim_db,
                      progress=None if args.quiet else _progress_bar("evaluate"), log=stderr_log)
    res = leave_one_corpus_out(utts, X, y, labels, C=cfg.head_c, log=stderr_log)
    print(f"{'held out':<10} {'classes':>7} {'chance':>7} {'UAR':>6} {'acc':>6} {'mF1':>6}")
    for c, r in res["per_corpus"].items():
        print(f"{c:<10} {len(r['classes']):>7} {r['chance']:>7.3f} {r['uar']:>6.3f} {r['accuracy']:>6.3f} {r['macro_f1']:>6.3f}")
    print(f"mean UAR {res['mean_uar']:.3f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "loco_metrics.json").write_text(json.dumps({**res, "config": cfg.to_dict()}, indent=2) + "\n")
        print(f"wrote {out / 'loco_metrics.json'}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .train import load_config, stderr_log
    from .tune import run_tuning

    base = load_config(args.config, arch=args.arch, epochs=args.epochs, patience=args.patience, folds=args.folds,
                       seed=args.seed, label_set=args.label_set, threads=args.threads)
    r = run_tuning(args.data, args.corpus, base, trials=args.trials, study_path=args.study, study_name=args.name,
                   out_config=args.out, timeout_s=args.timeout, log=stderr_log)
    print(json.dumps(r))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_model, format_report
    from .plots import save_confusion_png

    if args.protocol == "loco":
        return cmd_evaluate_loco(args)

    if args.report:
        from .report import report, to_markdown

        rep = report(args.report)
        md = to_markdown(rep)
        if args.out:
            out = Path(args.out)
            if out.suffix.lower() == ".md":
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(md, encoding="utf-8")
                out.with_suffix(".json").write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
                print(f"wrote {out} and {out.with_suffix('.json')}")
                return 0
            out.mkdir(parents=True, exist_ok=True)
            (out / "report.md").write_text(md, encoding="utf-8")
            (out / "report.json").write_text(json.dumps(rep, indent=2) + "\n", encoding="utf-8")
        print(md)
        return 0
    if not args.data:
        raise SERError("ser evaluate needs --data (a labelled corpus), or --report RUN_DIR... for the "
                       "cross-validation report.")
    if len(args.data) > 1:
        raise SERError("Scoring a saved model takes one --data corpus at a time (or --protocol loco for several).")
    report = evaluate_model(args.model, args.data[0], (args.corpus or ["ravdess"])[0], speakers=args.speakers, device=args.device,
                            progress=None if args.quiet else _progress_bar("evaluate"))
    print(format_report(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        save_confusion_png(report["confusion"], report["labels"], out / "confusion.png",
                           title=f"{report['model']} on {report['corpus']} (n={report['n']})")
        print(f"wrote {out / 'metrics.json'} and {out / 'confusion.png'}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate_model_dir

    r = calibrate_model_dir(args.model_dir, target_accuracy=args.target_accuracy)
    print(f"temperature {r['temperature']:.3f}; ECE on CV test folds {r['ece_before']:.3f} -> {r['ece_after']:.3f}; "
          f"uncertain margin {r['uncertain_margin']:.2f} ({r['test_share_uncertain']:.0%} of test clips uncertain)")
    print(f"wrote {Path(args.model_dir) / 'card.json'} and {Path(args.model_dir) / 'reliability.png'}")
    return 0


def _audio_exts() -> set[str]:
    """Suffixes a folder scan picks up: the audio door's formats plus their common aliases."""
    from .audio import SUPPORTED_FORMATS

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

    from .batch import BatchOptions, analyze_file, is_done, output_stem, prepare, run_batch
    from .diarization import check_speaker_counts
    from .exports import FORMATS

    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise SERError(f"Unknown format(s) {', '.join(bad) or '(none)'}; choose from {', '.join(FORMATS)}.")
    check_speaker_counts(args.speakers, args.min_speakers, args.max_speakers)
    if args.jobs < 1:
        raise SERError("--jobs must be at least 1.")
    files, roots = expand_inputs(args.files)
    if not files:
        raise SERError("No audio files found.")
    opts = BatchOptions(formats=tuple(formats), model=args.model, device=args.device, diarizer=args.diarizer,
                        pyannote=args.pyannote, num_speakers=args.speakers, min_speakers=args.min_speakers,
                        max_speakers=args.max_speakers, window_s=args.window, hop_s=args.hop,
                        label_set=args.label_set, adapt=args.adapt,
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
            print(f"ser analyze: {files[0]}: {row['error']}", file=sys.stderr)
            return 1
        summary = "no speech found" if row["status"] == "no speech" else (
            f"{row['speakers']} speaker(s), {row['turns']} turn(s)")
        print(f"{files[0]}: {summary} -> {', '.join(str(out / n) for n in row['outputs'].split(';'))}", flush=True)
        return 0
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.engine == "ray":
        from .scale import run_batch_ray

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

    from .auth import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SERError("The two passwords differ.")
    else:
        password = sys.stdin.readline().rstrip("\n")
    print(hash_password(password))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .api import APISettings, serve
    from .auth import is_loopback

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
    from .models import load_model

    load_model(s.model, device=s.device)  # fail before listening if the model is missing
    serve(args.host, args.port, s)
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ser", description="Speech emotion recognition: train, evaluate, predict.")
    p.add_argument("--version", action="version", version=f"ser {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

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

    ca = sub.add_parser("calibrate", help="fit temperature and the 'uncertain' margin from a model's CV predictions")
    ca.add_argument("model_dir", help="a model folder written by `ser train` with cross-validation")
    ca.add_argument("--target-accuracy", type=float, default=0.75,
                    help="held-out accuracy a prediction must reach to be called certain (default 0.75)")
    ca.set_defaults(func=cmd_calibrate)
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
    an.add_argument("--format", default="json,csv", help="comma-separated: json,csv,rttm,textgrid,eaf,audacity")
    an.add_argument("--out", default=".", help="output folder (default: the current folder)")
    an.add_argument("--model", default="default", help="emotion model name under models/ or a model folder")
    an.add_argument("--label-set", help="report probabilities in this label set: ravdess8, basic7, four, valence3, "
                                         "valence2")
    an.add_argument("--adapt", default="none", choices=["none", "recording", "speaker"],
                    help="unsupervised adaptation of the emotion model: recording = centre the features of all its "
                         "windows on the recording's own statistics, speaker = each diarized speaker's on their own "
                         "(best when the recording holds several emotions; falls back when it seems to hold one)")
    an.add_argument("--window", type=float, default=2.0, help="emotion window length in seconds (default 2)")
    an.add_argument("--hop", type=float, default=1.0, help="emotion window hop in seconds (default 1)")
    an.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"],
                    help="where the emotion model runs (default cpu; auto picks CUDA when present)")
    an.add_argument("--threads", type=int, help="torch CPU threads (default: all cores; or $SER_THREADS)")
    an.add_argument("--jobs", type=int, default=1, help="files analysed in parallel processes (default 1)")
    _engine_args(an)
    an.add_argument("--force", action="store_true", help="redo files already analysed with the same options")
    an.add_argument("--quiet", action="store_true", help="no progress bar")
    an.set_defaults(func=cmd_analyze)
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


if __name__ == "__main__":
    sys.exit(main())
