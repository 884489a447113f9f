"""``import ser`` stays light: no streamlit, no torch until a model is used."""

from __future__ import annotations

import subprocess
import sys


def test_import_ser_imports_neither_streamlit_nor_torch():
    code = ("import sys, ser; bad = [m for m in ('streamlit', 'torch', 'librosa', 'pyannote') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_load_model_is_reachable_lazily():
    import ser

    assert callable(ser.load_model)
