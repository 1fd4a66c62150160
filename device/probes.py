"""Pure parsers and command strings for device state: props, thermal, battery, screen, frequencies, memory.

Each parser takes the text a command printed and returns plain dicts; nothing here talks to a device.
Formats: docs/device.md, 'Device-state snapshots and the throttled flag' and 'Detached runs' (Android 14
``dumpsys`` outputs, toybox ``time -v``, ``/proc``).
"""

from __future__ import annotations

import re
from typing import Any

from harness.device.base import q, sh_join

PROPS = ("ro.product.model", "ro.product.device", "ro.soc.model", "ro.board.platform", "ro.build.fingerprint",
         "ro.build.version.release", "ro.build.version.sdk", "ro.mi.os.version.name")
THERMAL_TYPES = {0: "CPU", 1: "GPU", 2: "BATTERY", 3: "SKIN", 4: "USB_PORT", 5: "POWER_AMPLIFIER",
                 6: "BCL_VOLTAGE", 7: "BCL_CURRENT", 8: "BCL_PERCENTAGE", 9: "NPU"}
_GETPROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$", re.M)
_THERMAL_STATUS = re.compile(r"^Thermal Status: (\d+)", re.M)
_TEMP = re.compile(r"Temperature\{mValue=([-\d.eE]+|NaN), mType=(-?\d+), mName=([^,]+), mStatus=\d+\}")
_TIME_V = re.compile(r"^(Real time|User time|System time|Max RSS|Major faults|Minor faults)[^:]*: ([\d.]+)\s*$",
                     re.M)
_KV = re.compile(r"^\s*([A-Za-z][\w ]*?):\s*(\S+)\s*$", re.M)


def snapshot_command(sysroot: str = "") -> str:
    """One shell command printing every state section (one round trip per snapshot).

    ``sysroot`` is quoted; only the ``policy*`` glob after it stays unquoted.
    """
    policies = q(f"{sysroot}/sys/devices/system/cpu/cpufreq") + "/policy*"
    gpuclk = sh_join(["cat", f"{sysroot}/sys/class/kgsl/kgsl-3d0/gpuclk"])
    return (
        "echo @@thermal; dumpsys thermalservice 2>/dev/null; "
        "echo @@battery; dumpsys battery 2>/dev/null; "
        "echo @@power; dumpsys power 2>/dev/null | grep -E 'mWakefulness=|Display Power: state='; "
        f"echo @@cpufreq; for p in {policies}; do [ -d \"$p\" ] && echo \"${{p##*/}} "
        "$(cat \"$p/scaling_cur_freq\" 2>/dev/null) $(cat \"$p/scaling_max_freq\" 2>/dev/null)\"; done; "
        f"echo @@gpu; {gpuclk} 2>/dev/null; "
        "echo @@meminfo; grep -E '^(MemTotal|MemAvailable):' /proc/meminfo; echo @@end"
    )


def info_command() -> str:
    """getprop of the provenance properties, kernel release, boot id."""
    return " ; ".join([*(f"echo {q(p + '=')}\"$(getprop {q(p)} 2>/dev/null)\"" for p in PROPS),
                       "echo \"kernel=$(uname -r)\"",
                       "echo \"mem_total_kb=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)\""])


def split_sections(text: str) -> dict[str, str]:
    """``@@name`` markers → ``{name: body}``."""
    sections: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("@@"):
            name = line[2:].strip()
            sections[name] = ""
        elif name is not None:
            sections[name] += line + "\n"
    return sections


def parse_getprop(text: str) -> dict[str, str]:
    """``[key]: [value]`` lines (plain ``getprop``) and ``key=value`` lines (:func:`info_command`)."""
    props = dict(_GETPROP.findall(text))
    for line in text.splitlines():
        if "=" in line and not line.startswith("["):
            k, v = line.split("=", 1)
            props.setdefault(k.strip(), v.strip())
    return props


def parse_thermalservice(text: str) -> dict[str, Any]:
    """``{"status": int|None, "temps": {name: °C}, "types": {name: type name}}`` from the HAL block."""
    m = _THERMAL_STATUS.search(text)
    block = text
    if "Current temperatures from HAL:" in text:
        block = text.split("Current temperatures from HAL:", 1)[1].split("Current cooling devices from HAL", 1)[0]
    temps: dict[str, float] = {}
    types: dict[str, str] = {}
    for value, typ, name in _TEMP.findall(block):
        if value != "NaN":
            temps[name.strip()] = float(value)
            types[name.strip()] = THERMAL_TYPES.get(int(typ), str(typ))
    return {"status": int(m.group(1)) if m else None, "temps": temps, "types": types}


