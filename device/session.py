"""Device calls that survive a dropped link: reconnect with backoff, then check the boot id (a reboot)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from harness.device.base import ShellDevice
from harness.device.errors import DeviceDisconnected, DeviceRebooted

T = TypeVar("T")


class Reconnecting:
    """``session(fn)`` calls ``fn``; on :class:`DeviceDisconnected` it reconnects (exponential backoff within
    ``budget_s``), compares the boot id with the last one seen and calls ``fn`` again. A changed boot id raises
    :class:`DeviceRebooted` (everything that ran on the device is gone) after recording the new one.
    ``stats`` counts ``disconnects`` and ``reboots``."""

    def __init__(self, device: ShellDevice, *, budget_s: float = 120.0, first_delay_s: float = 0.5,
                 progress: Callable[[str], None] | None = None, stats: dict[str, Any] | None = None):
        self.device, self.budget_s, self.first_delay_s = device, budget_s, first_delay_s
        self.progress = progress or (lambda msg: None)
        self.stats = stats if stats is not None else {}
        self.stats.setdefault("disconnects", 0)
        self.stats.setdefault("reboots", 0)
        self.boot: str | None = None

    def start(self) -> str:
        """Connect and remember the boot id."""
        self.device.connect()
        self.boot = self.device.boot_id()
        return self.boot

    def __call__(self, fn: Callable[[], T], retries: int = 6) -> T:
        check_boot = False
        for _ in range(retries):
            try:
                if check_boot:
                    boot = self.device.boot_id()
                    check_boot = False
                    if boot != self.boot:
                        old, self.boot = self.boot, boot
                        self.stats["reboots"] += 1
                        raise DeviceRebooted(f"{self.device.serial} rebooted (boot id {old} -> {boot})")
                return fn()
            except DeviceDisconnected as exc:
                self.stats["disconnects"] += 1
                self.progress(f"disconnected ({exc}); reconnecting")
                self.device.reconnect(self.budget_s, self.first_delay_s)
                check_boot = True
        raise DeviceDisconnected(f"{self.device.serial}: still failing after {retries} reconnects")
