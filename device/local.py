"""``LocalDevice``: the host itself (dry runs, CI); same shell wrapper, same runners and parsers."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from harness.device.base import ShellDevice
from harness.device.errors import CommandTimeout, DeviceError


class LocalDevice(ShellDevice):
    """Runs commands with ``sh -c`` in ``workdir`` (a temporary folder by default)."""

    kind = "local"
    transport = "local"

    def __init__(self, workdir: str | None = None, *, sysroot: str = "", env: dict[str, str] | None = None):
        workdir = workdir or tempfile.mkdtemp(prefix="device-local-")
        super().__init__(f"local:{socket.gethostname()}", workdir=str(Path(workdir).resolve()), sysroot=sysroot)
        Path(self.workdir).mkdir(parents=True, exist_ok=True)  # after the base class checked the path
        self.env = {**os.environ, **(env or {})}

    def connect(self) -> None:
        """Nothing to connect."""

    def close(self) -> None:
        """Nothing to close."""

    def _shell(self, command: str, timeout_s: float) -> str:
        proc = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise CommandTimeout(f"local: {command[:60]!r} timed out after {timeout_s:g} s") from exc
        return out.decode("utf-8", errors="backslashreplace")

    def _push(self, local: Path | io.BytesIO, remote: str, timeout_s: float) -> None:
        Path(remote).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(local, io.BytesIO):
            Path(remote).write_bytes(local.getvalue())
        else:
            shutil.copyfile(local, remote)
        os.chmod(remote, 0o770)

    def _pull(self, remote: str, local: io.BytesIO, timeout_s: float) -> None:
        try:
            local.write(Path(remote).read_bytes())
        except OSError as exc:
            raise DeviceError(f"local: pull {remote}: {exc}") from exc
