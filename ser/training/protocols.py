"""The evaluation protocols of the multi-corpus model: speaker-grouped cross-validation
over the pooled corpora, and leave-one-corpus-out (with and without adaptation).
See :mod:`ser.training.multicorpus` for the policies.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ser.training.datasets import Utterance
from ser.errors import DataError
from ser.training.heads import Log, adapt_groups, adapted_logits, fit_adapt_head, fit_head, restricted_argmax


def _corpus_scores(y: np.ndarray, logits: np.ndarray, corpora: np.ndarray, labels: Sequence[str]) -> dict:
    from ser.training.train import classification_metrics

    out = {}
    for c in sorted(set(corpora)):
        m = corpora == c
        own = sorted(set(y[m].tolist()))
        own_metrics = classification_metrics(y[m], restricted_argmax(logits[m], own), labels)
        all_metrics = classification_metrics(y[m], logits[m].argmax(1), labels)
        out[c] = {"classes": [labels[k] for k in own], "chance": 1.0 / len(own), "n": int(m.sum()),
                  "uar": own_metrics["uar"], "accuracy": own_metrics["accuracy"], "macro_f1": own_metrics["macro_f1"],
                  "uar_all_classes": all_metrics["uar"], "confusion": own_metrics["confusion"]}
    return out


def cross_validate(utts: Sequence[Utterance], X: np.ndarray, y: np.ndarray, labels: Sequence[str], *,
                   folds: int = 5, C: float = 0.1, adapt: Sequence[str] = (), log: Log | None = None) -> dict:
    """Speaker-grouped CV over the pooled corpora; returns per-fold/per-corpus metrics and per-clip rows."""
    from ser.training.train import classification_metrics, speaker_folds, summarize_folds

    speakers = [u.speaker for u in utts]
    corpora = np.array([u.corpus for u in utts])
    fold_of = speaker_folds(speakers, folds)
    f = np.array([fold_of[s] for s in speakers])
    test_logits = np.zeros((len(utts), len(labels)))
    rows, fold_metrics = [], []
    adapted = {m: {"test": np.zeros((len(utts), len(labels))), "val": [], "val_idx": []} for m in adapt}
    for k in range(folds):
        te, va = np.where(f == k)[0], np.where(f == (k + 1) % folds)[0]
        tr = np.where((f != k) & (f != (k + 1) % folds))[0]
        head = fit_head(X[tr], y[tr], corpora[tr], len(labels), C=C)
        zt, zv = head.logits(X[te, 0]), head.logits(X[va, 0])
        for m in adapt:  # each test/validation group (corpus within the fold, or speaker) centred on itself
            groups = adapt_groups(utts, m)
            ah = fit_adapt_head(X[tr], y[tr], corpora[tr], groups[tr], len(labels), head, C=C)
            adapted[m]["test"][te] = adapted_logits(X[te, 0], groups[te], head, ah, guard=False)
            adapted[m]["val"].append(adapted_logits(X[va, 0], groups[va], head, ah, guard=False))
            adapted[m]["val_idx"].append(va)
        test_logits[te] = zt
        m = classification_metrics(y[te], zt.argmax(1), labels)
        m["test_speakers"] = sorted({speakers[i] for i in te})
        fold_metrics.append(m)
        for split_name, idx, z in (("test", te, zt), ("val", va, zv)):
            for i, zi in zip(idx, z):
                row = {"path": str(utts[i].path), "speaker": utts[i].speaker, "corpus": utts[i].corpus,
                       "gender": utts[i].gender, "label": int(y[i]), "fold": k, "logits": zi.tolist()}
                if split_name == "val":
                    row["split"] = "val"
                rows.append(row)
        if log:
            log(f"CV fold {k + 1}/{folds}: train {len(tr)}, val {len(va)}, test {len(te)} clips; "
                f"test UAR (all 8 classes) {m['uar']:.3f}")
    per_corpus = _corpus_scores(y, test_logits, corpora, labels)
    per_fold_corpus = []
    for k in range(folds):
        te = np.where(f == k)[0]
        per_fold_corpus.append({c: v["uar"] for c, v in _corpus_scores(y[te], test_logits[te], corpora[te], labels).items()})
    for c, v in per_corpus.items():
        vals = [p[c] for p in per_fold_corpus if c in p]
        v["uar_folds"] = vals
        v["uar_std"] = float(np.std(vals))
    adapt_out = {}
    for m, d in adapted.items():
        from ser.emotion.calibration import calibration_record

        va = np.concatenate(d["val_idx"])
        zv = np.concatenate(d["val"])
        cal = calibration_record(zv, y[va], corpora[va], d["test"], y)
        scores = _corpus_scores(y, d["test"], corpora, labels)
        adapt_out[m] = {"per_corpus": {c: {k: v for k, v in sc.items() if k != "confusion"} for c, sc in scores.items()},
                        "calibration": cal}
        if log:
            log(f"CV adapt={m}: " + ", ".join(f"{c} UAR {sc['uar']:.3f}" for c, sc in scores.items())
                + f"; temperature {cal['temperature']:.2f}, margin {cal['uncertain_margin']:.2f}")
    protocol = (f"speaker-grouped {folds}-fold cross-validation over the pooled corpora ({len(set(speakers))} speakers, "
                f"{len(utts)} clips); per fold: test = 1 speaker group, validation (calibration) = the next group, "
                f"training = the other {folds - 2}; no speaker in two of them. Per corpus: UAR over the folds' pooled "
                f"test predictions, the head choosing among that corpus's own classes (uar_all_classes: among all "
                f"{len(labels)})")
    return {"protocol": protocol, "labels": list(labels), "summary": summarize_folds(fold_metrics),
            "folds": fold_metrics, "per_corpus": per_corpus, "clips": rows, "adapt": adapt_out}


def leave_one_corpus_out(utts: Sequence[Utterance], X: np.ndarray, y: np.ndarray, labels: Sequence[str], *,
                         C: float = 0.1, adapt: Sequence[str] = (), adapt_settings: dict | None = None,
                         log: Log | None = None) -> dict:
    """Train on all corpora but one, score the held-out corpus on the classes it shares with them."""
    from ser.training.train import classification_metrics

    corpora = np.array([u.corpus for u in utts])
    names = sorted(set(corpora.tolist()))
    if len(names) < 2:
        raise DataError("Leave-one-corpus-out needs at least two corpora (--data/--corpus pairs).")
    out = {}
    for held in names:
        tr, te = np.where(corpora != held)[0], np.where(corpora == held)[0]
        if set(corpora[tr]) & {held}:
            raise AssertionError("a corpus on both sides of a leave-one-corpus-out split")
        shared = sorted(set(y[te].tolist()) & set(y[tr].tolist()))
        te = te[np.isin(y[te], shared)]
        head = fit_head(X[tr], y[tr], corpora[tr], len(labels), C=C)
        m = classification_metrics(y[te], restricted_argmax(head.logits(X[te, 0]), shared), labels)
        out[held] = {"trained_on": sorted(set(corpora[tr].tolist())), "classes": [labels[k] for k in shared],
                     "chance": 1.0 / len(shared), "n": int(len(te)), "uar": m["uar"], "accuracy": m["accuracy"],
                     "macro_f1": m["macro_f1"], "confusion": m["confusion"]}
        for mode in adapt:
            ah = fit_adapt_head(X[tr], y[tr], corpora[tr], adapt_groups(utts, mode)[tr], len(labels), head, C=C)
            out[held][f"adapt_{mode}"] = _loco_adapted(utts, X, y, te, shared, head, ah, mode,
                                                       (adapt_settings or {}).get(mode), log=log, held=held)
        if log:
            log(f"LOCO {held}: UAR {m['uar']:.3f} (chance {1 / len(shared):.3f}, {len(shared)} shared classes, "
                f"{len(te)} clips), accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}")
    mean = float(np.mean([v["uar"] for v in out.values()]))
    if adapt:
        out_adapt = {}
        for mode in adapt:
            rows = [v[f"adapt_{mode}"] for v in out.values()]
            out_adapt[mode] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.startswith("uar")}
            if "stress" in rows[0]:
                out_adapt[mode]["stress"] = {k: float(np.mean([r["stress"][k] for r in rows])) for k in rows[0]["stress"]}
        return {"protocol": LOCO_PROTOCOL, "per_corpus": out, "mean_uar": mean, "adapt_mean": out_adapt,
                "adapt_protocol": ADAPT_PROTOCOL}
    return {"protocol": "leave-one-corpus-out: train on all corpora but one (every clip, clean + augmented copies), "
                        "score every clip of the held-out corpus whose class the training corpora have; the head "
                        "chooses among those shared classes; chance = 1 / shared classes",
            "per_corpus": out, "mean_uar": mean}


LOCO_PROTOCOL = ("leave-one-corpus-out: train on all corpora but one (every clip, clean + augmented copies), "
                 "score every clip of the held-out corpus whose class the training corpora have; the head "
                 "chooses among those shared classes; chance = 1 / shared classes")
ADAPT_PROTOCOL = ("adaptation on the held-out corpus, no labels used: 'batch' splits its clips at random into batches "
                  "of n (5 repetitions; 'all' = the whole corpus as one batch) and centres each batch on itself "
                  "(shrunk toward the training prior, guard on, as shipped); 'speaker' centres each speaker's clips; "
                  "'stress': batches of 30 clips of one emotion each (5 per shared class; in speaker mode each "
                  "speaker's clips in the batch are one group), accuracy with and without adaptation and how often "
                  "the guard (or too few clips) left the whole batch unadapted")
ADAPT_SIZES = (3, 10, 30, 100, None)


def _loco_adapted(utts, X, y, te, shared, head, ah, mode, settings, *, log=None, held="", reps: int = 5,
                  seed: int = 0) -> dict:
    from ser.emotion.adapt import AdaptSettings, adapt_logits

    s = AdaptSettings.from_card(settings or {})
    rng = np.random.default_rng(seed)
    X0, yt = X[te, 0], y[te]
    z0 = head.logits(X0)

    def uar_of(z):
        from sklearn.metrics import balanced_accuracy_score

        return float(balanced_accuracy_score(yt, restricted_argmax(z, shared)))

    res: dict = {"uar_none": uar_of(z0)}
    if mode == "speaker":
        groups = np.array([utts[i].speaker for i in te], dtype=object)
        res["uar"] = uar_of(adapt_logits(X0, groups, z0, ah, s)[0])
        res["uar_unguarded"] = uar_of(adapt_logits(X0, groups, z0, ah, s, guard=False)[0])
    else:
        for n in ADAPT_SIZES:
            vals = []
            for _ in range(reps if n else 1):
                order = rng.permutation(len(te))
                groups = np.empty(len(te), dtype=object)
                step = n or len(te)
                for b in range(0, len(te), step):
                    groups[order[b:b + step]] = b // step
                vals.append(uar_of(adapt_logits(X0, groups, z0, ah, s)[0]))
            res[f"uar_{n or 'all'}"] = float(np.mean(vals))
        res["uar"] = res["uar_all"]
        res["uar_unguarded_all"] = uar_of(adapt_logits(X0, np.zeros(len(te)), z0, ah, s, guard=False)[0])
    # the failure mode: everyone in the group shows the same emotion
    acc0, acc_g, acc_u, fired = [], [], [], []
    for k in shared:
        idx = np.where(yt == k)[0]
        for _ in range(reps):
            pick = rng.choice(idx, min(30, len(idx)), replace=False)
            # the batch is one group; in speaker mode each speaker's clips of this emotion are one
            g = np.array([utts[te[i]].speaker for i in pick], dtype=object) if mode == "speaker" else np.zeros(len(pick))
            zg, adapted, _ = adapt_logits(X0[pick], g, z0[pick], ah, s)
            zu = adapt_logits(X0[pick], g, z0[pick], ah, s, guard=False)[0]
            acc0.append(float((restricted_argmax(z0[pick], shared) == k).mean()))
            acc_g.append(float((restricted_argmax(zg, shared) == k).mean()))
            acc_u.append(float((restricted_argmax(zu, shared) == k).mean()))
            fired.append(float(not adapted.any()))
    res["stress"] = {"accuracy_none": float(np.mean(acc0)), "accuracy_adapted": float(np.mean(acc_g)),
                     "accuracy_unguarded": float(np.mean(acc_u)), "guard_fired": float(np.mean(fired))}
    if log:
        log(f"LOCO {held} adapt={mode}: " + ", ".join(f"{k} {v:.3f}" for k, v in res.items() if k.startswith("uar"))
            + "; one-emotion batches: accuracy none {accuracy_none:.3f}, adapted {accuracy_adapted:.3f} "
              "(unguarded {accuracy_unguarded:.3f}), guard fell back {guard_fired:.0%}".format(**res["stress"]))
    return res
