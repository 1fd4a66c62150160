"""``AdbShellDevice``: the adb-shell library over TCP (our ``RobustTcpTransport``) or USB, RSA key auth.

Every call passes explicit ``transport_timeout_s``/``read_timeout_s``/``timeout_s`` (docs/device.md, 'adb-shell:
timeouts and the transport'). Any adb-shell
exception, ``OSError`` or ``ValueError`` closes the connection and raises :class:`DeviceDisconnected`
(or :class:`CommandTimeout`); the next call reconnects. A sync ``FAIL`` (missing file) keeps the link.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path
from typing import Any

from harness.device.base import DEFAULT_WORKDIR, ShellDevice
from harness.device.errors import AuthRequired, CommandTimeout, DeviceDisconnected, DeviceError


def default_key_path() -> Path:
    """``$ADB_VENDOR_KEYS``-free default: the same key Google's adb uses (``~/.android/adbkey``)."""
    return Path(os.environ.get("ANDROID_USER_HOME", Path.home() / ".android")) / "adbkey"


def load_signer(key_path: str | Path | None, *, create: bool = True) -> Any:
    """An adb-shell RSA signer for ``key_path`` (generated, like adb does, if missing and ``create``)."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    path = Path(key_path) if key_path else default_key_path()
    if not path.is_file():
        if not create:
            raise AuthRequired(f"{path}: RSA key not found; pass --key PATH (an adbkey file) or let it be created")
        path.parent.mkdir(parents=True, exist_ok=True)
        keygen(str(path))
    try:
        return PythonRSASigner.FromRSAKeyPath(str(path))
    except (OSError, ValueError) as exc:
        raise AuthRequired(f"{path}: not a usable adb RSA key ({exc}); delete it or pass --key PATH") from exc


class AdbShellDevice(ShellDevice):
    """A phone over adb-shell: ``host``/``port`` for TCP, or ``usb=True`` (``serial`` optional)."""

    kind = "adb"

    def __init__(self, host: str | None = None, port: int = 5555, *, usb: bool = False, serial: str | None = None,
                 key_path: str | Path | None = None, workdir: str = DEFAULT_WORKDIR, sysroot: str = "",
                 transport_timeout_s: float = 10.0, auth_timeout_s: float = 30.0, connect_timeout_s: float = 10.0):
        if not usb and not host:
            raise DeviceError("no device given: pass --host HOST[:PORT] (adb tcpip) or --usb")
        super().__init__(serial or (f"usb:{serial or 'any'}" if usb else f"{host}:{port}"),
                         workdir=workdir, sysroot=sysroot)
        self.host, self.port, self.usb, self.usb_serial = host, int(port), usb, serial
        self.transport = "usb" if usb else "tcp"
        self.key_path = key_path
        self.transport_timeout_s = transport_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._dev: Any = None

    def connect(self) -> None:
        """Open the connection and authenticate (a new key waits ``auth_timeout_s`` for the user's tap)."""
        from adb_shell import exceptions as ex

        self._check_thread()
        signer = load_signer(self.key_path)
        if self.usb:
            try:
                from adb_shell.adb_device import AdbDeviceUsb

                dev = AdbDeviceUsb(serial=self.usb_serial, default_transport_timeout_s=self.transport_timeout_s)
            except (ImportError, ex.InvalidTransportError) as exc:
                raise DeviceError(f"USB needs adb-shell[usb] (libusb1): pip install 'adb-shell[usb]' ({exc})") from exc
        else:
            from harness.device.transport import pipelined_adb_device_class, robust_tcp_transport_class

            dev = pipelined_adb_device_class()(robust_tcp_transport_class()(self.host, self.port),
                                               default_transport_timeout_s=self.transport_timeout_s)
        where = self.serial
        try:
            dev.connect(rsa_keys=[signer], transport_timeout_s=self.connect_timeout_s,
                        auth_timeout_s=self.auth_timeout_s, read_timeout_s=self.connect_timeout_s)
        except ex.DeviceAuthError as exc:
            dev.close()
            raise AuthRequired(f"{where}: device requires authorisation and refused the key: {exc}") from exc
        except ex.TcpTimeoutException as exc:
            dev.close()
            raise AuthRequired(f"{where}: no answer within {self.auth_timeout_s:g} s; if a USB-debugging prompt is "
                               f"showing, tap 'Allow' (key {self.key_path or default_key_path()}) and retry") from exc
        except ex.UsbDeviceNotFoundError as exc:
            raise DeviceDisconnected(f"{where}: no USB device found (check the cable, `adb kill-server`)") from exc
        except (ex.AdbTimeoutError, ex.InvalidResponseError, ex.InvalidCommandError, ex.InvalidChecksumError,
                OSError, ValueError, struct.error) as exc:
            dev.close()
            raise DeviceDisconnected(f"{where}: cannot connect ({type(exc).__name__}: {exc}); is adbd listening "
                                     f"(`adb tcpip {self.port}`) and the serial/host right?") from exc
        self._dev = dev

    def close(self) -> None:
        if self._dev is not None:
            with contextlib.suppress(OSError, ValueError):
                self._dev.close()
            self._dev = None

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from adb_shell import exceptions as ex

        self._check_thread()
        if self._dev is None:
            self.connect()
        try:
            return fn(self._dev, *args, **kwargs)
        except ex.AdbCommandFailureException as exc:  # sync FAIL: the link is fine
            raise DeviceError(f"{self.serial}: {what}: {exc}") from exc
        except (ex.TcpTimeoutException, ex.AdbTimeoutError) as exc:
            self.close()
            raise CommandTimeout(f"{self.serial}: {what}: timed out ({exc})") from exc
        except (ex.AdbConnectionError, ex.InvalidResponseError, ex.InvalidCommandError, ex.InvalidChecksumError,
                ex.PushFailedError, ex.UsbReadFailedError, ex.UsbWriteFailedError, OSError, ValueError,
                struct.error) as exc:
            self.close()
            raise DeviceDisconnected(f"{self.serial}: {what}: connection lost ({type(exc).__name__}: {exc})") from exc

    def _shell(self, command: str, timeout_s: float) -> str:
        t = float(timeout_s)
        return self._call("shell", lambda d: d.shell(command, transport_timeout_s=t, read_timeout_s=t, timeout_s=t))

    def _push(self, local: Path | io.BytesIO, remote: str, timeout_s: float) -> None:
        t = float(timeout_s)
        src = str(local) if isinstance(local, Path) else local
        self._call(f"push {remote}", lambda d: d.push(src, remote, transport_timeout_s=min(t, 30.0),
                                                      read_timeout_s=t))

    def _pull(self, remote: str, local: io.BytesIO, timeout_s: float) -> None:
        t = float(timeout_s)
        self._call(f"pull {remote}", lambda d: d.pull(remote, local, transport_timeout_s=min(t, 30.0),
                                                      read_timeout_s=t))

    def read_many(self, remotes: list[str], timeout_s: float = 120.0,
                  sizes: list[int] | None = None) -> list[bytes]:
        """Pull several files through one sync stream (every request sent at once; ``sizes``, when known,
        let each file be received in place); a file that vanished drops the link (the device may close a sync
        stream after a ``FAIL``) and raises :class:`DeviceError`."""
        if not remotes:
            return []
        t = float(timeout_s)
        try:
            return self._call(f"pull {remotes[0]} (+{len(remotes) - 1})",
                              lambda d: d.pull_many(list(remotes), transport_timeout_s=min(t, 30.0), read_timeout_s=t,
                                                    sizes=sizes))
        except DeviceError:
            self.close()
            raise

    def stat(self, remote: str) -> tuple[int, int, int]:
        """``(mode, size, mtime)``; mode 0 means the path does not exist."""
        return self._call(f"stat {remote}", lambda d: d.stat(remote, transport_timeout_s=10.0, read_timeout_s=10.0))
