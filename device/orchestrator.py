"""``run_sweep``: the per-job protocol with reconnects, reboot detection and resume
(docs/device.md, 'Sweeps and the per-job protocol').

Job state lives on the device (``workdir/runs/<sweep>/<job_id>/<attempt>/{pid,rc,done,...}``), so a Wi-Fi
drop or a host crash loses nothing: the next call (or the next ``harness device sweep``) finds the run
folder and collects it instead of re-running. A run folder the host made but never launched in (it died in
between) is not an attempt: the job is launched there on resume. Records are appended (fsync) only when an
attempt is over.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.core.fsio import atomic_write_bytes, atomic_write_text
from harness.core.paths import inside, safe_name
from harness.device import probes
from harness.device.base import ShellDevice, sh_join
from harness.device.errors import ConfigError, DeviceDisconnected, DeviceError, DeviceRebooted
from harness.device.record import (
    COUNTED,
    SCHEMA_VERSION,
    memory_fields,
    record_log,
    resume_index,
    state_fields,
    timing_fields,
)
from harness.device.runners import get_runner
from harness.device.runners.base import ParsedRun
from harness.device.session import Reconnecting
from harness.device.sweep import Job, Sweep, expand

log = logging.getLogger(__name__)
T = TypeVar("T")


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def device_info(device: ShellDevice) -> dict[str, Any]:
    """Provenance: model, SoC, Android release, build fingerprint, kernel, total memory, transport."""
    props = probes.parse_getprop(device.run(probes.info_command(), timeout_s=20).stdout)

    def get(key: str) -> str | None:
        return props.get(key) or None

    mem = get("mem_total_kb")
    return {"serial": device.serial, "model": get("ro.product.model"), "device": get("ro.product.device"),
            "soc": get("ro.soc.model"), "platform": get("ro.board.platform"),
            "build_fingerprint": get("ro.build.fingerprint"), "android_release": get("ro.build.version.release"),
            "sdk": get("ro.build.version.sdk"), "os_ui_version": get("ro.mi.os.version.name"),
            "kernel": get("kernel"), "mem_total_kb": int(mem) if mem and mem.isdigit() else None,
            "transport": device.transport, "backend": device.kind}


def snapshot(device: ShellDevice) -> dict[str, Any]:
    """Thermal status and temperatures, CPU/GPU frequencies, battery, screen, MemAvailable."""
    return probes.parse_snapshot(device.run(probes.snapshot_command(device.sysroot), timeout_s=30).stdout)


def classify(exit_code: int | None, parsed: ParsedRun, timed_out: bool) -> tuple[str, str | None]:
    """``(status, reason)`` of a finished run; never ``ok`` without a measured number."""
    if timed_out:
        return "timeout", "killed at job_timeout_s"
    measured = [it for it in parsed.iterations if not it.warmup and it.complete]
    if exit_code is None:
        return "failed", "no exit code recorded"
    if exit_code != 0:
        why = f"exit code {exit_code}"
        if exit_code > 128:
            why += f" (signal {exit_code - 128}{', SIGKILL: out of memory?' if exit_code == 137 else ''})"
        if parsed.errors:
            why += f"; runner error: {parsed.errors[-1]}"
        return ("oom" if exit_code == 137 else "failed"), why
    if parsed.errors:
        return "failed", f"runner error: {parsed.errors[-1]}"
    if parsed.empty:
        return "failed", "runner printed no recognisable timing lines"
    if not measured and "e2e_ms_avg" not in parsed.summary and "e2e_ms_median" not in parsed.summary:
        return "failed", "no complete measured iteration in the runner output"
    return "ok", None


class SweepRunner:
    """Runs one sweep against one device into one output folder."""

    def __init__(self, sweep: Sweep, device: ShellDevice, out: str | Path, *, reconnect_budget_s: float = 120.0,
                 reconnect_first_delay_s: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, on_record: Callable[[dict], None] | None = None,
                 progress: Callable[[str], None] | None = None):
        self.sweep, self.device, self.out = sweep, device, Path(out)
        self.reconnect_budget_s, self.reconnect_first_delay_s = reconnect_budget_s, reconnect_first_delay_s
        self.clock, self.sleep = clock, sleep
        self.on_record = on_record or (lambda rec: None)
        self.progress = progress or (lambda msg: None)
        self.stats = {"disconnects": 0, "reboots": 0, "jobs": 0, "already_done": 0, "records": 0, "spawned": 0,
                      "collected_after_resume": 0}
        self.session = Reconnecting(device, budget_s=reconnect_budget_s, first_delay_s=reconnect_first_delay_s,
                                    progress=self.progress, stats=self.stats)
        self.info: dict[str, Any] = {}
        self.baseline_c: float | None = None
        self.verified: set[tuple[str, str | None]] = set()

    # -- device calls with reconnect ------------------------------------------------------------------
    def dev(self, fn: Callable[[], T], retries: int = 6) -> T:
        """Call ``fn``; on a disconnect reconnect (backoff), check the boot id, call again."""
        return self.session(fn, retries)

    @property
    def boot(self) -> str | None:
        return self.session.boot

    # -- sweep -----------------------------------------------------------------------------------------
    def preflight(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.session.start()
        self.info = self.dev(lambda: device_info(self.device))
        manifest = self.out / "manifest.json"
        if manifest.is_file():
            old = json.loads(manifest.read_text())
            old_dev = old.get("device", {})
            if old.get("sweep_name") != self.sweep.name or old_dev.get("serial") != self.info["serial"] or \
                    old_dev.get("build_fingerprint") != self.info["build_fingerprint"]:
                raise ConfigError(
                    f"{manifest}: this folder holds sweep {old.get('sweep_name')!r} on {old_dev.get('serial')} "
                    f"({old_dev.get('build_fingerprint')}); pass another --out for sweep {self.sweep.name!r} on "
                    f"{self.info['serial']} ({self.info['build_fingerprint']})")
        from harness.core.version import __version__

        atomic_write_text(manifest, json.dumps({"sweep_name": self.sweep.name, "sweep": self.sweep.config(),
                                                "device": self.info, "harness_version": __version__,
                                                "updated_utc": utc_now()}, indent=2, sort_keys=True, default=str))
        self.dev(self.device.ensure_helpers)
        snap = self.dev(lambda: snapshot(self.device))
        self.baseline_c = probes.sensor_temp({"temps": snap.get("temps", {}), "types": snap.get("thermal_types", {})},
                                             self.sweep.cooldown.sensor)

    def run(self, max_jobs: int | None = None) -> dict[str, Any]:
        """Run (or resume) the sweep; returns counters. Jobs with an ``ok`` record are skipped."""
        self.preflight()
        jobs = expand(self.sweep, self.device.serial)
        index = resume_index(self.out)
        logbook = record_log(self.out)
        try:
            for job in jobs:
                prog = index.get(job.job_id)
                if prog is not None and prog.done:
                    self.stats["already_done"] += 1
                    continue
                if max_jobs is not None and self.stats["jobs"] >= max_jobs:
                    break
                self.stats["jobs"] += 1
                attempt = prog.last_attempt if prog else 0
                counted = prog.attempts if prog else 0
                while counted < self.sweep.max_attempts:
                    attempt += 1
                    rec = self.run_attempt(job, attempt)
                    logbook.append([rec])
                    self.stats["records"] += 1
                    self.on_record(rec)
                    self.progress(f"[{job.order_idx + 1}/{len(jobs)}] {job.variant.name} {job.steps} steps "
                                  f"{job.height}x{job.width} r{job.repeat_idx} #{attempt}: {rec['status']}"
                                  + (f" ({rec['error']})" if rec.get("error") else ""))
                    if rec["status"] not in COUNTED:
                        break
                    counted += 1
        finally:
            logbook.close()
        self.stats["total_jobs"] = len(jobs)
        return self.stats

    # -- one attempt -----------------------------------------------------------------------------------
    def base_record(self, job: Job, attempt: int) -> dict[str, Any]:
        runner = get_runner(job.variant.runner)
        v = job.variant
        return {"schema_version": SCHEMA_VERSION, "key": f"{job.job_id}#{attempt}", "sweep": self.sweep.name,
                "run_id": run_id_for(self.sweep.name, self.device.serial), "job_id": job.job_id, "attempt": attempt,
                "variant": v.name, "runtime": v.runtime or runner.name, "backend": v.backend,
                "precision": v.precision, "threads": v.threads, "memory_mode": v.memory_mode, "steps": job.steps,
                "height": job.height, "width": job.width, "repeat_idx": job.repeat_idx, "order_idx": job.order_idx,
                "seed": self.sweep.image_seed, "runner": runner.name, "runner_version": runner.version,
                "command": job.command(self.sweep), "artifacts": {n: s for n, _, s in job.artifacts},
                **{k: self.info.get(k) for k in ("serial", "model", "soc", "platform", "android_release", "sdk",
                                                  "build_fingerprint", "os_ui_version", "kernel", "mem_total_kb",
                                                  "transport")},
                "boot_id": self.boot, "status": None, "error": None}

    def run_attempt(self, job: Job, attempt: int) -> dict[str, Any]:
        rec = self.base_record(job, attempt)
        rec["t_start_utc"] = utc_now()
        t0 = self.clock()
        rundir = self.rundir(job, attempt)
        try:
            self._attempt(job, rundir, rec)
        except DeviceRebooted as exc:
            rec.update(status="lost", error=str(exc))
        except DeviceDisconnected:
            raise  # the device is gone for good: no record, the run folder is collected on resume
        except DeviceError as exc:
            rec.update(status="failed", error=str(exc))
        rec["t_end_utc"] = utc_now()
        rec["wall_s"] = round(self.clock() - t0, 3)
        rec["boot_id"] = self.boot
        return rec

    def rundir(self, job: Job, attempt: int) -> str:
        """The attempt's run folder on the device: ``workdir/runs/<sweep name>/<job id>/<attempt>``."""
        where = self.sweep.path or "sweep"
        name = safe_name(self.sweep.name, what="sweep name", where=f"{where}: name")
        job_id = safe_name(job.job_id, what="job id", where=where)
        return f"{self.device.workdir}/runs/{name}/{job_id}/{int(attempt)}"

    def _attempt(self, job: Job, rundir: str, rec: dict[str, Any]) -> None:
        sweep, dev = self.sweep, self.device
        state = self.dev(lambda: dev.poll(rundir))
        before = None
        if state.state == "lost":
            rec.update(status="lost", error=f"run folder {rundir} has no live process and no result "
                                            "(killed, or the device rebooted)")
            return
        if state.state in ("absent", "unlaunched"):  # never launched: not an attempt yet, launch it now
            links = dev.linked_artifacts(job.artifacts, self.verified, self.boot, self.dev)  # once per boot
            before, skip = self.gate(rec)
            if skip:
                rec.update(status="skipped", error=skip)
                rec.update(state_fields(before, None, sweep.cooldown.sensor))
                return
            command = job.command(sweep)
            self.dev(lambda: self._spawn_once(command, rundir, links))
            self.stats["spawned"] += 1
        else:
            self.stats["collected_after_resume"] += 1
        launched = self.clock()
        timed_out = False
        while True:
            state = self.dev(lambda: dev.poll(rundir))
            if state.state == "exited":
                break
            if state.state in ("lost", "absent", "unlaunched"):
                rec.update(status="lost", error=f"the run in {rundir} vanished without a result")
                return
            if self.clock() - launched > sweep.job_timeout_s:
                self.dev(lambda: dev.kill(rundir))
                timed_out = True
                for _ in range(50):
                    state = self.dev(lambda: dev.poll(rundir))
                    if state.state != "running":
                        break
                    self.sleep(0.2)
                break
            self.sleep(sweep.poll_s)
        after = self.dev(lambda: snapshot(dev))
        files = self.collect(job, rundir, rec)
        runner = get_runner(job.variant.runner)
        parsed = runner.parse(files, sweep.warmup_iters)
        status, reason = classify(state.exit_code, parsed, timed_out)
        rec.update(status=status, error=reason, exit_code=state.exit_code)
        if status != "ok" and not parsed.iterations:
            tail = files.get("stdout.txt", b"")[-200:].decode(errors="replace").strip()
            if tail and reason:
                rec["error"] = f"{reason}; stdout tail: {tail!r}"
        rec.update(timing_fields(parsed))
        rec.update(memory_fields(files))
        rec.update(state_fields(before, after, sweep.cooldown.sensor))

    def _spawn_once(self, command: str, rundir: str, links: dict[str, str]) -> None:
        """Spawn unless a previous try (cut off by a disconnect) already launched it."""
        self.device.spawn_once(command, rundir, sample_period_s=1.0 / self.sweep.sample_hz,
                               meminfo=self.sweep.meminfo, links=links)

    def gate(self, rec: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Preconditions and the temperature-gated cooldown; returns (snapshot, skip reason or None)."""
        cd, pre = self.sweep.cooldown, self.sweep.preconditions
        t0 = self.clock()
        limit = cd.abs_max_c if self.baseline_c is None else min(cd.abs_max_c, self.baseline_c + cd.max_delta_c)
        while True:
            snap = self.dev(lambda: snapshot(self.device))
            waited = self.clock() - t0
            level = snap.get("battery_level")
            if pre.min_battery and level is not None and level < pre.min_battery:
                return snap, f"battery {level}% < preconditions.min_battery {pre.min_battery}%"
            if pre.screen != "any" and snap.get("screen") not in (None, pre.screen):
                return snap, f"screen is {snap.get('screen')}, preconditions.screen wants {pre.screen}"
            charging = snap.get("charging")
            if pre.charging != "any" and charging is not None and charging != (pre.charging == "yes"):
                return snap, f"charging={charging}, preconditions.charging wants {pre.charging}"
            temp = probes.sensor_temp({"temps": snap.get("temps", {}), "types": snap.get("thermal_types", {})},
                                      cd.sensor)
            status = snap.get("thermal_status")
            hot = []
            if temp is not None and temp > limit:
                hot.append(f"{cd.sensor} {temp:.1f} °C > {limit:.1f} °C")
            if status is not None and status > cd.thermal_status_max:
                hot.append(f"thermal status {status} > {cd.thermal_status_max}")
            rec["cooldown_wait_s"] = round(waited, 3)
            rec["cooldown_sensor_found"] = temp is not None
            if not hot and waited >= cd.min_s:
                return snap, None
            if waited >= cd.max_s:
                return snap, f"too hot after the {cd.max_s:g} s cooldown limit: {'; '.join(hot)}"
            self.sleep(min(cd.poll_s, max(0.0, cd.max_s - waited)) or cd.poll_s)

    def collect(self, job: Job, rundir: str, rec: dict[str, Any]) -> dict[str, bytes]:
        """Pull the run's files and keep them under ``raw/<job_id>/<attempt>/``."""
        runner = get_runner(job.variant.runner)
        listing = self.dev(lambda: self.device.run(sh_join(["ls", "-1", rundir]), timeout_s=15)).stdout.splitlines()
        files: dict[str, bytes] = {}
        raw = inside(self.out, "raw", job.job_id, str(rec["attempt"]), what="raw output folder")
        for name in runner.outputs(job.variant.outputs):
            if name in listing:
                data = self.dev(lambda name=name: self.device.read_bytes(f"{rundir}/{name}"))
                files[name] = data
                atomic_write_bytes(inside(raw, name, what="output file"), data)
        rec["raw_dir"] = str(raw)
        for name in job.variant.outputs:
            if name in files:
                rec["output_image_sha256"] = hashlib.sha256(files[name]).hexdigest()
                break
        return files


def run_id_for(sweep_name: str, serial: str) -> str:
    """The results-store run id of a sweep on a device."""
    return f"device-{sweep_name}-{hashlib.sha1(serial.encode()).hexdigest()[:8]}"


def run_sweep(sweep: Sweep, device: ShellDevice, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Convenience wrapper: ``SweepRunner(...).run()``."""
    max_jobs = kwargs.pop("max_jobs", None)
    return SweepRunner(sweep, device, out, **kwargs).run(max_jobs=max_jobs)
