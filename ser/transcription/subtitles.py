"""Subtitles of an analysis: SubRip (``.srt``) and WebVTT (``.vtt``), one cue per utterance.

Each cue says who speaks and how, then what was said::

    3
    00:00:12,400 --> 00:00:15,100
    [SPEAKER_01 · angry 72%] Why did nobody listen to me?

An utterance longer than ``MAX_CUE_S`` is split into cues at word boundaries (players show a
cue whole). Overlapping utterances of two speakers stay two cues at the same time (players
stack them). Text is written as text: control characters become spaces (no line break can end
a cue), ``-->`` becomes ``->`` (no text can read as a timing line), and in WebVTT ``&``, ``<``
and ``>`` are escaped (a cue's text is markup there; SRT has none).
"""

from __future__ import annotations

from ser.analysis.escape import clean_name
from ser.analysis.result import Analysis, Utterance, Word

MAX_CUE_S = 7.0


def _stamp(t: float, sep: str) -> str:
    ms = int(round(max(0.0, t) * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _who(u: Utterance) -> str:

    speaker = clean_name(u.speaker) if u.speaker else "?"
    if u.emotion is None:
        return f"[{speaker}]"
    p = (u.probabilities or {}).get(u.emotion)
    how = f"{u.emotion}{'?' if u.uncertain else ''}" + (f" {p:.0%}" if p is not None else "")
    return f"[{speaker} · {how}]"


def cues(a: Analysis) -> list[tuple[float, float, str]]:
    """(start, end, text) per cue, in time order."""

    out = []
    for u in sorted(a.utterances, key=lambda u: (u.start_s, u.end_s)):
        words = [w for w in a.words if w.speaker == u.speaker and u.start_s <= w.start_s and w.end_s <= u.end_s + 1e-6]
        for lo, hi, text in _split(u, words):
            out.append((lo, hi, f"{_who(u)} {clean_name(text)}".replace("-->", "->").strip()))
    return out


def _split(u: Utterance, words: list[Word]) -> list[tuple[float, float, str]]:
    if u.end_s - u.start_s <= MAX_CUE_S or len(words) < 2:
        return [(u.start_s, u.end_s, u.text)]
    pieces, current = [], []
    for w in words:
        if current and w.end_s - current[0].start_s > MAX_CUE_S:
            pieces.append(current)
            current = []
        current.append(w)
    pieces.append(current)
    return [(p[0].start_s, p[-1].end_s, " ".join(w.text for w in p)) for p in pieces]


def srt(a: Analysis) -> str:
    blocks = [f"{i}\n{_stamp(lo, ',')} --> {_stamp(hi, ',')}\n{text}\n"
              for i, (lo, hi, text) in enumerate(cues(a), start=1)]
    return "\n".join(blocks)


def _vtt_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(a: Analysis) -> str:
    blocks = [f"{_stamp(lo, '.')} --> {_stamp(hi, '.')}\n{_vtt_text(text)}\n" for lo, hi, text in cues(a)]
    return "WEBVTT\n\n" + "\n".join(blocks)
