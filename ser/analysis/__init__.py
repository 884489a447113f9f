"""One analysis of a recording, from audio to what a person sees and takes away.

- :mod:`ser.analysis.result` — the :class:`Analysis` type (turns, emotion segments,
  per-speaker summary, transcript, provenance) and its JSON schema ``ser.analysis/2``;
- :mod:`ser.analysis.pipeline` — :func:`~ser.analysis.pipeline.analyze`: audio → diarization
  → emotion per turn → Analysis, with a stage cache so a changed option re-runs one stage;
- :mod:`ser.analysis.figures` — the dashboard's plotly figures (waveform, spectrogram,
  speaker lanes, emotion overlay) and the Models page's charts;
- :mod:`ser.analysis.exports` — JSON, CSV, RTTM, TextGrid, EAF, Audacity labels;
- :mod:`ser.analysis.demo` — the bundled demo dialogue (espeak-ng) and its reference turns.
"""

from ser.analysis.result import Analysis, EmotionSegment, SpeakerTurn, to_annotation

__all__ = ["Analysis", "EmotionSegment", "SpeakerTurn", "to_annotation"]
