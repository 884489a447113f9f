"""Analysis speed on a machine that is not idle: the thread policy (ser.threads) against torch's
defaults, with other processes competing for the cores.

    .venv/bin/python bench/contention.py [--runs 5] [--lengths 30 600] [--cases idle busy1 busy2 lowprio]
                                         [--policies off on] [--out bench/results/contention.json]

Recordings: a 30-s far-field AMI meeting excerpt (../shared/data/diarization/pyannote_ami_trn00.wav)
and a 10-min recording of real speech (bench/analyze_speed.py's builder). Each (policy, length)
gets its own worker process — ``SER_THREAD_POLICY=off`` is *before* (torch's two spinning
OpenMP threads, as the product ran until this bench), ``on`` is *after* — which loads the
networks and the default model and analyses the recording twice to warm up. Then, for each
load case, it analyses the recording ``--runs`` times (``cache=None``: every stage computed)
while the parent keeps the load going:

- ``idle``: nothing else runs;
- ``busy1``: one busy process at normal priority (a browser drawing the page, a second job);
- ``busy2``: two of them;
- ``lowprio``: one at normal priority plus two at ``nice 19`` (background batch jobs).

``--dashboard``: the in-page case. The dashboard (scripts/serve.py, as ``make run``) is
started with each policy; headless Chromium opens the Analyze page and uploads the 10-min
recording ``--runs`` times (each copy differs by a few samples of silence, so no stage comes
from the server's cache); the figure is the page's own "Analysed … in X s", measured while
the browser draws the page and its progress. It is compared with the standalone idle median
of the same policy.

``--under CASE -- COMMAND…`` runs any other bench under one of the load cases (how the
README's other speed figures were re-measured with a busy core), e.g.
``bench/contention.py --under busy1 -- .venv/bin/python bench/live_latency.py --seconds 60``.

Reported per case: median wall time, min–max spread, real-time factor, and the ratio to the
same policy's idle median. The machine's other load is not controlled beyond this: run it on
an otherwise quiet machine and compare the two policies within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SER_SHARED", ROOT.parent / "shared")) / "data"
BUSY = "import os\nwhile True:\n    pass\n"


def worker(path: str) -> None:
    """Child: load, warm up twice, then one analysis per 'run' line on stdin; prints seconds."""
    import ser  # noqa: F401  (the thread policy's environment, before torch)
    from ser.analysis.pipeline import analyze
    from ser.audio.decode import load_audio
    from ser.diarization.backends import get_diarizer, warm_up
    from ser.emotion.model import load_model

    warm_up()
    audio = load_audio(path)
    model, dia = load_model("default", device="cpu"), get_diarizer("builtin")
    for _ in range(2):
        analyze(audio, model=model, diarizer=dia, cache=None)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        a = analyze(audio, model=model, diarizer=dia, cache=None)
        wall = time.perf_counter() - t0
        print(json.dumps({"wall_s": wall, "timings": a.provenance["timings_s"],
                          "threads": a.provenance.get("threads")}), flush=True)


def start_load(case: str) -> list[subprocess.Popen]:
    normal = {"idle": 0, "busy1": 1, "busy2": 2, "lowprio": 1}[case]
    low = 2 if case == "lowprio" else 0
    procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(normal)]
    procs += [subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", BUSY]) for _ in range(low)]
    time.sleep(1.0)  # let the scheduler see them
    return procs


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def recording(seconds: int) -> Path:
    if seconds <= 30:
        return SHARED / "diarization" / "pyannote_ami_trn00.wav"
    sys.path.insert(0, str(ROOT / "bench"))
    from analyze_speed import build_recording

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"contention_{seconds // 60}min.flac"
    build_recording(seconds / 60, path)
    return path


def measure(policy: str, seconds: int, cases: list[str], runs: int) -> dict:
    path = recording(seconds)
    env = {**os.environ, "SER_THREAD_POLICY": policy, "SER_WARM_DEMO": "0"}
    for k in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OPENBLAS_THREAD_TIMEOUT", "SER_THREADS", "OMP_NUM_THREADS"):
        env.pop(k, None)
    child = subprocess.Popen([sys.executable, __file__, "--worker", str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert child.stdout.readline().strip() == "ready"
    out = {}
    try:
        for case in cases:
            load = start_load(case)
            try:
                rows = []
                for _ in range(runs):
                    child.stdin.write("run\n")
                    child.stdin.flush()
                    rows.append(json.loads(child.stdout.readline()))
            finally:
                stop_load(load)
            walls = [r["wall_s"] for r in rows]
            out[case] = {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
                         "max_s": round(max(walls), 3), "rtf": round(statistics.median(walls) / seconds, 4),
                         "runs": [round(w, 3) for w in walls], "threads": rows[-1]["threads"],
                         "stages_s": rows[len(rows) // 2]["timings"]}
            print(f"{policy:3s} {seconds:4d}s {case:8s} median {out[case]['median_s']:.2f}s "
                  f"[{out[case]['min_s']:.2f}-{out[case]['max_s']:.2f}] threads {out[case]['threads']}", flush=True)
    finally:
        child.stdin.close()
        child.wait(timeout=60)
    idle = out.get("idle", {}).get("median_s")
    for case in out:
        if idle:
            out[case]["vs_idle"] = round(out[case]["median_s"] / idle, 2)
    return out


def dashboard(policy: str, path: Path, runs: int) -> dict:
    """In-page analyses of ``path`` in a fresh dashboard with ``policy``; the page's own figures."""
    import re

    import numpy as np
    import soundfile as sf

    sys.path.insert(0, str(ROOT / "scripts"))
    from playwright.sync_api import sync_playwright
    from screenshot import choose_upload, free_port, open_analyze_page, start_app

    y, sr = sf.read(str(path), dtype="float32")
    copies = []
    for k in range(runs):  # distinct content: every stage computed
        c = ROOT / "bench" / "out" / f"contention_page_{k}.flac"
        sf.write(str(c), np.concatenate([y, np.zeros(k + 1, np.float32)]), sr, subtype="PCM_16")
        copies.append(c)
    os.environ["SER_THREAD_POLICY"] = policy
    port = free_port()
    proc = start_app(port, warm=True)
    walls = []
    try:
        with sync_playwright() as pw:
            browser, page = open_analyze_page(pw, f"http://127.0.0.1:{port}")
            time.sleep(10)  # the warm-up (networks, demo) finishes before the first upload
            choose_upload(page)
            for c in copies:
                page.locator("input[type=file]").first.set_input_files(str(c))
                done = page.get_by_text(re.compile(r"Analysed \d+\.\d s in")).first
                done.wait_for(timeout=600_000)
                label = done.inner_text()
                walls.append(float(re.search(r" in ([0-9.]+) s", label).group(1)))
                print(f"{policy:3s} page: {label}", flush=True)
                page.reload(wait_until="networkidle")
                page.get_by_text("Analyze a recording").first.wait_for(timeout=120_000)
                choose_upload(page)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        os.environ.pop("SER_THREAD_POLICY", None)
    return {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
            "max_s": round(max(walls), 3), "runs": walls}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        return worker(sys.argv[2])
    if len(sys.argv) > 3 and sys.argv[1] == "--under":  # any other bench under a load case
        load = start_load(sys.argv[2])
        try:
            return subprocess.call(sys.argv[sys.argv.index("--") + 1:])
        finally:
            stop_load(load)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lengths", type=int, nargs="+", default=[30, 600], help="seconds: 30 and/or 600")
    ap.add_argument("--cases", nargs="+", default=["idle", "busy1", "busy2", "lowprio"])
    ap.add_argument("--policies", nargs="+", default=["off", "on"])
    ap.add_argument("--dashboard", action="store_true", help="the in-page case instead (10-min recording)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "contention.json")
    args = ap.parse_args()
    if args.dashboard:
        old = json.loads(args.out.read_text()) if args.out.exists() else {}
        page = old.setdefault("dashboard", {})
        for policy in args.policies:
            page["600s/" + ("before" if policy == "off" else "after")] = dashboard(policy, recording(600), args.runs)
            alone = old.get("analysis", {}).get("600s/" + ("before" if policy == "off" else "after"), {})
            if "idle" in alone:
                page["600s/" + ("before" if policy == "off" else "after")]["vs_standalone_idle"] = round(
                    page["600s/" + ("before" if policy == "off" else "after")]["median_s"] / alone["idle"]["median_s"], 2)
        args.out.write_text(json.dumps(old, indent=1) + "\n")
        print(json.dumps(page, indent=1))
        return
    results = {"machine": {"cores": os.cpu_count(), "platform": platform.platform()},
               "date": time.strftime("%Y-%m-%d %H:%M"), "runs": args.runs, "results": {}}
    for seconds in args.lengths:
        for policy in args.policies:
            results["results"][f"{seconds}s/{'before' if policy == 'off' else 'after'}"] = measure(
                policy, seconds, args.cases, args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    old.setdefault("analysis", {}).update(results["results"])
    old["machine"], old["date"], old["runs"] = results["machine"], results["date"], results["runs"]
    args.out.write_text(json.dumps(old, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
