"""Images made on the device by a sweep variant's ``generate`` template (docs/device.md, 'Generating images').

One batch of image requests becomes a batch folder on the device,
``workdir/gen/<sweep>/<variant>/<batch id>/`` (the id is a hash of the requests' keys), holding ``out/<key>.png``
and one run folder per attempt (``a1``, ``a2``, ...: the sweep's detached runs, with ``pid``/``rc``/``done``,
``time.txt`` and the memory sampler) next to its prompt file ``prompts-aN.jsonl`` and boot id ``boot-aN``.

* A **batch** template (``{prompts}``) runs one process over the prompt file; the binary writes
  ``{outdir}/<key>.png`` and emits the JSON-lines contract's ``image`` event (key, path, seconds, per-stage
  milliseconds) per image, to ``{metrics_out}`` or as ``@@BENCH`` stdout lines. A **per-image** template
  (``{prompt}``, ``{seed}``, ``{output}``, ``{source}``) is run once per image by a driver script that
  emits the ``image`` events itself (``/proc/uptime`` before and after, the exit status) under ``timeout``;
  each image's output is kept in ``logs/<key>.txt`` and parsed by the variant's runner for stage times.
* The host follows the running attempt with a long poll (one command that returns when a new event is
  written, at most ``poll_window_s`` later) and pulls every announced image at once (one sync stream) while
  the device generates the next ones; each is verified (PNG, size, not one flat colour).
* Everything is on the device, so the host keeps no state: after a dropped link, a host crash or a reboot
  the same batch finds its folder, collects what was written (never generated again) and launches a new
  attempt for the keys left. A key whose image failed (the process crashed on it or hung past
  ``image_timeout_s``, a non-PNG, the wrong size, no file, an ``error`` event) ends failed with the reason
  and where its partial output is; an attempt lost to a reboot fails nothing and is retried up to the
  sweep's ``max_attempts``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.core.hashing import content_hash, sha256_bytes
from harness.core.images import PNG_SIGNATURE
from harness.core.paths import safe_name
from harness.device.base import ShellDevice, q, sh_join
from harness.device.errors import ConfigError, DeviceError, DeviceRebooted
from harness.device.orchestrator import snapshot, utc_now
from harness.device.record import memory_fields, state_fields
from harness.device.runners import get_runner
from harness.device.runners.base import ParsedRun
from harness.device.session import Reconnecting
from harness.device.sweep import Sweep, Variant, file_sha, render_generate

log = logging.getLogger(__name__)

MEMORY_FILES = ("time.txt", "mem.tsv", "meminfo.tsv")
#: the per-image driver's contract events (printf formats: key; key, uptime before and after, exit status)
START = '{"v":1,"event":"image_start","key":"%s"}\\n'
DONE = '{"v":1,"event":"image","key":"%s","t0":"%s","t1":"%s","rc":%s}\\n'
_ATTEMPT = re.compile(r"^a(\d+)$")


@dataclass(frozen=True)
class ImageRequest:
    """One image to make: its key (a plain hex name), prompt (or instruction), seed and edit source (PNG)."""

    key: str
    prompt: str
    seed: int
    source: bytes | None = None


@dataclass
class ImageResult:
    """A verified PNG with its measured seconds and stage times, or the reason it failed and where the
    partial output is (device paths)."""

    key: str
    png: bytes | None = None
    error: str | None = None
    partial: str | None = None
    seconds: float | None = None
    stage_ms: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0


@dataclass
class BatchOutcome:
    """Results in request order, and what the batch measured as a whole (memory, device state)."""

    results: list[ImageResult]
    fields: dict[str, Any]
    folder: str = ""


@dataclass
class _State:
    """What is known of a batch: done and failed keys, attempts lost to reboots, memory per attempt."""

    done: dict[str, ImageResult] = field(default_factory=dict)
    failed: dict[str, ImageResult] = field(default_factory=dict)
    lost: int = 0
    memory: list[dict[str, Any]] = field(default_factory=list)
    #: the key each attempt announced last with ``image_start`` (the one it was on if it died)
    current: dict[int, str] = field(default_factory=dict)

    def settled(self, key: str) -> bool:
        return key in self.done or key in self.failed


def check_png(data: bytes, width: int, height: int) -> str | None:
    """Why ``data`` is not the image asked for (not a PNG, corrupt, wrong size, one flat colour), or None."""
    from PIL import Image

    if not data:
        return "empty file"
    if not data.startswith(PNG_SIGNATURE):
        return f"not a PNG (starts with {data[:12]!r})"
    if data[12:16] == b"IHDR":
        got = (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))
        if got != (width, height):
            return f"wrong size {got[0]}x{got[1]}, expected {width}x{height}"
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            extrema = im.convert("RGB").getextrema()
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt PNG ({exc})"
    if all(lo == hi for lo, hi in extrema):
        return f"blank: every pixel is RGB{tuple(lo for lo, _ in extrema)} (a runtime error such as NaN latents?)"
    return None


def exit_reason(rc: int | None) -> str:
    """An exit status in words."""
    if rc is None:
        return "no exit status recorded"
    if rc == 124:
        return "timed out (killed by timeout)"
    if rc > 128:
        return f"exit code {rc} (signal {rc - 128}{', SIGKILL: out of memory or timeout?' if rc == 137 else ''})"
    return f"exit code {rc}"


def stages_of(parsed: ParsedRun) -> dict[str, Any]:
    """Stage milliseconds of a one-image run's parsed output (first complete or partial iteration)."""
    if not parsed.iterations:
        return {"load": parsed.load_ms} if parsed.load_ms is not None else {}
    it = parsed.iterations[0]
    stages: dict[str, Any] = {"text_encoder": it.text_encoder_ms, "unet": it.unet_step_ms or None,
                              "vae_decode": it.vae_decode_ms, "load": parsed.load_ms, **it.other_ms}
    return {k: v for k, v in stages.items() if v is not None}


