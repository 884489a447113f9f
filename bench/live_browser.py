"""The Live page end to end in Debian's headless Chromium with a fake microphone, on this
machine (browser, server and worker share its cores). Figures go to
bench/results/live_browser.json.

    .venv/bin/python bench/live_browser.py [--clips 5] [--stream-seconds 60]

1. Quick clip: press Record, speak 4 s (the fake microphone plays real speech), press
   Stop; the clock runs from the Stop click until the clip's top emotion is on the page
   (the browser encodes and uploads the WAV, the server decodes and classifies, the page
   redraws). Median and max over --clips clips.
2. Streaming: press Start; time until the first timeline update is on the page; stream
   --stream-seconds; press Stop. The saved session (History) carries the latency of every
   update, measured on the server from the arrival of the window's last frame to the
   update being ready for display, the dropped audio and the worker process's CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
RESULTS = ROOT / "bench" / "results" / "live_browser.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=5)
    ap.add_argument("--stream-seconds", type=float, default=60.0)
    args = ap.parse_args()
    import soundfile as sf
    import soxr
    from live_latency import speech
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
    from screenshot import CHROMIUM, CHROMIUM_ARGS, free_port, start_app

    from ser.serve.history import History

    tmp = Path(tempfile.mkdtemp(prefix="ser-live-bench-"))
    y, source = speech(30.0)
    mic = tmp / "mic.wav"
    sf.write(mic, soxr.resample(y, 16_000, 48_000), 48_000, subtype="PCM_16")
    os.environ["SER_HISTORY_DB"] = str(tmp / "history.sqlite")
    port = free_port()
    proc = start_app(port)
    out: dict = {"benchmark": "Live page end to end (headless Chromium, fake microphone, same machine)",
                 "command": "python bench/live_browser.py " + " ".join(sys.argv[1:]), "source": source,
                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count()}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                *CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={mic}"])
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}", wait_until="networkidle")
            page.get_by_text("Analyze a recording").first.wait_for(timeout=120_000)
            page.get_by_role("link", name="Live", exact=True).click()
            page.get_by_text("Waiting for audio").wait_for(timeout=120_000)
            # 1. quick clips
            times, uploads = [], []
            events: dict[str, float] = {}
            page.on("request", lambda r: events.setdefault("upload_sent", time.perf_counter())
                    if "upload_file" in r.url and r.method == "PUT" else None)
            k, tries = 1, 0
            while k <= args.clips and tries < 3 * args.clips:
                tries += 1
                button = page.get_by_test_id("stAudioInputActionButton")
                button.and_(page.get_by_role("button", name="Record", exact=True)).click()
                time.sleep(4.0 + 0.1 * (tries % 4))  # Chromium restarts the fake file per recording
                events.clear()
                t0 = time.perf_counter()
                button.click()  # now "Stop recording"
                try:
                    page.locator(f".ser-headline[data-result='clip-{k}']").wait_for(timeout=15_000)
                except PlaywrightTimeout:  # the same bytes as the clip before (same length): not a new clip
                    print(f"clip {k}: identical to the previous recording, recorded again", flush=True)
                    continue
                times.append(time.perf_counter() - t0)
                uploads.append(events.get("upload_sent", float("nan")) - t0)
                print(f"clip {k}: {times[-1]:.2f} s (upload sent after {uploads[-1]:.2f} s)", flush=True)
                k += 1
                time.sleep(1.0)
            out["quick_clip"] = {"clip_s": 4.0, "clips": len(times), "stop_to_result_s": [round(t, 3) for t in times],
                                 "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                                 "stop_to_upload_sent_s": [round(t, 3) for t in uploads],
                                 "note": "stop_to_upload_sent is the browser's part (it ends the recording, "
                                         "encodes a 16 kHz WAV and starts the upload); the rest is the upload, "
                                         "the server's classification and the redraw"}
            # 2. streaming
            page.get_by_text("Streaming").first.click()
            page.get_by_text("Press START").wait_for(timeout=60_000)
            time.sleep(5.0)  # the page starts the worker process when Streaming opens; let it load
            frame = page.frame_locator("iframe").first
            t0 = time.perf_counter()
            frame.get_by_role("button", name="Start").click(timeout=60_000)
            page.locator("table tbody tr").first.wait_for(timeout=120_000)
            first = time.perf_counter() - t0
            time.sleep(args.stream_seconds)
            frame.get_by_role("button", name="Stop").click()
            page.get_by_text("Saved").first.wait_for(timeout=60_000)
            browser.close()
        hist = History()
        entry = next(e for e in hist.list() if e.settings.get("source") == "live")
        live = hist.get(entry.id)[0].provenance["live"]
        out["streaming"] = {"start_to_first_update_s": round(first, 2), "session_s": entry.duration_s,
                            "updates": live["updates"], "no_speech_windows": live["no_speech_windows"],
                            "latency_ms": live["latency_ms"], "dropped_s": live["dropped_s"],
                            "skipped_s": live.get("skipped_s"), "lost_s": live.get("lost_s"),
                            "worker_cpu_s": live["worker_cpu_s"],
                            "worker_cpu_percent_of_one_core": round(100 * live["worker_cpu_s"] / entry.duration_s, 1)}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    print(json.dumps(out, indent=2))
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
