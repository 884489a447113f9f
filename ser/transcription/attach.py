"""Words meet speakers and emotion: each word gets the speaker turn it falls in, and
utterances are consecutive words of one speaker with the emotion of their turn.

A word belongs to the turn it overlaps most (in overlapped speech both speakers' turns cover
it: the one that overlaps it more wins, then the turn that started later — the interrupter, whose
words Whisper usually hears over the other voice — then the speaker name, for a stable order).
A word in no turn (a gap the diarizer left) goes to the nearest turn within ``NEAR_S``, else
has no speaker. An utterance never straddles two speakers: it ends where the speaker changes,
at a pause over ``PAUSE_S``, or at the end of a decoder segment (a sentence or so).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ser.analysis.result import EmotionSegment, SpeakerTurn, Utterance, Word

NEAR_S = 0.5
PAUSE_S = 1.0


def _turn_of(w: Any, turns: list[SpeakerTurn]) -> SpeakerTurn | None:
    best, key = None, None
    for t in turns:
        ov = min(w.end_s, t.end_s) - max(w.start_s, t.start_s)
        if ov <= 0 and not (t.start_s <= w.start_s <= t.end_s):
            continue
        k = (ov, t.start_s, t.speaker)
        if key is None or k > key:
            best, key = t, k
    if best is not None:
        return best
    near = [(min(abs(w.start_s - t.end_s), abs(t.start_s - w.end_s)), t.start_s, t) for t in turns]
    near = [n for n in near if n[0] <= NEAR_S]
    return min(near, key=lambda n: (n[0], n[1]))[2] if near else None


def attach(words: list[Any], turns: list[SpeakerTurn], segments: list[EmotionSegment]
           ) -> tuple[list[Word], list[Utterance]]:
    """``words``: anything with start_s, end_s, text, probability, segment (decoder segment index).
    Returns the words with their speaker and the utterances with their turn's emotion."""
    out_words: list[Word] = []
    groups: list[tuple[SpeakerTurn | None, list[Word], int]] = []
    for w in sorted(words, key=lambda w: (w.start_s, w.end_s)):
        turn = _turn_of(w, turns)
        word = Word(w.start_s, w.end_s, w.text, w.probability, turn.speaker if turn else None)
        out_words.append(word)
        seg = getattr(w, "segment", 0)
        if groups:
            last_turn, last_words, last_seg = groups[-1]
            same = (last_turn is turn or (last_turn is not None and turn is not None
                                          and last_turn.speaker == turn.speaker))
            if same and seg == last_seg and word.start_s - last_words[-1].end_s <= PAUSE_S:
                last_words.append(word)
                continue
        groups.append((turn, [word], seg))
    utterances = [_utterance(turn, ws, segments) for turn, ws, _ in groups]
    return out_words, utterances


def _segment_of(start: float, end: float, speaker: str | None, segments: list[EmotionSegment]
                ) -> EmotionSegment | None:
    best, most = None, 0.0
    for s in segments:
        if s.speaker != speaker or s.kind != "turn":
            continue
        ov = min(end, s.end_s) - max(start, s.start_s)
        if ov > most:
            best, most = s, ov
    return best


def _utterance(turn: SpeakerTurn | None, words: list[Word], segments: list[EmotionSegment]) -> Utterance:
    start, end = words[0].start_s, max(w.end_s for w in words)
    speaker = turn.speaker if turn else None
    u = Utterance(start, end, speaker, " ".join(w.text for w in words))
    return with_emotion(u, segments)


def with_emotion(u: Utterance, segments: list[EmotionSegment]) -> Utterance:
    """``u`` with the emotion of the turn segment of its speaker that it overlaps most."""
    s = _segment_of(u.start_s, u.end_s, u.speaker, segments)
    if s is None:
        return replace(u, emotion=None, probabilities=None, uncertain=False)
    return replace(u, emotion=s.emotion, probabilities=dict(s.probabilities), uncertain=s.uncertain)
