"""User-facing errors: one clear line naming the file/field and the fix."""

from __future__ import annotations


class HarnessError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line, no traceback."""


class UnknownNameError(HarnessError, KeyError):
    """A registry name (model, benchmark, detector, judge) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginLoadError(HarnessError):
    """A plugin's entry point could not be imported or is malformed."""
