"""Unsupervised adaptation to the user's own recordings.

A study (one microphone, one room, one population) sits somewhere else in the encoder's feature
space than the training corpora. With no labels, the pooled Whisper features of a *group* of
clips (all inputs of a run, one recording's windows, or one speaker's) are centred on the group's
own mean before a head trained the same way (each training corpus, or speaker, centred on its
own statistics) classifies them.

Three safeguards:

* **Shrinkage.** The group mean is pulled toward the training prior with the weight of
  ``prior_clips`` clips: ``w = (n - 1) / (n - 1 + prior_clips)``. A one-clip group carries no
  information about the study (its mean is the clip itself), so it is classified exactly as
  without adaptation.
* **Too few clips.** Below ``min_clips`` the group is classified without adaptation (said in
  the report).
* **One emotion for everyone.** Centring assumes the group holds a mix of emotions; a group in
  which everyone shows the same emotion would be pushed away from it. The spread of the
  unadapted head's logits within the group, relative to their spread within a training corpus,
  is low for such groups (``min_spread``); the group then falls back to no adaptation.

Every result says which adaptation was used (``"adaptation"`` in the JSON, the History row,
``provenance``).

Example::

    from ser.emotion.adapt import adapt_probabilities
    probs, reports = adapt_probabilities(model, features, groups, "batch")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ser.emotion.calibration import softmax
from ser.errors import ConfigError, ModelError

PREDICT_MODES = ("none", "batch", "speaker")
ANALYZE_MODES = ("none", "recording", "speaker")
#: what an analysis's groups are, per mode (``provenance.adaptation.groups``)
GROUP_KIND = {"recording": "the recording", "speaker": "diarized speakers"}
#: which trained head each mode uses: a recording is a (small) batch
HEAD_OF = {"batch": "batch", "recording": "batch", "speaker": "speaker"}
#: what the training side centres on for each head
TRAIN_GROUP = {"batch": "corpus", "speaker": "speaker"}


@dataclass
class AdaptSettings:
    """The adaptation rules stored in the model card (``card.adaptation[head]``)."""

    prior_clips: float = 10.0
    min_clips: int = 5
    min_spread: float = 0.45
    temperature: float = 1.0
    uncertain_margin: float = 0.0

    @classmethod
    def from_card(cls, d: dict) -> "AdaptSettings":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class AdaptHead:
    """A head trained on group-centred features, with the training prior it shrinks toward.

    ``prior_mean``/``prior_var``: the mean of the training groups' means and of their variances
    (clean clips); ``spread_ref``: the unadapted head's mean logit variance within a training
    group (corpus or speaker); ``head``: a :class:`ser.emotion.head.Head` over ``(x - group mean) / sqrt(prior_var)``."""

    prior_mean: np.ndarray
    prior_var: np.ndarray
    head: object
    spread_ref: float

    def centred(self, X: np.ndarray, mu: np.ndarray) -> np.ndarray:
        return (X - mu) / np.sqrt(self.prior_var + 1e-6)


def check_mode(mode: str, allowed: Sequence[str]) -> str:
    if mode not in allowed:
        raise ConfigError(f"adapt must be one of {', '.join(allowed)} (got {mode!r}).")
    return mode


def group_centre(X: np.ndarray, groups: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training side: each group of ``X`` (N, V, F) standardised by its own mean and variance,
    per version (clean, augmented). Returns the normalised X and the prior (mean of the groups'
    clean means, mean of their clean variances)."""
    groups = np.asarray(groups)
    out = np.empty_like(X)
    means, variances = [], []
    for g in np.unique(groups):
        m = groups == g
        for v in range(X.shape[1]):
            mu, var = X[m, v].mean(0), X[m, v].var(0)
            out[m, v] = (X[m, v] - mu) / np.sqrt(var + 1e-6)
            if v == 0:
                means.append(mu)
                variances.append(var)
    return out, np.mean(means, 0), np.mean(variances, 0)


def logit_spread(z: np.ndarray) -> float:
    """Mean over classes of the variance of the logits across clips."""
    return float(np.var(z, axis=0).mean()) if len(z) > 1 else 0.0


