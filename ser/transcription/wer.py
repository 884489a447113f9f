"""Word error rate, as speech recognition reports it: (substitutions + deletions + insertions)
over the reference's words, after the usual normalisation (case folded, punctuation removed,
``-``/``'`` inside words kept, whitespace collapsed). German ``ß`` and umlauts stay as they are.
"""

from __future__ import annotations

import re
import unicodedata

_PUNCT = re.compile(r"[^\w\s'-]|(?<!\w)['-]|['-](?!\w)")


def normalise(text: str) -> list[str]:
    s = unicodedata.normalize("NFC", text).casefold()
    return _PUNCT.sub(" ", s).split()


def edit_counts(ref: list[str], hyp: list[str]) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of the cheapest alignment (Levenshtein)."""
    prev = [(j, 0, 0, j) for j in range(len(hyp) + 1)]  # (cost, subs, dels, ins)
    for i in range(1, len(ref) + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, len(hyp) + 1):
            same = ref[i - 1] == hyp[j - 1]
            d = prev[j - 1]
            options = [(d[0] + (not same), d[1] + (not same), d[2], d[3]),
                       (prev[j][0] + 1, prev[j][1], prev[j][2] + 1, prev[j][3]),
                       (cur[j - 1][0] + 1, cur[j - 1][1], cur[j - 1][2], cur[j - 1][3] + 1)]
            cur.append(min(options))
        prev = cur
    return prev[-1][1], prev[-1][2], prev[-1][3]


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = normalise(reference), normalise(hypothesis)
    if not ref:
        return float(bool(hyp))
    return sum(edit_counts(ref, hyp)) / len(ref)
