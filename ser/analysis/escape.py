"""User-supplied text (speaker, file and voice names; transcripts) made safe for a file format.

Every export writes such text the same documented way: control characters (line breaks
included) become spaces (:func:`clean_name`), and a CSV cell that a spreadsheet would run as a
formula gets a leading ``'`` (:func:`csv_cell`). Markup escaping (XML, VTT) is the writer's.
"""

from __future__ import annotations

import re

__all__ = ["clean_name", "csv_cell"]

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean_name(name: object, *, spaces: str | None = None) -> str:
    """A user-supplied name fit for a file format: control characters (line breaks included)
    become spaces; with ``spaces``, every whitespace run becomes that string (RTTM)."""
    s = _CONTROL.sub(" ", str(name))
    return re.sub(r"\s+", spaces, s.strip()) if spaces is not None else s


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet will not run: text starting with ``=``, ``+``, ``-``, ``@``, tab or
    CR gets a leading ``'`` (numbers, and text that reads as a number, stay as they are)."""
    if not isinstance(value, str) or not value:
        return value
    v = clean_name(value)
    if value[0] in "=+-@\t\r":
        try:
            float(value)
            return value
        except ValueError:
            return "'" + v
    return v
