"""The transcript stage: word error rate on the acted corpora, per emotion, and its cost.

    .venv/bin/python bench/transcript.py wer   [--corpus ravdess emodb] [--limit N] [--language given|detect]
    .venv/bin/python bench/transcript.py speed [--runs 5] [--minutes 60]
    .venv/bin/python bench/transcript.py memory [--minutes 60]
    .venv/bin/python bench/transcript.py after [--runs 4] [--ct2-threads 2] [--isolated]

``wer``: every clip of RAVDESS actors 01–20 (two English statements) and of EmoDB (ten German
sentences), transcribed alone as a user's clip would be (speech regions = the whole clip), with
the language detected (``detect``, what a user gets by default) or given. References are the
corpora's documented texts (below). WER = (S + D + I) / reference words after case folding and
punctuation removal (ser.transcription.wer), pooled per emotion and per corpus; also the share of
clips whose language was detected wrongly. Results: bench/results/transcript_wer_<language>.json.

``speed``: a warm 30-s analysis (the AMI excerpt pyannote_ami_trn00) with and without the
transcript, median of ``--runs``, idle and with one busy process beside it; then one
``--minutes`` analysis with the transcript (bench/analyze_speed.py's long recording builder): wall
time, RTF, peak RSS of the process. Results: bench/results/transcript_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared")) / "data"

RAVDESS_TEXT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
RAVDESS_EMOTION = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                   "07": "disgust", "08": "surprised"}
# EmoDB's ten sentences, as its documentation gives them (Burkhardt et al. 2005)
EMODB_TEXT = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
EMODB_EMOTION = {"W": "angry", "L": "bored", "E": "disgust", "A": "fearful", "F": "happy", "T": "sad", "N": "neutral"}


def clips(corpus: str) -> list[tuple[Path, str, str, str]]:
    """(path, reference text, emotion, language) per clip."""
    out = []
    if corpus == "ravdess":
        for p in sorted((SHARED / "ravdess16k").glob("Actor_*/*.flac")):
            f = p.stem.split("-")
            if int(f[6]) <= 20:
                out.append((p, RAVDESS_TEXT[f[4]], RAVDESS_EMOTION[f[2]], "en"))
    elif corpus == "emodb":
        for p in sorted((SHARED / "emodb16k").glob("*.flac")):
            out.append((p, EMODB_TEXT[p.stem[2:5]], EMODB_EMOTION[p.stem[5]], "de"))
    return out


def run_wer(args: argparse.Namespace) -> dict:
    from ser.audio.decode import load_audio
    from ser.transcription.asr import load_transcriber
    from ser.transcription.wer import edit_counts, normalise

    t = load_transcriber(device="cpu", threads=args.threads)
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "language": args.language, "transcriber": t.describe(), "corpora": {}}
    for corpus in args.corpus:
        items = clips(corpus)
        if args.limit:
            items = items[:: max(1, len(items) // args.limit)][: args.limit]
        errs: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])  # S, D, I, N, wrong language
        n_clips: dict[str, int] = defaultdict(int)
        examples = []
        t0 = time.perf_counter()
        audio_s = 0.0
        for path, ref, emotion, lang in items:
            a = load_audio(path)
            audio_s += a.duration_s
            words, info = t.transcribe(a.y, a.sr, None, lang if args.language == "given" else None)
            hyp = " ".join(w.text for w in words)
            s, d, i = edit_counts(normalise(ref), normalise(hyp))
            for key in (emotion, "all"):
                e = errs[key]
                e[0] += s; e[1] += d; e[2] += i; e[3] += len(normalise(ref)); e[4] += info["language"] != lang
                n_clips[key] += 1
            if s + d + i and len(examples) < 12:
                examples.append({"clip": path.name, "emotion": emotion, "reference": ref, "heard": hyp,
                                 "language": info["language"]})
        wall = time.perf_counter() - t0
        per = {k: {"clips": n_clips[k], "wer": round((v[0] + v[1] + v[2]) / max(1, v[3]), 4),
                   "substitutions": v[0], "deletions": v[1], "insertions": v[2], "reference_words": v[3],
                   "wrong_language_share": round(v[4] / n_clips[k], 4)} for k, v in sorted(errs.items())}
        result["corpora"][corpus] = {"per_emotion": per, "wall_s": round(wall, 1), "audio_s": round(audio_s, 1),
                                     "rtf": round(wall / audio_s, 3), "examples": examples}
        print(json.dumps({corpus: per["all"], "rtf": round(wall / audio_s, 3)}), flush=True)
    return result


def _analysis_worker() -> None:
    """Child for `speed`: warm, then per stdin line 'PATH TRANSCRIBE' one analysis; prints JSON."""
    import ser  # noqa: F401
    from ser.analysis.pipeline import analyze
    from ser.audio.decode import load_audio
    from ser.emotion.model import load_model

    from faster_whisper import WhisperModel

    # the one-encoder-pass question: how much of the transcript stage is Whisper's encoder
    # (faster-whisper encodes each 30-s window it decodes, and once more to detect the language)
    enc = {"calls": 0, "s": 0.0}
    plain_encode = WhisperModel.encode

    def timed_encode(self, features):
        t = time.perf_counter()
        out = plain_encode(self, features)
        enc["calls"] += 1
        enc["s"] += time.perf_counter() - t
        return out

    WhisperModel.encode = timed_encode
    model = load_model("default", device="cpu")
    for line in sys.stdin:
        path, tr = line.split()
        audio = load_audio(path)
        enc.update(calls=0, s=0.0)
        t0 = time.perf_counter()
        a = analyze(audio, model=model, cache=None, transcribe=tr == "1", language=None)
        wall = time.perf_counter() - t0
        print(json.dumps({"wall_s": round(wall, 3), "timings": a.provenance["timings_s"],
                          # counted only when CTranslate2 runs in this process (SER_TRANSCRIBE_IN_PROCESS=1)
                          "whisper_encoder": {"calls": enc["calls"], "s": round(enc["s"], 3)} if enc["calls"] else None,
                          "words": len(a.words), "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF)
                                                                      .ru_maxrss / 1024, 1)}), flush=True)


def _tree_rss(pid: int) -> dict[int, float]:
    """Resident MB of ``pid`` and its descendants (from /proc)."""
    kids: dict[int, list[int]] = {}
    rss: dict[int, float] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            st = (d / "stat").read_text().rsplit(")", 1)[1].split()
            kids.setdefault(int(st[1]), []).append(int(d.name))
            rss[int(d.name)] = int(st[21]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
        except (OSError, IndexError, ValueError):
            continue
    out, todo = {}, [pid]
    while todo:
        p = todo.pop()
        if p in rss:
            out[p] = rss[p]
        todo += kids.get(p, [])
    return out


def run_memory(args: argparse.Namespace) -> dict:
    import tempfile

    sys.path.insert(0, str(ROOT / "bench"))
    from analyze_speed import build_recording

    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    path = Path(build_recording(args.minutes, ROOT / "bench" / "out" / f"speech_{int(args.minutes)}min.flac")["path"])
    with tempfile.TemporaryDirectory() as out_dir:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ser.cli", "analyze", str(path), "--transcribe", "--format",
                                 "json", "--out", out_dir, "--quiet"], cwd=ROOT)
        peak_sum, peaks = 0.0, {}
        while proc.poll() is None:
            now = _tree_rss(proc.pid)
            peak_sum = max(peak_sum, sum(now.values()))
            for p, mb in now.items():
                peaks[p] = max(peaks.get(p, 0.0), mb)
            time.sleep(0.1)
        wall = time.perf_counter() - t0
        result = json.loads(next(Path(out_dir).glob("*.json")).read_text())
    per = sorted(peaks.values(), reverse=True)
    res = {"minutes": args.minutes, "command": "ser analyze FILE --transcribe --format json", "exit": proc.returncode,
           "wall_s": round(wall, 1), "rtf": round(wall / (args.minutes * 60), 4),
           "peak_rss_sum_mb": round(peak_sum), "peak_rss_per_process_mb": [round(x) for x in per],
           "timings_s": result["provenance"].get("timings_s"), "words": len(result.get("words", []))}
    print(json.dumps(res), flush=True)
    return res


def run_speed(args: argparse.Namespace) -> dict:
    short = SHARED / "diarization" / "pyannote_ami_trn00.wav"
    proc = subprocess.Popen([sys.executable, __file__, "_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)

    def one(path: Path, tr: bool) -> dict:
        proc.stdin.write(f"{path} {int(tr)}\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    for _ in range(2):  # warm: models, caches, the transcriber per thread count
        one(short, True)
    out: dict = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "short": {}}
    for case in ("idle", "busy1"):
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])] if case == "busy1" else []
        try:
            for tr in (False, True):
                runs = [one(short, tr) for _ in range(args.runs)]
                walls = [r["wall_s"] for r in runs]
                out["short"][f"{case}_{'with' if tr else 'without'}_transcript"] = {
                    "median_s": round(statistics.median(walls), 3), "min_s": min(walls), "max_s": max(walls),
                    "transcript_s_median": round(statistics.median(r["timings"].get("transcript_s", 0.0)
                                                                   for r in runs), 3),
                    "emotion_s_median": round(statistics.median(r["timings"]["emotion_s"] for r in runs), 3),
                    "whisper_encoder_s_median": round(statistics.median(r["whisper_encoder"]["s"] for r in runs), 3)
                    if all(r["whisper_encoder"] for r in runs) else None,
                    "words": runs[-1]["words"]}
        finally:
            for b in busy:
                b.kill()
        print(json.dumps({case: out["short"]}), flush=True)
    if args.minutes:
        sys.path.insert(0, str(ROOT / "bench"))
        from analyze_speed import build_recording

        (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
        path = Path(build_recording(args.minutes, ROOT / "bench" / "out" / f"speech_{int(args.minutes)}min.flac")["path"])
        r = one(path, True)
        out["long"] = {"minutes": args.minutes, **r, "rtf": round(r["wall_s"] / (args.minutes * 60.0), 4)}
        print(json.dumps(out["long"]), flush=True)
    proc.stdin.close()
    proc.wait(60)
    return out


def run_after(args: argparse.Namespace) -> dict:
    """The 30-s analysis without transcript in a fresh process, then after CTranslate2 has
    transcribed a 1-s clip in it with ``--ct2-threads`` threads (docs/transcript.md: torch's
    analyses slow down after CTranslate2 ran on two threads)."""
    import numpy as np

    import ser  # noqa: F401
    from ser.analysis.pipeline import analyze
    from ser.audio.decode import load_audio
    from ser.emotion.model import load_model
    from ser.transcription.asr import load_transcriber

    a = load_audio(SHARED / "diarization" / "pyannote_ami_trn00.wav")
    m = load_model("default", device="cpu")

    def runs(n: int) -> list[dict]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            r = analyze(a, model=m, cache=None)
            out.append({"wall_s": round(time.perf_counter() - t, 3),
                        "diarization_s": r.provenance["timings_s"]["diarization_s"]})
        return out

    runs(1)  # warm
    before = runs(args.runs)
    clip = np.full(16_000, 0.01, np.float32)
    if args.isolated:  # as the analysis runs it: in the child process
        from ser.transcription import isolated

        isolated.transcribe(clip, 16_000, None, "en", threads=args.ct2_threads)
    else:
        load_transcriber(threads=args.ct2_threads).transcribe(clip, 16_000, None, "en")
    after = runs(args.runs)
    res = {"ct2_threads": args.ct2_threads, "isolated": args.isolated, "before": before, "after": after,
           "median_before_s": statistics.median(r["wall_s"] for r in before),
           "median_after_s": statistics.median(r["wall_s"] for r in after)}
    print(json.dumps(res), flush=True)
    return res


def main() -> None:
    if sys.argv[1:2] == ["_worker"]:
        _analysis_worker()
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wer")
    w.add_argument("--corpus", nargs="+", default=["ravdess", "emodb"], choices=["ravdess", "emodb"])
    w.add_argument("--limit", type=int, default=0, help="at most this many clips per corpus, spread evenly")
    w.add_argument("--language", default="detect", choices=["detect", "given"])
    w.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("speed")
    s.add_argument("--runs", type=int, default=5)
    s.add_argument("--minutes", type=float, default=60.0)
    m = sub.add_parser("memory", help="peak memory of a fresh ser analyze --transcribe, child included")
    m.add_argument("--minutes", type=float, default=60.0)
    m.add_argument("--out", default="transcript_memory.json", help="file name under bench/results")
    f = sub.add_parser("after", help="torch's analysis before and after CTranslate2 ran in the process")
    f.add_argument("--runs", type=int, default=4)
    f.add_argument("--ct2-threads", type=int, default=2)
    f.add_argument("--isolated", action="store_true", help="transcribe in the child process, as analyze() does")
    args = ap.parse_args()
    res = {"wer": run_wer, "speed": run_speed, "after": run_after, "memory": run_memory}[args.cmd](args)
    name = {"wer": f"transcript_wer_{getattr(args, 'language', '')}.json", "speed": "transcript_speed.json",
            "memory": getattr(args, "out", ""),
            "after": f"transcript_after_ct2_{getattr(args, 'ct2_threads', 0)}threads"
                     f"{'_isolated' if getattr(args, 'isolated', False) else ''}.json"}[args.cmd]
    path = ROOT / "bench" / "results" / name
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
