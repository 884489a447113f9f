"""A span of a signal as a WAV file, to the sample: what the Analyze page plays for a turn or a
range and offers as the range's download. (A browser player given the whole file with start and
end times seeks to whole seconds: a turn played that way began up to a second early and ran on.)"""

from __future__ import annotations

import io

import numpy as np


def cut_wav(y: np.ndarray, sr: int, start_s: float, end_s: float) -> bytes:
    """Samples ``round(start_s·sr)`` to ``round(end_s·sr)`` of ``y`` (clamped to the signal) as a
    16-bit PCM WAV at ``sr``."""
    import soundfile as sf

    i = min(len(y), max(0, int(round(start_s * sr))))
    j = min(len(y), max(i, int(round(end_s * sr))))
    buf = io.BytesIO()
    sf.write(buf, np.asarray(y[i:j], dtype=np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()
