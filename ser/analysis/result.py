"""Typed results of an analysis: speaker turns, emotion segments, the whole Analysis.

Every export, the API and the dashboard read these; each segment carries the
students' ``{"emotion", "probabilities"}``. Times are seconds from the start of the
recording. JSON schema: ``Analysis.to_dict()`` (``schema`` names its version).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

SCHEMA = "ser.analysis/2"  # /2 added the transcript (words, utterances); /1 documents read as /2 without one


@dataclass(frozen=True)
class SpeakerTurn:
    start_s: float
    end_s: float
    speaker: str

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class EmotionSegment:
    start_s: float
    end_s: float
    speaker: str
    emotion: str  # the most probable label
    probabilities: dict[str, float]  # label -> probability, in the model's label order
    uncertain: bool = False  # no emotion clearly leads (model card's margin)
    kind: Literal["turn", "window"] = "turn"  # a whole turn's aggregate, or one sliding window

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Word:
    """One transcribed word (Whisper's word timestamps), with the speaker turn it falls in."""
    start_s: float
    end_s: float
    text: str  # as the tokenizer spells it, leading space removed
    probability: float  # the decoder's probability of the word
    speaker: str | None = None  # None: in no speaker turn (rare: a word in a gap between turns)


@dataclass(frozen=True)
class Utterance:
    """Consecutive words of one speaker (split at speaker changes and long pauses), with the
    emotion of the turn they fall in (None when that turn is unscored)."""
    start_s: float
    end_s: float
    speaker: str | None
    text: str
    emotion: str | None = None
    probabilities: dict[str, float] | None = None
    uncertain: bool = False


def to_annotation(turns, uri: str = "audio"):
    """A pyannote.core Annotation of turns (anything with start_s, end_s, speaker): for RTTM and scoring."""
    from pyannote.core import Annotation, Segment

    ann = Annotation(uri=uri)
    for i, t in enumerate(turns):
        ann[Segment(t.start_s, t.end_s), i] = t.speaker
    return ann


@dataclass
class Analysis:
    name: str
    duration_s: float
    labels: list[str]
    turns: list[SpeakerTurn] = field(default_factory=list)
    segments: list[EmotionSegment] = field(default_factory=list)  # one per scored turn
    windows: list[EmotionSegment] = field(default_factory=list)  # sliding windows, for timelines
    provenance: dict = field(default_factory=dict)
    words: list[Word] = field(default_factory=list)  # the transcript (empty: not transcribed)
    utterances: list[Utterance] = field(default_factory=list)

    @property
    def transcribed(self) -> bool:
        return "transcript" in self.provenance and not self.provenance["transcript"].get("error")

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self.turns})

    def speaker_summary(self) -> dict[str, dict]:
        """Per speaker: talk time, turns, duration-weighted mean probabilities, dominant emotion."""
        out = {}
        for spk in self.speakers:
            turns = [t for t in self.turns if t.speaker == spk]
            segs = [s for s in self.segments if s.speaker == spk]
            weight = sum(s.duration_s for s in segs)
            mean = {label: (sum(s.probabilities[label] * s.duration_s for s in segs) / weight if weight else 0.0)
                    for label in self.labels}
            out[spk] = {"talk_time_s": sum(t.duration_s for t in turns), "turns": len(turns),
                        "mean_probabilities": mean,
                        "dominant_emotion": max(mean, key=mean.get) if weight else None}
        return out

    def speaker_rows(self) -> list[dict]:
        """The per-speaker summary as table rows (one per speaker, a column per label)."""
        return [{"speaker": spk, "talk time (s)": round(v["talk_time_s"], 1), "turns": v["turns"],
                 "dominant emotion": v["dominant_emotion"] or "–",
                 **{k: round(p, 3) for k, p in v["mean_probabilities"].items()}}
                for spk, v in self.speaker_summary().items()]

    def crop(self, start_s: float, end_s: float) -> "Analysis":
        """The part of this analysis in ``[start_s, end_s]``, with times relative to ``start_s`` (as
        in a clip cut there): turns and windows overlapping the range, clipped to it. Turn-level
        emotions keep the whole turn's probabilities; ``provenance["range_s"]`` records the cut."""
        start_s, end_s = max(0.0, float(start_s)), min(float(self.duration_s), float(end_s))
        if end_s <= start_s:
            raise ValueError(f"empty range {start_s:.3f}-{end_s:.3f} s")

        def cut(items):
            out = []
            for it in items:
                if it.end_s > start_s and it.start_s < end_s:
                    out.append(replace(it, start_s=round(max(it.start_s, start_s) - start_s, 3),
                                       end_s=round(min(it.end_s, end_s) - start_s, 3)))
            return out

        prov = {**self.provenance, "range_s": [round(start_s, 3), round(end_s, 3)]}
        return Analysis(name=self.name, duration_s=round(end_s - start_s, 3), labels=list(self.labels),
                        turns=cut(self.turns), segments=cut(self.segments), windows=cut(self.windows), provenance=prov,
                        words=cut(self.words), utterances=cut(self.utterances))

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "name": self.name, "duration_s": self.duration_s, "labels": list(self.labels),
                "turns": [asdict(t) for t in self.turns], "segments": [asdict(s) for s in self.segments],
                "windows": [asdict(s) for s in self.windows], "speakers": self.speaker_summary(),
                "words": [asdict(w) for w in self.words], "utterances": [asdict(u) for u in self.utterances],
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: dict) -> "Analysis":
        return cls(name=d["name"], duration_s=d["duration_s"], labels=list(d["labels"]),
                   turns=[SpeakerTurn(**t) for t in d["turns"]],
                   segments=[EmotionSegment(**s) for s in d["segments"]],
                   windows=[EmotionSegment(**s) for s in d["windows"]], provenance=d.get("provenance", {}),
                   words=[Word(**w) for w in d.get("words", [])],
                   utterances=[Utterance(**u) for u in d.get("utterances", [])])
