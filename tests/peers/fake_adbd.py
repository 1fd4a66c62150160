"""A loopback adbd speaking the real ADB wire protocol, for tests (docs/device.md, 'ADB wire protocol' and
'Testing without a phone').

CNXN, AUTH (TOKEN / SIGNATURE checked with RSA-PKCS#1 v1.5 over a pre-hashed SHA-1 / RSAPUBLICKEY),
OPEN/OKAY/WRTE/CLSE with one WRTE in flight per stream, ``shell:`` and ``exec:`` (real ``sh -c`` in a
sandbox folder), ``sync:`` (STAT/LIST/SEND/RECV/QUIT, requests spanning WRTE boundaries) and ``reboot:``.
Android-only commands (getprop, dumpsys, toybox time) are *not* faked here: they are stub executables put
on the shell's PATH by the test, so everything canned is visibly labelled as such.

Fault injection: ``inject("drop"|"stall"|"reboot", match)`` fires when a stream whose service contains
``match`` is opened; ``drop_connections()``, ``reboot()`` (new boot id, every process started through the
fake killed, connections dropped) and ``stall_s`` (delay before answering each OPEN) act at once.
Bound to 127.0.0.1 port 0 only.
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _cmd(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


A_SYNC, A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_CLSE, A_WRTE = (
    _cmd(c) for c in (b"SYNC", b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"CLSE", b"WRTE"))
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
VERSION_SKIP_CHECKSUM = 0x01000001  # A_VERSION_SKIP_CHECKSUM
VERSION = VERSION_SKIP_CHECKSUM  # what Android 9+ adbd announces
MAX_SYNC_DATA = 64 * 1024


def byte_sum(data: bytes) -> int:
    """ADB's "checksum": the byte sum mod 2**32 (numpy, so 1 MiB packets stay cheap)."""
    if len(data) < 4096:
        return sum(data) & 0xFFFFFFFF
    return int(np.frombuffer(data, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


def pack(cmd: int, arg0: int, arg1: int, data: bytes = b"", checksum: bool = True) -> bytes:
    """One ADB packet: 6 little-endian u32 (checksum = byte sum or 0 when skipped, magic = ~cmd) + payload."""
    check = byte_sum(data) if checksum else 0
    return struct.pack("<6I", cmd, arg0, arg1, len(data), check, cmd ^ 0xFFFFFFFF) + data


def parse_mincrypt_pubkey(text: bytes):  # -> RSAPublicKey
    """Android's mincrypt public key (base64 ``len,n0inv,n[],rr[],e`` + `` user@host``) → cryptography key."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers

    raw = base64.b64decode(text.strip(b"\0").split()[0])
    words = struct.unpack_from("<I", raw)[0]
    n = int.from_bytes(raw[8: 8 + 4 * words], "little")
    e = struct.unpack_from("<I", raw, 8 + 8 * words)[0]
    return RSAPublicNumbers(e, n).public_key()


@dataclass
class Stream:
    local: int
    remote: int
    service: str
    inbox: queue.Queue = field(default_factory=queue.Queue)
    acked: threading.Event = field(default_factory=threading.Event)
    closed: bool = False
    proc: subprocess.Popen | None = None


class Conn:
    """One client connection: a reader thread plus one thread per stream."""

    def __init__(self, server: FakeAdbd, sock: socket.socket):
        self.server, self.sock = server, sock
        self.send_lock = threading.Lock()
        self.streams: dict[int, Stream] = {}
        self.next_id = 1
        self.maxdata = server.maxdata
        self.protocol = 0  # min(host's CNXN version, ours) once the host's CNXN arrives
        self.online = False
        self.token = b""
        self.alive = True

    @property
    def skip_checksum(self) -> bool:
        """Both ends speak ``A_VERSION_SKIP_CHECKSUM``: payload checksums are sent as 0 and not checked."""
        return self.protocol >= VERSION_SKIP_CHECKSUM

    # -- io --------------------------------------------------------------------------------------------
    def send(self, cmd: int, a0: int, a1: int, data: bytes | memoryview = b"") -> None:
        with self.send_lock:
            if len(data) <= 65536:
                self.sock.sendall(pack(cmd, a0, a1, bytes(data), checksum=not self.skip_checksum))
                return
            check = 0 if self.skip_checksum else byte_sum(data)  # large payloads: header, then the data uncopied
            self.sock.sendall(struct.pack("<6I", cmd, a0, a1, len(data), check, cmd ^ 0xFFFFFFFF))
            self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if not k:
                raise ConnectionError("client closed")
            got += k
        return buf

    def close(self) -> None:
        self.alive = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.sock.close()
        for st in list(self.streams.values()):
            st.closed = True
            st.acked.set()
            st.inbox.put(None)
            self.server.hangup(st.proc)

    def serve(self) -> None:
        try:
            while self.alive:
                cmd, a0, a1, length, check, magic = struct.unpack("<6I", self.recv_exact(24))
                if magic != cmd ^ 0xFFFFFFFF:
                    raise ConnectionError("bad magic")
                data = self.recv_exact(length) if length else b""
                if not self.skip_checksum and byte_sum(data) != check:  # a host CNXN is always checked
                    raise ConnectionError("bad checksum")
                if data:
                    self.server.payload_checksums["zero" if check == 0 else "summed"] += 1
                self.handle(cmd, a0, a1, data)
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            self.close()

    # -- packets ---------------------------------------------------------------------------------------
    def handle(self, cmd: int, a0: int, a1: int, data: bytes) -> None:
        srv = self.server
        if cmd == A_CNXN:
            self.maxdata = min(srv.maxdata, a1 or srv.maxdata)
            self.protocol = min(a0, srv.version)  # as adbd: from here on, checksums per the lower version
            if srv.known_keys is None:
                self.online = True
                self.send(A_CNXN, srv.version, srv.maxdata, srv.banner)
            else:
                self.token = os.urandom(20)
                self.send(A_AUTH, AUTH_TOKEN, 0, self.token)
        elif cmd == A_AUTH:
            if a0 == AUTH_SIGNATURE:
                if any(srv.verify(key, data, self.token) for key in list(srv.known_keys or [])):
                    self.online = True
                    self.send(A_CNXN, srv.version, srv.maxdata, srv.banner)
                else:
                    self.token = os.urandom(20)
                    self.send(A_AUTH, AUTH_TOKEN, 0, self.token)
            elif a0 == AUTH_RSAPUBLICKEY:
                srv.offered_keys.append(data)
                if srv.accept_new_keys:  # the user taps "Allow USB debugging" (and "always allow")
                    srv.known_keys.append(data)
                    self.online = True
                    self.send(A_CNXN, srv.version, srv.maxdata, srv.banner)
        elif not self.online:
            return  # messages before CNXN are ignored
        elif cmd == A_OPEN:
            self.open(a0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif cmd == A_OKAY:
            st = self.streams.get(a1)
            if st is not None:
                st.acked.set()
        elif cmd == A_WRTE:
            st = self.streams.get(a1)
            if st is not None:
                st.inbox.put(data)
                self.send(A_OKAY, st.local, st.remote)
        elif cmd == A_CLSE:
            st = self.streams.pop(a1, None)
            if st is not None:  # CLSE for an unknown stream is ignored, as adbd does
                was_closed, st.closed = st.closed, True
                st.acked.set()
                st.inbox.put(None)
                srv.hangup(st.proc)
                if not was_closed:
                    self.send(A_CLSE, st.local, st.remote)

    def open(self, remote: int, service: str) -> None:
        srv = self.server
        srv.opens.append(service)
        fault = srv.take_fault(service)
        if srv.stall_s:
            time.sleep(srv.stall_s)
        if fault is not None:
            kind, stall_s = fault
            if kind == "drop":
                self.close()
                return
            if kind == "reboot":
                srv.reboot()
                return
            if kind == "stall":
                time.sleep(stall_s)
        local, self.next_id = self.next_id, self.next_id + 1
        st = Stream(local, remote, service)
        if service.startswith(("shell:", "exec:")):
            target = self.run_shell
        elif service.startswith("sync:"):
            target = self.run_sync
        elif service.startswith("reboot:"):
            self.send(A_CLSE, 0, remote)
            srv.reboot()
            return
        else:
            self.send(A_CLSE, 0, remote)
            return
        self.streams[local] = st
        self.send(A_OKAY, local, remote)
        threading.Thread(target=self._guard, args=(target, st), daemon=True).start()

    def _guard(self, target, st: Stream) -> None:
        try:
            target(st)
        except (OSError, ConnectionError):
            self.close()

    def write(self, st: Stream, data: bytes) -> bool:
        """WRTE in ≤ maxdata chunks, each waiting for the client's OKAY (one in flight per stream)."""
        for i in range(0, len(data), self.maxdata):
            if not self.send_packet(st, data[i: i + self.maxdata]) or not self.wait_ack(st):
                return False
        return True

    def send_packet(self, st: Stream, data: bytes | memoryview) -> bool:
        """One WRTE (≤ maxdata); the caller waits for its OKAY (:meth:`wait_ack`) before the next one."""
        if st.closed or not self.alive:
            return False
        st.acked.clear()
        self.send(A_WRTE, st.local, st.remote, data)
        return True

    @staticmethod
    def wait_ack(st: Stream) -> bool:
        return st.acked.wait(60) and not st.closed

    def send_file(self, st: Stream, path: Path) -> bool:
        """A RECV answer: ``DATA`` chunks then ``DONE``, packed into ≤ maxdata WRTEs; each packet's chunks are
        read with one ``preadv`` and the next packet is read while the client acknowledges the previous one (as
        a C adbd keeps up), one WRTE in flight."""
        bufs, which, in_flight, offset = [bytearray(self.maxdata), bytearray(self.maxdata)], 0, False, 0
        fd = os.open(path, os.O_RDONLY)
        try:
            while True:
                buf = bufs[which]
                starts = list(range(0, len(buf) - 8, MAX_SYNC_DATA + 8))
                views = [memoryview(buf)[s + 8: min(s + 8 + MAX_SYNC_DATA, len(buf))] for s in starts]
                count = os.preadv(fd, views, offset)
                offset += count
                used = 0
                for start, view in zip(starts, views, strict=True):
                    part = min(count, len(view))
                    if not part:
                        break
                    struct.pack_into("<4sI", buf, start, b"DATA", part)
                    used, count = start + 8 + part, count - part
                finished = used == 0
                if finished:
                    struct.pack_into("<4sI", buf, 0, b"DONE", 0)
                    used = 8
                if in_flight and not self.wait_ack(st):
                    return False
                in_flight = self.send_packet(st, memoryview(buf)[:used])
                if not in_flight:
                    return False
                if finished:
                    return self.wait_ack(st)
                which ^= 1
        finally:
            os.close(fd)

    def finish(self, st: Stream) -> None:
        if not st.closed and self.alive:
            st.closed = True
            self.send(A_CLSE, st.local, st.remote)

    # -- services --------------------------------------------------------------------------------------
    def run_shell(self, st: Stream) -> None:
        srv = self.server
        command = st.service.split(":", 1)[1]
        if not command:
            self.finish(st)  # interactive shells are not supported
            return
        proc = subprocess.Popen(["sh", "-c", command], cwd=srv.sandbox, env=srv.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if st.service.startswith("shell:") else subprocess.DEVNULL,
                                start_new_session=True)
        st.proc = proc
        srv.started.append(proc.pid)
        fd = proc.stdout.fileno()
        while True:
            chunk = os.read(fd, self.maxdata)
            if not chunk or not self.write(st, chunk):
                break
        proc.stdout.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        self.finish(st)

    def run_sync(self, st: Stream) -> None:
        buf = bytearray()
        pos = 0

        def need(n: int) -> bytes | None:
            nonlocal pos
            while len(buf) - pos < n:
                chunk = st.inbox.get(timeout=60)
                if chunk is None:
                    return None
                if pos:  # compact once per incoming packet, not once per request (no quadratic memmove)
                    del buf[:pos]
                    pos = 0
                buf.extend(chunk)
            out = bytes(buf[pos: pos + n])
            pos += n
            return out

        while True:
            head = need(8)
            if head is None:
                return
            ident, length = head[:4], struct.unpack("<I", head[4:])[0]
            if ident == b"QUIT":
                self.finish(st)
                return
            if ident == b"SEND":
                if not self.sync_send(st, need(length).decode(), need):
                    return
                continue
            path = self.server.resolve(need(length).decode())
            if ident == b"STAT":
                try:
                    s = path.stat()
                    reply = struct.pack("<4s3I", b"STAT", s.st_mode, s.st_size & 0xFFFFFFFF, int(s.st_mtime))
                except OSError:
                    reply = struct.pack("<4s3I", b"STAT", 0, 0, 0)
                self.write(st, reply)
            elif ident == b"LIST":
                out = bytearray()
                with contextlib.suppress(OSError):
                    for name in sorted(os.listdir(path)):
                        with contextlib.suppress(OSError):
                            s = (path / name).lstat()
                            raw = name.encode()
                            out += struct.pack("<4s4I", b"DENT", s.st_mode, s.st_size & 0xFFFFFFFF,
                                               int(s.st_mtime), len(raw)) + raw
                out += struct.pack("<4s4I", b"DONE", 0, 0, 0, 0)
                self.write(st, bytes(out))
            elif ident == b"RECV":
                if not path.is_file():
                    msg = b"No such file or directory"
                    self.write(st, struct.pack("<4sI", b"FAIL", len(msg)) + msg)
                    continue
                if not self.send_file(st, path):
                    return
            else:
                msg = f"unknown sync request {ident!r}".encode()
                self.write(st, struct.pack("<4sI", b"FAIL", len(msg)) + msg)

    def sync_send(self, st: Stream, spec: str, need) -> bool:
        name, _, mode = spec.rpartition(",")
        path = self.server.resolve(name)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.recv")
        error = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "wb")  # noqa: SIM115
        except OSError as exc:
            error, f = str(exc), None
        while True:
            head = need(8)
            if head is None:
                if f:
                    f.close()
                    tmp.unlink(missing_ok=True)
                return False
            ident, length = head[:4], struct.unpack("<I", head[4:])[0]
            if ident == b"DATA":
                block = need(length)
                if block is None:
                    return False
                if f:
                    f.write(block)
            elif ident == b"DONE":
                break
            else:
                error = f"unexpected {ident!r} during SEND"
                break
        if f:
            f.close()
            if error is None:
                os.chmod(tmp, int(mode or "0") & 0o777 or 0o644)
                os.replace(tmp, path)
            else:
                tmp.unlink(missing_ok=True)
        if error is not None:
            msg = error.encode()
            return self.write(st, struct.pack("<4sI", b"FAIL", len(msg)) + msg)
        return self.write(st, struct.pack("<4sI", b"OKAY", 0))


class FakeAdbd:
    """The daemon: ``with FakeAdbd(sandbox) as adbd: AdbDeviceTcp("127.0.0.1", adbd.port)...``."""

    def __init__(self, sandbox: str | os.PathLike, *, known_keys: list[bytes] | None = None,
                 accept_new_keys: bool = False, path_prepend: list[str] | None = None,
                 env: dict[str, str] | None = None, nodelay: bool = True, version: int = VERSION,
                 maxdata: int = 1 << 20, model: str = "23127PN0CC", sndbuf: int | None = None):
        self.sandbox = Path(sandbox).resolve()
        self.sandbox.mkdir(parents=True, exist_ok=True)
        # None: no auth; a list: mincrypt public keys (``adbkey.pub`` contents) the "phone" already trusts.
        self.known_keys = None if known_keys is None else list(known_keys)
        self.accept_new_keys = accept_new_keys
        self.offered_keys: list[bytes] = []
        self.nodelay, self.version, self.maxdata, self.sndbuf = nodelay, version, maxdata, sndbuf
        self.payload_checksums = {"zero": 0, "summed": 0}  # received packets with a payload, by checksum
        self.banner = f"device::ro.product.name=houji;ro.product.model={model};ro.product.device=houji;\0".encode()
        path = os.pathsep.join([*(path_prepend or []), os.environ.get("PATH", "/usr/bin:/bin")])
        self.env = {**os.environ, **(env or {}), "PATH": path, "FAKE_ADBD_SANDBOX": str(self.sandbox)}
        self.stall_s = 0.0
        self.opens: list[str] = []
        self.started: list[int] = []
        self.faults: list[list] = []
        self.fired: list[tuple[str, str]] = []
        self.conns: list[Conn] = []
        self.boot_ids: list[str] = []
        self.reboots = 0
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.set_boot_id()

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> int:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        return self.port

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            if self.nodelay:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.sndbuf:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            conn = Conn(self, sock)
            with self._lock:
                self.conns.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self.drop_connections()
        self.kill_all()

    def __enter__(self) -> FakeAdbd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults ----------------------------------------------------------------------------------------
    def inject(self, kind: str, *match: str, times: int = 1, after: int = 0, stall_s: float = 0.0) -> None:
        """Fire ``kind`` (drop / stall / reboot) on ``times`` OPENs whose service contains every ``match``
        string, after letting the first ``after`` such OPENs through."""
        assert kind in ("drop", "stall", "reboot"), kind
        with self._lock:
            self.faults.append([kind, match, times, stall_s, after])

    def take_fault(self, service: str) -> tuple[str, float] | None:
        with self._lock:
            for fault in self.faults:
                if fault[2] > 0 and all(m in service for m in fault[1]):
                    if fault[4] > 0:
                        fault[4] -= 1
                        continue
                    fault[2] -= 1
                    self.fired.append((fault[0], service))
                    return fault[0], fault[3]
        return None

    def drop_connections(self) -> None:
        with self._lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            conn.close()

    def set_boot_id(self) -> str:
        boot = str(uuid.uuid4())
        path = self.sandbox / "proc/sys/kernel/random/boot_id"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(boot + "\n")
        self.boot_ids.append(boot)
        return boot

    def reboot(self) -> None:
        """Simulated reboot: every process started through the fake dies, connections drop, new boot id."""
        self.reboots += 1
        self.kill_all()
        self.set_boot_id()
        self.drop_connections()

    def kill_all(self) -> None:
        for pid in self.started:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def hangup(self, proc: subprocess.Popen | None) -> None:
        """The stream closed: SIGHUP its process group (``nohup``-detached jobs survive, as on a phone)."""
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGHUP)

    # -- helpers ---------------------------------------------------------------------------------------
    def resolve(self, device_path: str) -> Path:
        """Sync paths are confined to the sandbox (absolute sandbox paths pass through)."""
        p = Path(device_path)
        if str(p).startswith(str(self.sandbox)):
            return p
        return self.sandbox / str(p).lstrip("/")

    @staticmethod
    def verify(pubkey_text: bytes, signature: bytes, token: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, utils

        try:
            parse_mincrypt_pubkey(pubkey_text).verify(signature, token, padding.PKCS1v15(),
                                                      utils.Prehashed(hashes.SHA1()))
            return True
        except (InvalidSignature, ValueError):
            return False


def main(argv: list[str] | None = None) -> int:
    """Run the fake as its own process (benchmarks, manual runs with Google's adb); prints ``PORT <n>``.

    ``python -m tests.peers.fake_adbd --sandbox DIR [--trust adbkey.pub] [--accept-new-keys]``; stops when
    stdin closes (or on SIGTERM/SIGINT).
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="loopback fake adbd (tests only)")
    ap.add_argument("--sandbox", required=True)
    ap.add_argument("--trust", action="append", default=None, help="an adbkey.pub the fake phone trusts")
    ap.add_argument("--accept-new-keys", action="store_true")
    ap.add_argument("--path-prepend", action="append", default=[])
    args = ap.parse_args(argv)
    sys.setswitchinterval(0.0005)  # reader and sync threads hand the GIL over fast (adbd is C on a phone)
    keys = None if args.trust is None else [Path(p).read_bytes() for p in args.trust]
    with FakeAdbd(args.sandbox, known_keys=keys, accept_new_keys=args.accept_new_keys,
                  path_prepend=args.path_prepend) as adbd:
        print(f"PORT {adbd.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
