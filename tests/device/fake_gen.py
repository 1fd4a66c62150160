#!/usr/bin/env python3
"""A fake on-device image generator for tests: the binary a sweep's ``generate`` template runs.

Two modes, as real runtimes have:

* **batch** (``--prompts FILE --outdir DIR``): one process for many images. Reads the JSON-lines prompt file
  (key, prompt, seed, width, height, steps, optional source), writes ``DIR/<key>.png`` per line and emits
  the JSON-lines contract (``meta``, ``load``, per image ``image_start``, ``stage`` and ``image`` events with
  the key, path, seconds and per-stage milliseconds) to ``--metrics-out`` or as ``@@BENCH`` stdout lines;
* **one image per process** (``--prompt P --seed S --output OUT``, as stable-diffusion.cpp or MNN's demo):
  writes one PNG and prints MNN ``AUTOTIME`` lines (``--format mnn``) or nothing parsable.

Images are deterministic functions of (prompt, seed, size, source pixels): a background gradient, a few
coloured shapes and mild noise (so a 1024² PNG weighs about what a real generation does). Timings are real
measurements of its own sleeps.

Faults for given keys or prompts (``FAKE_GEN_FAULTS``: a JSON file ``{"crash": [...], "hang": [...],
"garbage": [...], "wrong_size": [...], "no_file": [...], "blank": [...], "error": [...]}``, each entry a key
or a substring of the prompt), so a test can clear them between runs without changing the command line.
``FAKE_GEN_LOG``: a file that gets one ``key-or-prompt seed`` line per image actually generated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time

T0 = time.monotonic()


def faults() -> dict[str, list[str]]:
    path = os.environ.get("FAKE_GEN_FAULTS")
    if not path or not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def fault_for(key: str, prompt: str) -> str | None:
    for kind, matches in faults().items():
        if any(m == key or (m and m in prompt) for m in matches):
            return kind
    return None


def draw(prompt: str, seed: int, width: int, height: int, source: str | None) -> object:
    """The deterministic image of (prompt, seed, size, source)."""
    import numpy as np
    from PIL import Image, ImageDraw

    digest = hashlib.sha256(f"{prompt}\0{seed}\0{width}x{height}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    if source:
        with Image.open(source) as im:
            base = np.asarray(im.convert("RGB").resize((width, height)), dtype=np.float32)
    else:
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = (ys / max(height - 1, 1))[..., None]
        base = top * (1 - t) + bottom * t + 20 * np.sin(xs / max(width, 1) * 6.28)[..., None]
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    pen = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 3 // 4))
        w, h = int(rng.integers(width // 6, width // 2)), int(rng.integers(height // 6, height // 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = pen.ellipse if rng.integers(0, 2) else pen.rectangle
        shape([x0, y0, min(width - 1, x0 + w), min(height - 1, y0 + h)], fill=color)
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-6, 7, (height, width, 3), dtype=np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_png(image: object, path: str) -> None:
    image.save(path, format="PNG", compress_level=1)


def generate_one(key: str, prompt: str, seed: int, width: int, height: int, source: str | None, output: str,
                 a: argparse.Namespace, emit) -> dict | None:
    """Make one image (or its fault); returns the per-stage ms, or None if nothing was written."""
    kind = fault_for(key, prompt)
    stages: dict = {}
    t = time.monotonic()
    time.sleep(a.stage_ms / 1000)
    stages["text_encoder"] = (time.monotonic() - t) * 1000
    if kind == "crash":
        sys.stdout.flush()
        os.kill(os.getpid(), 11)
    if kind == "hang":
        while True:
            time.sleep(1)
    stages["unet"] = []
    for _ in range(a.steps_run):
        t = time.monotonic()
        time.sleep(a.per_image_ms / 1000 / max(a.steps_run, 1))
        stages["unet"].append((time.monotonic() - t) * 1000)
    t = time.monotonic()
    if kind == "error":
        emit("error", key=key, message=f"runtime error on {key}: NaN in latents")
        return None
    if kind == "garbage":
        with open(output, "wb") as f:
            f.write(b"this is not a PNG at all\n" * 4)
    elif kind != "no_file":
        size = (width // 2, height // 2) if kind == "wrong_size" else (width, height)
        image = draw(prompt, seed, *size, source)
        if kind == "blank":
            from PIL import Image

            image = Image.new("RGB", size)
        write_png(image, output + ".tmp")
        os.replace(output + ".tmp", output)
    stages["vae_decode"] = (time.monotonic() - t) * 1000
    log = os.environ.get("FAKE_GEN_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{key or prompt} {seed}\n")
    return stages


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--prompts", help="batch mode: the JSON-lines prompt file")
    p.add_argument("--outdir", help="batch mode: where <key>.png go")
    p.add_argument("--metrics-out", default=None, help="contract file (default: @@BENCH lines on stdout)")
    p.add_argument("--prompt", help="one-image mode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output")
    p.add_argument("--source", default=None)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="one-image mode: U-Net steps")
    p.add_argument("--format", choices=("jsonl", "mnn", "none"), default="jsonl")
    p.add_argument("--per-image-ms", type=float, default=20.0, help="sleep per image, over its U-Net steps")
    p.add_argument("--stage-ms", type=float, default=1.0)
    p.add_argument("--load-ms", type=float, default=5.0)
    a = p.parse_args()
    out = open(a.metrics_out, "a") if a.metrics_out else sys.stdout  # noqa: SIM115

    def emit(event: str, **fields) -> None:
        if a.format != "jsonl":
            return
        line = json.dumps({"v": 1, "event": event, "t_ms": round((time.monotonic() - T0) * 1000, 3), **fields})
        out.write(line + "\n" if a.metrics_out else "@@BENCH " + line + "\n")
        out.flush()

    def mnn(stages: dict) -> None:
        if a.format == "mnn":
            print(f"text_encoder, 151, cost time: {stages['text_encoder']:f} ms")
            for ms in stages["unet"]:
                print(f"unet, 209, cost time: {ms:f} ms")
            print(f"vae_decoder, 254, cost time: {stages['vae_decode']:f} ms", flush=True)

    emit("meta", runtime="fake", backend="cpu", precision="fp32", model="fake-gen")
    time.sleep(a.load_ms / 1000)
    emit("load", ms=a.load_ms, component="all")
    if a.prompts is None:  # one image per process
        a.steps_run = a.steps or 4
        stages = generate_one("", a.prompt, a.seed, a.width, a.height, a.source, a.output, a, emit)
        if stages:
            mnn(stages)
        return 0
    with open(a.prompts, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f if line.strip()]
    for req in lines:
        key = req["key"]
        output = os.path.join(a.outdir, f"{key}.png")
        a.steps_run = int(req.get("steps", 4))
        t = time.monotonic()
        emit("image_start", key=key)
        stages = generate_one(key, req["prompt"], int(req["seed"]), int(req["width"]), int(req["height"]),
                              req.get("source"), output, a, emit)
        if stages is None:
            continue
        emit("image", key=key, path=output, seconds=time.monotonic() - t, stages_ms=stages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
