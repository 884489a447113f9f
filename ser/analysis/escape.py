"""User-supplied text (speaker, file and voice names; transcripts) made safe for a file format.

Every export writes such text the same documented way: control characters (line breaks
included) become spaces (:func:`clean_name`), and a CSV cell that a spreadsheet would run as a
formula gets a leading ``'`` (:func:`csv_cell`). Markup escaping (XML, VTT) is the writer's;
plotly's hover, annotation and tick text gets :func:`plot_text`.
"""

from __future__ import annotations

import re

__all__ = ["clean_name", "csv_cell", "plot_text"]

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


def plot_text(text: str, width: int = 60, limit: int = 400) -> str:
    """User text for plotly's hover and annotations, shown as text: plotly reads a few HTML
    tags and entities there, so ``&``, ``<`` and ``>`` become entities; long text is cut at
    ``limit`` characters and wrapped every ``width`` (at a space)."""
    import textwrap

    t = " ".join(str(text).split())
    t = t if len(t) <= limit else t[: limit - 1] + "…"
    lines = textwrap.wrap(t, width) or [""]
    esc = [ln.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for ln in lines]
    return "<br>".join(esc)
