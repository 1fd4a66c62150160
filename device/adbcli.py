"""``AdbCliDevice``: Google's ``adb`` binary through subprocess (``adb -s SERIAL shell|push|pull``).

Useful where adb-shell cannot go (Android 11+ wireless debugging with TLS pairing) or when an adb server
already owns the USB interface. Exit codes still come from the sentinel (no ``shell_v2`` assumed).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from harness.device.base import DEFAULT_WORKDIR, ShellDevice
from harness.device.errors import AuthRequired, CommandTimeout, DeviceDisconnected, DeviceError

_GONE = ("device offline", "not found", "no devices", "device unauthorized", "closed", "cannot connect",
         "failed to connect", "connection reset", "protocol fault")


class AdbCliDevice(ShellDevice):
    """A phone through the ``adb`` executable; ``serial`` is ``HOST:PORT`` or a USB serial."""

    kind = "adb-cli"

    def __init__(self, serial: str, *, adb: str | None = None, server_port: int | None = None,
                 workdir: str = DEFAULT_WORKDIR, sysroot: str = "", connect_timeout_s: float = 20.0):
        super().__init__(serial, workdir=workdir, sysroot=sysroot)
        exe = adb or shutil.which("adb")
        if not exe:
            raise DeviceError("the adb executable was not found; install it (Debian: apt-get install adb) or use "
                              "--backend adb (adb-shell)")
        self.adb = exe
        self.transport = "tcp" if ":" in serial else "usb"
        self.env = dict(os.environ)
        if server_port:
            self.env["ANDROID_ADB_SERVER_PORT"] = str(server_port)
        self.connect_timeout_s = connect_timeout_s

    def _adb(self, args: list[str], timeout_s: float, *, serial: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.adb, *(["-s", self.serial] if serial else []), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, env=self.env, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"{self.serial}: `adb {' '.join(args)[:60]}` timed out after {timeout_s:g} s") \
                from exc
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            if "unauthorized" in err:
                raise AuthRequired(f"{self.serial}: unauthorised; tap 'Allow USB debugging' on the phone and retry")
            if any(s in err.lower() for s in _GONE):
                raise DeviceDisconnected(f"{self.serial}: {err[-200:]}")
        return proc

    def connect(self) -> None:
        if self.transport == "tcp":
            proc = self._adb(["connect", self.serial], self.connect_timeout_s, serial=False)
            text = proc.stdout.decode(errors="replace")
            if "connected to" not in text and "authenticate" not in text:
                raise DeviceDisconnected(f"{self.serial}: adb connect failed: {text.strip()[-200:]}")
        # A new key is "unauthorized" until the user taps Allow: wait for the state to become "device".
        deadline = time.monotonic() + self.connect_timeout_s
        state = ""
        while time.monotonic() < deadline:
            proc = subprocess.run([self.adb, "-s", self.serial, "get-state"], capture_output=True, env=self.env,
                                  timeout=self.connect_timeout_s, check=False)
            state = (proc.stdout or proc.stderr).decode(errors="replace").strip()
            if state == "device":
                return
            time.sleep(0.2)
        if "unauthorized" in state:
            raise AuthRequired(f"{self.serial}: unauthorised; tap 'Allow USB debugging' on the phone and retry")
        raise DeviceDisconnected(f"{self.serial}: state {state[-200:]!r}, not 'device' after "
                                 f"{self.connect_timeout_s:g} s")

    def close(self) -> None:
        """Nothing to close per call; the adb server keeps its own connection."""

    def disconnect(self) -> None:
        """``adb disconnect`` (TCP only)."""
        if self.transport == "tcp":
            self._adb(["disconnect", self.serial], 10.0, serial=False)

    def _shell(self, command: str, timeout_s: float) -> str:
        proc = self._adb(["shell", command], timeout_s)
        return proc.stdout.decode("utf-8", errors="backslashreplace")

    def _push(self, local: Path | io.BytesIO, remote: str, timeout_s: float) -> None:
        tmp = None
        if isinstance(local, io.BytesIO):
            fd, tmp = tempfile.mkstemp(prefix="adbpush-")
            with os.fdopen(fd, "wb") as f:
                f.write(local.getvalue())
            local = Path(tmp)
        try:
            proc = self._adb(["push", str(local), remote], max(timeout_s, 30.0))
            if proc.returncode != 0:
                raise DeviceError(f"{self.serial}: adb push {local} failed: {proc.stderr.decode()[-200:]}")
        finally:
            if tmp:
                os.unlink(tmp)

    def _pull(self, remote: str, local: io.BytesIO, timeout_s: float) -> None:
        with tempfile.TemporaryDirectory() as d:
            dest = Path(d) / "pulled"
            proc = self._adb(["pull", remote, str(dest)], max(timeout_s, 30.0))
            if proc.returncode != 0 or not dest.is_file():
                raise DeviceError(f"{self.serial}: pull {remote}: {proc.stderr.decode().strip()[-200:]}")
            local.write(dest.read_bytes())
