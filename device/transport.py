"""``RobustTcpTransport``: adb-shell's ``TcpTransport`` with the three defects of spec §1.9 fixed.

* ``TCP_NODELAY`` (and keep-alive): no ~40 ms Nagle/delayed-ACK stall per round trip;
* ``bulk_write`` loops until every byte is sent (the stock one ignores short writes and corrupts pushes);
* ``bulk_read`` raises ``ConnectionResetError`` on EOF instead of busy-looping until ``read_timeout_s``.

adb-shell also sums every packet's bytes in pure Python (~7 ms per MiB, the push bottleneck); building the
class installs an identical numpy byte sum in its place (:func:`install_fast_checksum`).

adb_shell is imported lazily (the class is built on first use) so importing ``device`` stays cheap.
"""

from __future__ import annotations

import select
import socket
import time
from functools import cache
from typing import Any


def fast_checksum(data: Any) -> int:
    """ADB's packet checksum (byte sum mod 2**32), vectorised; same result as ``adb_message.checksum``."""
    import numpy as np

    if isinstance(data, str):
        data = data.encode("utf-8")
    if not data:
        return 0
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


ORIGINAL_CHECKSUM: list[Any] = []  # adb-shell's own function, kept for tests


@cache
def install_fast_checksum() -> None:
    """Replace adb-shell's pure-Python checksum where it is looked up (packing and receive checks)."""
    from adb_shell import adb_device, adb_message

    ORIGINAL_CHECKSUM.append(adb_message.checksum)
    adb_message.checksum = fast_checksum
    adb_device.checksum = fast_checksum


@cache
def robust_tcp_transport_class() -> type:
    """Build (once) and return the ``RobustTcpTransport`` class (and install the fast checksum)."""
    from adb_shell.exceptions import TcpTimeoutException
    from adb_shell.transport.tcp_transport import TcpTransport

    class RobustTcpTransport(TcpTransport):
        """TcpTransport with NODELAY, complete writes and immediate EOF detection."""

        def connect(self, transport_timeout_s: float | None) -> None:
            timeout = transport_timeout_s or 10.0  # never an unbounded connect
            self._connection = socket.create_connection((self._host, self._port), timeout=timeout)
            self._connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._connection.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self._connection.setblocking(False)

        def bulk_read(self, numbytes: int, transport_timeout_s: float | None) -> bytes:
            if self._connection is None:
                raise ConnectionResetError("ADB connection is closed")
            readable, _, _ = select.select([self._connection], [], [], transport_timeout_s)
            if not readable:
                raise TcpTimeoutException(
                    f"Reading from {self._host}:{self._port} timed out ({transport_timeout_s} seconds)")
            data = self._connection.recv(numbytes)
            if not data:
                raise ConnectionResetError(f"{self._host}:{self._port} closed the ADB connection")
            return data

        def bulk_write(self, data: Any, transport_timeout_s: float | None) -> int:
            if self._connection is None:
                raise ConnectionResetError("ADB connection is closed")
            view = memoryview(data)
            deadline = None if transport_timeout_s is None else time.monotonic() + transport_timeout_s
            sent = 0
            while sent < len(view):
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                _, writable, _ = select.select([], [self._connection], [], wait)
                if not writable:
                    raise TcpTimeoutException(
                        f"Sending to {self._host}:{self._port} timed out after {transport_timeout_s} s "
                        f"({sent} of {len(view)} bytes sent)")
                try:
                    sent += self._connection.send(view[sent:])
                except BlockingIOError:
                    continue
            return sent

    install_fast_checksum()
    return RobustTcpTransport


@cache
def pipelined_adb_device_class() -> type:
    """``AdbDevice`` whose sync pushes prepare the next 1 MiB packet while the device acknowledges the previous one.

    Still one WRTE in flight per stream (the OKAY is awaited before the next WRTE is sent, as the protocol
    requires); only the host-side packing, file reads and checksums overlap the device's work. Uses
    adb-shell 0.4.4's private ``_filesync_flush``/``_filesync_read`` hooks.
    """
    from adb_shell import constants
    from adb_shell.adb_device import AdbDevice
    from adb_shell.adb_message import AdbMessage

    class PipelinedAdbDevice(AdbDevice):
        """AdbDevice with a deferred OKAY wait after each sync WRTE."""

        def _settle(self, adb_info: Any) -> None:
            if getattr(adb_info, "okay_pending", False):
                adb_info.okay_pending = False
                self._read_until([constants.OKAY], adb_info)

        def _filesync_flush(self, adb_info: Any, filesync_info: Any) -> None:
            self._settle(adb_info)
            msg = AdbMessage(constants.WRTE, adb_info.local_id, adb_info.remote_id,
                             filesync_info.send_buffer[:filesync_info.send_idx])
            self._io_manager.send(msg, adb_info)
            adb_info.okay_pending = True
            filesync_info.send_idx = 0

        def _filesync_read(self, expected_ids: Any, adb_info: Any, filesync_info: Any) -> Any:
            if filesync_info.send_idx:
                self._filesync_flush(adb_info, filesync_info)
            self._settle(adb_info)
            return super()._filesync_read(expected_ids, adb_info, filesync_info)

    return PipelinedAdbDevice
