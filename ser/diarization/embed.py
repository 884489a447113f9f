"""Stages 1–2 of the builtin diarizer: speech regions and one speaker embedding per window
(CAM++ by default, resemblyzer as the alternative). Independent of the speaker count.
"""

from __future__ import annotations


import numpy as np

from ser.diarization.base import Progress, BuiltinSettings, Embeddings, FRAME_S, _noop
from ser.diarization.vad import _LOAD_LOCK, _regions_from_activity, speech_regions


def _resemblyzer():
    """The d-vector encoder, shared: a stateless LSTM forward, safe to call from several threads."""
    global _ENCODER
    if _ENCODER is None:
        with _LOAD_LOCK:
            if _ENCODER is None:
                from resemblyzer import VoiceEncoder
                _ENCODER = VoiceEncoder(device="cpu", verbose=False)
    return _ENCODER


def _mel_frames(y: np.ndarray, sr: int, *, block_s: float = 60.0) -> np.ndarray:
    """resemblyzer's input: 40-band power mel at 10 ms (25 ms windows), computed in blocks with torch.

    Matches ``resemblyzer.audio.wav_to_mel_spectrogram`` (librosa, centred frames) but runs
    ~5× faster and never holds more than one block's spectrum.
    """
    import torch
    import librosa
    n_fft, hop = 400, 160
    fb = torch.from_numpy(librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=40).astype(np.float32))
    window = torch.hann_window(n_fft)
    # volume normalisation to -30 dBFS as resemblyzer's preprocess_wav does
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) + 1e-12
    gain = 10 ** (-30 / 20) / rms
    n_frames = 1 + len(y) // hop
    out = np.empty((n_frames, 40), dtype=np.float32)
    block = int(block_s * sr) // hop * hop
    pad = n_fft // 2
    yp = np.pad(y.astype(np.float32, copy=False), pad, mode="constant")  # librosa ≥0.10 pads with zeros
    for f0 in range(0, n_frames, block // hop):
        f1 = min(n_frames, f0 + block // hop)
        seg = torch.from_numpy(yp[f0 * hop: (f1 - 1) * hop + n_fft]) * gain
        spec = torch.stft(seg, n_fft, hop, window=window, center=False, return_complex=True).abs().pow(2)
        out[f0:f1] = (fb @ spec).T.numpy()[: f1 - f0]
    return out


def _windows_in(regions: np.ndarray, win: int, hop: int, n_frames: int) -> np.ndarray:
    """Embedding windows (in frames) covering every speech region; short regions get one centred window."""
    out = []
    for a, b in regions:
        if b - a <= win:
            c = (a + b) // 2
            s = int(np.clip(c - win // 2, 0, max(0, n_frames - win)))
            out.append((s, s + win))
            continue
        starts = np.arange(a, b - win + 1, hop)
        if starts[-1] + win < b:  # cover the tail
            starts = np.append(starts, b - win)
        out.extend((int(s), int(s) + win) for s in starts)
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def _embed_resemblyzer(y: np.ndarray, sr: int, windows_s: tuple[float, float], regions: np.ndarray,
                       progress: Progress, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    import torch
    mel = _mel_frames(y, sr)
    win, hop = int(round(windows_s[0] / FRAME_S)), int(round(windows_s[1] / FRAME_S))
    windows = _windows_in(regions, win, hop, len(mel))
    enc = _resemblyzer()
    vecs = np.empty((len(windows), 256), dtype=np.float32)
    with torch.inference_mode():
        for i in range(0, len(windows), batch):
            chunk = np.stack([mel[a:b] if b <= len(mel) else np.pad(mel[a:], ((0, b - len(mel)), (0, 0)))
                              for a, b in windows[i:i + batch]])
            vecs[i:i + batch] = enc(torch.from_numpy(chunk)).numpy()
            progress("speaker embeddings", min(1.0, (i + batch) / len(windows)))
    return windows, vecs


def _embed_campplus(y: np.ndarray, sr: int, windows_s: tuple[float, float], regions: np.ndarray,
                    progress: Progress) -> tuple[np.ndarray, np.ndarray]:
    from ser.diarization import campplus
    feats = campplus.fbank(y, sr)
    win, hop = int(round(windows_s[0] / FRAME_S)), int(round(windows_s[1] / FRAME_S))
    windows = _windows_in(regions, win, hop, len(feats))
    return windows, campplus.embed_windows(feats, windows, progress=lambda f: progress("speaker embeddings", f))


def embed(y: np.ndarray, sr: int, settings: BuiltinSettings = BuiltinSettings(), *,
          progress: Progress | None = None) -> Embeddings:
    """Stages 1–2: speech regions and one embedding per window."""
    progress = progress or _noop
    s = settings
    progress("voice activity", 0.0)
    n_frames = 1 + len(y) // int(sr * FRAME_S)
    count = chunks = None
    if s.method == "segmentation":
        from ser.diarization import segmentation
        loc = segmentation.local_speakers(y, sr, step_s=s.segmentation_step_s,
                                          progress=lambda f: progress("speaker embeddings", f))
        count = np.pad(loc.count, (0, max(0, n_frames - len(loc.count))))[:n_frames]
        regions = _regions_from_activity(count > s.vad_threshold, s)
        progress("voice activity", 1.0)
        return Embeddings(regions, np.zeros((0, 2), np.int64), loc.vectors, n_frames, len(y) / sr, count, local=loc)
    if s.overlap or s.vad == "segmentation":
        from ser.diarization import segmentation
        count, chunks = segmentation.segment(y, sr, step_s=s.segmentation_step_s,
                                             progress=lambda f: progress("voice activity", 0.9 * f))
        count = np.pad(count, (0, max(0, n_frames - len(count))))[:n_frames]
    if count is not None:
        from ser.threads import trim_heap
        trim_heap()  # the segmentation batches' activations, freed in worker arenas, back before CAM++
    if s.vad == "segmentation":
        regions = _regions_from_activity(count > s.vad_threshold, s)
    else:
        regions = speech_regions(y, sr, s)
    progress("voice activity", 1.0)
    dim = 256 if s.embedder == "resemblyzer" else 192
    if len(regions) == 0:
        return Embeddings(regions, np.zeros((0, 2), np.int64), np.zeros((0, dim), np.float32), n_frames,
                          len(y) / sr, count, chunks=chunks)
    progress("speaker embeddings", 0.0)
    hop = s.hop_s if len(y) / sr <= s.dense_max_s else s.long_hop_s  # long recordings: the fast path
    fn = _embed_resemblyzer if s.embedder == "resemblyzer" else _embed_campplus
    windows, vecs = fn(y, sr, (s.window_s, hop), regions, progress)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-9
    return Embeddings(regions, windows, vecs, n_frames, len(y) / sr, count, hop_s=hop, chunks=chunks)


def window_seconds(emb: Embeddings) -> np.ndarray:
    """Seconds of speech each window stands for: its region's length shared among the region's windows."""
    if len(emb.windows) == 0:
        return np.zeros(0)
    mid = (emb.windows[:, 0] + emb.windows[:, 1]) // 2
    region = np.clip(np.searchsorted(emb.regions[:, 0], mid, side="right") - 1, 0, len(emb.regions) - 1)
    length = (emb.regions[:, 1] - emb.regions[:, 0]) * FRAME_S
    per = np.bincount(region, minlength=len(emb.regions))
    return length[region] / np.maximum(per[region], 1)
