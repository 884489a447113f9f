"""Training and evaluating the Whisper-feature model on several corpora at once.

The encoder is frozen, so a clip is encoded once (plus ``augment`` channel-augmented
copies, :mod:`ser.audio.augment`) into its pooled features, cached on disk, and every model of a
protocol is a logistic-regression head fitted on those features in seconds.

Policies (written into the model card):

- **Labels.** The head predicts the eight RAVDESS emotions (label set ``ravdess8``). Each
  corpus's own codes are mapped to them by its reader (:mod:`ser.training.datasets`): ASED's five and
  EmoDB's six map one to one; EmoDB's boredom is dropped. *Calm* and *surprised* are learned
  from RAVDESS alone, *disgust* from RAVDESS and EmoDB.
- **Balance.** Every corpus weighs the same in the loss, and within a corpus every class
  weighs the same (sample weights), so ASED's 2470 clips do not drown EmoDB's 454.
- **Speakers** are ``<corpus>:<id>``, so they never collide across corpora.

Protocols:

- **Speaker-grouped CV over the pooled corpora** (``cross_validate``): speakers dealt into
  ``folds`` groups; fold k tests group k, validates on group k+1 (the calibration data) and
  trains on the rest. Scored per corpus on that corpus's own classes.
- **Leave-one-corpus-out** (``leave_one_corpus_out``): train on all corpora but one, score the
  held-out corpus on the classes it shares with the training corpora (the head's choice among
  those classes), for each corpus in turn. Chance level = 1 / number of shared classes.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ser.errors import DataError
from ser.emotion.labels import get_label_set
from ser.training.heads import Progress, Log, Source, adapt_groups, build_net, encode_corpus, fit_adapt_head, fit_head, read_sources
from ser.training.protocols import cross_validate, leave_one_corpus_out


# --- the whole `ser train --arch whisper` -------------------------------------------
def run_training(sources: Sequence[Source], out: str | Path, cfg, *, cv: bool = True, final: bool = True,
                 loco: bool = True, command: str = "", log: Log = print, progress: Progress | None = None,
                 name: str | None = None) -> dict:
    """Encode every clip once (+ ``cfg.augment`` copies), then: pooled speaker-grouped CV,
    leave-one-corpus-out (with two or more corpora), the final head on everything, and
    calibration on the CV validation folds. Writes the model folder ``out``."""
    from ser.training.datasets import corpus_licence
    from ser.emotion.folder import ModelCard, save_model
    from ser.emotion.nets import count_parameters

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps({"data": [s.__dict__ for s in sources], "command": command,
                                                       "config": cfg.to_dict()}, indent=2) + "\n")
    ls = get_label_set(cfg.label_set)
    labels = list(ls.labels)
    utts = [u for u in read_sources(sources) if ls.mapping.get(u.label) is not None]
    if not utts:
        raise DataError(f"No clips left for label set {cfg.label_set!r}.")
    y = np.array([labels.index(ls.mapping[u.label]) for u in utts])
    net = build_net(labels, cfg.arch_args, cfg.encoder)
    import torch

    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)
    log(f"{len(utts)} clips from {len({u.speaker for u in utts})} speakers in {len(sources)} corpora; "
        f"encoding with Whisper layers {list(net.layers)} (+{cfg.augment} augmented copies each)")
    X = encode_corpus(utts, net, augment=cfg.augment, seed=cfg.seed, trim_db=cfg.features.trim_db,
                      progress=progress, log=log)
    metrics: dict = {}
    from ser.emotion.adapt import AdaptSettings, check_mode

    adapt = [check_mode(m, ("batch", "speaker")) for m in cfg.arch_args.get("adapt", [])]
    adaptation = {m: {**AdaptSettings().__dict__, "trained_on": f"features centred on each training {TRAIN_KIND[m]}"}
                  for m in adapt}
    if cv:
        res = cross_validate(utts, X, y, labels, folds=cfg.folds, C=cfg.head_c, adapt=adapt, log=log)
        for m, d in res["adapt"].items():
            adaptation[m].update(temperature=d["calibration"]["temperature"],
                                 uncertain_margin=d["calibration"]["uncertain_margin"],
                                 cv_per_corpus=d["per_corpus"], calibration=d["calibration"])
        (out / "cv_metrics.json").write_text(json.dumps({k: v for k, v in res.items() if k not in ("clips", "adapt")},
                                                        indent=2) + "\n")
        with open(out / "cv_predictions.jsonl", "w") as f:
            for row in res["clips"]:
                f.write(json.dumps(row) + "\n")
        from ser.emotion.plots import save_confusion_png

        first = sources[0].corpus
        save_confusion_png(res["per_corpus"][first]["confusion"], labels, out / "cv_confusion.png",
                           title=f"{first}: speaker-grouped {cfg.folds}-fold CV (summed over folds)")
        s = res["summary"]
        metrics = {"protocol": res["protocol"],
                   **{k: {"mean": s[k]["mean"], "std": s[k]["std"]} for k in ("uar", "accuracy", "macro_f1")},
                   "per_fold_uar": s["uar"]["folds"], "confusion": s["confusion"],
                   "per_corpus": {c: {k: v for k, v in d.items() if k != "confusion"} for c, d in res["per_corpus"].items()}}
        for c, d in res["per_corpus"].items():
            log(f"CV {c}: UAR {d['uar']:.3f} ± {d['uar_std']:.3f} on its {len(d['classes'])} classes "
                f"(chance {d['chance']:.3f}); among all {len(labels)}: {d['uar_all_classes']:.3f}")
    if loco and len({s.corpus for s in sources}) > 1:
        lo = leave_one_corpus_out(utts, X, y, labels, C=cfg.head_c, adapt=adapt, adapt_settings=adaptation, log=log)
        (out / "loco_metrics.json").write_text(json.dumps(lo, indent=2) + "\n")
        metrics["leave_one_corpus_out"] = {k: v for k, v in lo.items() if k not in ("adapt_mean", "adapt_protocol")}
        metrics["leave_one_corpus_out"]["per_corpus"] = {  # the adapted figures go to card.adaptation
            c: {k: v for k, v in d.items() if not k.startswith("adapt_")} for c, d in lo["per_corpus"].items()}
        for m in adapt:
            adaptation[m]["leave_one_corpus_out"] = {"protocol": lo["adapt_protocol"], "mean": lo["adapt_mean"][m],
                                                     "per_corpus": {c: d[f"adapt_{m}"] for c, d in lo["per_corpus"].items()}}
            log(f"LOCO adapt={m}: mean " + ", ".join(f"{k} {v:.3f}" for k, v in lo["adapt_mean"][m].items()
                                                      if not isinstance(v, dict)))
        log(f"LOCO mean UAR {lo['mean_uar']:.3f}")
    if final:
        corpora = np.array([u.corpus for u in utts])
        head = fit_head(X, y, corpora, len(labels), C=cfg.head_c)
        head.into(net)
        if adapt:
            _fit_adapt_heads(net, labels, utts, X, y, corpora, head, adapt, C=cfg.head_c, log=log)
        counts = {c: int((corpora == c).sum()) for c in sorted(set(corpora.tolist()))}
        card = ModelCard(
            name=name or out.name, architecture="whisper", labels=labels, label_set=cfg.label_set,
            arch_args=cfg.arch_args, features=cfg.features.to_dict(),
            training={"command": command, "config": cfg.to_dict(), "date": time.strftime("%Y-%m-%d"),
                      "head": f"multinomial logistic regression (C={cfg.head_c}) on standardised mean+std pooled "
                              f"Whisper-base encoder layers {list(net.layers)}; encoder frozen",
                      "augmentation": f"{cfg.augment} channel-augmented copies per clip (ser.audio.augment: synthetic "
                                      f"room reverberation, band-limiting, noise, loudness, MP3/Opus/AAC round trips)"},
            data={"corpora": [{**s.__dict__, "clips": counts.get(s.corpus, 0),
                               "speakers": len({u.speaker for u in utts if u.corpus == s.corpus}),
                               "licence": corpus_licence(s.corpus)} for s in sources],
                  "clips": len(utts), "speakers": sorted({u.speaker for u in utts}),
                  "label_policy": label_policy(sources, labels)},
            licence=" ".join(corpus_licence(s.corpus) for s in sources) + " " + WHISPER_LICENCE,
            metrics=metrics, adaptation=adaptation,
        )
        save_model(net, card, out)
        log(f"saved {out} ({count_parameters(net)} parameters, of which {net.linear.weight.numel() + net.linear.bias.numel()} trained)")
        if cv:
            from ser.emotion.calibration import calibrate_and_log

            calibrate_and_log(out, log)
    return metrics


TRAIN_KIND = {"batch": "corpus (clean and augmented copies apart)", "speaker": "speaker (clean and augmented copies apart)"}


def _fit_adapt_heads(net, labels, utts, X, y, corpora, head, adapt, *, C, log) -> None:
    """Fit the adaptation heads of ``net`` (built with ``adapt`` in its arch_args) on everything."""
    import torch

    for m in adapt:
        ah = fit_adapt_head(X, y, corpora, adapt_groups(utts, m), len(labels), head, C=C)
        values = {"prior_mean": ah.prior_mean, "prior_var": ah.prior_var, "mean": ah.head.mean, "std": ah.head.std,
                  "linear.weight": ah.head.weight, "linear.bias": ah.head.bias, "spread_ref": np.array(ah.spread_ref)}
        net.adapt[m].load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in values.items()})
        log(f"adaptation head {m!r} fitted (spread reference {ah.spread_ref:.2f})")


WHISPER_LICENCE = ("The frozen encoder is OpenAI's Whisper base (MIT licence, Copyright (c) 2022 OpenAI; "
                   "see LICENSE-whisper.txt in this folder).")


def label_policy(sources: Sequence[Source], labels: Sequence[str]) -> dict:
    """Which of the head's classes each corpus teaches (the others it never shows)."""
    from ser.training.datasets import READER_LABELS

    out = {}
    for s in sources:
        has = READER_LABELS.get(s.corpus)
        out[s.corpus] = {"teaches": [l for l in labels if has is None or l in has],
                         "lacks": [l for l in labels if has is not None and l not in has]}
    return out
