"""Pooled Whisper features of whole corpora (cached on disk) and the heads fitted on them:
the building blocks of :mod:`ser.training.multicorpus` and :mod:`ser.training.protocols`.
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

from ser.training.datasets import Utterance, read_corpus
from ser.errors import DataError, ModelError
from ser.emotion.head import Head


Progress = Callable[[str, int, int], None]
Log = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """One corpus to read: a reader name (``ser.training.datasets.READERS``) and its folder or manifest."""

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

    from ser.emotion.folder import WEIGHTS_FILE, resolve_model_dir

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
    from ser.emotion.features import FeatureConfig
    from ser.emotion.nets import build_model

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

    from ser.audio.decode import SAMPLE_RATE, AudioLimits, load_audio
    from ser.audio.augment import channel_augment
    from ser.emotion.features import trim_silence

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


# --- adaptation heads (ser.emotion.adapt) ---------------------------------------------------
def fit_adapt_head(X: np.ndarray, y: np.ndarray, corpora: Sequence[str], groups: Sequence[str], n_classes: int,
                   none_head: Head, *, C: float = 0.1):
    """A head for group-centred features: each training group (corpus or speaker) standardised by
    its own statistics, as :mod:`ser.emotion.adapt` centres the user's groups at use."""
    from ser.emotion.adapt import AdaptHead, group_centre, logit_spread

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
    from ser.emotion.adapt import HEAD_OF, TRAIN_GROUP

    key = TRAIN_GROUP[HEAD_OF[mode]]
    return np.array([getattr(u, key) for u in utts], dtype=object)


def adapted_logits(X0: np.ndarray, groups: Sequence[str], none_head: Head, ah, settings=None, *,
                   guard: bool = True) -> np.ndarray:
    """Logits of clean pooled features ``X0`` (N, F), each group adapted (``ser.emotion.adapt.adapt_logits``)."""
    from ser.emotion.adapt import AdaptSettings, adapt_logits

    return adapt_logits(X0, groups, none_head.logits(X0), ah, settings or AdaptSettings(), guard=guard)[0]


# --- protocols ---------------------------------------------------------------------
def restricted_argmax(logits: np.ndarray, allowed: Sequence[int]) -> np.ndarray:
    allowed = np.asarray(sorted(allowed))
    return allowed[np.asarray(logits)[:, allowed].argmax(1)]
