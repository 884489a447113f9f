"""Upload-to-view time of the Analyze page in a real browser (Debian's headless Chromium).

    python bench/view_speed.py [--minutes 1 10 60]

For each recording built by bench/analyze_speed.py (real speech, bench/out/), a fresh
app server is started, the file is uploaded through the page, and the clock runs until
the plot is drawn and the status says "Analysed … in N s". Before the clock starts, the
page has drawn the emotion demo it opens on, so model loading and the browser's first load of
the plotting library (about 3.5 MB of JavaScript) are not counted. Reported: total upload-to-view
seconds; the analysis seconds the page reports; the time before the analysis (upload,
decoding, first model load); and the "view after analysis" time, from the status
turning to "Analysed" until the plot's panels are in the page (figure build, transfer,
drawing). The figure payload comes from bench/view_payload.py. Figures go to bench/results/view_speed.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "view_speed.json")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from analyze_speed import build_recording
    from screenshot import choose_upload, free_port, open_analyze_page, start_app

    rows = []
    for minutes in args.minutes:
        rec = build_recording(minutes, ROOT / "bench" / "out" / f"speech_{minutes:g}min.flac")
        port = free_port()
        proc = start_app(port)
        try:
            with sync_playwright() as pw:
                browser, page = open_analyze_page(pw, f"http://127.0.0.1:{port}")
                # warm-up: the page opens on the analysed emotion demo, which loads the models and the
                # browser's plotting code once, as in a session that has already looked at a recording
                page.locator(".js-plotly-plot g.barlayer path").first.wait_for(timeout=300_000)
                choose_upload(page)
                page.locator("input[type=file]").first.wait_for(state="attached", timeout=60_000)
                t0 = time.perf_counter()
                page.locator("input[type=file]").first.set_input_files(rec["path"])
                dur = f"{rec['duration_s']:.1f}"
                status = page.get_by_text(re.compile(rf"Analysed {re.escape(dur)} s in")).first
                status.wait_for(timeout=900_000)
                t_analysed = time.perf_counter()
                # the new figure is in the page when a plot's time axis ends at this recording's duration
                page.wait_for_function(
                    """(d) => [...document.querySelectorAll('.js-plotly-plot')].some(p => p.layout &&
                        Object.keys(p.layout).some(k => k.startsWith('xaxis') && p.layout[k].range &&
                        Math.abs(p.layout[k].range[1] - d) < 0.2) && p.querySelector('g.barlayer path'))""",
                    arg=float(rec["duration_s"]), timeout=300_000, polling=50)
                t_view = time.perf_counter()
                total = t_view - t0
                m = re.search(r"in ([\d.]+) s", status.inner_text())
                analysis_s = float(m.group(1)) if m else float("nan")
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        row = {"minutes": minutes, "upload_to_view_s": round(total, 1), "analysis_s": analysis_s,
               "upload_decode_and_model_load_s": round(t_analysed - t0 - analysis_s, 1),
               "view_after_analysis_s": round(t_view - t_analysed, 1)}
        rows.append(row)
        print(row, flush=True)
    payload = {}
    pf = ROOT / "bench" / "results" / "view_payload.json"
    if pf.exists():
        payload = {r["minutes"]: r["payload_mb"] for r in json.loads(pf.read_text())["runs"]}
    for r in rows:
        r["payload_mb"] = payload.get(r["minutes"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python bench/view_speed.py " + " ".join(sys.argv[1:]),
                                    "note": args.note, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                    "runs": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
