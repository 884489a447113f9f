"""Start the dashboard and warm it at once: ``python scripts/serve.py [streamlit options]``.

``streamlit run app.py`` runs nothing until the first browser connects, so the dashboard's
warm-up (``pages.warm_start``: the diarization networks, the default emotion model and the
analysed demo) would start only then, and the first visitor would wait for all of it. This
launcher starts that warm-up in the server's own process before the server, so a visitor who
arrives a few seconds later finds the demo analysed. ``make run`` uses it; any ``streamlit
run`` option can follow (e.g. ``--server.port 8502``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import faulthandler
    import signal

    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 <pid>` writes every thread's stack to the log
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    import ser  # noqa: F401  (before streamlit, numpy and torch: ser.threads' policy is in their environment)
    from ser.threads import policy

    p = policy()
    print("ser: thread policy " + ("off" if not p["enabled"] else
          f"on ({p['mode']}: each analysis on the cores free when it starts, of {p['usable_cores']}; "
          "docs/speed.md)"), flush=True)
    import logging

    from pages import warm_start  # the app's own (st.cache_resource: the app's call finds this one)

    # the warm-up thread loads the model through get_model, whose spinner has no page to show
    # on yet; Streamlit then warns once about a missing ScriptRunContext, which is expected here
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
        lambda record: "missing ScriptRunContext" not in record.getMessage())
    warm_start()
    from streamlit.web import cli as stcli

    sys.argv = ["streamlit", "run", str(ROOT / "app.py"), *argv]
    return stcli.main()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
