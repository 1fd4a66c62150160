"""adb packets on loopback: the project's transport (pipelined device, robust TCP transport) against the fake adbd."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

PUSH_BYTES = 64 << 10


def test_shell_true_round_trip(benchmark: Any, adb_device: Any) -> None:
    assert benchmark(adb_device._shell, "true", 10.0) == ""


def test_run_true_with_exit_code(benchmark: Any, adb_device: Any) -> None:
    result = benchmark(adb_device.run, "true")
    assert (result.stdout, result.exit_code) == ("", 0)


def test_push_64_kib(benchmark: Any, adb_device: Any) -> None:
    data = np.random.default_rng(7).bytes(PUSH_BYTES)
    remote = Path(adb_device.workdir) / "micro.bin"  # the fake adbd's files are the host's files

    def setup() -> tuple[tuple[io.BytesIO, str, float], dict[str, Any]]:
        remote.unlink(missing_ok=True)
        return (io.BytesIO(data), str(remote), 10.0), {}

    def check(buf: io.BytesIO, path: str, timeout_s: float) -> None:
        assert Path(path).read_bytes() == data

    benchmark.pedantic(adb_device._push, setup=setup, teardown=check, rounds=50, warmup_rounds=2)
