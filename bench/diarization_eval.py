"""Diarization error rate on the simulated development set and on the six real recordings.

    python bench/diarization_eval.py [--sim 40] [--check 20] [--short 40] [--out bench/results/diarization.json] [--card]
    python bench/diarization_eval.py --from bench/results/diarization.json --card   # card only, no re-run

Two sets, scored with pyannote.metrics (overlapped speech scored, UEM applied on the real
files, the whole recording on the simulated ones), at collar 0.25 s and 0 s, with the
automatic and the oracle speaker count:

- ``sim``: the seeded simulated development set (``ser.diarization.simulate.dev_set``, seeds 0…39)
  built on the fly from ``../shared/data``'s corpora — what settings are tuned on;
- ``check``: another 20 simulated recordings (seeds 1000…), never tuned on;
- ``short``: 40 short simulated recordings (seeds 3000…, 20–60 s, 2–4 speakers), never tuned
  on — the short-clip case (a class demo, a call) that the development set does not cover;
- ``real``: ``../shared/data/diarization`` (six 30-s recordings) — only checked.

Per file: DER, missed speech, false alarm, confusion, speakers found vs true, and the
diarization wall time. The settings are ``ser.diarization.BuiltinSettings``'s defaults
(plus ``--set key=value`` overrides). ``--card`` writes the headline figures of each set, with
their protocol, into ``models/diarization/card.json`` (the Models page shows them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_DATA = SHARED / "diarization"


@dataclass
class Item:
    uri: str
    y: object
    ref: object  # pyannote Annotation
    uem: object  # pyannote Timeline
    info: dict | None = None


def load_set(data: Path = DEFAULT_DATA) -> list[Item]:
    """The real recordings with their RTTM and UEM."""
    from pyannote.database.util import load_rttm, load_uem
    from ser.audio.decode import load_audio
    return [Item(w.stem, load_audio(w).y, load_rttm(w.with_suffix(".rttm"))[w.stem],
                 load_uem(w.with_suffix(".uem"))[w.stem]) for w in sorted(data.glob("*.wav"))]


SHORT = {"speakers": (2, 4), "duration_s": (20.0, 60.0)}  # the short-clip set: a class demo, a phone call


def load_meetings(n: int, first_seed: int = 5000, data: Path = SHARED) -> list[Item]:
    """Simulated meetings (``ser.diarization.meeting``), scored over their whole length."""
    from pyannote.core import Segment, Timeline
    from ser.analysis.result import to_annotation
    from ser.diarization.meeting import meeting_pool, simulate_meeting
    pool = meeting_pool(data)
    out = []
    for seed in range(first_seed, first_seed + n):
        s = simulate_meeting(pool, seed)
        out.append(Item(s.uri, s.y, to_annotation(s.turns, s.uri),
                        Timeline([Segment(0, len(s.y) / 16000)], uri=s.uri), s.info))
    return out


def load_sim(n: int, first_seed: int = 0, data: Path = SHARED, **settings) -> list[Item]:
    """Simulated recordings (scored over their whole length); ``settings`` override ``SimSettings``."""
    from dataclasses import replace

    from pyannote.core import Segment, Timeline
    from ser.analysis.result import to_annotation
    from ser.diarization.simulate import SimSettings, speaker_pool, simulate
    pool = speaker_pool(data)
    sim = replace(SimSettings(), **settings)
    out = []
    for seed in range(first_seed, first_seed + n):
        s = simulate(pool, seed, sim)
        out.append(Item(s.uri, s.y, to_annotation(s.turns, s.uri),
                        Timeline([Segment(0, len(s.y) / 16000)], uri=s.uri), s.info))
    return out


def ref_turns(ann) -> list:
    from ser.analysis.demo import Turn
    return [Turn(seg.start, seg.end, str(label)) for seg, _, label in ann.itertracks(yield_label=True)]


def score(items: list[Item], hyps: dict, collar: float) -> dict:
    """pyannote's DER and its components per file and pooled, the missed speech split into
    single-speaker and overlapped regions with overlap detection precision/recall
    (``ser.diarization.breakdown``), and the speaker count found."""
    from pyannote.metrics.diarization import DiarizationErrorRate
    from ser.analysis.result import to_annotation
    from ser.diarization.breakdown import breakdown, pooled
    metric = DiarizationErrorRate(collar=collar, skip_overlap=False)
    files, parts = {}, []
    for it in items:
        d = metric(it.ref, to_annotation(hyps[it.uri], it.uri), uem=it.uem, detailed=True)
        tot = d["total"] or 1.0
        b = breakdown(ref_turns(it.ref), hyps[it.uri], uem=[(s.start, s.end) for s in it.uem], collar=collar)
        parts.append(b)
        files[it.uri] = {"der": d["diarization error rate"], "missed": d["missed detection"] / tot,
                         "false_alarm": d["false alarm"] / tot, "confusion": d["confusion"] / tot,
                         "missed_single": b["missed_single"], "missed_overlap": b["missed_overlap"],
                         "overlap_share": b["overlap_share"], "overlap_precision": b["overlap_precision"],
                         "overlap_recall": b["overlap_recall"],
                         "speakers": len({t.speaker for t in hyps[it.uri]}), "ref_speakers": len(it.ref.labels())}
    comp = metric.accumulated_
    exact = [f["speakers"] == f["ref_speakers"] for f in files.values()]
    near = [abs(f["speakers"] - f["ref_speakers"]) <= 1 for f in files.values()]
    b = pooled(parts)
    return {"der": abs(metric), "missed": comp["missed detection"] / comp["total"],
            "false_alarm": comp["false alarm"] / comp["total"], "confusion": comp["confusion"] / comp["total"],
            "missed_single": b["missed_single"], "missed_overlap": b["missed_overlap"],
            "overlap_precision": b["overlap_precision"], "overlap_recall": b["overlap_recall"],
            "count_exact": sum(exact) / max(1, len(exact)), "count_within_1": sum(near) / max(1, len(near)),
            "count_error_mean": sum(abs(f["speakers"] - f["ref_speakers"]) for f in files.values()) / max(1, len(files)),
            "files": files}


def run(items: list[Item], dia) -> dict:
    """Automatic and oracle-count hypotheses (the oracle re-runs only the counting stages)."""
    auto, oracle, secs = {}, {}, {}
    for it in items:
        t0 = time.perf_counter()
        emb = dia.embed(it.y, 16000)
        auto[it.uri] = dia.assign(emb)
        secs[it.uri] = time.perf_counter() - t0
        oracle[it.uri] = dia.assign(emb, num_speakers=len(it.ref.labels()))
    res = {"auto_count": {"collar_0.25": score(items, auto, 0.25), "collar_0": score(items, auto, 0.0)},
           "oracle_count": {"collar_0.25": score(items, oracle, 0.25), "collar_0": score(items, oracle, 0.0)},
           "seconds": secs, "audio_seconds": {it.uri: len(it.y) / 16000 for it in items},
           "info": {it.uri: it.info for it in items if it.info}}
    tot = sum(res["audio_seconds"].values())
    res["rtf"] = sum(secs.values()) / tot if tot else None
    return res


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        k, v = p.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def report(name: str, res: dict) -> None:
    for mode in ("auto_count", "oracle_count"):
        for collar in ("collar_0.25", "collar_0"):
            r = res[mode][collar]
            print(f"{name:7s} {mode:12s} {collar:11s} DER {r['der']:.3f} (miss {r['missed']:.3f} = single "
                  f"{r['missed_single']:.3f} + overlap {r['missed_overlap']:.3f}, FA {r['false_alarm']:.3f}, "
                  f"conf {r['confusion']:.3f}) overlap P/R {_pct(r['overlap_precision'])}/{_pct(r['overlap_recall'])} "
                  f"count exact {r['count_exact']:.0%}, ±1 {r['count_within_1']:.0%}")
    print(f"{name:6s} RTF {res['rtf']:.4f}")


CARD = ROOT / "models" / "diarization" / "card.json"
PROTOCOL = {
    "meeting": "40 simulated meetings (ser.diarization.meeting, seeds 5000-5039): 3-5 speakers from LibriSpeech or one "
               "emotion corpus in one shared synthetic room at 0.5-3 m, backchannels, interruptions and simultaneous "
               "starts, 5-50 % of speech overlapped, 5-25 dB SNR, 2-5 min",
    "sim": "simulated development set: 40 seeded conversations (ser.diarization.simulate, seeds 0-39) of 2-7 speakers from "
           "ASED, EmoDB and RAVDESS, 1-5 min, 0-19 % overlap, noise, reverberation; the default settings were "
           "chosen on it",
    "check": "20 more simulated conversations (seeds 1000-1019), never tuned on",
    "short": "40 short simulated conversations (seeds 3000-3039) of 2-4 speakers, 20-60 s, otherwise as the "
             "development set; never tuned on (but seen when deciding that under a minute of speech keeps the "
             "plain cosine, docs/diarization.md)",
    "real": "the six real 30-s recordings of ../shared/data/diarization (AMI far-field excerpts and pyannote's "
            "sample, 2-4 speakers), UEM applied; not used to tune settings (but seen when deciding that under a "
            "minute of speech keeps the plain cosine, docs/diarization.md)",
}


def card_metrics(res: dict) -> dict:
    """The headline figures of an evaluation, per set, for the diarizer's card."""
    out = {"scoring": "pyannote.metrics DiarizationErrorRate, overlapped speech scored; DER = missed + false alarm + "
                      "confusion, as fractions of the reference speech", "command": "python bench/diarization_eval.py",
           "sets": {}}
    for name, r in res["sets"].items():
        auto, oracle = r["auto_count"], r["oracle_count"]
        a = auto["collar_0.25"]
        out["sets"][name] = {"protocol": PROTOCOL.get(name, name), "recordings": len(a["files"]),
                             "der": a["der"], "missed": a["missed"], "false_alarm": a["false_alarm"],
                             "confusion": a["confusion"], "count_exact": a["count_exact"],
                             "der_collar_0": auto["collar_0"]["der"], "der_oracle_count": oracle["collar_0.25"]["der"]}
    return out


