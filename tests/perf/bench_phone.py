"""``phone`` model benchmark (loopback fake adbd in its own process, real adb-shell client); prints one JSON object.

1. pull of N PNGs at 1024² (what ``fake_gen.py`` draws: about 2 MB each, like a real generation) into memory
   through one sync stream, against a raw socket copy of the same bytes (another process reads the files and
   sends them over loopback TCP into this one's memory; target ratio >= 0.5), and against one ``pull`` per
   file (adb-shell's way);
2. one batch of N images generated on the "phone" by ``fake_gen.py`` (a sleep per image, then drawing and
   encoding the PNG) while the host streams them back: the adapter's wall time against the generator's own
   (its process, from ``t_start`` to ``t_end`` on the device; target <= 1.15), and the same generator alone.

    python tests/perf/bench_phone.py [--images 96] [--per-image-ms 300] [--parts pull,overlap]
"""

from __future__ import annotations

import argparse
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
from tests.device.conftest import make_sandbox, write_gen_sweep  # noqa: E402
from tests.perf.bench_device import fake_adbd_process  # noqa: E402

RAW_SENDER = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
buf = bytearray(1 << 20)
view = memoryview(buf)
with conn:
    for path in sys.argv[1:]:
        with open(path, "rb", buffering=0) as f:
            while count := f.readinto(buf):
                conn.sendall(view[:count])
"""


def raw_socket_pull(paths: list[Path]) -> tuple[float, bytes]:
    """Seconds for another process to read ``paths`` and send them over loopback TCP into this one's memory, one
    buffer per file as a pull fills them (what a pull does, without ADB): the raw socket copy of the same bytes."""
    proc = subprocess.Popen([sys.executable, "-c", RAW_SENDER, *map(str, paths)], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    sizes = [p.stat().st_size for p in paths]
    t = time.perf_counter()
    files = []
    with socket.create_connection(("127.0.0.1", port)) as c:
        for size in sizes:
            buf = bytearray(size)  # received in place: no copies on this side
            view, got = memoryview(buf), 0
            while got < size and (count := c.recv_into(view[got:got + (1 << 20)])):
                got += count
            files.append(buf)
    elapsed = time.perf_counter() - t
    proc.wait(60)
    return elapsed, b"".join(files)


def device_at(port: int, key: Path, sandbox: Path) -> AdbShellDevice:
    dev = AdbShellDevice("127.0.0.1", port, key_path=key, workdir=f"{sandbox}/data/local/tmp/bench",
                         sysroot=str(sandbox))
    dev.connect()
    return dev


def bench_pull(work: Path, key: Path, images: int, repeats: int = 9) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "device"))
    import fake_gen

    sandbox = make_sandbox(work / "phone-pull")
    out = sandbox / "data/local/tmp/bench/out"
    out.mkdir(parents=True)
    paths = []
    for i in range(images):
        path = out / f"{i:04d}.png"
        fake_gen.write_png(fake_gen.draw(f"a photo of thing {i}", i, 1024, 1024, None), str(path))
        paths.append(path)
    expected = b"".join(p.read_bytes() for p in paths)
    total, sizes = len(expected), [p.stat().st_size for p in paths]  # what `ls -ln` tells the adapter
    raw_s, many_s, each_s = [], [], []
    with fake_adbd_process(sandbox, key) as port:
        dev = device_at(port, key, sandbox)
        for _ in range(repeats):  # interleaved: load on the machine hits all alike
            seconds, copied = raw_socket_pull(paths)
            raw_s.append(seconds)
            t = time.perf_counter()
            got = dev.read_many([str(p) for p in paths], sizes=sizes)
            many_s.append(time.perf_counter() - t)
            assert b"".join(got) == copied == expected
            t = time.perf_counter()
            for p in paths:
                dev.read_bytes(str(p))
            each_s.append(time.perf_counter() - t)
        dev.close()
    mib = total / 2**20
    return {"images": images, "mib": round(mib, 1), "png_kib_mean": round(total / images / 1024),
            "raw_socket_copy_mib_s_best": round(mib / min(raw_s), 1),
            "pull_one_stream_mib_s_best": round(mib / min(many_s), 1),
            "pull_per_file_mib_s_best": round(mib / min(each_s), 1),
            "one_stream_vs_raw_ratio_median_of_pairs": round(statistics.median(r / m for r, m in zip(raw_s, many_s,
                                                                                                  strict=True)), 3),
            "one_stream_vs_raw_ratio_best": round(min(raw_s) / min(many_s), 3),
            "per_file_vs_raw_ratio_median_of_pairs": round(statistics.median(r / e for r, e in zip(raw_s, each_s,
                                                                                                 strict=True)), 3),
            "raw_s_runs": [round(s, 3) for s in raw_s], "one_stream_s_runs": [round(s, 3) for s in many_s],
            "bytes_equal": True}


def generator_seconds(workdir: Path) -> float:
    """The generator process's own time on the device: ``t_end - t_start`` (``/proc/uptime``) of its run."""
    (run,) = list(workdir.glob("gen/*/*/*/a1"))
    return float((run / "t_end").read_text()) - float((run / "t_start").read_text())


