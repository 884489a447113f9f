"""Known voices: name a diarized speaker when their voice matches an enrolled one.

A *voice* is a name and the unit mean of CAM++ embeddings (``ser.diarization.campplus``) of
the speech it was enrolled from — clips or the turns of a speaker in an earlier analysis;
never audio. After diarization every speaker gets one embedding the same way, from the
stretches where they talk alone (:func:`speaker_vectors`), and :func:`identify` compares the
two sets by cosine:

- speakers and voices are paired one to one (the assignment with the highest total
  similarity: two speakers never get one name, one speaker never two);
- a pair at or above ``accept`` names the speaker; between ``uncertain`` and ``accept`` the
  speaker keeps its anonymous label and the result says whom it may be; below, nothing;
- a further speaker that matches an already named voice at or above ``merge`` (and hardly
  talks at the same time as that voice's speaker — nobody overlaps with themselves) is the
  same person split by the diarizer (a change of mood or of microphone distance): its turns
  join the named speaker's. That is how an enrolled voice guides the speaker count.

The thresholds are calibrated on simulated conversations of the shared corpora's speakers
that the evaluation does not use (``bench/voices_eval.py``, docs/voices.md); a speaker needs
``MIN_SPEECH_S`` of solo speech to be named at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ser.analysis.result import SpeakerTurn
from ser.errors import AudioError, ConfigError

FRAME_S = 0.01
WINDOW = 150  # frames: the diarizer's 1.5-s embedding windows
HOP = 75
MIN_STRETCH = 50  # frames: solo stretches shorter than 0.5 s are not used
MIN_SPEECH_S = 2.0  # a speaker with less solo speech is never named
# Calibrated by bench/voices_eval.py (calibration half of the shared speakers; docs/voices.md).
ACCEPT = 0.60
UNCERTAIN = 0.45
MERGE = 0.60
# The stretch screen (:func:`screen`) is off by default: it took ~0.6-0.9 points of strangers'
# speech out of named speakers but made the diarization of 3 of 30 (calibration) and 6 of 40
# (evaluation) conversations worse, where naming alone makes none worse (docs/voices.md).
STRETCH_FLOOR = 0.40  # when on: a named speaker's solo stretch less like the voice than this …
CLUSTER_FLOOR = 0.50  # … and less like the rest of its cluster than this is someone else …
REHOME = 0.5  # … and goes to the unnamed speaker it is at least this like, if any
MAX_MERGE_OVERLAP = 0.1  # share of the smaller speaker's talk time spent overlapping the other
NAME_MAX = 80
_ANONYMOUS = re.compile(r"^SPEAKER_\d+$")


@dataclass(frozen=True)
class Voice:
    """An enrolled voice: its name and unit-norm centroid (192-d CAM++)."""

    name: str
    vector: np.ndarray
    seconds: float = 0.0
    samples: int = 1


@dataclass(frozen=True)
class Thresholds:
    accept: float = ACCEPT
    uncertain: float = UNCERTAIN
    merge: float = MERGE
    min_speech_s: float = MIN_SPEECH_S
    stretch_floor: float | None = None  # the stretch screen: off (None), or e.g. STRETCH_FLOOR


@dataclass
class Match:
    """What identification decided for one diarized speaker."""

    speaker: str  # the diarizer's label
    status: str  # "named", "merged" (joined a named speaker), "uncertain" or "unknown"
    voice: str | None = None  # the name given (named, merged) or suggested (uncertain)
    score: float | None = None  # cosine similarity to that voice
    speech_s: float = 0.0  # solo speech its embedding came from
    candidates: dict[str, float] = field(default_factory=dict)  # every voice's similarity

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "status": self.status, "voice": self.voice,
                "score": None if self.score is None else round(self.score, 4), "speech_s": round(self.speech_s, 2),
                "candidates": {k: round(v, 4) for k, v in self.candidates.items()}}


def check_name(name: str) -> str:
    """A voice name as stored: trimmed, 1–80 characters, no control characters, not an anonymous
    label (``SPEAKER_00`` would collide with the diarizer's own)."""
    if not isinstance(name, str):
        raise ConfigError("A voice name must be text.")
    n = re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f]", " ", name)).strip()
    if not n:
        raise ConfigError("A voice needs a name (it was empty).")
    if len(n) > NAME_MAX:
        raise ConfigError(f"A voice name has at most {NAME_MAX} characters (got {len(n)}).")
    if _ANONYMOUS.match(n):
        raise ConfigError(f"{n!r} looks like the diarizer's own anonymous labels; choose a person's name.")
    return n


