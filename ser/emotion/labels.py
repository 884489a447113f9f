"""Label sets as data.

The canonical vocabulary is RAVDESS's eight emotions. Every other label set is a
column of one mapping table (``ser/data/label_map.csv``): which canonical emotion
becomes which label of the set, or none. Corpus readers translate their own codes
into canonical emotions; models store their label order in their card; the UI reads
label names from here or from the card, never from code.

Example::

    >>> from ser.emotion.labels import LABEL_SETS, map_label, map_probabilities
    >>> LABEL_SETS["four"].labels
    ('neutral', 'happy', 'sad', 'angry')
    >>> map_label("calm", "four")
    'neutral'
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

from ser.errors import ConfigError


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[str, ...]  # label order (first appearance in the table)
    mapping: Mapping[str, str | None]  # canonical emotion -> label of this set, or None

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: str) -> int:
        return self.labels.index(label)


@lru_cache(maxsize=1)
def _load() -> tuple[tuple[str, ...], dict[str, LabelSet]]:
    text = resources.files("ser").joinpath("data/label_map.csv").read_text(encoding="utf-8")
    rows = [r for r in csv.reader(line for line in text.splitlines() if line and not line.startswith("#"))]
    header, body = rows[0], rows[1:]
    emotions = tuple(r[0] for r in body)
    sets = {}
    for col, name in enumerate(header[1:], start=1):
        mapping = {r[0]: (r[col] or None) for r in body}
        labels = tuple(dict.fromkeys(v for v in mapping.values() if v))
        sets[name] = LabelSet(name, labels, mapping)
    return emotions, sets


EMOTIONS: tuple[str, ...] = _load()[0]
LABEL_SETS: dict[str, LabelSet] = _load()[1]


def get_label_set(name: str) -> LabelSet:
    try:
        return LABEL_SETS[name]
    except KeyError:
        raise ConfigError(f"Unknown label set {name!r}; choose one of {', '.join(LABEL_SETS)}.") from None


def map_label(emotion: str, label_set: str) -> str | None:
    """The label of ``label_set`` for canonical ``emotion``, or None when the set leaves it out."""
    ls = get_label_set(label_set)
    if emotion not in ls.mapping:
        raise ConfigError(f"Unknown emotion {emotion!r}; canonical emotions are {', '.join(EMOTIONS)}.")
    return ls.mapping[emotion]


def map_probabilities(probabilities: Mapping[str, float], label_set: str) -> dict[str, float]:
    """Carry probabilities over canonical emotions (or any labels that are canonical
    emotions) into ``label_set``: mass of emotions mapped to the same label is summed,
    mass of emotions the set leaves out is dropped, and the result is renormalised.

    Probabilities whose keys are already labels of ``label_set`` are returned
    renormalised as they are."""
    ls = get_label_set(label_set)
    if set(probabilities) <= set(ls.labels):
        out = {label: float(probabilities.get(label, 0.0)) for label in ls.labels}
    else:
        out = dict.fromkeys(ls.labels, 0.0)
        for emotion, p in probabilities.items():
            target = map_label(emotion, label_set)
            if target is not None:
                out[target] += float(p)
    total = sum(out.values())
    if total <= 0:
        return {label: 1.0 / len(ls) for label in ls.labels}
    return {label: p / total for label, p in out.items()}