def adapt_group(X: np.ndarray, z_none: np.ndarray, ah: AdaptHead, s: AdaptSettings, *,
                guard: bool = True, unit: str = "clip") -> tuple[np.ndarray | None, dict]:
    """Adapted logits of one group (``X`` (n, F) pooled features, ``z_none`` their unadapted
    logits), or None with the reason when the group falls back to no adaptation. ``unit``: what
    a row is, for the reason ("clip"; an analysis's rows are emotion windows)."""
    n = len(X)
    report: dict = {"clips": n}
    if n < max(2, s.min_clips):
        return None, {**report, "used": "none", "reason": f"{n} {unit}{'s' if n != 1 else ''}: adaptation needs at "
                                                           f"least {max(2, s.min_clips)}"}
    spread = logit_spread(z_none) / ah.spread_ref
    report["spread"] = round(spread, 3)
    if guard and spread < s.min_spread:
        return None, {**report, "used": "none",
                      "reason": f"emotional spread {spread:.2f} < {s.min_spread:.2f} of a training corpus's: the "
                                f"group may hold one emotion only, which centring would erase"}
    w = (n - 1) / (n - 1 + s.prior_clips)
    mu = w * X.mean(0) + (1 - w) * ah.prior_mean
    report["weight"] = round(w, 3)
    return ah.head.logits(ah.centred(X, mu)), report


def adapt_logits(X: np.ndarray, groups: Sequence[str], z_none: np.ndarray, ah: AdaptHead, s: AdaptSettings, *,
                 guard: bool = True, unit: str = "clip") -> tuple[np.ndarray, np.ndarray, dict]:
    """Logits (N, C) of every row with each group adapted on its own; ``adapted`` (N,) bool; and a
    report per group. Rows with NaN features stay NaN."""
    groups = np.asarray(groups, dtype=object)
    ok = ~np.isnan(X).any(1)
    z = np.array(z_none, dtype=np.float64, copy=True)
    adapted = np.zeros(len(X), bool)
    reports = {}
    for g in dict.fromkeys(groups[ok].tolist()):
        m = ok & (groups == g)
        za, rep = adapt_group(X[m], z_none[m], ah, s, guard=guard, unit=unit)
        if za is not None:
            z[m] = za
            adapted[m] = True
            rep["used"] = "adapted"
        reports[str(g)] = rep
    return z, adapted, reports


# --- the loaded model's side ---------------------------------------------------------
def model_adapt_head(model, mode: str) -> tuple[AdaptHead, AdaptSettings]:
    """The numpy form of a loaded model's adaptation head for ``mode`` (cached on the model)."""
    from ser.emotion.head import Head

    name = HEAD_OF[mode]
    heads = getattr(model.net, "adapt", None)
    card = getattr(model.card, "adaptation", None) or {}
    if heads is None or name not in heads or name not in card:
        raise ModelError(f"The model {model.id} has no '{name}' adaptation head; --adapt {mode} needs a model trained "
                         f"with them (the bundled default has them; retrain with \"adapt\" in the config).")
    cache = model.__dict__.setdefault("_adapt_heads", {})
    if name not in cache:
        h = heads[name]
        t = {k: v.detach().float().cpu().numpy().astype(np.float64) for k, v in h.state_dict().items()}
        cache[name] = AdaptHead(t["prior_mean"], t["prior_var"],
                                Head(t["mean"], t["std"], t["linear.weight"], t["linear.bias"]), float(t["spread_ref"]))
    return cache[name], AdaptSettings.from_card(card[name])


def adapt_probabilities(model, X: np.ndarray, groups: Sequence[str], mode: str, *,
                        unit: str = "clip") -> tuple[np.ndarray, np.ndarray, dict]:
    """Probabilities (N, C) of pooled features ``X`` (N, F) under adaptation ``mode`` per group;
    whether each row was adapted; and the per-group reports. ``mode="none"``: the plain model."""
    z_none = model.classify_pooled(X)
    if mode == "none":
        return softmax(z_none / model.card.temperature), np.zeros(len(X), bool), {}
    ah, s = model_adapt_head(model, mode)
    z, adapted, reports = adapt_logits(X, groups, z_none, ah, s, unit=unit)
    p = np.where(adapted[:, None], softmax(z / s.temperature), softmax(z_none / model.card.temperature))
    return p, adapted, reports


def adapted_margin(model, mode: str) -> float | None:
    """The uncertain margin of the head ``mode`` uses (None for "none": the card's own)."""
    if mode == "none":
        return None
    return model.card.adaptation.get(HEAD_OF[mode], {}).get("uncertain_margin")


def summary(mode: str, adapted: np.ndarray, reports: dict, group_kind: str) -> dict:
    """What goes into a result's ``"adaptation"`` field."""
    if mode == "none":
        return {"mode": "none"}
    return {"mode": mode, "groups": group_kind, "adapted_share": round(float(np.mean(adapted)) if len(adapted) else 0.0, 3),
            "per_group": reports}


__all__ = ["ANALYZE_MODES", "AdaptHead", "GROUP_KIND", "AdaptSettings", "PREDICT_MODES", "adapt_group", "adapt_logits",
           "adapt_probabilities", "adapted_margin", "check_mode", "group_centre", "logit_spread", "model_adapt_head", "summary"]
