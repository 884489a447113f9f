"""The first screen in a real browser: how long after opening the app the analysed emotion demo
is drawn (Debian's headless Chromium against a fresh app server).

    python bench/first_screen.py [--sessions 5]

The demo is analysed once first (the server warms it in the background at start); then each
new browser session opens "/" and the clock runs until the chart's speaker lanes are drawn.
Two cases: a browser that has the app's JavaScript cached (a returning visitor: new tab, same
profile) and a cold browser profile (first visit: it also downloads and compiles the 4.7 MB
plotting library). Then the first visitor of a server started ``--after-start`` seconds
earlier (default 15), with a cold browser, ``--fresh`` times each (default 3): started as
``make run`` does (scripts/serve.py, warmed at start) and as a plain ``streamlit run app.py``
(warmed only when that first visitor arrives). Reported: median and max seconds from
navigation start and from the page's load event. Figures go to bench/results/first_screen.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=5)
    ap.add_argument("--fresh", type=int, default=3, help="fresh servers per launcher (0: skip that case)")
    ap.add_argument("--after-start", type=float, default=15.0, help="seconds between a fresh start and its visitor")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "first_screen.json")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright
    from screenshot import CHROMIUM, CHROMIUM_ARGS, free_port, start_app

    port = free_port()
    proc = start_app(port)
    url = f"http://127.0.0.1:{port}"
    runs: dict[str, list[dict]] = {"returning browser (JS cached)": [], "cold browser profile": []}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            warm = browser.new_context(viewport={"width": 1280, "height": 1400})
            page = warm.new_page()
            page.goto(url)
            page.locator("g.barlayer path").first.wait_for(timeout=300_000, state="attached")
            for case, runs_ in runs.items():
                for _ in range(args.sessions):
                    ctx = warm if case.startswith("returning") else browser.new_context(viewport={"width": 1280, "height": 1400})
                    p = ctx.new_page()
                    p.goto(url, wait_until="load")
                    p.locator("g.barlayer path").first.wait_for(timeout=60_000, state="attached")
                    now = p.evaluate("performance.now()")
                    load = p.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                    runs_.append({"from_navigation_s": round(now / 1000, 2), "from_load_s": round((now - load) / 1000, 2)})
                    p.close()
                    if ctx is not warm:
                        ctx.close()
                    time.sleep(1)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    for plain in (False, True):
        case = (f"first visitor {args.after_start:.0f} s after the server started, cold browser: "
                + ("streamlit run app.py" if plain else "make run (scripts/serve.py)"))
        runs[case] = []
        for _ in range(args.fresh):
            port = free_port()
            proc = start_app(port, plain=plain)
            try:
                time.sleep(args.after_start)
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    p = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
                    p.goto(f"http://127.0.0.1:{port}", wait_until="load")
                    p.locator("g.barlayer path").first.wait_for(timeout=300_000, state="attached")
                    now = p.evaluate("performance.now()")
                    load = p.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                    runs[case].append({"from_navigation_s": round(now / 1000, 2),
                                       "from_load_s": round((now - load) / 1000, 2)})
                    browser.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    runs = {k: v for k, v in runs.items() if v}
    out = {"command": f"python bench/first_screen.py --sessions {args.sessions} --fresh {args.fresh} "
                      f"--after-start {args.after_start:g}",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": "2-core CPU, headless Chromium",
           "cases": {case: {"runs": r, "median_from_navigation_s": statistics.median(x["from_navigation_s"] for x in r),
                            "median_from_load_s": statistics.median(x["from_load_s"] for x in r),
                            "max_from_load_s": max(x["from_load_s"] for x in r)} for case, r in runs.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for case, v in out["cases"].items():
        print(f"{case}: median {v['median_from_navigation_s']} s from navigation, {v['median_from_load_s']} s from load "
              f"(max {v['max_from_load_s']} s)")


if __name__ == "__main__":
    main()
