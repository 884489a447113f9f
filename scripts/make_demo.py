"""Writes the dashboard's demo recording, assets/demo_dialogue.wav, and its reference turns
(assets/demo_dialogue.rttm): a two-voice dialogue spoken by espeak-ng. Run from the
project root: .venv/bin/python scripts/make_demo.py"""

from pathlib import Path

import soundfile as sf

from ser.analysis.demo import synthesize_dialogue, to_annotation

ROOT = Path(__file__).resolve().parents[1]
y, turns = synthesize_dialogue()
sf.write(ROOT / "assets" / "demo_dialogue.wav", y, 16000, subtype="PCM_16")
with open(ROOT / "assets" / "demo_dialogue.rttm", "w") as f:
    to_annotation(turns, uri="demo_dialogue").write_rttm(f)
print(f"wrote assets/demo_dialogue.wav ({len(y) / 16000:.1f} s, {len(turns)} turns) and assets/demo_dialogue.rttm")
