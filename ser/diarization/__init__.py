"""Who spoke when: the diarization backends and the steps they are made of.

- :mod:`ser.diarization.backends` — :class:`BuiltinDiarizer` (offline, bundled networks),
  :class:`PyannoteDiarizer` (a pyannote.audio pipeline you provide), :func:`get_diarizer`,
  the diarizer's card and warm-up;
- :mod:`ser.diarization.base` — the interface, :class:`BuiltinSettings`, the intermediate
  :class:`~ser.diarization.base.Embeddings`;
- the builtin diarizer's stages, in order: :mod:`~ser.diarization.vad` (where speech is),
  :mod:`~ser.diarization.embed` (a speaker embedding per window), :mod:`~ser.diarization.assign`
  (clustering and frame-level resegmentation) and :mod:`~ser.diarization.overlap` (who the
  second speaker is where segmentation-3.0 hears two), using the networks in
  :mod:`~ser.diarization.segmentation` (pyannote segmentation-3.0) and
  :mod:`~ser.diarization.campplus` (CAM++) and the linkage in :mod:`~ser.diarization.clustering`;
- :mod:`ser.diarization.simulate` and :mod:`~ser.diarization.meeting` — simulated
  conversations and meetings from the shared corpora, the sets the settings are chosen on;
  :mod:`~ser.diarization.breakdown` splits their missed speech into one-speaker and overlapped.
"""

from ser.diarization.backends import BuiltinDiarizer, PyannoteDiarizer, get_diarizer, warm_up
from ser.diarization.base import BuiltinSettings, Diarizer

__all__ = ["BuiltinDiarizer", "BuiltinSettings", "Diarizer", "PyannoteDiarizer", "get_diarizer", "warm_up"]
