"""Who spoke when: speaker turns from a recording, with two backends.

``builtin`` (the default) is fully offline; its networks ship in ``models/diarization/``
as safetensors (pyannote segmentation-3.0, MIT; CAM++ from 3D-Speaker, Apache-2.0):

1. voice activity and overlap: segmentation-3.0 over 10-s chunks every 5 s gives the
   expected number of people talking in each 10 ms frame; speech is where it exceeds
   ``vad_threshold`` (silero-vad remains as ``vad="silero"``);
2. speaker embeddings: CAM++ on ``window_s`` windows every ``hop_s`` inside speech (every
   ``long_hop_s`` for recordings longer than ``dense_max_s``, to keep an hour fast);
3. clustering: average-linkage clustering of the windows cut where clusters are less
   similar than ``merge_similarity`` (with a minute of speech or more, on the refined
   neighbourhood similarity of ``ser.diarization.clustering``, cut at ``refined_similarity``), a
   speaker with under ``min_cluster_s`` of speech joining the nearest one (or the count you
   give / bound); ``clustering="spectral"`` keeps the eigengap method;
4. resegmentation: every 10 ms speech frame takes the speaker whose centroid is most
   similar to the windows covering it, smoothed over ``smoothing_s``; where
   segmentation-3.0 hears two people (``overlap``), the second most similar speaker is
   added.

``method="segmentation"`` is the other, pyannote-style path: local speakers of each
chunk, one CAM++ embedding per local speaker, global clustering with the constraint that
two local speakers of a chunk differ, and reconstruction with segmentation-3.0's count.

Stages 1–2 (``embed``) do not depend on the speaker count; stages 3–4 (``assign``) are
cheap, so changing the number of speakers re-runs only those.

``pyannote`` runs a pyannote.audio 4 pipeline from a local folder or a Hugging Face id
with a token the user provides. Telemetry stays off unless ``PYANNOTE_METRICS_ENABLED``
is set by the user.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ser.analysis.result import SpeakerTurn
from ser.errors import ConfigError, ModelError
from ser.diarization.assign import assign
from ser.diarization.base import Progress, BuiltinSettings, Diarizer, Embeddings, _noop, check_speaker_counts
from ser.diarization.embed import embed
from ser.diarization.vad import VAD_POOL


CARD = Path(__file__).resolve().parents[2] / "models" / "diarization" / "card.json"


def diarizer_card() -> dict:
    """The builtin diarizer's card (its networks, licences, training data and measured figures);
    an empty dict when the file is missing or unreadable."""
    try:
        return json.loads(CARD.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def warm_up() -> None:
    """Load the diarization networks (segmentation-3.0, CAM++ optimised for serving, one silero
    instance) and run each once, so that the first recording after a server starts does not pay
    for it; later recordings embed faster (:func:`ser.diarization.campplus.optimise`)."""
    import torch

    from ser.diarization import campplus, segmentation
    with torch.inference_mode():
        segmentation.load()(torch.zeros(1, 1, int(segmentation.CHUNK_S * 16000)))
        campplus.optimise()(torch.zeros(1, 150, 80))
    with VAD_POOL.borrow():
        pass


def warm_up_in_background() -> threading.Thread | None:
    """:func:`warm_up` in a daemon thread (``SER_WARM_DEMO=0`` turns it off, as the tests do)."""
    if os.environ.get("SER_WARM_DEMO", "1") == "0":
        return None

    def run() -> None:
        try:
            warm_up()
        except Exception as exc:  # noqa: BLE001 - a failed warm-up only means the first analysis waits
            print(f"ser: warming the diarizer failed ({exc}); the first analysis will be slower", flush=True)

    t = threading.Thread(target=run, name="ser-warm-diarizer", daemon=True)
    t.start()
    return t


class BuiltinDiarizer:
    """silero-vad + resemblyzer + spectral clustering + resegmentation (offline)."""

    name = "builtin"

    def __init__(self, settings: BuiltinSettings | None = None, **overrides: Any):
        base = settings or BuiltinSettings()
        self.s = BuiltinSettings(**{**asdict(base), **overrides})

    def settings(self) -> dict:
        return {"backend": self.name, **asdict(self.s)}

    def embed(self, y: np.ndarray, sr: int, *, progress: Progress | None = None) -> Embeddings:
        return embed(y, sr, self.s, progress=progress)

    def assign(self, emb: Embeddings, **counts: Any) -> list[SpeakerTurn]:
        return assign(emb, self.s, **counts)

    def __call__(self, y: np.ndarray, sr: int, *, num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None, progress: Progress | None = None) -> list[SpeakerTurn]:
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        emb = self.embed(y, sr, progress=progress)
        return self.assign(emb, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers,
                           progress=progress)


# --- pyannote --------------------------------------------------------------------------
PYANNOTE_DEFAULT = "pyannote/speaker-diarization-community-1"
TOKEN_ENV = ("SER_HF_TOKEN", "HF_TOKEN", "HUGGINGFACE_TOKEN")


def hf_token_from_env() -> str | None:
    for name in TOKEN_ENV:
        if os.environ.get(name):
            return os.environ[name]
    return None


class PyannoteDiarizer:
    """A pyannote.audio 4 pipeline from a local folder (offline) or a Hugging Face id plus token.

    ``source`` is a folder holding the pipeline's ``config.yaml`` (for example a git clone
    of the model repository), a path to such a ``config.yaml``, or a Hugging Face id. A hub
    id needs a token (``token=`` or one of $SER_HF_TOKEN / $HF_TOKEN) and network access;
    $HF_HUB_OFFLINE is lifted only for that call.
    """

    name = "pyannote"

    def __init__(self, source: str | Path | None = None, *, token: str | None = None, device: str = "auto"):
        self.source = str(source or os.environ.get("SER_PYANNOTE_PIPELINE") or PYANNOTE_DEFAULT)
        self.token = token or hf_token_from_env()
        self.device = device
        self._pipeline = None
        # a pipeline keeps per-run state (hooks, instantiated parameters, models moved to a device):
        # one run at a time per instance
        self._lock = threading.RLock()

    def settings(self) -> dict:
        return {"backend": self.name, "source": self.source, "device": self.device}

    def _load(self):
        with self._lock:
            return self._load_locked()

    def _load_locked(self):
        if self._pipeline is not None:
            return self._pipeline
        os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
        path = Path(self.source).expanduser()
        local = path.exists()
        looks_local = self.source.startswith((".", "/", "~")) or self.source.count("/") != 1 or self.source.endswith(".yaml")
        if not local and looks_local:
            raise ModelError(f"The pyannote pipeline folder {self.source} does not exist. Point to a folder with "
                             "the pipeline's config.yaml, or use the builtin diarizer (--diarizer builtin), "
                             "which works offline.")
        if local:
            cfg = path / "config.yaml" if path.is_dir() else path
            if not cfg.is_file():
                raise ModelError(f"{path} has no config.yaml, so it is not a pyannote pipeline folder. "
                                 "Clone the model repository there, or use the builtin diarizer (--diarizer builtin).")
        elif not self.token:
            raise ModelError(f"The pyannote pipeline {self.source} is on Hugging Face and needs an access token "
                             f"(set ${TOKEN_ENV[0]} or enter it in the sidebar) and network access. Without them, "
                             "use a local pipeline folder or the builtin diarizer (--diarizer builtin), "
                             "which works offline.")
        try:
            from pyannote.audio import Pipeline
        except ImportError as exc:  # pragma: no cover - pinned in requirements
            raise ModelError(f"pyannote.audio is not installed ({exc}); use the builtin diarizer.") from exc
        try:
            if local:
                pipe = Pipeline.from_pretrained(cfg)
            else:
                old = os.environ.pop("HF_HUB_OFFLINE", None)
                try:
                    pipe = Pipeline.from_pretrained(self.source, token=self.token)
                finally:
                    if old is not None:
                        os.environ["HF_HUB_OFFLINE"] = old
        except Exception as exc:  # pyannote/hub raise many types; give one clear message
            raise ModelError(f"Could not load the pyannote pipeline {self.source}: {exc}. "
                             "Check the folder or token, or use the builtin diarizer (--diarizer builtin).") from exc
        if pipe is None:
            raise ModelError(f"Could not load the pyannote pipeline {self.source} (access not granted?). "
                             "Use the builtin diarizer (--diarizer builtin) meanwhile.")
        from ser.emotion.model import pick_device
        dev = pick_device(self.device)
        try:
            pipe.to(dev)
        except Exception:  # some pipelines are CPU-only
            pass
        self._pipeline = pipe
        return pipe

    def __call__(self, y: np.ndarray, sr: int, *, num_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None, progress: Progress | None = None) -> list[SpeakerTurn]:
        import torch
        progress = progress or _noop
        check_speaker_counts(num_speakers, min_speakers, max_speakers)
        pipe = self._load()
        progress("pyannote", 0.0)
        kwargs = {k: v for k, v in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                                    ("max_speakers", max_speakers)) if v is not None}
        wave = {"waveform": torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None], "sample_rate": sr}
        with self._lock:
            out = pipe(wave, **kwargs)
        ann = getattr(out, "speaker_diarization", out)  # pyannote 4 returns an object; 3.x an Annotation
        turns = [SpeakerTurn(round(seg.start, 3), round(seg.end, 3), str(label))
                 for seg, _, label in ann.itertracks(yield_label=True)]
        progress("pyannote", 1.0)
        return sorted(turns, key=lambda t: (t.start_s, t.speaker))


def get_diarizer(name: str = "builtin", **kwargs: Any) -> Diarizer:
    if name == "builtin":
        return BuiltinDiarizer(**kwargs)
    if name == "pyannote":
        return PyannoteDiarizer(**kwargs)
    raise ConfigError(f"Unknown diarizer {name!r}; choose builtin or pyannote.")
