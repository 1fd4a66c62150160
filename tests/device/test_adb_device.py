"""AdbShellDevice with the real adb-shell client against the loopback fake adbd (real TCP, real processes)."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from harness.device.errors import AuthRequired, CommandTimeout, DeviceDisconnected, DeviceError
from harness.device.transport import robust_tcp_transport_class
from tests.device.conftest import FAKEBIN, make_device
from tests.peers.fake_adbd import FakeAdbd


def test_sentinel_exit_codes_merged_stderr_and_exec(device):
    res = device.run("echo out; echo err 1>&2; exit 7")
    assert res.exit_code == 7 and res.stdout == "out\nerr\n"
    assert device.run("true").exit_code == 0
    assert device.run("pwd").stdout.strip() == device.workdir
    binary = device._call("exec", lambda d: d.exec_out("printf '\\000\\001\\377'", transport_timeout_s=5,
                                                         read_timeout_s=5, timeout_s=5, decode=False))
    assert binary == b"\x00\x01\xff"
    with pytest.raises(DeviceError, match="exited 3"):
        device.run("exit 3", check=True)


def test_auth_known_unknown_accepted_and_refused(sandbox, adb_key, tmp_path):
    from adb_shell.auth.keygen import keygen

    other = tmp_path / "other" / "adbkey"
    other.parent.mkdir()
    keygen(str(other))
    pub = Path(str(adb_key) + ".pub").read_bytes()
    with FakeAdbd(sandbox, known_keys=[pub]) as adbd:
        make_device(adbd, adb_key).connect()  # known key: signature verified
        t = time.monotonic()
        with pytest.raises(AuthRequired, match="tap 'Allow'"):
            make_device(adbd, other, auth_timeout_s=0.5).connect()
        assert time.monotonic() - t < 5
        assert adbd.offered_keys and adbd.offered_keys[-1].startswith(Path(str(other) + ".pub").read_bytes()[:40])
        adbd.accept_new_keys = True  # the user taps "Allow"
        dev = make_device(adbd, other, auth_timeout_s=2)
        dev.connect()
        assert dev.run("echo ok").stdout == "ok\n"
        adbd.accept_new_keys = False
        make_device(adbd, other).connect()  # remembered: no prompt the second time


def test_no_device_and_wrong_port_are_clear_errors(adb_key):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from harness.device.adb import AdbShellDevice

    dev = AdbShellDevice("127.0.0.1", port, key_path=adb_key, connect_timeout_s=2)
    with pytest.raises(DeviceDisconnected, match=f"127.0.0.1:{port}: cannot connect .*adb tcpip"):
        dev.connect()
    with pytest.raises(DeviceError, match="no device given"):
        AdbShellDevice(None)


def test_push_20mib_verified_and_content_addressed(device, adbd, tmp_path):
    blob = tmp_path / "weights.bin"
    blob.write_bytes(os.urandom(20 << 20))  # 64 MiB: tests/perf/bench_device.py
    sha, remote = device.ensure_artifact(blob)
    assert remote.endswith(sha) and Path(remote).read_bytes() == blob.read_bytes()
    syncs = sum(s.startswith("sync:") for s in adbd.opens)
    assert device.ensure_artifact(blob) == (sha, remote)  # already there: verified by sha256sum, not pushed
    assert sum(s.startswith("sync:") for s in adbd.opens) == syncs
    Path(remote).write_bytes(b"corrupted on the device")
    assert device.ensure_artifact(blob)[0] == sha and Path(remote).read_bytes() == blob.read_bytes()
    assert device.read_bytes(remote)[:1024] == blob.read_bytes()[:1024]
    with pytest.raises(DeviceError, match="No such file"):
        device.read_bytes(device.workdir + "/missing")
    assert device.run("echo still usable").exit_code == 0


def test_peer_close_is_detected_at_once_and_reconnect_works(device, adbd):
    threading.Timer(0.3, adbd.drop_connections).start()
    t = time.monotonic()
    with pytest.raises(DeviceDisconnected):
        device.run("sleep 3; echo late", timeout_s=8)
    assert time.monotonic() - t < 2.0  # the stock transport spins until read_timeout_s (10 s)
    device.reconnect(budget_s=5, first_delay_s=0.05)
    assert device.run("echo back").stdout == "back\n"


def test_stall_times_out_and_reboot_changes_boot_id(device, adbd):
    adbd.inject("stall", "echo stalled", stall_s=3)
    t = time.monotonic()
    with pytest.raises(CommandTimeout):
        device.run("echo stalled", timeout_s=0.5)
    assert time.monotonic() - t < 2.5
    device.reconnect(budget_s=10, first_delay_s=0.05)
    boot = device.boot_id()
    adbd.reboot()
    device.reconnect(budget_s=5, first_delay_s=0.05)
    assert device.boot_id() != boot and device.boot_id() == adbd.boot_ids[-1]


def test_device_is_bound_to_its_thread(device):
    errors = []

    def other_thread():
        try:
            device.run("true")
        except DeviceError as exc:
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert len(errors) == 1 and "open one per thread" in str(errors[0])


def test_detached_run_survives_a_dropped_connection(device, adbd):
    rundir = device.workdir + "/runs/detached"
    device.spawn("sh -c 'sleep 0.6; echo finished'", rundir)
    adbd.drop_connections()  # a Wi-Fi drop while the job runs
    device.reconnect(budget_s=5, first_delay_s=0.05)
    deadline = time.monotonic() + 10
    while (state := device.poll(rundir)).state == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state.state == "exited" and state.exit_code == 0
    assert device.read_bytes(rundir + "/stdout.txt") == b"finished\n"
    assert b"Max RSS (KiB)" in device.read_bytes(rundir + "/time.txt")


# -- RobustTcpTransport regressions (docs/device.md, 'adb-shell: timeouts and the transport') --------------------
def _server(handler):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        handler(conn)

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_transport_full_writes_nodelay_and_eof():
    received = bytearray()

    def slow_reader(conn):
        while True:
            time.sleep(0.001)
            chunk = conn.recv(65536)
            if not chunk:
                return
            received.extend(chunk)

    srv = _server(slow_reader)
    tr = robust_tcp_transport_class()("127.0.0.1", srv.getsockname()[1])
    tr.connect(5)
    tr._connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    data = os.urandom(2 << 20)
    assert tr.bulk_write(data, 10) == len(data)  # the stock bulk_write sends one partial send() and returns
    assert tr._connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    tr.close()
    deadline = time.monotonic() + 5
    while len(received) < len(data) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bytes(received) == data

    srv2 = _server(lambda conn: conn.close())
    tr2 = robust_tcp_transport_class()("127.0.0.1", srv2.getsockname()[1])
    tr2.connect(5)
    t = time.monotonic()
    with pytest.raises(ConnectionResetError):
        tr2.bulk_read(24, 5)
    assert time.monotonic() - t < 1.0
    tr2.close()


def test_stock_transport_defect_is_real():
    """The stock transport returns a short write (what corrupts big pushes) — why our subclass exists."""
    from adb_shell.transport.tcp_transport import TcpTransport

    srv = _server(lambda conn: time.sleep(2))  # never reads
    tr = TcpTransport("127.0.0.1", srv.getsockname()[1])
    tr.connect(5)
    tr._connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    assert tr.bulk_write(os.urandom(4 << 20), 1) < 4 << 20
    tr.close()


def test_fakebin_is_on_the_fake_path(device):
    assert device.run("command -v getprop").stdout.strip() == str(FAKEBIN / "getprop")


def test_fast_checksum_matches_adb_shell():
    from harness.device.transport import ORIGINAL_CHECKSUM, fast_checksum, robust_tcp_transport_class

    robust_tcp_transport_class()
    (original,) = ORIGINAL_CHECKSUM  # adb-shell's pure-Python byte sum
    assert original is not fast_checksum and original.__module__ == "adb_shell.adb_message"
    for data in (b"", b"\xff" * 5, os.urandom(1 << 20), bytearray(os.urandom(70000)), "host::x\0"):
        assert fast_checksum(data) == original(data)
    assert fast_checksum(b"\xff" * (1 << 24 | 1)) == (255 * (1 << 24 | 1)) & 0xFFFFFFFF  # wraps mod 2**32


@pytest.mark.parametrize("version", [0x01000000, 0x01000001])
def test_checksums_skipped_only_when_both_ends_speak_0x01000001(sandbox, adb_key, tmp_path, version):
    """Android 9+ adbd (0x01000001): no payload checksums after the handshake; an older one checks them all."""
    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(3 << 20 | 123))
    with FakeAdbd(sandbox, known_keys=[Path(str(adb_key) + ".pub").read_bytes()], version=version) as adbd:
        dev = make_device(adbd, adb_key)
        dev.connect()
        skip = version >= 0x01000001
        assert dev._dev._io_manager.skip_checksum is skip
        handshake = dict(adbd.payload_checksums)  # CNXN and AUTH signature: always summed
        assert handshake == {"zero": 0, "summed": 2}
        dev.run(f"mkdir -p {dev.workdir}", check=True)
        dev._push(blob, f"{dev.workdir}/blob.bin", 30)
        assert Path(f"{dev.workdir}/blob.bin").read_bytes() == blob.read_bytes()  # the old adbd verified every sum
        assert dev.run("echo ok").stdout == "ok\n"
        after = {k: adbd.payload_checksums[k] - handshake[k] for k in handshake}
        assert after["zero" if skip else "summed"] > 5 and after["summed" if skip else "zero"] == 0
        dev.close()