def bench_overlap(work: Path, key: Path, images: int, per_image_ms: float) -> dict:
    from harness.device.phone_model import PhoneModel

    result = {"images": images, "per_image_sleep_ms": per_image_ms, "size": "1024x1024"}
    sweep = write_gen_sweep(work / "overlap-cfg", per_image_ms=per_image_ms, size="1024x1024")
    prompts = [f"a photo of thing {i}" for i in range(images)]
    for label in ("with_pulls", "again"):
        sandbox = make_sandbox(work / f"phone-{label}")
        with fake_adbd_process(sandbox, key) as port:
            model = PhoneModel(sweep=str(sweep), host=f"127.0.0.1:{port}", key=str(key),
                               workdir=f"{sandbox}/data/local/tmp/bench", sysroot=str(sandbox))
            model.ensure_loaded()
            t = time.perf_counter()
            made = model.generate(prompts, list(range(images)))
            wall = time.perf_counter() - t
            model.close()
        gen = generator_seconds(sandbox / "data/local/tmp/bench")
        assert len(made) == images and all(im.size == (1024, 1024) for im in made)
        result[label] = {"adapter_wall_s": round(wall, 2), "generator_s": round(gen, 2),
                         "wall_vs_generator": round(wall / gen, 3),
                         "median_image_s": round(statistics.median(m.info["harness"]["seconds"] for m in made), 3)}
    # the generator alone, no host pulling anything: how much the pulls slow it down on this machine
    alone = make_sandbox(work / "phone-alone") / "data/local/tmp/bench"
    (alone / "out").mkdir(parents=True)
    lines = [json.dumps({"key": f"k{i:04d}", "prompt": p, "seed": i, "width": 1024, "height": 1024, "steps": 4})
             for i, p in enumerate(prompts)]
    (alone / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    t = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "tests/device/fake_gen.py"), "--prompts", str(alone / "prompts.jsonl"),
                    "--outdir", str(alone / "out"), "--metrics-out", str(alone / "m.jsonl"), "--per-image-ms",
                    str(per_image_ms)], check=True)
    result["generator_alone_s"] = round(time.perf_counter() - t, 2)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--per-image-ms", type=float, default=300.0)
    ap.add_argument("--parts", default="pull,overlap", help="comma-separated subset of pull,overlap")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    from adb_shell.auth.keygen import keygen

    with tempfile.TemporaryDirectory(prefix="bench-phone-") as d:
        work = Path(d)
        key = work / "adbkey"
        keygen(str(key))
        result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                              "platform": platform.platform()}}
        if "pull" in parts:
            result["pull"] = bench_pull(work, key, args.images)
        if "overlap" in parts:
            result["overlap"] = bench_overlap(work, key, args.images, args.per_image_ms)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
