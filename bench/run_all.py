"""Runs every benchmark in bench/ in turn; each writes its figures to bench/results/."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for script in ["predict_speed.py", "diarization_eval.py", "diarization_speed.py", "analyze_speed.py", "api_load.py", "api_load.py --mix",
               "fuzz_audio.py", "upload_limits.py", "live_latency.py", "scale_engines.py",
               "cross_corpus.py --model default", "view_payload.py", "view_speed.py", "first_screen.py",
               "emotion_demo.py"]:
    print(f"== {script}", flush=True)
    name, *args = script.split()
    subprocess.run([sys.executable, str(HERE / name), *args], check=True)