def write_card(res: dict, path: Path = CARD) -> None:
    card = json.loads(path.read_text(encoding="utf-8"))
    card["metrics"] = card_metrics(res)
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote the figures into {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sim", type=int, default=40, help="simulated development recordings (0: none)")
    ap.add_argument("--check", type=int, default=20, help="simulated check recordings, seeds 1000… (0: none)")
    ap.add_argument("--short", type=int, default=40, help="short simulated recordings (20-60 s, 2-4 speakers), "
                    "seeds 3000… (0: none)")
    ap.add_argument("--meeting", type=int, default=0, help="simulated meetings (ser.diarization.meeting, 3-5 "
                    "speakers, 5-50 %% overlap, one room), seeds 5000… (0: none)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="BuiltinSettings overrides")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "diarization.json")
    ap.add_argument("--card", action="store_true", help="write the headline figures into models/diarization/card.json")
    ap.add_argument("--from", dest="from_", type=Path, help="re-use this results file instead of running")
    args = ap.parse_args()
    if args.from_:
        res = json.loads(args.from_.read_text())
        if args.card:
            write_card(res)
        return
    from ser.diarization.backends import BuiltinDiarizer
    dia = BuiltinDiarizer(**parse_overrides(args.set))
    res = {"diarizer": dia.settings(), "overlap_scored": True, "sets": {}}
    sets = {"real": lambda: load_set(args.data) if args.data.is_dir() else []}
    if args.meeting:
        sets["meeting"] = lambda: load_meetings(args.meeting, 5000)
    if args.sim:
        sets["sim"] = lambda: load_sim(args.sim, 0)
    if args.check:
        sets["check"] = lambda: load_sim(args.check, 1000)
    if args.short:
        sets["short"] = lambda: load_sim(args.short, 3000, **SHORT)
    for name, load in sets.items():
        items = load()
        if not items:
            print(f"{name}: no data, skipped")
            continue
        res["sets"][name] = run(items, dia)
        report(name, res["sets"][name])
        for uri, f in res["sets"][name]["auto_count"]["collar_0.25"]["files"].items():
            print(f"  {uri:22s} DER {f['der']:.3f} miss {f['missed']:.3f} (single {f['missed_single']:.3f}, overlap "
                  f"{f['missed_overlap']:.3f}; overlap share {f['overlap_share']:.2f}, P/R "
                  f"{_pct(f['overlap_precision'])}/{_pct(f['overlap_recall'])}) FA {f['false_alarm']:.3f} "
                  f"conf {f['confusion']:.3f} speakers {f['speakers']}/{f['ref_speakers']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")
    if args.card:
        write_card(res)


if __name__ == "__main__":
    main()