def sensor_temp(thermal: dict[str, Any], sensor: str) -> float | None:
    """A sensor's temperature: exact name, else the hottest sensor of that type (``SKIN``, ``CPU``, ...)."""
    temps = thermal.get("temps", {})
    if sensor in temps:
        return temps[sensor]
    same_type = [t for name, t in temps.items() if thermal.get("types", {}).get(name) == sensor.upper()]
    return max(same_type) if same_type else None


def parse_battery(text: str) -> dict[str, Any]:
    """Level (%), temperature (°C), charging (any source powered)."""
    kv = {k.strip(): v for k, v in _KV.findall(text)}
    out: dict[str, Any] = {}
    if "level" in kv and kv["level"].isdigit():
        out["battery_level"] = int(kv["level"])
    if kv.get("temperature", "").lstrip("-").isdigit():
        out["battery_temp_c"] = int(kv["temperature"]) / 10.0
    powered = [kv.get(k) for k in ("AC powered", "USB powered", "Wireless powered", "Dock powered") if k in kv]
    if powered:
        out["charging"] = any(v == "true" for v in powered)
    return out


def parse_power(text: str) -> dict[str, Any]:
    """Screen state from ``dumpsys power``: ``"on"``, ``"off"`` or absent."""
    m = re.search(r"mWakefulness=(\w+)", text) or re.search(r"Display Power: state=(\w+)", text)
    if not m:
        return {}
    return {"screen": "on" if m.group(1).lower() in ("awake", "on") else "off"}


def parse_cpufreq(text: str) -> dict[str, Any]:
    """``policyN cur max`` lines → per-policy cur and max kHz."""
    cur: dict[str, int] = {}
    mx: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("policy") and parts[1].isdigit():
            cur[parts[0]] = int(parts[1])
            if len(parts) > 2 and parts[2].isdigit():
                mx[parts[0]] = int(parts[2])
    return {"cpu_cur_freq_khz": cur, "cpu_max_freq_khz": mx}


def parse_proc_meminfo(text: str) -> dict[str, int]:
    """``MemTotal``/``MemAvailable`` in kB."""
    out = {}
    for key, field in (("MemTotal", "mem_total_kb"), ("MemAvailable", "mem_available_kb")):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        if m:
            out[field] = int(m.group(1))
    return out


def parse_snapshot(text: str) -> dict[str, Any]:
    """Everything :func:`snapshot_command` printed, flattened."""
    sec = split_sections(text)
    thermal = parse_thermalservice(sec.get("thermal", ""))
    snap: dict[str, Any] = {"thermal_status": thermal["status"], "temps": thermal["temps"],
                            "thermal_types": thermal["types"]}
    snap.update(parse_battery(sec.get("battery", "")))
    snap.update(parse_power(sec.get("power", "")))
    snap.update(parse_cpufreq(sec.get("cpufreq", "")))
    gpu = sec.get("gpu", "").strip()
    snap["gpu_freq_hz"] = int(gpu) if gpu.isdigit() else None
    snap.update(parse_proc_meminfo(sec.get("meminfo", "")))
    return snap


def parse_time_v(text: str) -> dict[str, float]:
    """toybox ``time -v``: ``max_rss_kb``, ``real_s``, ``user_s``, ``sys_s``, page faults."""
    names = {"Real time": "real_s", "User time": "user_s", "System time": "sys_s", "Max RSS": "max_rss_kb",
             "Major faults": "major_faults", "Minor faults": "minor_faults"}
    out: dict[str, float] = {}
    for key, value in _TIME_V.findall(text):
        out[names[key]] = int(value) if names[key] in ("max_rss_kb", "major_faults", "minor_faults") else float(value)
    return out


def parse_mem_tsv(text: str) -> list[dict[str, float]]:
    """Sampler lines ``UPTIME VmHWM: N kB VmRSS: N kB RssAnon: ...`` → one dict per sample (kB)."""
    samples = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            sample: dict[str, float] = {"t_s": float(parts[0])}
        except ValueError:
            continue
        for i in range(1, len(parts) - 1):
            if parts[i].endswith(":") and parts[i + 1].isdigit():
                sample[parts[i][:-1]] = int(parts[i + 1])
        if len(sample) > 1:
            samples.append(sample)
    return samples


def parse_meminfo_pid(text: str) -> dict[str, int]:
    """``dumpsys meminfo PID`` (or the sampler's grep of it): peak ``pss_kb``, ``gfx_kb``, ``gl_mtrack_kb``."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        for label, key in (("TOTAL", "pss_kb"), ("Gfx dev", "gfx_kb"), ("GL mtrack", "gl_mtrack_kb"),
                           ("EGL mtrack", "egl_mtrack_kb")):
            m = re.search(rf"(?:^|\s){label}\s+(\d+)", line)
            if m and not (label == "TOTAL" and "TOTAL PSS:" in line):
                out[key] = max(out.get(key, 0), int(m.group(1)))
    return out
