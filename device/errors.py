"""Device errors. All derive from :class:`harness.core.errors.HarnessError`, so the CLI prints one line."""

from __future__ import annotations

from harness.core.errors import HarnessError


class DeviceError(HarnessError):
    """Anything that went wrong talking to or running on a device."""


class DeviceDisconnected(DeviceError):
    """The connection died (drop, reset, timeout on a dead link); the next call reconnects."""


class DeviceRebooted(DeviceError):
    """The device's boot id changed: everything that was running on it is gone."""


class CommandTimeout(DeviceDisconnected):
    """A command produced no sentinel before its deadline; the link is treated as dead (close, reconnect)."""


class CommandFailed(DeviceError):
    """A command ran and exited non-zero where success was required."""


class AuthRequired(DeviceError):
    """The device refused our RSA key (the 'Allow USB debugging' prompt was not accepted)."""


class ConfigError(DeviceError):
    """A sweep file or device option is invalid."""
