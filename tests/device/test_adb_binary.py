"""Google's ``adb`` client (Debian package ``adb``) against the same fake adbd: keeps the fake honest and
exercises the ``AdbCliDevice`` backend. Skipped when ``adb`` is not installed."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.device.conftest import FAKE_BENCH, FAKEBIN
from tests.peers.fake_adbd import FakeAdbd

ADB = shutil.which("adb")
pytestmark = [pytest.mark.skipif(ADB is None, reason="Google adb not installed (apt-get install adb)"),
              pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def adb_env(tmp_path, monkeypatch):
    """A private adb server (own port, own HOME so its fresh RSA key is not the user's)."""
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(port))
    env = dict(os.environ)
    yield port, env
    subprocess.run([ADB, "kill-server"], env=env, capture_output=True, timeout=20, check=False)


def test_google_adb_against_the_fake(sandbox, adb_env, tmp_path):
    from harness.device.adbcli import AdbCliDevice
    from harness.device.errors import DeviceError

    server_port, env = adb_env
    with FakeAdbd(sandbox, known_keys=[], accept_new_keys=True,
                  path_prepend=[str(FAKEBIN), os.path.dirname(sys.executable)]) as adbd:
        dev = AdbCliDevice(f"127.0.0.1:{adbd.port}", server_port=server_port,
                           workdir=f"{sandbox}/data/local/tmp/bench", sysroot=str(sandbox))
        dev.connect()
        assert adbd.offered_keys  # Google adb went through AUTH: token, then its public key
        devices = subprocess.run([ADB, "devices", "-l"], env=env, capture_output=True, text=True, timeout=20).stdout
        assert f"127.0.0.1:{adbd.port}" in devices and "model:23127PN0CC" in devices
        dev.run(f"mkdir -p {dev.workdir}", check=True)
        res = dev.run("echo out; echo err >&2; exit 5")
        assert res.exit_code == 5 and res.stdout == "out\nerr\n"
        blob = tmp_path / "blob.bin"
        blob.write_bytes(os.urandom(3 << 20))
        sha, remote = dev.ensure_artifact(blob)
        assert dev.read_bytes(remote) == blob.read_bytes() and dev.sha256(remote) == sha
        with pytest.raises(DeviceError):
            dev.read_bytes(dev.workdir + "/missing")
        rundir = dev.workdir + "/runs/g"
        dev.spawn(f"{sys.executable} ./bench --steps 2 --iters 2 --warmup 1 --stage-ms 2", rundir,
                  links={"bench": str(FAKE_BENCH)})
        deadline = time.monotonic() + 20
        while (state := dev.poll(rundir)).state == "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert state.state == "exited" and state.exit_code == 0
        assert dev.read_bytes(rundir + "/stdout.txt").count(b"@@BENCH ") >= 10
        assert dev.boot_id() == adbd.boot_ids[-1]
        dev.disconnect()
