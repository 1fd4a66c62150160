"""Attempt records (docs/device.md, 'Attempt records'): flat JSON lines, one per attempt, fsync'd; resume index.

Records are written through :class:`harness.core.fsio.RecordLog` (``<out>/records/attempts-<token>.jsonl``),
keyed ``<job_id>#<attempt>``. A line cut short by a crash is ignored when reading.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core.fsio import RecordLog
from harness.device import probes
from harness.device.runners.base import ParsedRun

SCHEMA_VERSION = 1
STAGE = "attempts"
STATUSES = ("ok", "failed", "timeout", "disconnected", "lost", "oom", "skipped")
COUNTED = ("failed", "timeout", "disconnected", "lost", "oom")  # attempts that use up max_attempts


def record_log(out: str | Path) -> RecordLog:
    """The sweep's append-only attempt log."""
    return RecordLog(Path(out) / "records", STAGE)


def read_records(out: str | Path) -> list[dict[str, Any]]:
    """Every attempt record of a sweep folder, in (job order, attempt) order."""
    recs = list(record_log(out).read().values())
    return sorted(recs, key=lambda r: (r.get("order_idx", 0), r.get("attempt", 0)))


@dataclass
class JobProgress:
    """What the log says about one job."""

    done: bool = False
    attempts: int = 0  # counted (failed/timeout/lost/...) attempts
    last_attempt: int = 0


def resume_index(out: str | Path) -> dict[str, JobProgress]:
    """``job_id`` → progress; a job with an ``ok`` record is done and never re-run."""
    index: dict[str, JobProgress] = {}
    for rec in record_log(out).read().values():
        p = index.setdefault(rec["job_id"], JobProgress())
        p.last_attempt = max(p.last_attempt, int(rec.get("attempt", 0)))
        if rec.get("status") == "ok":
            p.done = True
        elif rec.get("status") in COUNTED:
            p.attempts += 1
    return index


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _p90(xs: list[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    k = 0.9 * (len(s) - 1)
    lo = int(k)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (k - lo)


def timing_fields(parsed: ParsedRun) -> dict[str, Any]:
    """Per-iteration lists of measured (non-warm-up) iterations, plus derived medians and p90."""
    measured = [it for it in parsed.iterations if not it.warmup]
    complete = [it for it in measured if it.complete]
    e2e = [it.e2e_ms for it in complete if it.e2e_ms is not None]
    steps = [it.unet_step_ms for it in measured if it.unet_step_ms]
    flat_steps = [x for row in steps for x in row]
    fields: dict[str, Any] = {
        "load_ms": parsed.load_ms,
        "first_e2e_ms": next((it.e2e_ms for it in parsed.iterations if it.e2e_ms is not None),
                             parsed.summary.get("first_e2e_ms")),
        "warmup_iters": sum(it.warmup for it in parsed.iterations),
        "measured_iters": len(complete),
        "partial_iters": len(measured) - len(complete),
        "e2e_ms": e2e,
        "text_encoder_ms": [it.text_encoder_ms for it in measured if it.text_encoder_ms is not None],
        "unet_step_ms": steps,
        "unet_total_ms": [it.unet_total_ms if it.unet_total_ms is not None else sum(it.unet_step_ms)
                          for it in measured if it.unet_total_ms is not None or it.unet_step_ms],
        "vae_decode_ms": [it.vae_decode_ms for it in measured if it.vae_decode_ms is not None],
        "e2e_ms_median": _median(e2e) if e2e else parsed.summary.get("e2e_ms_median",
                                                                        parsed.summary.get("e2e_ms_avg")),
        "e2e_ms_p90": _p90(e2e) if e2e else parsed.summary.get("e2e_ms_p90"),
        "unet_step_ms_median": _median(flat_steps),
        "text_encoder_ms_median": _median([it.text_encoder_ms for it in measured if it.text_encoder_ms is not None]),
        "vae_decode_ms_median": _median([it.vae_decode_ms for it in measured if it.vae_decode_ms is not None]),
    }
    hwm: dict[str, int] = {}
    for it in parsed.iterations:
        for stage, kb in it.stage_vm_hwm_kb.items():
            hwm[stage] = max(hwm.get(stage, 0), kb)
    fields["stage_vm_hwm_kb"] = hwm or None
    if parsed.summary:
        fields["tool_summary"] = parsed.summary
    if parsed.meta:
        fields["runner_meta"] = parsed.meta
    return fields


def memory_fields(files: dict[str, bytes]) -> dict[str, Any]:
    """Peak memory from ``time.txt`` (toybox time -v), ``mem.tsv`` (5 Hz sampler) and ``meminfo.tsv``."""
    out: dict[str, Any] = {}
    tv = probes.parse_time_v(files.get("time.txt", b"").decode(errors="replace"))
    out["max_rss_kb"] = tv.get("max_rss_kb")
    out["time_real_s"] = tv.get("real_s")
    out["time_user_s"] = tv.get("user_s")
    out["time_sys_s"] = tv.get("sys_s")
    samples = probes.parse_mem_tsv(files.get("mem.tsv", b"").decode(errors="replace"))
    out["mem_samples"] = len(samples)

    def peak(key: str) -> int | None:
        vals = [s[key] for s in samples if key in s]
        return int(max(vals)) if vals else None

    out["peak_rss_anon_kb"] = peak("RssAnon")
    out["peak_rss_file_kb"] = peak("RssFile")
    out["peak_vm_rss_kb"] = peak("VmRSS")
    out["peak_vm_hwm_kb"] = peak("VmHWM")
    mi = probes.parse_meminfo_pid(files.get("meminfo.tsv", b"").decode(errors="replace"))
    out["pss_kb"], out["gfx_kb"], out["gl_mtrack_kb"] = mi.get("pss_kb"), mi.get("gfx_kb"), mi.get("gl_mtrack_kb")
    return out


def state_fields(before: dict[str, Any] | None, after: dict[str, Any] | None, sensor: str) -> dict[str, Any]:
    """Thermal/frequency/battery snapshot fields (before/after) and the derived ``throttled`` flag."""
    out: dict[str, Any] = {}
    for tag, snap in (("before", before), ("after", after)):
        if not snap:
            continue
        out[f"thermal_status_{tag}"] = snap.get("thermal_status")
        out[f"temps_{tag}"] = snap.get("temps")
        out[f"sensor_c_{tag}"] = probes.sensor_temp({"temps": snap.get("temps", {}),
                                                     "types": snap.get("thermal_types", {})}, sensor)
        out[f"cpu_max_freq_khz_{tag}"] = snap.get("cpu_max_freq_khz")
        out[f"cpu_cur_freq_khz_{tag}"] = snap.get("cpu_cur_freq_khz")
        out[f"gpu_freq_hz_{tag}"] = snap.get("gpu_freq_hz")
        out[f"mem_available_kb_{tag}"] = snap.get("mem_available_kb")
    if before:
        out["battery_level"] = before.get("battery_level")
        out["battery_temp_c"] = before.get("battery_temp_c")
        out["charging"] = before.get("charging")
        out["screen"] = before.get("screen")
    avail = [s.get("mem_available_kb") for s in (before, after) if s and s.get("mem_available_kb") is not None]
    out["mem_available_min_kb"] = min(avail) if avail else None
    if before and after:
        b, a = before.get("cpu_max_freq_khz") or {}, after.get("cpu_max_freq_khz") or {}
        dropped = any(a.get(k, v) < v for k, v in b.items())
        out["throttled"] = bool(dropped or (after.get("thermal_status") or 0) > 0)
    return out