def _embed(feats: np.ndarray, windows: list[tuple[int, int]]) -> np.ndarray:
    from ser.diarization import campplus

    if not windows:
        return np.zeros((0, campplus.EMBED_DIM), np.float32)
    return campplus.embed_windows(feats, np.asarray(windows, np.int64).reshape(-1, 2))


def _windows(a: int, b: int, n_frames: int) -> list[tuple[int, int]]:
    """1.5-s windows every 0.75 s over frames [a, b); a shorter stretch gets one centred window."""
    if b - a < WINDOW:
        c = (a + b) // 2
        s = int(np.clip(c - WINDOW // 2, 0, max(0, n_frames - WINDOW)))
        return [(s, min(n_frames, s + WINDOW))]
    starts = list(range(a, b - WINDOW + 1, HOP))
    if starts[-1] + WINDOW < b:
        starts.append(b - WINDOW)
    return [(s, s + WINDOW) for s in starts]


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return (v / (np.linalg.norm(v) + 1e-12)).astype(np.float32)


def clip_vector(y: np.ndarray, sr: int = 16000) -> tuple[np.ndarray, float]:
    """The enrolment embedding of one clip of one person: unit mean of its windows over the
    speech between the first and last loud frame. Returns ``(vector, seconds of speech)``."""
    from ser.diarization import campplus
    from ser.emotion.features import trim_silence

    if sr != 16000:
        raise ConfigError("clip_vector expects 16 kHz audio (ser.load_audio resamples).")
    speech = trim_silence(np.asarray(y, np.float32), top_db=35.0)
    seconds = len(speech) / sr
    if seconds < 0.5 or float(np.max(np.abs(speech), initial=0.0)) < 1e-4:
        raise AudioError(f"An enrolment clip needs at least 0.5 s of speech (this one has {seconds:.1f} s). "
                         "Use a clip of the person talking alone, a few seconds or more.")
    feats = campplus.fbank(speech, sr)
    vecs = _embed(feats, _windows(0, len(feats), len(feats)))
    return unit(vecs.mean(0)), seconds


def solo_stretches(turns: list[SpeakerTurn], n_frames: int) -> dict[str, list[tuple[int, int]]]:
    """Per speaker, the frame runs where they and nobody else talk (≥ 0.5 s each)."""
    speakers = sorted({t.speaker for t in turns})
    if not speakers:
        return {}
    active = np.zeros((len(speakers), n_frames), bool)
    idx = {s: i for i, s in enumerate(speakers)}
    for t in turns:
        a, b = int(round(t.start_s / FRAME_S)), min(n_frames, int(round(t.end_s / FRAME_S)))
        active[idx[t.speaker], max(0, a):b] = True
    alone = active & (active.sum(0) == 1)
    out: dict[str, list[tuple[int, int]]] = {}
    for s, i in idx.items():
        x = np.concatenate([[0], alone[i].astype(np.int8), [0]])
        d = np.diff(x)
        runs = [(int(a), int(b)) for a, b in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)) if b - a >= MIN_STRETCH]
        out[s] = runs
    return out


@dataclass(frozen=True)
class Stretch:
    """A run of frames where one diarized speaker talks alone, with its embedding."""

    speaker: str
    start: int  # frames (10 ms)
    end: int
    vector: np.ndarray  # unit norm

    @property
    def seconds(self) -> float:
        return (self.end - self.start) * FRAME_S


