"""Conversations with known turn times, assembled from single-speaker clips.

Used by the tests (RAVDESS actors taking turns, checked against the truth) and by the
dashboard's demo. ``conversation`` lays clips end to end with pauses (and optionally a
little overlap), adds a low noise floor, and returns the reference turns with the
intended emotion of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ser.analysis.result import to_annotation  # noqa: F401  (reference turns as an Annotation)
from ser.emotion.features import trim_silence


@dataclass(frozen=True)
class Turn:
    start_s: float
    end_s: float
    speaker: str
    emotion: str | None = None


def conversation(clips: Sequence[tuple[np.ndarray, str, str | None]], *, sr: int = 16000,
                 pause_s: tuple[float, float] = (0.4, 1.0), lead_s: float = 0.5, noise_dbfs: float = -60.0,
                 trim_db: float = 40.0, seed: int = 0) -> tuple[np.ndarray, list[Turn]]:
    """Concatenate ``(y, speaker, emotion)`` clips (trimmed of silence) with random pauses.

    Returns the mono float32 signal and the reference turns (one per clip).
    """
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = [np.zeros(int(lead_s * sr), np.float32)]
    turns: list[Turn] = []
    t = lead_s
    for i, (y, speaker, emotion) in enumerate(clips):
        y = trim_silence(np.asarray(y, dtype=np.float32), top_db=trim_db)
        if i:
            gap = np.zeros(int(rng.uniform(*pause_s) * sr), np.float32)
            pieces.append(gap)
            t += len(gap) / sr
        pieces.append(y)
        turns.append(Turn(round(t, 3), round(t + len(y) / sr, 3), speaker, emotion))
        t += len(y) / sr
    pieces.append(np.zeros(int(lead_s * sr), np.float32))
    out = np.concatenate(pieces)
    out += (10 ** (noise_dbfs / 20) * rng.standard_normal(len(out))).astype(np.float32)
    return out, turns


DIALOGUE = [  # (speaker, espeak-ng voice, pitch 0-99, words per minute, text)
    ("Ana", "en-gb+f3", 66, 160, "Good morning! I have wonderful news, the grant was approved."),
    ("Ben", "en-us+m1", 30, 140, "Really? That is great. I honestly did not expect it this year."),
    ("Ana", "en-gb+f3", 72, 180, "Neither did I! We can finally hire two students for the summer."),
    ("Ben", "en-us+m1", 26, 120, "But we still have to finish the old report first, and it is late again."),
    ("Ana", "en-gb+f3", 60, 135, "I know. I am sorry. I will send you my part tonight."),
    ("Ben", "en-us+m1", 32, 155, "Fine. Let us meet on Friday and plan the new project together."),
]


def synthesize_dialogue(*, sr: int = 16000, pause_s: tuple[float, float] = (0.6, 1.1),
                        seed: int = 0) -> tuple[np.ndarray, list[Turn]]:
    """A two-voice dialogue spoken by espeak-ng (Debian package ``espeak-ng``), with its turns.

    The project's own demo recording: nothing is copied from any corpus. The emotions of
    synthetic speech are not acted, so the turns carry no intended emotion."""
    import shutil
    import subprocess

    from ser.audio.decode import load_audio
    from ser.errors import ConfigError

    if shutil.which("espeak-ng") is None:
        raise ConfigError("espeak-ng is not installed (apt-get install espeak-ng; scripts/setup.sh does it).")
    clips = []
    for speaker, voice, pitch, wpm, text in DIALOGUE:
        wav = subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(wpm), "--stdout", text],
                             capture_output=True, check=True).stdout
        clips.append((load_audio(wav, sr=sr).y, speaker, None))
    return conversation(clips, sr=sr, pause_s=pause_s, seed=seed, noise_dbfs=-70.0)
