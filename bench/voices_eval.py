"""Known voices on simulated conversations: calibrate the thresholds, then measure naming.

    python bench/voices_eval.py collect [--n-calib 30] [--n-eval 40]   # diarize, embed (slow, ~10 min)
    python bench/voices_eval.py calibrate                               # thresholds from the calibration half
    python bench/voices_eval.py score [--accept A --uncertain U --merge M]  # the evaluation half
    python bench/voices_eval.py speed [--runs 5]                        # what naming costs an analysis

Protocol. The speakers of the three acted corpora in ``../shared/data`` (ASED 65, EmoDB 10,
RAVDESS 20) are split per corpus into two halves (sorted speaker IDs, alternating): the
*calibration* half sets the thresholds, the *evaluation* half is only scored. Every speaker
has 3 enrolment clips set aside (seeded, of different emotions where the speaker has them)
that never appear in a conversation. Conversations are ``ser.diarization.simulate`` ones
(2–7 speakers, 60–300 s, 0–20 % overlapped speech, per-speaker level and room, noise, far- to
close-talk level; seeds 5000… for calibration, 6000… for evaluation), each built from one
half only and diarized by the builtin diarizer with the automatic count. In each, two of
its speakers (seeded) are enrolled from their 3 set-aside clips (and, as a second case, from
one clip); a third case adds 8 enrolled voices of the same corpus's half that are not in the
conversation (a fuller library: more chances to name a stranger).

Scored on a 10-ms grid over the reference: **named correctly** = of an enrolled speaker's
speech where they talk alone, the share where the output gives their name; **stranger named**
= of the speech where only non-enrolled speakers talk, the share where the output gives any
enrolled name. DER (pyannote.metrics, collar 0.25 s, overlap scored) with and without the
library, to check that merging by voice never makes diarization worse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared")) / "data"
CACHE = ROOT / "bench" / "results" / "voices_collect.npz"
OUT = ROOT / "bench" / "results" / "voices_eval.json"
SEEDS = {"calib": 5000, "eval": 6000}
ENROL_CLIPS = 3
DISTRACTORS = 8


def halves(pool) -> dict[str, dict]:
    """The calibration and evaluation halves of the speaker pool, with the enrolment clips taken out."""
    from ser.diarization.simulate import SpeakerPool

    out = {"calib": SpeakerPool(), "eval": SpeakerPool()}
    enrol = {}
    for half in out.values():
        half.labels = pool.labels
    for ci, (corpus, speakers) in enumerate(sorted(pool.items())):
        for k, (spk, clips) in enumerate(sorted(speakers.items())):
            rng = np.random.default_rng([ci, k, 7])
            by_emo: dict[str, list] = {}
            for p in clips:
                by_emo.setdefault(pool.labels.get(str(p), ""), []).append(p)
            emos = list(rng.permutation(sorted(by_emo)))
            chosen = []
            while len(chosen) < ENROL_CLIPS and any(by_emo.values()):
                for e in emos:
                    if by_emo[e] and len(chosen) < ENROL_CLIPS:
                        chosen.append(by_emo[e].pop(int(rng.integers(len(by_emo[e])))))
            enrol[f"{corpus}:{spk}"] = chosen
            rest = [p for p in clips if p not in chosen]
            out["calib" if k % 2 == 0 else "eval"].setdefault(corpus, {})[spk] = rest
    return out, enrol


def collect(n_calib: int, n_eval: int) -> None:
    from ser.audio.decode import load_audio
    from ser.diarization.backends import BuiltinDiarizer
    from ser.diarization.simulate import simulate, speaker_pool
    from ser.diarization.voices import clip_vector, speaker_vectors, stretch_vectors

    pool = speaker_pool(SHARED)
    parts, enrol = halves(pool)
    clip_vecs = {}
    t0 = time.time()
    for spk, clips in enrol.items():
        clip_vecs[spk] = [clip_vector(load_audio(p).y)[0] for p in clips]
    print(f"enrolment vectors of {len(enrol)} speakers in {time.time() - t0:.0f} s", flush=True)
    dia = BuiltinDiarizer()
    convs = []
    for half, n in (("calib", n_calib), ("eval", n_eval)):
        for i in range(n):
            seed = SEEDS[half] + i
            t0 = time.time()
            sim = simulate(parts[half], seed)
            emb = dia.embed(sim.y, 16000)
            turns = dia.assign(emb)
            stretches = stretch_vectors(sim.y, 16000, turns, emb)  # as the pipeline: the diarizer's windows
            vecs = speaker_vectors(sim.y, 16000, turns, stretches)
            convs.append({"half": half, "seed": seed, "uri": sim.uri, "duration_s": len(sim.y) / 16000,
                          "ref": [(t.start_s, t.end_s, t.speaker) for t in sim.turns],
                          "hyp": [(t.start_s, t.end_s, t.speaker) for t in turns],
                          "vectors": {s: (v.tolist(), sec) for s, (v, sec) in vecs.items()},
                          "stretches": [(x.speaker, x.start, x.end, x.vector.tolist()) for x in stretches],
                          "info": {k: sim.info[k] for k in ("corpus", "speakers", "overlap_fraction")}})
            print(f"{half} {seed}: {len(sim.y) / 16000:.0f} s, {sim.info['speakers']} speakers, found "
                  f"{len({t.speaker for t in turns})}, {time.time() - t0:.1f} s", flush=True)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(CACHE, convs=np.array(json.dumps(convs)),
                        clips=np.array(json.dumps({k: [v.tolist() for v in vs] for k, vs in clip_vecs.items()})))
    print("wrote", CACHE)


def add_stretches() -> None:
    """Add the solo stretches' embeddings to a collection made before they were kept (the same
    seeded conversations, re-simulated; the diarization is taken from the collection)."""
    from ser.analysis.result import SpeakerTurn
    from ser.diarization.simulate import simulate, speaker_pool
    from ser.diarization.voices import stretch_vectors

    convs, clips = load()
    parts, _ = halves(speaker_pool(SHARED))
    for c in convs:
        if "stretches" in c:
            continue
        sim = simulate(parts[c["half"]], c["seed"])
        assert abs(len(sim.y) / 16000 - c["duration_s"]) < 1e-6
        st = stretch_vectors(sim.y, 16000, [SpeakerTurn(a, b, s) for a, b, s in c["hyp"]])
        c["stretches"] = [(x.speaker, x.start, x.end, x.vector.tolist()) for x in st]
        print(c["uri"], len(st), "stretches", flush=True)
    np.savez_compressed(CACHE, convs=np.array(json.dumps(convs)),
                        clips=np.array(json.dumps({k: [v.tolist() for v in vs] for k, vs in clips.items()})))


def load():
    z = np.load(CACHE)
    convs = json.loads(str(z["convs"]))
    clips = {k: [np.asarray(v, np.float32) for v in vs] for k, vs in json.loads(str(z["clips"])).items()}
    return convs, clips


def turn_enrolments(convs: list[dict]) -> dict[str, list[tuple[str, np.ndarray, float]]]:
    """Per reference speaker, the diarized speakers (in any conversation) whose speech is mostly
    theirs: ``(uri, embedding, solo seconds)`` — what "This is …" on the Analyze page enrols."""
    out: dict[str, list] = {}
    for c in convs:
        for s, (v, sec) in c["vectors"].items():
            ov: dict[str, float] = {}
            for a, b, h in c["hyp"]:
                if h == s:
                    for ra, rb, r in c["ref"]:
                        ov[r] = ov.get(r, 0.0) + max(0.0, min(b, rb) - max(a, ra))
            if ov and max(ov.values()) > 0 and sec >= 2.0:
                out.setdefault(max(ov, key=ov.get), []).append((c["uri"], np.asarray(v, np.float32), sec))
    return out


def library(conv: dict, clips: dict, case: str, turns: dict | None = None):
    """(voices, enrolled reference speakers) for a conversation and a library case."""
    from ser.diarization.voices import Voice, unit

    rng = np.random.default_rng(conv["seed"])
    present = sorted({r[2] for r in conv["ref"]})
    enrolled = [present[i] for i in rng.choice(len(present), 2, replace=False)]
    if case == "from_turns":  # named once in another conversation: its largest speaker that is mostly them
        voices = []
        for s in enrolled:
            elsewhere = [e for e in (turns or {}).get(s, []) if e[0] != conv["uri"]]
            if elsewhere:
                uri, vec, sec = max(elsewhere, key=lambda e: e[2])
                voices.append(Voice(s, unit(vec), seconds=sec))
        return voices, [v.name for v in voices]
    n = 1 if case == "one_clip" else ENROL_CLIPS
    voices = [Voice(s, unit(np.mean(clips[s][:n], 0)), samples=n) for s in enrolled]
    if case == "with_strangers":
        corpus = conv["info"]["corpus"]
        half = 0 if conv["half"] == "calib" else 1
        others = sorted(s for s in clips if s.startswith(corpus + ":") and s not in present)
        same_half = [s for s in others if _half_of(s, clips) == half]
        for s in list(rng.permutation(same_half))[:DISTRACTORS]:
            voices.append(Voice(str(s), unit(np.mean(clips[s], 0)), samples=ENROL_CLIPS))
    return voices, enrolled


def _half_of(spk: str, clips: dict) -> int:
    corpus = spk.split(":")[0]
    ids = sorted(s for s in clips if s.startswith(corpus + ":"))
    return ids.index(spk) % 2


def _grid(turns, n: int, names: list[str]) -> np.ndarray:
    idx = {s: i for i, s in enumerate(names)}
    g = np.zeros((len(names), n), bool)
    for a, b, s in turns:
        if s in idx:
            g[idx[s], int(round(a * 100)):int(round(b * 100))] = True
    return g


def score_conv(conv: dict, voices, enrolled: list[str], th) -> dict:
    from ser.analysis.result import SpeakerTurn
    from ser.diarization.voices import Stretch, apply, identify, pool, screen

    hyp = [SpeakerTurn(a, b, s) for a, b, s in conv["hyp"]]
    stretches = [Stretch(s, a, b, np.asarray(v, np.float32)) for s, a, b, v in conv["stretches"]]
    vecs = pool(stretches)
    matches = identify(hyp, vecs, voices, th)
    out_turns = screen(apply(hyp, matches), stretches, matches, voices, th.stretch_floor)
    n = int(round(conv["duration_s"] * 100)) + 1
    refs = sorted({r[2] for r in conv["ref"]})
    R = _grid(conv["ref"], n, refs)
    names = [v.name for v in voices]
    H = _grid([(t.start_s, t.end_s, t.speaker) for t in out_turns], n, names)
    alone = R.sum(0) == 1
    res = {"enrolled_s": 0.0, "enrolled_named_s": 0.0, "enrolled_wrong_s": 0.0, "stranger_s": 0.0,
           "stranger_named_s": 0.0}
    for i, s in enumerate(refs):
        solo = R[i] & alone
        if s in enrolled:
            res["enrolled_s"] += solo.sum() / 100
            res["enrolled_named_s"] += (solo & H[names.index(s)]).sum() / 100
            others = [k for k, nm in enumerate(names) if nm != s]
            if others:
                res["enrolled_wrong_s"] += (solo & H[others].any(0)).sum() / 100
        else:
            res["stranger_s"] += solo.sum() / 100
            res["stranger_named_s"] += (solo & H.any(0)).sum() / 100
    res["merged"] = sum(m.status == "merged" for m in matches)
    res["uncertain"] = sum(m.status == "uncertain" for m in matches)
    res["turns"] = [(t.start_s, t.end_s, t.speaker) for t in out_turns]
    return res


def der(convs: list[dict], turns_of) -> dict:
    from pyannote.core import Annotation, Segment, Timeline
    from pyannote.metrics.diarization import DiarizationErrorRate

    metric = DiarizationErrorRate(collar=0.25, skip_overlap=False)
    per = []
    for c in convs:
        ref, hyp = Annotation(uri=c["uri"]), Annotation(uri=c["uri"])
        for k, (a, b, s) in enumerate(c["ref"]):
            ref[Segment(a, b), k] = s
        for k, (a, b, s) in enumerate(turns_of(c)):
            hyp[Segment(a, b), k] = s
        per.append(metric(ref, hyp, uem=Timeline([Segment(0, c["duration_s"])])))
    comp = metric.accumulated_
    return {"der": abs(metric), "missed": comp["missed detection"] / comp["total"],
            "false_alarm": comp["false alarm"] / comp["total"], "confusion": comp["confusion"] / comp["total"],
            "per_file": per}


def evaluate(convs, clips, th, cases=("three_clips", "one_clip", "with_strangers", "from_turns")) -> dict:
    out = {}
    turns = turn_enrolments(convs)
    for case in cases:
        tot = {"enrolled_s": 0.0, "enrolled_named_s": 0.0, "enrolled_wrong_s": 0.0, "stranger_s": 0.0,
               "stranger_named_s": 0.0, "merged": 0, "uncertain": 0}
        named_turns, per_conv, n_enrolled = {}, [], 0
        for c in convs:
            voices, enrolled = library(c, clips, case, turns)
            n_enrolled += len(enrolled)
            r = score_conv(c, voices, enrolled, th)
            named_turns[c["uri"]] = r.pop("turns")
            for k in tot:
                tot[k] += r[k]
            per_conv.append({"uri": c["uri"], **{k: round(v, 2) for k, v in r.items()}})
        d_with = der(convs, lambda c: named_turns[c["uri"]])
        out[case] = {"named_correctly": tot["enrolled_named_s"] / max(tot["enrolled_s"], 1e-9),
                     "named_wrongly": tot["enrolled_wrong_s"] / max(tot["enrolled_s"], 1e-9),
                     "stranger_named": tot["stranger_named_s"] / max(tot["stranger_s"], 1e-9),
                     "enrolled_solo_s": round(tot["enrolled_s"], 1), "stranger_solo_s": round(tot["stranger_s"], 1),
                     "enrolled_speakers": n_enrolled, "speakers_merged": tot["merged"], "speakers_uncertain": tot["uncertain"],
                     "der_with": d_with["der"], "der_parts_with": {k: d_with[k] for k in ("missed", "false_alarm", "confusion")},
                     "files_worse": sum(w > wo + 1e-9 for w, wo in zip(d_with["per_file"], der(convs, lambda c: c["hyp"])["per_file"])),
                     "conversations": per_conv}
    d0 = der(convs, lambda c: c["hyp"])
    out["der_without"] = {k: d0[k] for k in ("der", "missed", "false_alarm", "confusion")}
    return out


def trials(convs, clips) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores of diarized speakers (by their majority reference speaker, ≥ 2 s solo) against
    the enrolled voices of their conversation: genuine and impostor."""
    gen, imp = [], []
    for c in convs:
        voices, _ = library(c, clips, "with_strangers")
        refs = c["ref"]
        for s, (v, sec) in c["vectors"].items():
            if sec < 2.0:
                continue
            ov: dict[str, float] = {}
            for a, b, h in c["hyp"]:
                if h != s:
                    continue
                for ra, rb, r in refs:
                    ov[r] = ov.get(r, 0.0) + max(0.0, min(b, rb) - max(a, ra))
            major = max(ov, key=ov.get) if ov else None
            for vo in voices:
                (gen if vo.name == major else imp).append(float(np.dot(v, vo.vector)))
    return np.asarray(gen), np.asarray(imp)


