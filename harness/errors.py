"""Compatibility name of :mod:`harness.core.errors` during the move to ``harness.core``."""

from harness.core.errors import HarnessError, IncompleteRun, PluginLoadError, UnknownNameError

__all__ = ["HarnessError", "IncompleteRun", "PluginLoadError", "UnknownNameError"]
