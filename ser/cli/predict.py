"""The emotion-model commands of the ``ser`` command line: predict, train, evaluate,
evaluate-loco, tune, calibrate.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ser.errors import SERError
from ser.cli.analyze import expand_inputs, read_speakers


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
    from ser.audio.decode import AudioLimits, load_audio
    from ser.emotion.model import load_model
    from ser.threads import job_threads

    files = [str(f) for f in expand_inputs(args.files)[0]]
    if not files:
        raise SERError("No audio files found.")
    if args.engine == "ray":
        from ser.serve.scale import predict_ray

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
            with job_threads(audio.duration_s):  # ser.threads: one thread for a clip
                result = {"file": file, **model.predict(audio.y, audio.sr, name=file), "model": model.id}
        except SERError as exc:
            failed += 1
            result = {"file": file, "error": str(exc)}
            print(f"ser predict: {exc}", file=sys.stderr)
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


def _predict_adapted(model, files: list[str], args: argparse.Namespace) -> int:
    """``ser predict --adapt batch|speaker``: pooled features of every file first, then each group
    (the whole run, or each speaker) centred on its own statistics (ser.emotion.adapt)."""
    import numpy as np

    from ser.emotion.adapt import adapt_probabilities, adapted_margin, model_adapt_head
    from ser.audio.decode import AudioLimits, load_audio

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


def _train_config(args: argparse.Namespace):
    from ser.training.train import load_config

    overrides = {"arch": args.arch, "epochs": args.epochs, "patience": args.patience, "folds": args.folds, "seed": args.seed,
                 "label_set": args.label_set, "threads": args.threads, "augment": args.augment,
                 "head_c": args.head_c, "encoder": args.encoder}
    if args.arch_args:
        overrides["arch_args"] = json.loads(args.arch_args)
    return load_config(args.config, **overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from ser.training.heads import parse_sources
    from ser.training.train import run_training, stderr_log

    cfg = _train_config(args)
    sources = parse_sources(args.data, args.corpus or ["ravdess"])
    command = "ser " + " ".join(shlex.quote(a) for a in args._argv)
    progress = None if args.quiet else _progress_bar("train")
    if cfg.arch == "whisper":
        from ser.training.multicorpus import run_training as run_whisper

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

    from ser.emotion.labels import get_label_set
    from ser.training.heads import build_net, encode_corpus, parse_sources, read_sources
    from ser.training.protocols import leave_one_corpus_out
    from ser.training.train import stderr_log

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
    from ser.training.train import load_config, stderr_log
    from ser.training.tune import run_tuning

    base = load_config(args.config, arch=args.arch, epochs=args.epochs, patience=args.patience, folds=args.folds,
                       seed=args.seed, label_set=args.label_set, threads=args.threads)
    r = run_tuning(args.data, args.corpus, base, trials=args.trials, study_path=args.study, study_name=args.name,
                   out_config=args.out, timeout_s=args.timeout, log=stderr_log)
    print(json.dumps(r))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ser.training.evaluate import evaluate_model, format_report
    from ser.emotion.plots import save_confusion_png

    if args.protocol == "loco":
        return cmd_evaluate_loco(args)

    if args.report:
        from ser.training.report import report, to_markdown

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
    from ser.emotion.calibration import calibrate_model_dir

    r = calibrate_model_dir(args.model_dir, target_accuracy=args.target_accuracy)
    print(f"temperature {r['temperature']:.3f}; ECE on CV test folds {r['ece_before']:.3f} -> {r['ece_after']:.3f}; "
          f"uncertain margin {r['uncertain_margin']:.2f} ({r['test_share_uncertain']:.0%} of test clips uncertain)")
    print(f"wrote {Path(args.model_dir) / 'card.json'} and {Path(args.model_dir) / 'reliability.png'}")
    return 0