def speed(runs: int) -> None:
    """The analysis with and without a library of 10 voices, warm, idle and with one busy process:
    the 30-s AMI excerpt and the 10-min recording of bench/contention.py; median and range."""
    import statistics

    from contention import recording, start_load, stop_load
    from ser.analysis.pipeline import analyze
    from ser.audio.decode import load_audio
    from ser.diarization.voices import Voice, unit

    rng = np.random.default_rng(0)
    voices = [Voice(f"voice{k}", unit(rng.standard_normal(192))) for k in range(10)]
    out = {}
    for seconds in (30, 600):
        audio = load_audio(recording(seconds))
        analyze(audio, cache=None, voices=voices)  # warm
        for case in ("idle", "busy1"):
            load = start_load(case)
            try:
                for with_voices in (False, True):
                    totals, stage = [], []
                    for _ in range(runs):
                        a = analyze(audio, cache=None, voices=voices if with_voices else None)
                        totals.append(a.provenance["timings_s"]["total_s"])
                        stage.append(a.provenance["timings_s"].get("voices_s", 0.0))
                    key = f"{seconds}s/{case}/{'voices' if with_voices else 'none'}"
                    out[key] = {"median_s": statistics.median(totals), "min_s": min(totals), "max_s": max(totals),
                                "voices_stage_median_s": statistics.median(stage)}
                    print(key, out[key], flush=True)
            finally:
                stop_load(load)
    (ROOT / "bench" / "results" / "voices_speed.json").write_text(json.dumps(
        {"machine": "2-core AMD EPYC, no GPU", "runs": runs, "library": "10 voices", "results": out}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["collect", "stretches", "calibrate", "score", "speed"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n-calib", type=int, default=30)
    ap.add_argument("--n-eval", type=int, default=40)
    ap.add_argument("--accept", type=float)
    ap.add_argument("--uncertain", type=float)
    ap.add_argument("--merge", type=float)
    ap.add_argument("--stretch-floor", type=float)
    a = ap.parse_args()
    if a.what == "collect":
        collect(a.n_calib, a.n_eval)
        return
    if a.what == "speed":
        sys.path.insert(0, str(ROOT / "bench"))
        speed(a.runs)
        return
    if a.what == "stretches":
        add_stretches()
        return
    from ser.diarization.voices import Thresholds

    convs, clips = load()
    calib = [c for c in convs if c["half"] == "calib"]
    ev = [c for c in convs if c["half"] == "eval"]
    th = Thresholds(**{k: v for k, v in (("accept", a.accept), ("uncertain", a.uncertain), ("merge", a.merge),
                                         ("stretch_floor", a.stretch_floor)) if v is not None})
    if a.what == "calibrate":
        gen, imp = trials(calib, clips)
        print(f"genuine {len(gen)}: mean {gen.mean():.3f} 5th pct {np.percentile(gen, 5):.3f} min {gen.min():.3f}")
        print(f"impostor {len(imp)}: mean {imp.mean():.3f} 99th pct {np.percentile(imp, 99):.3f} max {imp.max():.3f}")
        for t in np.arange(0.30, 0.80, 0.025):
            print(f"  t={t:.3f}: false accept {np.mean(imp >= t):.4f}  miss {np.mean(gen < t):.4f}")
        for acc in (0.45, 0.5, 0.55, 0.6, 0.65):
            r = evaluate(calib, clips, Thresholds(accept=acc, uncertain=acc - 0.1, merge=acc + 0.05), ("three_clips",))
            r3 = r["three_clips"]
            print(f"accept {acc}: named {r3['named_correctly']:.3f} wrong {r3['named_wrongly']:.3f} stranger "
                  f"{r3['stranger_named']:.4f} DER {r3['der_with']:.3f} vs {r['der_without']['der']:.3f} worse files "
                  f"{r3['files_worse']}")
        return
    res = {"protocol": __doc__.split("Protocol.")[1].strip(), "thresholds": th.__dict__,
           "calibration": evaluate(calib, clips, th), "evaluation": evaluate(ev, clips, th)}
    gen, imp = trials(ev, clips)
    res["evaluation_trials"] = {"genuine": len(gen), "impostor": len(imp),
                                "false_accept": float(np.mean(imp >= th.accept)), "miss": float(np.mean(gen < th.accept))}
    for half in ("calibration", "evaluation"):
        for case, r in res[half].items():
            if case == "der_without":
                print(half, "DER without", {k: round(v, 4) for k, v in r.items()})
                continue
            print(half, case, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
                               if k != "conversations"})
    OUT.write_text(json.dumps(res, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
