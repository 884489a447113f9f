"""The diarizer interface and the builtin diarizer's settings and intermediate result
(:class:`Embeddings`), shared by every stage of :mod:`ser.diarization`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ser.analysis.result import SpeakerTurn
from ser.errors import ConfigError


FRAME_S = 0.01  # 10 ms frames for VAD regions, mel frames and resegmentation
Progress = Callable[[str, float], None]  # (stage, fraction done)


def _noop(stage: str, frac: float) -> None:
    pass


def check_speaker_counts(num_speakers: int | None, min_speakers: int | None,
                         max_speakers: int | None) -> tuple[int | None, int, int | None]:
    """Validate the count options; returns ``(exact, minimum, maximum)``."""
    for name, v in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise ConfigError(f"{name} must be a whole number ≥ 1 (got {v!r}).")
    if num_speakers is not None and (min_speakers is not None or max_speakers is not None):
        raise ConfigError("Give either an exact number of speakers or a minimum/maximum, not both.")
    lo = min_speakers or 1
    if max_speakers is not None and max_speakers < lo:
        raise ConfigError(f"max_speakers ({max_speakers}) is below min_speakers ({lo}).")
    return num_speakers, lo, max_speakers


class Diarizer(Protocol):
    name: str

    def settings(self) -> dict: ...

    def __call__(self, y: np.ndarray, sr: int, *, num_speakers: int | None = None,
                 min_speakers: int | None = None, max_speakers: int | None = None,
                 progress: Progress | None = None) -> list[SpeakerTurn]: ...


# --- builtin -------------------------------------------------------------------------
@dataclass(frozen=True)
class BuiltinSettings:
    """Chosen on the simulated development set (bench/diarization_eval.py, docs/diarization.md);
    the overlap and clustering-input settings on the simulated meetings
    (bench/diarization_overlap_tune.py); the six real shared recordings are only checked."""

    embedder: str = "campplus"  # or "resemblyzer" (the d-vector encoder used before CAM++)
    vad: str = "segmentation"  # speech where segmentation-3.0 hears anyone (count > vad_threshold), or "silero"
    vad_threshold: float = 0.5
    min_speech_s: float = 0.1
    min_silence_s: float = 0.1
    speech_pad_s: float = 0.1
    window_s: float = 1.5
    hop_s: float = 0.75
    dense_max_s: float = 600.0  # recordings up to this long get windows every hop_s …
    long_hop_s: float = 1.5  # … longer ones every long_hop_s (diarization RTF ≤ 0.02 at 60 min)
    clustering: str = "ahc"  # average linkage cut at merge_similarity, or "spectral" (eigengap, then merges)
    merge_similarity: float = 0.35  # clusters less similar than this (cosine) are different speakers
    refine_min_speech_s: float = 60.0  # with this much speech, cluster on the refined similarity …
    refine_share: float = 0.3  # … each window's neighbourhood: its most similar 30 % of the windows
    refine_mix: float = 0.5  # … half neighbourhood likeness, half the windows' own cosine
    refine_centre: float = 0.2  # … after subtracting this share of the recording's mean embedding (issue 28) …
    refined_similarity: float = 0.30  # … cut there (ser.diarization.clustering.refined_similarity)
    overcluster: int = 0  # spectral: start from the eigengap count plus this many, then merge
    prune: float = 0.3  # spectral: keep this fraction of the strongest affinities per row
    min_cluster_s: float = 6.0  # a "speaker" with less speech than this joins the nearest one …
    min_cluster_share: float = 0.15  # … or than this share of all speech, when that is less (short clips)
    max_speakers: int = 10
    smoothing_s: float = 0.3
    min_turn_s: float = 0.3  # shorter runs merge into their neighbours
    count_evidence_s: float = 0.0  # > 0: at least as many speakers as one chunk has local speakers talking alone this long
    cluster_max_count: float = 1.3  # cluster only windows whose mean talker count is below this (mixtures join later)
    max_cluster_points: int = 1500  # beyond this many windows, cluster a subsample and assign the rest
    overlap: bool = True  # a second speaker where segmentation-3.0 hears two people
    overlap_threshold: float = 1.4  # expected number of talkers at or above which a frame is overlapped
    min_overlap_s: float = 0.1
    overlap_speaker: str = "local"  # who the second speaker is: "local" (segmentation-3.0's other local speaker,
    # named by the clustering; ser.diarization.overlap) or "second" (the second most similar centroid)
    link_min_alone_s: float = 0.5  # a local speaker is named after ≥ this much solo speech in its chunk
    segmentation_step_s: float = 5.0
    method: str = "windows"  # or "segmentation": local speakers of segmentation-3.0 + CAM++ + global clustering


@dataclass
class Embeddings:
    """The speaker-count-independent part of a builtin diarization."""

    regions: np.ndarray  # (R, 2) speech regions in frames [start, end)
    windows: np.ndarray  # (W, 2) embedding windows in frames [start, end)
    vectors: np.ndarray  # (W, D) unit-norm embeddings
    n_frames: int
    duration_s: float = 0.0
    count: np.ndarray | None = None  # expected number of talking people per frame (segmentation-3.0)
    hop_s: float = 0.0  # the window hop used (long recordings use a longer one)
    chunks: Any = None  # ser.diarization.segmentation.ChunkActivity: each 10-s chunk's local speakers
    local: Any = None  # segmentation path: ser.diarization.segmentation.LocalSpeakers (vectors are its embeddings)


def _frame_runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end, label) runs of a label array."""
    if len(labels) == 0:
        return []
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(labels)]])
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, ends)]
