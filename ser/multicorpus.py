"""Training and evaluating the Whisper-feature model on several corpora at once.

The encoder is frozen, so a clip is encoded once (plus ``augment`` channel-augmented
copies, :mod:`ser.augment`) into its pooled features, cached on disk, and every model of a
protocol is a logistic-regression head fitted on those features in seconds.

Policies (written into the model card):

- **Labels.** The head predicts the eight RAVDESS emotions (label set ``ravdess8``). Each
  corpus's own codes are mapped to them by its reader (:mod:`ser.datasets`): ASED's five and
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

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .datasets import Utterance, read_corpus
from .errors import DataError, ModelError
from .labels import get_label_set

Progress = Callable[[str, int, int], None]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """One corpus to read: a reader name (``ser.datasets.READERS``) and its folder or manifest."""

    corpus: str
    path: str


def parse_sources(data: Sequence[str], corpora: Sequence[str]) -> list[Source]:
    """``--data A --corpus ravdess --data B --corpus ased`` pairs (one corpus name for all is allowed)."""
    if not data:
        raise DataError("Pass at least one --data folder.")
    if len(corpora) == 1 and len(data) > 1:
        corpora = list(corpora) * len(data)
    if len(corpora) != len(data):
        raise DataError(f"{len(data)} --data folders but {len(corpora)} --corpus names; give one --corpus per --data.")
    return [Source(c, str(d)) for d, c in zip(data, corpora)]


def read_sources(sources: Sequence[Source]) -> list[Utterance]:
    items: list[Utterance] = []
    for s in sources:
        items += read_corpus(s.corpus, s.path)
    return items


# --- encoding ----------------------------------------------------------------------
def load_encoder_state(source: str | Path) -> dict:
    """Whisper encoder tensors (``encoder.*``) from a model folder (name or path) or a
    safetensors file made by ``scripts/convert_whisper.py``."""
    from safetensors.torch import load_file

    from .models import WEIGHTS_FILE, resolve_model_dir

    path = Path(source)
    if not (path.suffix == ".safetensors" and path.is_file()):
        path = resolve_model_dir(source) / WEIGHTS_FILE
    state = {k: v for k, v in load_file(str(path)).items() if k.startswith("encoder.")}
    if not state:
        raise ModelError(f"{path} holds no Whisper encoder (no 'encoder.*' tensors); pass a whisper model folder "
                         "or the file written by scripts/convert_whisper.py.")
    return state


def build_net(labels: Sequence[str], arch_args: dict, encoder: str | Path):
    """A WhisperSER with the pretrained encoder loaded (head untrained)."""
    from .features import FeatureConfig
    from .models import build_model

    net = build_model("whisper", FeatureConfig(), len(labels), **arch_args)
    state = load_encoder_state(encoder)
    keep = {k: v.float() for k, v in state.items() if k in net.state_dict()}
    missing = [k for k in net.state_dict() if k.startswith("encoder.") and k not in keep]
    if missing:
        raise ModelError(f"The encoder in {encoder} lacks {len(missing)} tensors this model needs "
                         f"(e.g. {missing[0]}); it keeps fewer layers than {arch_args}.")
    net.load_state_dict(keep, strict=False)
    return net.eval()


def _cache_key(utterances: Sequence[Utterance], net, augment: int, seed: int, trim_db: float | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([net.layers, augment, seed, trim_db]).encode())
    for k in sorted(k for k in net.state_dict() if k.startswith("encoder.layers.0.")):
        h.update(net.state_dict()[k].float().numpy().tobytes()[:4096])
    for u in utterances:
        st = os.stat(u.path)
        h.update(f"{u.path}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:24]


def encode_corpus(utterances: Sequence[Utterance], net, *, augment: int = 0, seed: int = 0,
                  trim_db: float | None = 40.0, cache_dir: str | Path | None = None,
                  progress: Progress | None = None, log: Log | None = None) -> np.ndarray:
    """Pooled features ``(N, 1 + augment, F)`` (float32): the clean clip, then ``augment``
    channel-augmented copies. Cached in ``cache_dir`` (default ``$SER_CACHE_DIR`` or
    ``~/.cache/ser``) under a key of the files, the encoder and the options."""
    import torch

    from .audio import SAMPLE_RATE, AudioLimits, load_audio
    from .augment import channel_augment
    from .features import trim_silence

    cache_dir = Path(cache_dir or os.environ.get("SER_CACHE_DIR") or Path.home() / ".cache" / "ser") / "features"
    key = _cache_key(utterances, net, augment, seed, trim_db)
    cached = cache_dir / f"whisper-{key}.npy"
    if cached.is_file():
        if log:
            log(f"features from the cache: {cached}")
        return np.load(cached)
    rng = np.random.default_rng(seed)
    out = np.zeros((len(utterances), 1 + augment, 2 * net.encoder.conv1.out_channels * len(net.layers)), np.float32)
    t0 = time.perf_counter()
    for i, u in enumerate(utterances):
        y = load_audio(u.path, sr=SAMPLE_RATE, limits=AudioLimits(min_duration_s=0.2)).y
        if trim_db is not None:
            y = trim_silence(y, top_db=trim_db)
        versions = [y] + [channel_augment(y, rng) for _ in range(augment)]
        with torch.inference_mode():
            for j, v in enumerate(versions):
                out[i, j] = net.pooled(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))[None])[0].numpy()
        if progress:
            progress("encode", i + 1, len(utterances))
        if log and (i + 1) % 500 == 0:
            log(f"encoded {i + 1}/{len(utterances)} clips ({time.perf_counter() - t0:.0f} s)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{key}.{os.getpid()}.npy"
    np.save(tmp, out)
    os.replace(tmp, cached)
    return out


# --- the head ----------------------------------------------------------------------
def balance_weights(corpora: Sequence[str], labels: Sequence[int]) -> np.ndarray:
    """Sample weights giving every corpus the same total weight and, within a corpus, every class."""
    corpora, labels = np.asarray(corpora), np.asarray(labels)
    w = np.zeros(len(labels))
    for c in np.unique(corpora):
        in_c = corpora == c
        classes = np.unique(labels[in_c])
        for k in classes:
            m = in_c & (labels == k)
            w[m] = 1.0 / m.sum() / len(classes)
    return w / w.mean()


@dataclass
class Head:
    """A fitted logistic-regression head over standardised pooled features."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray  # (C, F)
    bias: np.ndarray  # (C,); classes absent from training get a bias of -30 (never chosen)

    def logits(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.std) @ self.weight.T + self.bias

    def into(self, net) -> None:
        import torch

        with torch.no_grad():
            net.mean.copy_(torch.from_numpy(self.mean.astype(np.float32)))
            net.std.copy_(torch.from_numpy(self.std.astype(np.float32)))
            net.linear.weight.copy_(torch.from_numpy(self.weight.astype(np.float32)))
            net.linear.bias.copy_(torch.from_numpy(self.bias.astype(np.float32)))