def parse_events(text: str) -> list[dict[str, Any]]:
    """Contract events (``"v": 1`` objects) from complete lines; anything else is ignored."""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("v") == 1 and isinstance(event.get("event"), str):
            events.append(event)
    return events


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None


class PhoneGenerator:
    """Runs batches of :class:`ImageRequest` through a variant's ``generate`` template on one device."""

    def __init__(self, device: ShellDevice, sweep: Sweep, variant: Variant, *, steps: int, width: int, height: int,
                 image_timeout_s: float, identity: str, session: Reconnecting | None = None,
                 poll_window_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.device, self.sweep, self.variant = device, sweep, variant
        self.steps, self.width, self.height = steps, width, height
        self.image_timeout_s, self.poll_window_s, self.clock = image_timeout_s, poll_window_s, clock
        self.identity = identity  # what the keys were made for (the model hash): part of the batch id
        self.session = session or Reconnecting(device)
        self.runner = get_runner(variant.runner)
        where = sweep.path or "sweep"
        self.root = (f"{device.workdir}/gen/{safe_name(sweep.name, what='sweep name', where=where)}/"
                     f"{safe_name(variant.name, what='variant name', where=where)}")
        self.verified: set[tuple[str, str | None]] = set()
        self.info: dict[str, Any] = {}

    # -- device calls ----------------------------------------------------------------------------------
    def dev(self, fn: Callable[[], Any]) -> Any:
        return self.session(fn)

    def sh(self, command: str, timeout_s: float = 30.0, check: bool = False) -> str:
        return self.dev(lambda: self.device.run(command, timeout_s=timeout_s, check=check)).stdout

    def start(self) -> None:
        """Connect, remember the boot id, install the run wrapper, read the device's identity."""
        from harness.device.orchestrator import device_info

        if self.session.boot is None:
            self.session.start()
        self.dev(self.device.ensure_helpers)
        self.info = self.dev(lambda: device_info(self.device))

    # -- one batch -------------------------------------------------------------------------------------
    def batch_dir(self, keys: list[str]) -> str:
        return f"{self.root}/{content_hash([self.identity, keys], 16)}"

    def run(self, requests: list[ImageRequest]) -> BatchOutcome:
        """Make every requested image (resuming whatever the device already holds for this batch)."""
        if self.session.boot is None:
            self.start()
        by_key = {r.key: r for r in requests}
        order = list(by_key)
        bdir = self.batch_dir(order)
        t0, started = self.clock(), utc_now()
        self.sh(sh_join(["mkdir", "-p", f"{bdir}/out", f"{bdir}/logs"]), check=True)
        before = self.dev(lambda: snapshot(self.device))
        state = _State()
        attempts = self.attempt_numbers(bdir)
        for n in attempts:  # what an earlier call (or process) left: collect its images, retry its failures
            self.follow(bdir, n, state)
        state.failed.clear()
        state.lost = 0
        while pending := [k for k in order if not state.settled(k)]:
            if state.lost >= self.sweep.max_attempts:
                for key in pending:
                    state.failed[key] = ImageResult(key, error=f"lost {state.lost} times (device rebooted or the run "
                                                               f"was killed; sweep max_attempts = "
                                                               f"{self.sweep.max_attempts})", partial=bdir)
                break
            n = max([0, *attempts]) + 1
            attempts.append(n)
            self.launch(bdir, n, [by_key[k] for k in pending])
            self.follow(bdir, n, state)
        after = self.dev(lambda: snapshot(self.device))
        results = [state.done.get(r.key) or state.failed[r.key] for r in requests]
        return BatchOutcome(results, self.batch_fields(bdir, state, before, after, started, self.clock() - t0,
                                                      len(attempts)), bdir)

    def remove(self, folders: list[str]) -> None:
        """Delete finished batch folders (their images are recorded by then) to keep the device's disk free."""
        inside = [f for f in folders if f.startswith(self.root + "/")]
        if inside:
            self.sh(sh_join(["rm", "-rf", *inside]), timeout_s=120)

    def batch_fields(self, bdir: str, state: _State, before: dict[str, Any], after: dict[str, Any], started: str,
                     wall_s: float, attempts: int) -> dict[str, Any]:
        """Per-record fields of the batch: where it ran, peak memory, battery, thermal state, ``throttled``."""
        mem = {k: max((m[k] for m in state.memory if m.get(k) is not None), default=None)
               for k in ("max_rss_kb", "peak_vm_hwm_kb", "peak_rss_anon_kb", "peak_rss_file_kb", "gfx_kb")}
        peaks = [v for v in (mem["max_rss_kb"], mem["peak_vm_hwm_kb"]) if v is not None]
        states = state_fields(before, after, self.sweep.cooldown.sensor)
        v = self.variant
        label = self.info.get("model") or self.device.serial
        return {
            "device": f"{label} ({self.device.kind}) {v.name}",
            "peak_rss_kb": max(peaks) if peaks else None,
            "battery_before": before.get("battery_level"), "battery_after": after.get("battery_level"),
            "charging": before.get("charging"), "throttled": states.get("throttled"),
            "phone": {"sweep": self.sweep.name, "variant": v.name, "runtime": v.runtime, "backend": v.backend,
                      "precision": v.precision, "batch": bdir.rsplit("/", 1)[-1], "attempts": attempts,
                      "serial": self.device.serial, "boot_id": self.session.boot, "t_start_utc": started,
                      "t_end_utc": utc_now(), "wall_s": round(wall_s, 3), **mem,
                      **{k: states.get(k) for k in ("thermal_status_before", "thermal_status_after", "sensor_c_before",
                                                    "sensor_c_after", "cpu_max_freq_khz_before",
                                                    "cpu_max_freq_khz_after", "gpu_freq_hz_before",
                                                    "gpu_freq_hz_after", "mem_available_min_kb")}},
        }

    def attempt_numbers(self, bdir: str) -> list[int]:
        names = self.sh(f"ls -1 {q(bdir)} 2>/dev/null").split()
        return sorted(int(m.group(1)) for name in names if (m := _ATTEMPT.match(name)))

    # -- launching -------------------------------------------------------------------------------------
    def launch(self, bdir: str, n: int, requests: list[ImageRequest]) -> None:
        """Write the attempt's prompt file (and driver), then start it detached in ``bdir/aN``."""
        self.check_space(bdir, requests)
        sources = self.push_sources(requests)
        rundir = f"{bdir}/a{n}"
        common = {"width": self.width, "height": self.height, "steps": self.steps}
        lines = []
        for r in requests:
            line = {"key": r.key, "prompt": r.prompt, "seed": r.seed, **common, "output": f"{bdir}/out/{r.key}.png"}
            if r.source is not None:
                line["source"] = sources[r.key]
            lines.append(json.dumps(line, ensure_ascii=False) + "\n")
        prompts = f"{bdir}/prompts-a{n}.jsonl"
        self.dev(lambda: self.device.write_bytes(prompts, "".join(lines).encode()))
        self.dev(lambda: self.device.write_bytes(f"{bdir}/boot-a{n}", f"{self.session.boot}\n".encode()))
        where = f"{self.sweep.path}: variant {self.variant.name!r} generate"
        if self.variant.generate_mode == "batch":
            command = render_generate(self.variant, self.sweep, where=where, prompts=prompts, outdir=f"{bdir}/out",
                                      metrics_out=f"{rundir}/metrics.jsonl", **common)
        else:
            driver = f"{bdir}/gen-a{n}.sh"
            script = self.driver(bdir, requests, sources, where)
            self.dev(lambda: self.device.write_bytes(driver, script.encode()))
            command = sh_join(["sh", driver])
        artifacts = [(name, local, file_sha(local)) for name, local in self.variant.files]
        links = self.device.linked_artifacts(artifacts, self.verified, self.session.boot, self.dev)
        self.dev(lambda: self.device.spawn_once(command, rundir, sample_period_s=1.0 / self.sweep.sample_hz,
                                                meminfo=self.sweep.meminfo, links=links))

    def driver(self, bdir: str, requests: list[ImageRequest], sources: dict[str, str], where: str) -> str:
        """The per-image driver: each image under ``timeout``, its output in ``logs/<key>.txt``, an ``image``
        event with ``/proc/uptime`` before and after and the exit status."""
        limit = max(1, int(self.image_timeout_s))  # the same limit absorb() recognises
        lines = ["#!/system/bin/sh", "# one process per image -- written by dreamlite-harness device/",
                 f"if command -v timeout >/dev/null 2>&1; then T='timeout -s KILL {limit}'; else T=''; fi"]
        for r in requests:
            command = render_generate(self.variant, self.sweep, where=where, prompt=r.prompt, seed=r.seed,
                                      output=f"{bdir}/out/{r.key}.png", source=sources.get(r.key, ""), key=r.key,
                                      steps=self.steps, width=self.width, height=self.height)
            log_file = q(f"{bdir}/logs/{r.key}.txt")
            lines += [f"printf {q(START)} {r.key} >> metrics.jsonl", "t0=$(cut -d' ' -f1 /proc/uptime)",
                      f"$T sh -c {q(command)} > {log_file} 2>&1 < /dev/null", "rc=$?",
                      "t1=$(cut -d' ' -f1 /proc/uptime)",
                      f"printf {q(DONE)} {r.key} \"$t0\" \"$t1\" \"$rc\" >> metrics.jsonl"]
        return "\n".join(lines) + "\n"

    def check_space(self, bdir: str, requests: list[ImageRequest]) -> None:
        """Refuse a batch the device has no room for (``df`` of the workdir), before anything is pushed."""
        need = sum(len(r.source or b"") for r in requests) + len(requests) * (self.width * self.height * 3 + 65536)
        out = self.sh(f"df -k {q(self.device.workdir)} 2>/dev/null | tail -n 1")
        words = out.split()
        free = int(words[3]) * 1024 if len(words) >= 4 and words[3].isdigit() else None
        if free is not None and free < need:
            raise ConfigError(f"{self.sweep.path}: [device] workdir {self.device.workdir}: {free >> 20} MiB free on "
                              f"{self.device.serial}, a batch of {len(requests)} {self.width}x{self.height} images "
                              f"needs about {need >> 20} MiB; free space there, set workdir= elsewhere, or lower "
                              "--batch-size")

    def push_sources(self, requests: list[ImageRequest]) -> dict[str, str]:
        """Edit sources into the device's content-addressed cache (pushed once, verified by sha256)."""
        cas = f"{self.device.workdir}/cas"
        shas = {r.key: sha256_bytes(r.source) for r in requests if r.source is not None}
        if not shas:
            return {}
        present = set(self.sh(f"mkdir -p {q(cas)} && ls -1 {q(cas)}").split())
        for r in requests:
            sha = shas.get(r.key)
            if sha is not None and sha not in present:
                self.dev(lambda r=r, sha=sha: self._push_blob(r.source or b"", f"{cas}/{sha}", sha))
                present.add(sha)
        return {key: f"{cas}/{sha}" for key, sha in shas.items()}

    def _push_blob(self, data: bytes, remote: str, sha: str) -> None:
        part = remote + ".part"
        self.device.write_bytes(part, data)
        if self.device.sha256(part) != sha:
            self.device.run(sh_join(["rm", "-f", part]))
            raise DeviceError(f"{self.device.serial}: push of an edit source to {remote} corrupted (sha256 mismatch)")
        self.device.run(sh_join(["mv", "-f", part, remote]), check=True)

    # -- following an attempt --------------------------------------------------------------------------
    def follow(self, bdir: str, n: int, state: _State) -> None:
        """Stream an attempt's images while it runs, then settle it (failed keys, lost, memory)."""
        rundir = f"{bdir}/a{n}"
        keys = self.attempt_keys(bdir, n)
        boot = self.sh(f"cat {q(bdir + '/boot-a' + str(n))} 2>/dev/null").strip()
        # a per-image driver times each image out itself; the host only steps in if the driver stalls
        limit = self.image_timeout_s + (30.0 if self.variant.generate_mode == "per_image" else 0.0)
        seen, last = 0, self.clock()
        while True:
            try:
                run = self.dev(lambda: self.device.poll(rundir))
                if run.state == "running" and boot != self.session.boot:
                    run.state = "lost"  # its pid is from before a reboot (now another process, or none)
                events, seen = self.events(rundir, seen, wait=run.state == "running")
                if self.absorb(bdir, n, keys, events, state):
                    last = self.clock()
            except DeviceRebooted:
                continue
            if run.state != "running":
                break
            if self.clock() - last > limit:
                reason = f"no image for {limit:g} s (hung; killed)"
                self.dev(lambda reason=reason: self.device.write_bytes(f"{bdir}/killed-a{n}", reason.encode()))
                self.dev(lambda: self.device.kill(rundir))
                last = self.clock()
        if run.state in ("absent", "unlaunched"):
            return  # never launched (the host stopped in between): not an attempt
        self.settle(bdir, n, keys, state, run.exit_code, run.state == "lost")

    def attempt_keys(self, bdir: str, n: int) -> list[str]:
        """The keys an attempt was asked for, in its prompt file's order."""
        try:
            text = self.dev(lambda: self.device.read_bytes(f"{bdir}/prompts-a{n}.jsonl")).decode("utf-8", "replace")
        except DeviceRebooted:
            raise
        except DeviceError:
            return []
        keys = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short: its key is simply launched again
            if isinstance(entry, dict) and isinstance(entry.get("key"), str):
                keys.append(entry["key"])
        return keys

    def events(self, rundir: str, seen: int, *, wait: bool) -> tuple[list[dict[str, Any]], int]:
        """Contract lines after the first ``seen`` (complete lines only); with ``wait``, the device holds the
        answer until there is a new line or the run ends, at most ``poll_window_s``."""
        m, s, done = (q(f"{rundir}/{name}") for name in ("metrics.jsonl", "stdout.txt", "done"))
        ev = f"ev() {{ if [ -s {m} ]; then cat {m}; else grep '^@@BENCH ' {s} 2>/dev/null | cut -c9-; fi; }}; "
        loop = ""
        if wait:
            ticks = max(1, int(self.poll_window_s / 0.05))
            loop = (f"i=0; while [ ! -e {done} ] && [ \"$(ev | grep -c '')\" -le {seen} ] && [ $i -lt {ticks} ]; "
                    "do sleep 0.05; i=$((i+1)); done; ")
        out = self.sh(f"{ev}{loop}ev | tail -n +{seen + 1}; echo; echo @@END", timeout_s=self.poll_window_s + 30)
        body = out[:out.rfind("@@END")] if "@@END" in out else ""
        body = body[:-1] if body.endswith("\n") else body  # the echo that ends a cut-short last line
        complete = body[:body.rfind("\n") + 1] if "\n" in body else ""
        return parse_events(complete), seen + complete.count("\n")

    def absorb(self, bdir: str, n: int, keys: list[str], events: list[dict[str, Any]], state: _State) -> bool:
        """Record ``error`` events and pull, verify and record the images ``image`` events announce; returns
        whether anything new happened."""
        wanted = set(keys)
        announced: dict[str, dict[str, Any]] = {}
        for event in events:
            key = event.get("key")
            if key not in wanted or state.settled(key):
                continue
            if event["event"] == "image_start":
                state.current[n] = key
            elif event["event"] == "error":
                state.failed[key] = ImageResult(key, error=f"the generator reported: {event.get('message')}",
                                                partial=f"{bdir}/a{n}", attempt=n)
            elif event["event"] == "image":
                announced[key] = event
        if not announced:
            return any(e.get("key") in wanted for e in events)
        per_image = self.variant.generate_mode == "per_image"
        present = self.listing(f"{bdir}/out")
        pulls = [f"{bdir}/out/{k}.png" for k in announced if f"{k}.png" in present]
        sizes = [present[p.rsplit("/", 1)[1]] for p in pulls]
        if per_image:
            logs = self.listing(f"{bdir}/logs")
            pulls += [f"{bdir}/logs/{k}.txt" for k in announced]
            sizes += [logs.get(f"{k}.txt", 0) for k in announced]
        got = self.dev(lambda: self.device.read_many(pulls, sizes=sizes)) if pulls else []
        blobs = dict(zip(pulls, got, strict=True))
        for key, event in announced.items():
            png_path, log_path = f"{bdir}/out/{key}.png", f"{bdir}/logs/{key}.txt"
            partial = png_path if f"{key}.png" in present else (log_path if per_image else f"{bdir}/a{n}")
            rc, seconds = event.get("rc"), _number(event.get("seconds"))
            if seconds is None and _number(event.get("t1")) is not None and _number(event.get("t0")) is not None:
                seconds = round(float(event["t1"]) - float(event["t0"]), 3)
            if per_image and rc not in (0, None):
                limit = max(1, int(self.image_timeout_s))
                if rc in (124, 137) and seconds is not None and seconds >= limit - 1:
                    why = f"timed out after {limit} s (killed by timeout)"
                else:
                    why = exit_reason(int(rc)) if isinstance(rc, int) else f"exit status {rc!r}"
                state.failed[key] = ImageResult(key, error=why, partial=partial, attempt=n)
                continue
            data = blobs.get(png_path)
            why = "no file written (the image event named none)" if data is None else \
                check_png(data, self.width, self.height)
            if why is not None:
                state.failed[key] = ImageResult(key, error=why, partial=partial, attempt=n)
                continue
            stages = event.get("stages_ms") if isinstance(event.get("stages_ms"), dict) else {}
            if per_image and not stages:
                stages = stages_of(self.runner.parse({"stdout.txt": blobs.get(log_path, b"")}, 0))
            state.done[key] = ImageResult(key, png=data, seconds=seconds, stage_ms=stages, attempt=n)
        return True

    def collect_unannounced(self, bdir: str, n: int, keys: list[str], state: _State) -> None:
        """Images an ended attempt wrote without announcing them (it was killed, or its device rebooted, between
        the file and the event; or the binary emits no events): kept if they pass the checks, never made again.
        Their time is unknown (``seconds`` None)."""
        present = self.listing(f"{bdir}/out")
        left = [k for k in keys if not state.settled(k) and f"{k}.png" in present]
        if not left:
            return
        blobs = self.dev(lambda: self.device.read_many([f"{bdir}/out/{k}.png" for k in left],
                                                       sizes=[present[f"{k}.png"] for k in left]))
        for key, data in zip(left, blobs, strict=True):
            if check_png(data, self.width, self.height) is None:
                state.done[key] = ImageResult(key, png=data, attempt=n)

    def listing(self, folder: str) -> dict[str, int]:
        """File name → size in bytes of a device folder (``ls -ln``: the size is the fifth column in toybox and
        GNU alike, the name the last; our names have no spaces)."""
        sizes = {}
        for line in self.sh(f"ls -ln {q(folder)} 2>/dev/null").splitlines():
            words = line.split()
            if len(words) >= 6 and words[4].isdigit():
                sizes[words[-1]] = int(words[4])
        return sizes

    def settle(self, bdir: str, n: int, keys: list[str], state: _State, rc: int | None, lost: bool) -> None:
        """After an attempt ended: the key it was on when it crashed or was killed fails; a lost attempt (reboot)
        fails none; its memory measurements are kept."""
        rundir = f"{bdir}/a{n}"
        present = set(self.sh(f"ls -1 {q(rundir)} 2>/dev/null").split())
        names = [name for name in MEMORY_FILES if name in present]
        if names:
            blobs = self.dev(lambda: self.device.read_many([f"{rundir}/{name}" for name in names]))
            state.memory.append(memory_fields(dict(zip(names, blobs, strict=True))))
        self.collect_unannounced(bdir, n, keys, state)
        if lost:
            state.lost += 1
            return
        killed = self.sh(f"cat {q(bdir + '/killed-a' + str(n))} 2>/dev/null").strip()
        left = [k for k in keys if not state.settled(k)]
        if not left:
            return
        if rc == 0 and not killed:  # it ended normally without these: never relaunched for them
            for key in left:
                state.failed[key] = ImageResult(key, error="the generator exited 0 without an image event for it",
                                                partial=f"{rundir}/stdout.txt", attempt=n)
            return
        current = state.current.get(n)
        current = current if current in left else left[0]
        out = f"{bdir}/out/{current}.png"
        partial = out if self.sh(f"[ -e {q(out)} ] && echo yes").strip() == "yes" else \
            f"{rundir}/stdout.txt, {rundir}/stderr.txt"
        state.failed[current] = ImageResult(current, error=killed or f"the generator died on it: {exit_reason(rc)}",
                                            partial=partial, attempt=n)
