"""Diarization error rate of a diarizer over ``../shared/data/diarization`` (pyannote.metrics).

    python bench/diarization_eval.py [--data DIR] [--out bench/results/diarization.json]

Scores the builtin diarizer (defaults from ser.diarization.BuiltinSettings) with the UEM
applied and overlapped speech scored, at collar 0.25 s and 0 s, with the automatic and
the oracle speaker count; per file: DER, missed speech, false alarm, confusion.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "diarization"


def load_set(data: Path):
    from pyannote.database.util import load_rttm, load_uem
    from ser.audio import load_audio
    items = []
    for wav in sorted(data.glob("*.wav")):
        uri = wav.stem
        items.append((uri, load_audio(wav).y, load_rttm(wav.with_suffix(".rttm"))[uri],
                      load_uem(wav.with_suffix(".uem"))[uri]))
    return items


def score(items, hyps: dict, collar: float) -> dict:
    from pyannote.metrics.diarization import DiarizationErrorRate
    from ser.diarization import to_annotation
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    files = {}
    for uri, _, ref, uem in items:
        d = metric(ref, to_annotation(hyps[uri], uri), uem=uem, detailed=True)
        tot = d["total"] or 1.0
        files[uri] = {"der": d["diarization error rate"], "missed": d["missed detection"] / tot,
                      "false_alarm": d["false alarm"] / tot, "confusion": d["confusion"] / tot,
                      "speakers": len({t.speaker for t in hyps[uri]}), "ref_speakers": len(ref.labels())}
    comp = metric.accumulated_
    return {"der": abs(metric), "missed": comp["missed detection"] / comp["total"],
            "false_alarm": comp["false alarm"] / comp["total"], "confusion": comp["confusion"] / comp["total"],
            "files": files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diarization.json")
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"No diarization data at {args.data}")
    from ser.diarization import BuiltinDiarizer
    items = load_set(args.data)
    dia = BuiltinDiarizer()
    auto, oracle, secs = {}, {}, 0.0
    for uri, y, ref, _ in items:
        t0 = time.perf_counter()
        emb = dia.embed(y, 16000)
        auto[uri] = dia.assign(emb)
        secs += time.perf_counter() - t0
        oracle[uri] = dia.assign(emb, num_speakers=len(ref.labels()))
    res = {"data": str(args.data), "diarizer": dia.settings(), "overlap_scored": True, "uem": True,
           "auto_count": {"collar_0.25": score(items, auto, 0.25), "collar_0": score(items, auto, 0.0)},
           "oracle_count": {"collar_0.25": score(items, oracle, 0.25), "collar_0": score(items, oracle, 0.0)},
           "seconds_total": secs, "audio_seconds": sum(len(y) for _, y, _, _ in items) / 16000}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    for mode in ("auto_count", "oracle_count"):
        for collar in ("collar_0.25", "collar_0"):
            r = res[mode][collar]
            print(f"{mode:12s} {collar:11s} DER {r['der']:.3f} (miss {r['missed']:.3f}, FA {r['false_alarm']:.3f}, "
                  f"conf {r['confusion']:.3f})")
    for uri, f in res["auto_count"]["collar_0.25"]["files"].items():
        print(f"  {uri:22s} DER {f['der']:.3f} miss {f['missed']:.3f} FA {f['false_alarm']:.3f} "
              f"conf {f['confusion']:.3f} speakers {f['speakers']}/{f['ref_speakers']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