def fit_head(X: np.ndarray, y: np.ndarray, corpora: Sequence[str], n_classes: int, *, C: float = 0.1) -> Head:
    """``X`` (N, V, F): V versions per clip (clean + augmented), all with the clip's label and weight."""
    from sklearn.linear_model import LogisticRegression

    N, V, Fdim = X.shape
    flat = X.reshape(N * V, Fdim)
    yy = np.repeat(np.asarray(y), V)
    w = np.repeat(balance_weights(corpora, y), V)
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    clf = LogisticRegression(C=C, max_iter=3000).fit((flat - mean) / std, yy, sample_weight=w)
    weight = np.zeros((n_classes, Fdim))
    bias = np.full(n_classes, -30.0)
    coef, inter = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # sklearn's binary form: one row for class 1
        coef, inter = np.vstack([-coef / 2, coef / 2]), np.array([-inter[0] / 2, inter[0] / 2])
    weight[clf.classes_] = coef
    bias[clf.classes_] = inter
    return Head(mean, std, weight, bias)


# --- adaptation heads (ser.adapt) ---------------------------------------------------
def fit_adapt_head(X: np.ndarray, y: np.ndarray, corpora: Sequence[str], groups: Sequence[str], n_classes: int,
                   none_head: Head, *, C: float = 0.1):
    """A head for group-centred features: each training group (corpus or speaker) standardised by
    its own statistics, as :mod:`ser.adapt` centres the user's groups at use."""
    from .adapt import AdaptHead, group_centre, logit_spread

    corpora = np.asarray(corpora)
    Xn, prior_mean, prior_var = group_centre(X, groups)
    head = fit_head(Xn, y, corpora, n_classes, C=C)
    # the spread of a mixed-emotion group of this kind (a corpus, or one speaker) in training
    groups = np.asarray(groups)
    ref = float(np.mean([logit_spread(none_head.logits(X[groups == g, 0])) for g in np.unique(groups)
                         if (groups == g).sum() >= 5]))
    return AdaptHead(prior_mean, prior_var, head, ref)


