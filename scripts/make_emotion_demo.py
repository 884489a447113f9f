"""Build the "emotions in conversation" demo from acted RAVDESS clips.

Three RAVDESS actors (01 male, 02 female, 03 male) take turns, each turn one clip of a clearly
different emotion at strong intensity, with short pauses and a faint room-noise floor between
them. Writes ``assets/demo_emotions.flac``, its reference ``demo_emotions.rttm`` and
``demo_emotions.json`` (each turn: speaker, start, end, intended emotion, source clip).

The clips are chosen by rule (actor, emotion, strong intensity, statement 01, repetition 01),
never by what the model says about them. These actors are in the bundled model's training data,
so the demo shows the instrument, not how well it generalises; the Analyze page says so.

RAVDESS: Livingstone & Russo (2018), PLoS ONE 13(5): e0196391, CC BY-NC-SA 4.0 — the demo is a
derivative, under the same terms (assets/README.md).

Usage::

    python scripts/make_emotion_demo.py [--ravdess ../shared/data/ravdess16k] [--out assets]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EMOTION_CODE = {"neutral": "01", "calm": "02", "happy": "03", "sad": "04", "angry": "05", "fearful": "06",
                "disgust": "07", "surprised": "08"}
#: (actor, emotion) in speaking order: the three voices pass through six emotions
SCRIPT = [(1, "neutral"), (2, "happy"), (3, "angry"), (1, "sad"), (2, "fearful"), (3, "surprised"),
          (1, "happy"), (2, "angry"), (3, "sad"), (1, "disgust"), (2, "surprised"), (3, "neutral")]
SR = 16_000


def clip_path(root: Path, actor: int, emotion: str) -> Path:
    intensity = "01" if emotion == "neutral" else "02"  # neutral has no strong intensity
    return root / f"Actor_{actor:02d}" / f"03-01-{EMOTION_CODE[emotion]}-{intensity}-01-01-{actor:02d}.flac"


def build(ravdess: Path, out: Path, seed: int = 0) -> dict:
    from ser.audio.decode import load_audio
    from ser.emotion.features import trim_silence

    rng = np.random.default_rng(seed)
    parts, turns, t = [], [], 0.0

    def pause(seconds: float) -> None:
        nonlocal t
        parts.append((0.0007 * rng.standard_normal(int(seconds * SR))).astype(np.float32))
        t += seconds

    pause(0.6)
    for actor, emotion in SCRIPT:
        src = clip_path(ravdess, actor, emotion)
        y = trim_silence(load_audio(src).y, top_db=35)
        y = (y / (np.sqrt(np.mean(y ** 2)) + 1e-9) * 0.05).astype(np.float32)  # the same loudness per turn
        y = y + (0.0007 * rng.standard_normal(len(y))).astype(np.float32)
        parts.append(np.clip(y, -1, 1))
        turns.append({"speaker": f"actor{actor:02d}", "start_s": round(t, 3), "end_s": round(t + len(y) / SR, 3),
                      "emotion": emotion, "source": f"RAVDESS {src.parent.name}/{src.name}"})
        t += len(y) / SR
        pause(float(rng.uniform(0.5, 0.8)))
    audio = np.concatenate(parts)
    import soundfile as sf

    out.mkdir(parents=True, exist_ok=True)
    sf.write(out / "demo_emotions.flac", audio, SR, subtype="PCM_16")
    with open(out / "demo_emotions.rttm", "w") as f:
        for tr in turns:
            f.write(f"SPEAKER demo_emotions 1 {tr['start_s']:.3f} {tr['end_s'] - tr['start_s']:.3f} <NA> <NA> "
                    f"{tr['speaker']} <NA> <NA>\n")
    meta = {"description": "Three RAVDESS actors taking turns through six acted emotions (strong intensity).",
            "licence": "CC BY-NC-SA 4.0 (a derivative of RAVDESS; non-commercial, share-alike)",
            "credit": "Livingstone SR, Russo FA (2018) The Ryerson Audio-Visual Database of Emotional Speech and "
                      "Song (RAVDESS). PLoS ONE 13(5): e0196391. doi:10.1371/journal.pone.0196391",
            "in_training_data": "Actors 01-03 are in the bundled model's training data.",
            "duration_s": round(len(audio) / SR, 3), "turns": turns}
    (out / "demo_emotions.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ravdess", default=str(ROOT.parent / "shared" / "data" / "ravdess16k"))
    ap.add_argument("--out", default=str(ROOT / "assets"))
    args = ap.parse_args()
    meta = build(Path(args.ravdess), Path(args.out))
    print(f"wrote {args.out}/demo_emotions.flac ({meta['duration_s']:.1f} s, {len(meta['turns'])} turns)")


if __name__ == "__main__":
    main()