def stretch_vectors(y: np.ndarray, sr: int, turns: list[SpeakerTurn], emb=None) -> list[Stretch]:
    """Every solo stretch of 0.5 s or more, each with the unit mean of its windows' CAM++ embeddings.

    ``emb``: the builtin diarizer's :class:`~ser.diarization.base.Embeddings` of the same audio;
    a stretch then takes the diarizer's windows whose centre falls in it (the same network on the
    same 1.5-s windows: no second pass), and only stretches without one are embedded here."""
    from ser.diarization import campplus

    if not turns:
        return []
    n_frames = 1 + max(0, (len(y) - sr // 40) // (sr // 100))
    runs = [(s, a, b) for s, rs in solo_stretches(turns, n_frames).items() for a, b in rs]
    vectors: dict[int, np.ndarray] = {}
    if emb is not None and len(getattr(emb, "windows", ())) and emb.vectors.shape[1:] == (campplus.EMBED_DIM,):
        mid = (emb.windows[:, 0] + emb.windows[:, 1]) / 2
        for k, (_, a, b) in enumerate(runs):
            sel = (mid >= a) & (mid < b)
            if sel.any():
                vectors[k] = unit(emb.vectors[sel].mean(0))
    todo = [k for k in range(len(runs)) if k not in vectors]
    if todo:
        feats = campplus.fbank(np.asarray(y, np.float32), sr)
        windows, owner = [], []
        for k in todo:
            _, a, b = runs[k]
            for w in _windows(a, b, len(feats)):
                windows.append(w)
                owner.append(k)
        vecs = _embed(feats, windows)
        owner_arr = np.asarray(owner)
        for k in todo:
            vectors[k] = unit(vecs[owner_arr == k].mean(0))
    return [Stretch(s, a, b, vectors[k]) for k, (s, a, b) in enumerate(runs)]


def speaker_vectors(y: np.ndarray, sr: int, turns: list[SpeakerTurn],
                    stretches: list[Stretch] | None = None) -> dict[str, tuple[np.ndarray, float]]:
    """One embedding per diarized speaker from the stretches where they talk alone:
    ``{speaker: (unit vector, seconds of solo speech)}``; a speaker with no stretch of 0.5 s
    or more is left out. Each stretch counts by its length, up to the 1.5-s window."""
    if stretches is None:
        stretches = stretch_vectors(y, sr, turns)
    return pool(stretches)


def pool(stretches: list[Stretch]) -> dict[str, tuple[np.ndarray, float]]:
    out: dict[str, list] = {}
    for st in stretches:
        acc = out.setdefault(st.speaker, [np.zeros_like(st.vector, dtype=np.float64), 0.0])
        acc[0] += st.vector * (st.end - st.start)
        acc[1] += st.seconds
    return {s: (unit(v), sec) for s, (v, sec) in out.items()}


def _overlap_share(turns: list[SpeakerTurn], a: str, b: str) -> float:
    """Time speakers ``a`` and ``b`` talk at once, as a share of the smaller one's talk time."""
    ta = [(t.start_s, t.end_s) for t in turns if t.speaker == a]
    tb = [(t.start_s, t.end_s) for t in turns if t.speaker == b]
    both = sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in ta for s2, e2 in tb)
    small = min(sum(e - s for s, e in ta), sum(e - s for s, e in tb))
    return both / small if small > 0 else 1.0


def identify(turns: list[SpeakerTurn], vectors: dict[str, tuple[np.ndarray, float]], voices: list[Voice],
             thresholds: Thresholds = Thresholds(), *, min_speakers: int = 1) -> list[Match]:
    """Decide a name for every diarized speaker (see the module's docstring). Speakers without
    an embedding (too little solo speech) stay unknown. Merging never leaves fewer speakers than
    ``min_speakers`` (a count the user gave: exact or minimum)."""
    from scipy.optimize import linear_sum_assignment

    th = thresholds
    speakers = sorted({t.speaker for t in turns})
    matches = {s: Match(s, "unknown", speech_s=vectors[s][1] if s in vectors else 0.0) for s in speakers}
    usable = [s for s in speakers if s in vectors and vectors[s][1] >= th.min_speech_s]
    if not voices or not usable:
        return [matches[s] for s in speakers]
    V = np.stack([v.vector for v in voices]).astype(np.float64)
    S = np.stack([vectors[s][0] for s in usable]).astype(np.float64) @ V.T
    for i, s in enumerate(usable):
        matches[s].candidates = {v.name: float(S[i, j]) for j, v in enumerate(voices)}
    rows, cols = linear_sum_assignment(-S)
    named: dict[int, str] = {}  # voice index → the speaker named after it
    for i, j in zip(rows, cols):
        s, score = usable[i], float(S[i, j])
        if score >= th.accept:
            matches[s].status, matches[s].voice, matches[s].score = "named", voices[j].name, score
            named[j] = s
        elif score >= th.uncertain:
            matches[s].status, matches[s].voice, matches[s].score = "uncertain", voices[j].name, score
    candidates = []  # a speaker split in two: the rest of a named voice
    for i, s in enumerate(usable):
        j = int(np.argmax(S[i]))
        if matches[s].status != "named" and j in named and S[i, j] >= th.merge \
                and _overlap_share(turns, s, named[j]) <= MAX_MERGE_OVERLAP:
            candidates.append((float(S[i, j]), s, j))
    left = len(speakers)
    for score, s, j in sorted(candidates, reverse=True):  # surest first, down to the count given
        if left - 1 < min_speakers:
            break
        matches[s].status, matches[s].voice, matches[s].score = "merged", voices[j].name, score
        left -= 1
    return [matches[s] for s in speakers]


def apply(turns: list[SpeakerTurn], matches: list[Match]) -> list[SpeakerTurn]:
    """The turns with named and merged speakers renamed; a merged speaker's turns that touch or
    overlap the named one's are joined."""
    rename = {m.speaker: m.voice for m in matches if m.status in ("named", "merged") and m.voice}
    if not rename:
        return list(turns)
    by: dict[str, list[list[float]]] = {}
    for t in sorted(turns, key=lambda t: (t.start_s, t.end_s)):
        spk = rename.get(t.speaker, t.speaker)
        runs = by.setdefault(spk, [])
        if runs and t.start_s <= runs[-1][1] + 1e-6:
            runs[-1][1] = max(runs[-1][1], t.end_s)
        else:
            runs.append([t.start_s, t.end_s])
    out = [SpeakerTurn(round(a, 3), round(b, 3), s) for s, rs in by.items() for a, b in rs]
    return sorted(out, key=lambda t: (t.start_s, t.speaker))


def screen(turns: list[SpeakerTurn], stretches: list[Stretch], matches: list[Match], voices: list[Voice],
           floor: float | None = STRETCH_FLOOR) -> list[SpeakerTurn]:
    """Turns after :func:`apply`, with the solo stretches of a named (or merged) speaker that are
    unlike the voice (cosine below ``floor``) and unlike the rest of their cluster (below
    ``CLUSTER_FLOOR``) given to the unnamed speaker they are most like, or back to the diarizer's
    anonymous label: the diarizer sometimes puts another person's turn in a speaker's cluster,
    and the name must not go with it. On the calibration set this took ~40 % of such strangers'
    speech out of the named speakers for 0.3 % of the named speakers' own, but it made some
    conversations' diarization worse, so analyses leave it off (``Thresholds.stretch_floor``)."""
    if floor is None:
        return turns
    voice = {v.name: v.vector for v in voices}
    name_of = {m.speaker: m.voice for m in matches if m.status in ("named", "merged") and m.voice in voice}
    sums: dict[str, np.ndarray] = {}
    for st in stretches:
        sums[st.speaker] = sums.get(st.speaker, 0.0) + st.vector * (st.end - st.start)

    def unlike_rest(st: Stretch) -> bool:  # the cluster's other stretches, pooled as in pool()
        rest = sums[st.speaker] - st.vector * (st.end - st.start)
        return float(np.linalg.norm(rest)) < 1e-9 or float(np.dot(st.vector, unit(rest))) < CLUSTER_FLOOR

    out_stretches = [st for st in stretches if st.speaker in name_of
                     and float(np.dot(st.vector, voice[name_of[st.speaker]])) < floor and unlike_rest(st)]
    if not out_stretches:
        return turns
    # where each goes: the unnamed speaker it is most like (a turn the diarizer misplaced), if it is
    # clearly like one, else the cluster's own anonymous label (someone the diarizer did not separate)
    cent = {k: v for k, (v, _) in pool([st for st in stretches if st.speaker not in name_of]).items()}
    dest = {}
    for st in out_stretches:
        best = max(cent, key=lambda k: float(np.dot(st.vector, cent[k])), default=None)
        dest[id(st)] = best if best is not None and float(np.dot(st.vector, cent[best])) >= REHOME else st.speaker
    affected = {name_of[st.speaker] for st in out_stretches} | set(dest.values())
    keep = [t for t in turns if t.speaker not in affected]
    n = int(round(max(t.end_s for t in turns) / FRAME_S)) + 1
    act = {lab: np.zeros(n, bool) for lab in affected}
    for t in turns:
        if t.speaker in act:
            act[t.speaker][int(round(t.start_s / FRAME_S)):int(round(t.end_s / FRAME_S))] = True
    for st in out_stretches:
        act[name_of[st.speaker]][st.start:st.end] = False
        act[dest[id(st)]][st.start:st.end] = True
    for lab, a in act.items():
        x = np.diff(np.concatenate([[0], a.astype(np.int8), [0]]))
        for s0, s1 in zip(np.flatnonzero(x == 1), np.flatnonzero(x == -1)):
            keep.append(SpeakerTurn(round(float(s0) * FRAME_S, 3), round(float(s1) * FRAME_S, 3), lab))
    return sorted(keep, key=lambda t: (t.start_s, t.speaker))


def fingerprint(voices: list[Voice], thresholds: Thresholds = Thresholds()) -> str:
    """A short hash of the voices and thresholds (stage cache key, provenance)."""
    import hashlib

    h = hashlib.sha256(repr((thresholds.accept, thresholds.uncertain, thresholds.merge, thresholds.min_speech_s,
                             thresholds.stretch_floor)).encode())
    for v in sorted(voices, key=lambda v: v.name):
        h.update(v.name.encode())
        h.update(np.asarray(v.vector, np.float32).tobytes())
    return h.hexdigest()[:16]
