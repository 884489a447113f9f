"""The exception family of ``ser``.

Everything the library rejects on purpose raises a subclass of :class:`SERError`
with a message that says what is wrong *and* what to do about it. The CLI, the app
and the API catch only this family and show its message; anything else is a bug.
"""

from __future__ import annotations


class SERError(Exception):
    """Base class of every error ``ser`` raises on purpose."""


class AudioError(SERError):
    """The audio given cannot be used (empty, corrupt, silent, too short, too long, ...)."""


class ModelError(SERError):
    """A model folder is missing, incomplete or inconsistent with its card."""


class DataError(SERError):
    """A corpus folder, manifest or label does not follow the expected convention."""


class ConfigError(SERError):
    """A configuration value or file is invalid."""
