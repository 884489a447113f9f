"""``import ser`` stays light: no streamlit, no torch until a model is used."""

from __future__ import annotations

import subprocess
import sys


def test_import_ser_imports_neither_streamlit_nor_torch():
    code = ("import sys, ser; bad = [m for m in ('streamlit', 'torch', 'librosa', 'pyannote', 'ray') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_load_model_is_reachable_lazily():
    import ser

    assert callable(ser.load_model)


def test_the_cli_the_batch_engine_and_the_app_modules_do_not_import_ray():
    code = ("import sys, ser.cli, ser.serve.batch, ser.analysis.pipeline, ser.serve.api, ser.serve.live; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