def adapt_groups(utts: Sequence[Utterance], mode: str) -> np.ndarray:
    """The groups a mode centres on, for training clips: the corpus ("batch") or the speaker."""
    from .adapt import HEAD_OF, TRAIN_GROUP

    key = TRAIN_GROUP[HEAD_OF[mode]]
    return np.array([getattr(u, key) for u in utts], dtype=object)


def adapted_logits(X0: np.ndarray, groups: Sequence[str], none_head: Head, ah, settings=None, *,
                   guard: bool = True) -> np.ndarray:
    """Logits of clean pooled features ``X0`` (N, F), each group adapted (``ser.adapt.adapt_logits``)."""
    from .adapt import AdaptSettings, adapt_logits

    return adapt_logits(X0, groups, none_head.logits(X0), ah, settings or AdaptSettings(), guard=guard)[0]


# --- protocols ---------------------------------------------------------------------
def restricted_argmax(logits: np.ndarray, allowed: Sequence[int]) -> np.ndarray:
    allowed = np.asarray(sorted(allowed))
    return allowed[np.asarray(logits)[:, allowed].argmax(1)]


def _corpus_scores(y: np.ndarray, logits: np.ndarray, corpora: np.ndarray, labels: Sequence[str]) -> dict:
    from .train import classification_metrics

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
    from .train import classification_metrics, speaker_folds, summarize_folds

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
        from .calibration import calibration_record

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
    from .train import classification_metrics

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
    from .adapt import AdaptSettings, adapt_logits

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


__all__ = ["Head", "Source", "balance_weights", "build_net", "cross_validate", "encode_corpus", "fit_head",
           "leave_one_corpus_out", "load_encoder_state", "parse_sources", "read_sources", "restricted_argmax"]


# --- the whole `ser train --arch whisper` -------------------------------------------
def run_training(sources: Sequence[Source], out: str | Path, cfg, *, cv: bool = True, final: bool = True,
                 loco: bool = True, command: str = "", log: Log = print, progress: Progress | None = None,
                 name: str | None = None) -> dict:
    """Encode every clip once (+ ``cfg.augment`` copies), then: pooled speaker-grouped CV,
    leave-one-corpus-out (with two or more corpora), the final head on everything, and
    calibration on the CV validation folds. Writes the model folder ``out``."""
    from .datasets import corpus_licence
    from .models import ModelCard, count_parameters, save_model

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
    from .adapt import AdaptSettings, check_mode

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
        from .plots import save_confusion_png

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
                      "augmentation": f"{cfg.augment} channel-augmented copies per clip (ser.augment: synthetic "
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
            from .calibration import calibrate_and_log

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
    from .datasets import READER_LABELS

    out = {}
    for s in sources:
        has = READER_LABELS.get(s.corpus)
        out[s.corpus] = {"teaches": [l for l in labels if has is None or l in has],
                         "lacks": [l for l in labels if has is not None and l not in has]}
    return out
