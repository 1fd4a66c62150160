"""User-facing errors: one clear line naming the file or field and the fix, and the exit status it gives."""

from __future__ import annotations


class HarnessError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line, no traceback."""

    exit_code: int = 2


class UnknownNameError(HarnessError, KeyError):
    """A registry name (model, benchmark, detector, judge) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PluginLoadError(HarnessError):
    """A plugin's entry point could not be imported, is malformed, or is not the kind of object its group needs."""


class IncompleteRun(HarnessError):
    """Units of a run are not recorded yet; ``names`` lists each of them. Exit status 3: rerun to finish."""

    exit_code = 3

    def __init__(self, message: str, names: list[str]):
        super().__init__(message)
        self.names = names
