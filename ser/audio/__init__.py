"""The audio door and what works on raw audio before any model sees it.

- :mod:`ser.audio.decode` — decode any supported file or bytes (soundfile, then PyAV),
  validate it (limits on size, length, rate, channels, level) and return mono 16 kHz;
- :mod:`ser.audio.augment` — channel and room augmentation for training and simulation;
- :mod:`ser.audio.fuzz` — the decoder fuzzer (hostile files, each decoded in a child process).
"""

from ser.audio.decode import SAMPLE_RATE, SUPPORTED_FORMATS, Audio, AudioLimits, load_audio, resample

__all__ = ["SAMPLE_RATE", "SUPPORTED_FORMATS", "Audio", "AudioLimits", "load_audio", "resample"]
