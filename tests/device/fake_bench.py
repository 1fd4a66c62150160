#!/usr/bin/env python3
"""A fake on-device benchmark binary for tests: emits the JSON-lines contract v1 (or MNN AUTOTIME lines),
sleeps per stage, allocates memory, and can crash, hang, print garbage or nothing on request.

Its timings are real measurements of its own sleeps (so tests can check ranges, not fixed numbers).
"""

import argparse
import json
import os
import sys
import time

T0 = time.monotonic()


def vm_hwm_kb() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--stage-ms", type=float, default=5.0, help="sleep per stage")
    p.add_argument("--load-ms", type=float, default=5.0)
    p.add_argument("--alloc-mb", type=int, default=0, help="allocate and touch this much before the VAE stage")
    p.add_argument("--metrics-out", default=None, help="contract file (default: @@BENCH lines on stdout)")
    p.add_argument("--format", choices=("jsonl", "mnn"), default="jsonl")
    p.add_argument("--crash-at", default=None, help="ITER:STAGE where to abort (exit 139-like SIGSEGV)")
    p.add_argument("--hang", action="store_true", help="sleep forever after loading")
    p.add_argument("--garbage", action="store_true", help="print non-contract noise only")
    p.add_argument("--silent", action="store_true", help="print nothing at all")
    p.add_argument("--exit-code", type=int, default=0)
    p.add_argument("--prompt", default=None, help="echoed back in the meta event (checks argument passing)")
    p.add_argument("--model", default=None, help="a file to read; its size goes into the meta event")
    p.add_argument("--output-prefix", default="out_", help="images are written as PREFIX<iter>.png")
    a = p.parse_args()
    if a.silent:
        return a.exit_code
    if a.garbage:
        print("Segmentation fault? no: just {not json} and random noise 12.3 ms")
        print("@@BENCH {broken json")
        return a.exit_code
    out = open(a.metrics_out, "w") if a.metrics_out else sys.stdout  # noqa: SIM115

    def emit(event: str, **fields) -> None:
        if a.format == "mnn":
            return
        rec = {"v": 1, "event": event, "t_ms": round((time.monotonic() - T0) * 1000, 3), **fields}
        line = json.dumps(rec)
        out.write(line + "\n" if a.metrics_out else "@@BENCH " + line + "\n")
        out.flush()

    def mnn(stage: str, ms: float) -> None:
        if a.format == "mnn":
            print(f"{stage}, 123, cost time: {ms:f} ms", flush=True)

    def stage(name: str, it: int, step: int | None = None) -> float:
        t = time.monotonic()
        time.sleep(a.stage_ms / 1000)
        return (time.monotonic() - t) * 1000

    def crash_here(it: int, name: str) -> None:
        if a.crash_at == f"{it}:{name}":
            sys.stdout.flush()
            os.kill(os.getpid(), 11)

    emit("meta", runtime="fake", backend="cpu", precision="fp32", threads=1, model="fake-unet",
         height=a.height, width=a.width, steps=a.steps, seed=42, prompt=a.prompt,
         model_bytes=os.path.getsize(a.model) if a.model else None)
    t = time.monotonic()
    time.sleep(a.load_ms / 1000)
    load_ms = (time.monotonic() - t) * 1000
    emit("load", ms=load_ms, component="all", vm_hwm_kb=vm_hwm_kb())
    mnn("load", load_ms)
    if a.hang:
        while True:
            time.sleep(1)
    ballast = None
    for it in range(a.iters):
        t_it = time.monotonic()
        emit("iter_start", iter=it, warmup=it < a.warmup)
        crash_here(it, "text_encoder")
        ms = stage("text_encoder", it)
        emit("stage", iter=it, stage="text_encoder", ms=ms, vm_hwm_kb=vm_hwm_kb())
        mnn("text_encoder", ms)
        for s in range(a.steps):
            crash_here(it, f"unet{s}")
            ms = stage("unet", it, s)
            emit("stage", iter=it, stage="unet", step=s, ms=ms)
            mnn("unet", ms)
        crash_here(it, "vae_decode")
        if a.alloc_mb and ballast is None:
            ballast = bytearray(a.alloc_mb << 20)
            for i in range(0, len(ballast), 4096):
                ballast[i] = 1
        ms = stage("vae_decode", it)
        emit("stage", iter=it, stage="vae_decode", ms=ms, vm_hwm_kb=vm_hwm_kb())
        mnn("vae_decoder", ms)
        name = f"{a.output_prefix}{it}.png"
        with open(name, "wb") as f:
            f.write(b"\x89PNG fake image %d %dx%d" % (it, a.height, a.width))
        e2e = (time.monotonic() - t_it) * 1000
        emit("iter_end", iter=it, e2e_ms=e2e, output=name)
        mnn("run", e2e)
    return a.exit_code


if __name__ == "__main__":
    sys.exit(main())
