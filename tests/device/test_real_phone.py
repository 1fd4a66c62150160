"""Smoke tests on a real phone: ``ADB_HOST=host:port pytest -m device tests/device/test_real_phone.py``.

Skipped unless ``ADB_HOST`` (adb-shell over TCP) or ``ANDROID_SERIAL`` (Google's adb) names a device.
"""

from __future__ import annotations

import os
import time

import pytest

pytestmark = [pytest.mark.device,
              pytest.mark.skipif(not (os.environ.get("ADB_HOST") or os.environ.get("ANDROID_SERIAL")),
                                 reason="no phone configured (set ADB_HOST=host:port or ANDROID_SERIAL)")]


@pytest.fixture(scope="module")
def phone():
    if os.environ.get("ADB_HOST"):
        from harness.device.adb import AdbShellDevice

        host, _, port = os.environ["ADB_HOST"].rpartition(":")
        dev = AdbShellDevice(host or os.environ["ADB_HOST"], int(port or 5555))
    else:
        from harness.device.adbcli import AdbCliDevice

        dev = AdbCliDevice(os.environ["ANDROID_SERIAL"])
    dev.connect()
    dev.run(f"mkdir -p {dev.workdir}", check=True)
    yield dev
    dev.run(f"rm -rf {dev.workdir}/smoke")
    dev.close()


def test_sentinel_props_and_thermal(phone):
    from harness.device.orchestrator import device_info, snapshot

    assert phone.run("echo hi; exit 4").exit_code == 4
    info = device_info(phone)
    assert info["model"] and info["android_release"]
    snap = snapshot(phone)
    assert snap["thermal_status"] is not None and snap["temps"], "dumpsys thermalservice gave nothing parseable"


def test_push_pull_10mib(phone, tmp_path):
    blob = tmp_path / "b.bin"
    blob.write_bytes(os.urandom(10 << 20))
    sha, remote = phone.ensure_artifact(blob)
    assert phone.read_bytes(remote) == blob.read_bytes() and phone.sha256(remote) == sha


def test_detached_run_survives_close_and_reconnect(phone):
    rundir = f"{phone.workdir}/smoke/detached"
    phone.spawn("sh -c 'sleep 10; echo done'", rundir)
    phone.close()
    phone.reconnect(budget_s=30)
    deadline = time.monotonic() + 30
    while (state := phone.poll(rundir)).state == "running" and time.monotonic() < deadline:
        time.sleep(1)
    assert state.state == "exited" and state.exit_code == 0
    assert phone.read_bytes(f"{rundir}/stdout.txt") == b"done\n"
    time_v = phone.read_bytes(f"{rundir}/time.txt").decode(errors="replace")
    assert "Max RSS" in time_v, f"toybox time -v printed: {time_v!r}"
