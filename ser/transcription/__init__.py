"""Who said what: the transcript stage of an analysis.

- :mod:`ser.transcription.ct2` — the shipped Whisper-base (int8 safetensors) rebuilt as a
  CTranslate2 ``model.bin`` in memory;
- :mod:`ser.transcription.asr` — :func:`~ser.transcription.asr.load_transcriber`: faster-whisper
  with word timestamps over the speech regions the diarization found;
- :mod:`ser.transcription.attach` — words to speaker turns, utterances with their turn's emotion;
- :mod:`ser.transcription.subtitles` — SRT and WebVTT.
"""
