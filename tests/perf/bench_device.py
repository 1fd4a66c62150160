"""Device-module benchmark (loopback, fake adbd, real adb-shell client); prints one JSON object.

1. push of a 64 MiB artifact, verified by sha256 on both ends, vs a raw socket copy of the same bytes
   into a file on the same machine (target ratio >= 0.5); the fake adbd and the raw receiver each run in
   their own process, as adbd does on a phone;
2. shell round-trip latency with our RobustTcpTransport vs adb-shell's stock TcpTransport (target <= 10 ms);
3. a 30-job sweep with 3 injected disconnects and 1 "reboot", interrupted by a host crash and resumed:
   0 lost records, finished jobs never re-run.

    python tests/perf/bench_device.py [--mib 64] [--jobs 30] [--rtt-n 200]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from harness.device.adb import AdbShellDevice  # noqa: E402
from tests.device.conftest import FAKEBIN, make_sandbox, write_sweep  # noqa: E402
from tests.peers.fake_adbd import FakeAdbd  # noqa: E402

RAW_RECEIVER = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
with conn, open(sys.argv[1], "wb") as f:
    while chunk := conn.recv(1 << 20):
        f.write(chunk)
print("done", flush=True)
"""


def raw_socket_copy(src: Path, dest: Path) -> float:
    """Seconds to copy ``src`` over loopback TCP into ``dest`` written by another process (1 MiB blocks)."""
    proc = subprocess.Popen([sys.executable, "-c", RAW_RECEIVER, str(dest)], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as c, open(src, "rb") as f:
        while block := f.read(1 << 20):
            c.sendall(block)
    assert proc.stdout.readline().strip() == "done"  # all bytes written to the file (not process exit)
    elapsed = time.perf_counter() - t
    proc.wait(60)
    return elapsed


@contextlib.contextmanager
def fake_adbd_process(sandbox: Path, key: Path):
    """The fake adbd in its own process, as adbd is on a phone (no GIL shared with the client)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.peers.fake_adbd", "--sandbox", str(sandbox), "--trust",
                             str(key) + ".pub", "--path-prepend", str(FAKEBIN)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        yield int(line.split()[1])
    finally:
        proc.stdin.close()
        proc.wait(20)


def bench_push(work: Path, key: Path, mib: int) -> dict:
    sandbox = make_sandbox(work / "phone-push")
    blob = work / "artifact.bin"
    blob.write_bytes(os.urandom(mib << 20))
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    raw_s, push_s = [], []
    with fake_adbd_process(sandbox, key) as port:
        dev = AdbShellDevice("127.0.0.1", port, key_path=key, workdir=f"{sandbox}/data/local/tmp/bench",
                             sysroot=str(sandbox))
        dev.connect()
        dev.run(f"mkdir -p {dev.workdir}/cas", check=True)
        for i in range(7):  # paired, interleaved runs: load on the machine hits both alike
            raw_s.append(raw_socket_copy(blob, work / "raw-copy.bin"))
            t = time.perf_counter()
            dev._push(blob, f"{dev.workdir}/plain{i}.bin", 120)
            push_s.append(time.perf_counter() - t)
            Path(f"{dev.workdir}/plain{i}.bin").unlink()
        t = time.perf_counter()
        got_sha, remote = dev.ensure_artifact(blob)  # host sha256 + push + device sha256sum + rename
        verified_s = time.perf_counter() - t
        assert got_sha == sha and hashlib.sha256(Path(remote).read_bytes()).hexdigest() == sha
        t = time.perf_counter()
        dev.ensure_artifact(blob)  # already there: hash check only
        cached_s = time.perf_counter() - t
        dev.close()
    return {"mib": mib, "runs": len(push_s),
            "raw_socket_copy_mib_s_best": round(mib / min(raw_s), 1),
            "push_mib_s_best": round(mib / min(push_s), 1),
            "push_vs_raw_ratio_best": round(min(raw_s) / min(push_s), 3),
            "push_vs_raw_ratio_median": round(statistics.median(raw_s) / statistics.median(push_s), 3),
            "raw_s_runs": [round(s, 3) for s in raw_s], "push_s_runs": [round(s, 3) for s in push_s],
            "verified_push_s": round(verified_s, 3), "verified_push_mib_s": round(mib / verified_s, 1),
            "sha256_equal": True, "cached_recheck_s": round(cached_s, 3)}


def bench_rtt(work: Path, key: Path, n: int) -> dict:
    from adb_shell.adb_device import AdbDevice, AdbDeviceTcp
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    from harness.device.transport import robust_tcp_transport_class

    sandbox = make_sandbox(work / "phone-rtt")
    out: dict = {}
    signer = PythonRSASigner.FromRSAKeyPath(str(key))
    with FakeAdbd(sandbox, known_keys=[Path(str(key) + ".pub").read_bytes()]) as adbd:
        for name, dev in (("stock", AdbDeviceTcp("127.0.0.1", adbd.port, default_transport_timeout_s=10)),
                          ("robust", AdbDevice(robust_tcp_transport_class()("127.0.0.1", adbd.port),
                                               default_transport_timeout_s=10))):
            dev.connect(rsa_keys=[signer], transport_timeout_s=10, auth_timeout_s=10, read_timeout_s=10)
            for _ in range(5):
                dev.shell("true", transport_timeout_s=10, read_timeout_s=10, timeout_s=10)
            times = []
            for _ in range(n if name == "robust" else max(20, n // 5)):
                t = time.perf_counter()
                dev.shell("true", transport_timeout_s=10, read_timeout_s=10, timeout_s=10)
                times.append((time.perf_counter() - t) * 1000)
            st = []
            for _ in range(20):
                t = time.perf_counter()
                dev.stat("/", transport_timeout_s=10, read_timeout_s=10)
                st.append((time.perf_counter() - t) * 1000)
            out[f"{name}_shell_true_ms_median"] = round(statistics.median(times), 2)
            out[f"{name}_shell_true_ms_p90"] = round(sorted(times)[int(0.9 * (len(times) - 1))], 2)
            out[f"{name}_stat_ms_median"] = round(statistics.median(st), 2)
            dev.close()
        d = AdbShellDevice("127.0.0.1", adbd.port, key_path=key, workdir=str(sandbox), sysroot=str(sandbox))
        d.connect()
        times = []
        for _ in range(n):
            t = time.perf_counter()
            d.run("true")
            times.append((time.perf_counter() - t) * 1000)
        out["device_run_with_sentinel_ms_median"] = round(statistics.median(times), 2)
        d.close()
    return out


def bench_sweep(work: Path, key: Path, jobs: int) -> dict:
    from harness.device.orchestrator import SweepRunner
    from harness.device.record import read_records
    from harness.device.sweep import expand, load_sweep

    sandbox = make_sandbox(work / "phone-sweep")
    if jobs % 3 or jobs < 6:
        raise SystemExit("--jobs must be a multiple of 3, at least 6")
    cfg = write_sweep(work / "sweep-cfg", name="bench30", steps="[1, 2, 4]", resolutions='["64x64"]',
                      repeats=jobs // 3, bench_args="--stage-ms 20")
    sweep = load_sweep(cfg)
    pub = Path(str(key) + ".pub").read_bytes()
    out = work / "sweep-out"
    with FakeAdbd(sandbox, known_keys=[pub], path_prepend=[str(FAKEBIN), os.path.dirname(sys.executable)]) as adbd:
        dev = AdbShellDevice("127.0.0.1", adbd.port, key_path=key, workdir=f"{sandbox}/data/local/tmp/bench",
                             sysroot=str(sandbox))
        plan = expand(sweep, dev.serial)
        n = len(plan)
        for idx in (n // 10, n * 11 // 30, n * 19 // 30):  # a Wi-Fi drop while these jobs run (4th poll)
            adbd.inject("drop", f"{plan[idx].job_id}/1", "echo ABSENT", after=3)
        adbd.inject("reboot", f"{plan[n * 5 // 6].job_id}/1", "echo ABSENT", after=3)
        crash_after = n // 2

        def host_crash(rec):
            if len(read_records(out)) >= crash_after:
                raise KeyboardInterrupt("simulated host crash")

        t0 = time.perf_counter()
        first = SweepRunner(sweep, dev, out, reconnect_first_delay_s=0.05, on_record=host_crash)
        with contextlib.suppress(KeyboardInterrupt):
            first.run()
        before = {r["key"]: r for r in read_records(out)}
        spawns_before = sum("nohup sh" in s for s in adbd.opens)
        dev2 = AdbShellDevice("127.0.0.1", adbd.port, key_path=key, workdir=dev.workdir, sysroot=str(sandbox))
        second = SweepRunner(sweep, dev2, out, reconnect_first_delay_s=0.05)
        second.run()
        wall = time.perf_counter() - t0
        recs = read_records(out)
        spawns = sum("nohup sh" in s for s in adbd.opens)
        third = SweepRunner(sweep, AdbShellDevice("127.0.0.1", adbd.port, key_path=key, workdir=dev.workdir,
                                                  sysroot=str(sandbox)), out).run()
    ok_jobs = {r["job_id"] for r in recs if r["status"] == "ok"}
    kept = all(k in {r["key"] for r in recs} for k in before)
    return {"jobs": len(plan), "records": len(recs), "ok_jobs": len(ok_jobs),
            "lost_records": len(plan) - len(ok_jobs), "measured_before_crash_kept": kept,
            "records_before_crash": len(before), "injected_drops_fired": sum(k == "drop" for k, _ in adbd.fired),
            "reboots_fired": adbd.reboots, "disconnects_seen": first.stats["disconnects"] + second.stats["disconnects"],
            "reboots_seen": first.stats["reboots"] + second.stats["reboots"],
            "lost_attempts_retried": sum(r["status"] == "lost" for r in recs),
            "resume_skipped_done": second.stats["already_done"], "resume_jobs_run": second.stats["jobs"],
            "spawns_total": spawns, "spawns_before_crash": spawns_before,
            "rerun_of_finished_jobs": spawns - len(plan) - sum(r["status"] == "lost" for r in recs),
            "third_run_jobs": third["jobs"], "wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--rtt-n", type=int, default=200)
    ap.add_argument("--parts", default="push,rtt,sweep", help="comma-separated subset of push,rtt,sweep")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    from adb_shell.auth.keygen import keygen

    with tempfile.TemporaryDirectory(prefix="bench-device-") as d:
        work = Path(d)
        key = work / "adbkey"
        keygen(str(key))
        result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "platform": platform.platform()}}
        if "push" in parts:
            result["push"] = bench_push(work, key, args.mib)
        if "rtt" in parts:
            result["shell_rtt"] = bench_rtt(work, key, args.rtt_n)
        if "sweep" in parts:
            result["sweep"] = bench_sweep(work, key, args.jobs)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
