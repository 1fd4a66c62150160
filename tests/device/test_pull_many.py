"""Several files through one sync stream (``read_many``), against the loopback fake adbd: every ``RECV`` sent at
once, the answers received in place; with and without checksums, with right, wrong and unknown sizes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.device.errors import DeviceError
from tests.device.conftest import make_device
from tests.peers.fake_adbd import FakeAdbd


@pytest.mark.parametrize("version", [0x01000000, 0x01000001], ids=["checksummed", "skip-checksum"])
def test_many_files_in_one_stream_whatever_sizes_are_announced(sandbox, adb_key, version):
    blobs = {"empty.bin": b"", "small.txt": b"hello\n", "big.bin": os.urandom(3 << 20 | 12345),
             "edge.bin": os.urandom(65536 - 8)}
    folder = sandbox / "data/local/tmp/bench/files"
    folder.mkdir(parents=True)
    for name, data in blobs.items():
        (folder / name).write_bytes(data)
    paths = [str(folder / name) for name in blobs]
    true = [len(d) for d in blobs.values()]
    with FakeAdbd(sandbox, known_keys=[Path(str(adb_key) + ".pub").read_bytes()], version=version) as adbd:
        dev = make_device(adbd, adb_key)
        dev.connect()
        opens = len(adbd.opens)
        for sizes in (true, None, [s + 7 for s in true], [max(0, s - 70000) for s in true]):
            assert [bytes(b) for b in dev.read_many(paths, sizes=sizes)] == list(blobs.values()), sizes
        assert sum(s.startswith("sync:") for s in adbd.opens[opens:]) == 4  # one stream per call
        with pytest.raises(DeviceError, match="No such file"):
            dev.read_many([paths[1], str(folder / "missing.png"), paths[2]])
        assert dev.read_many(paths[1:2]) == [b"hello\n"]  # reconnected after the failed stream
        dev.close()
