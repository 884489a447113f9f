"""Old import path, kept for code written against it: the pipeline is :mod:`ser.analysis.pipeline`."""

from ser.analysis.pipeline import StageCache, analyze, plan_windows, relabel

__all__ = ["StageCache", "analyze", "plan_windows", "relabel"]
