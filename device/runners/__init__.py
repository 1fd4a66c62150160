"""Runners per on-device runtime; ``get_runner(name)`` returns an instance."""

from __future__ import annotations

from harness.device.errors import ConfigError
from harness.device.runners.base import Iteration, ParsedRun, Runner
from harness.device.runners.jsonl import JsonlRunner
from harness.device.runners.mnn import MnnRunner
from harness.device.runners.sdcpp import SdCppRunner
from harness.device.runners.tools import OrtRunner, TfliteRunner

RUNNERS: dict[str, type[Runner]] = {r.name: r for r in (JsonlRunner, MnnRunner, SdCppRunner, TfliteRunner, OrtRunner)}

__all__ = ["RUNNERS", "Iteration", "ParsedRun", "Runner", "get_runner"]


def get_runner(name: str) -> Runner:
    """The runner called ``name`` (jsonl, mnn, sdcpp, tflite, ort)."""
    if name not in RUNNERS:
        raise ConfigError(f"unknown runner {name!r}; choose one of {', '.join(sorted(RUNNERS))}")
    return RUNNERS[name]()
