"""Old import path, kept for code written against it: exports are :mod:`ser.analysis.exports`."""

from ser.analysis.exports import FORMATS, export, export_bytes

__all__ = ["FORMATS", "export", "export_bytes"]
