"""``harness device {sweep,info,results,profile}``: wired into ``harness.cli`` by ``add_device_parser``.

Imports nothing heavy at import time (no torch, no adb_shell): each command imports what it needs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.core.options import NON_NEGATIVE_INT, NON_NEGATIVE_NUMBER, POSITIVE_INT, POSITIVE_NUMBER, Check
from harness.device.errors import ConfigError

PORT = Check("a TCP port (1-65535)", lambda v: POSITIVE_INT(v) and v <= 65535, int)


def _device_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("device")
    g.add_argument("--backend", choices=("adb", "adb-cli", "local"), default=None,
                   help="adb: adb-shell library (default); adb-cli: Google's adb binary; local: this host (dry run)")
    g.add_argument("--host", default=None, help="HOST[:PORT] of a phone in `adb tcpip` mode (or $ADB_HOST)")
    g.add_argument("--port", type=PORT.argtype(), default=None, help="adbd TCP port (default 5555)")
    g.add_argument("--usb", action="store_true", help="adb-shell over USB (needs adb-shell[usb], no adb server)")
    g.add_argument("--serial", default=None, help="device serial (adb-cli backend, or USB); or $ANDROID_SERIAL")
    g.add_argument("--key", default=None, help="adb RSA private key (default ~/.android/adbkey, created if absent)")
    g.add_argument("--workdir", default=None, help="device folder for runs and the artifact cache "
                                                    "(default /data/local/tmp/bench)")
    g.add_argument("--sysroot", default=None, help=argparse.SUPPRESS)  # tests: prefix of /sys and boot_id
    g.add_argument("--adb-server-port", type=PORT.argtype(), default=None, help="adb-cli: ANDROID_ADB_SERVER_PORT")
    g.add_argument("--timeout", type=POSITIVE_NUMBER.argtype(), default=10.0,
                   help="transport timeout per packet, seconds")


def add_device_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``device`` with its sub-commands to ``harness``'s subparsers; returns the ``device`` parser."""
    p = subparsers.add_parser("device", help="on-phone latency/memory sweeps over adb; host reference profile")
    sub = p.add_subparsers(dest="device_command", metavar="DEVICE_COMMAND")
    s = sub.add_parser("sweep", help="run (or resume) a sweep file on a device")
    s.add_argument("file", help="sweep file (.toml, .yaml)")
    s.add_argument("--out", default=None, help="results folder (default runs/device/<sweep name>)")
    s.add_argument("--store", default=None, help="SQLite results store (default runs/harness.db)")
    s.add_argument("--max-jobs", type=POSITIVE_INT.argtype(), default=None,
                   help="stop after this many jobs (resume later)")
    s.add_argument("--reconnect-budget", type=NON_NEGATIVE_NUMBER.argtype(), default=120.0,
                   help="seconds to keep reconnecting")
    _device_options(s)
    i = sub.add_parser("info", help="model, SoC, Android, thermal, free memory of a device")
    i.add_argument("--json", action="store_true", help="print JSON")
    _device_options(i)
    r = sub.add_parser("results", help="summarise a sweep/profile folder; write CSVs; ingest into the store")
    r.add_argument("out", nargs="+", help="one or more sweep or profile folders")
    r.add_argument("--csv", default=None, help="write one row per attempt here")
    r.add_argument("--steps-csv", default=None, help="write one row per (iteration, U-Net step) here")
    r.add_argument("--store", default=None, help="SQLite results store (default runs/harness.db)")
    r.add_argument("--no-store", action="store_true", help="do not write to the store")
    pr = sub.add_parser("profile", help="host-side reference: per-stage latency and memory of a model adapter")
    pr.add_argument("--model", required=True, help="model name (`harness list models`), e.g. dreamlite-mobile")
    pr.add_argument("--model-args", default="", help="key=value,... (weights, dtype, device, ...)")
    pr.add_argument("--steps", type=POSITIVE_INT.argtype(), nargs="+", default=None,
                    help="steps (default: the model's)")
    pr.add_argument("--resolution", type=POSITIVE_INT.argtype(), nargs="+", default=None,
                    help="square sides (default: the model's)")
    pr.add_argument("--iters", type=POSITIVE_INT.argtype(), default=3,
                    help="generations per configuration, warm-up included")
    pr.add_argument("--warmup", type=NON_NEGATIVE_INT.argtype(), default=1, help="leading generations not measured")
    pr.add_argument("--prompt", default="a photo of a cat")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--threads", type=POSITIVE_INT.argtype(), default=None, help="torch CPU threads")
    pr.add_argument("--out", default=None, help="records folder (default runs/device/host-profile)")
    pr.add_argument("--store", default=None, help="SQLite results store (default runs/harness.db)")
    p.set_defaults(device_parser=p)
    return p


def make_device(args: argparse.Namespace, defaults: dict[str, Any] | None = None) -> Any:
    """A Device from CLI options, then the sweep file's ``[device]`` table, then the environment."""
    d = defaults or {}

    def opt(name: str, env: str | None = None) -> Any:
        value = getattr(args, name, None)
        if value is None or value is False:
            value = d.get(name)
        if value is None and env:
            value = os.environ.get(env)
        return value

    backend = opt("backend") or "adb"
    workdir = opt("workdir")
    sysroot = opt("sysroot") or ""
    if backend == "local":
        from harness.device.local import LocalDevice

        return LocalDevice(workdir, sysroot=sysroot)
    from harness.device.base import DEFAULT_WORKDIR

    workdir = workdir or DEFAULT_WORKDIR
    if backend == "adb-cli":
        from harness.device.adbcli import AdbCliDevice

        serial = opt("serial", "ANDROID_SERIAL") or opt("host", "ADB_HOST")
        if not serial:
            raise ConfigError("no device given: pass --serial SERIAL or --host HOST:PORT (or set ANDROID_SERIAL)")
        port = opt("port")
        if port and ":" not in serial:
            serial = f"{serial}:{port}"
        return AdbCliDevice(serial, server_port=opt("adb_server_port"), workdir=workdir, sysroot=sysroot)
    from harness.device.adb import AdbShellDevice

    usb = bool(opt("usb"))
    host = opt("host", "ADB_HOST")
    port = opt("port") or 5555
    if host and ":" in host:
        host, _, p = host.rpartition(":")
        if not p.isdigit():
            raise ConfigError(f"--host {host}:{p}: the port must be a number")
        port = int(p)
    if not usb and not host:
        raise ConfigError("no device given: pass --host HOST[:PORT] (phone in `adb tcpip 5555` mode), --usb, "
                          "--backend adb-cli --serial SERIAL, or --backend local for a dry run")
    return AdbShellDevice(host, int(port), usb=usb, serial=opt("serial", "ANDROID_SERIAL") if usb else None,
                          key_path=opt("key"), workdir=workdir, sysroot=sysroot,
                          transport_timeout_s=float(getattr(args, "timeout", 10.0) or 10.0))


def cmd_sweep(args: argparse.Namespace) -> int:
    from harness.device.orchestrator import SweepRunner
    from harness.device.results import format_summary, records_frame, summary_frame, to_store
    from harness.device.sweep import load_sweep
    from harness.store import Store

    sweep = load_sweep(args.file)
    out = Path(args.out or Path("runs/device") / sweep.name)
    device = make_device(args, sweep.device)
    runner = SweepRunner(sweep, device, out, reconnect_budget_s=args.reconnect_budget,
                         progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        stats = runner.run(max_jobs=args.max_jobs)
    finally:
        device.close()
    frame = records_frame(out)
    print(format_summary(summary_frame(frame)) if len(frame) else "no records")
    with Store(args.store) as store:
        run_id = to_store(out, store)
    done = stats.get("already_done", 0)
    print(f"\njobs run: {stats['jobs']} (already done, skipped: {done}); records: {stats['records']}; "
          f"disconnects: {stats['disconnects']}; reboots: {stats['reboots']}")
    print(f"records: {out / 'records'}\nstore:   {store.path} (run {run_id})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from harness.device.orchestrator import device_info, snapshot

    device = make_device(args)
    try:
        device.connect()
        info = device_info(device)
        snap = snapshot(device)
        info["boot_id"] = device.boot_id()
    finally:
        device.close()
    if args.json:
        print(json.dumps({"device": info, "state": snap}, indent=2, sort_keys=True))
        return 0
    for key in ("serial", "model", "soc", "platform", "android_release", "sdk", "os_ui_version", "build_fingerprint",
                "kernel", "transport", "boot_id"):
        print(f"{key:<18} {info.get(key)}")
    mt, ma = info.get("mem_total_kb"), snap.get("mem_available_kb")
    print(f"{'memory':<18} {ma and ma // 1024} MiB available of {mt and mt // 1024} MiB")
    print(f"{'thermal status':<18} {snap.get('thermal_status')}")
    for name, c in sorted((snap.get("temps") or {}).items()):
        print(f"  {name:<16} {c:.1f} °C ({(snap.get('thermal_types') or {}).get(name)})")
    print(f"{'battery':<18} {snap.get('battery_level')}% {snap.get('battery_temp_c')} °C "
          f"charging={snap.get('charging')}; screen={snap.get('screen')}")
    maxes = snap.get("cpu_max_freq_khz") or {}
    for policy, khz in sorted((snap.get("cpu_cur_freq_khz") or {}).items()):
        print(f"  {policy:<16} {khz / 1000:.0f} MHz (max {maxes.get(policy, 0) / 1000:.0f})")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.core.errors import HarnessError
    from harness.device.results import format_summary, records_frame, steps_frame, summary_frame, to_store
    from harness.store import Store

    frames = []
    for out in args.out:
        if not (Path(out) / "records").is_dir():
            raise HarnessError(f"{out}: no records/ folder; pass a folder written by `harness device sweep` or "
                               "`harness device profile`")
        frames.append(records_frame(out))
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        print("no records")
        return 0
    print(format_summary(summary_frame(frame)))
    counts = frame["status"].value_counts().to_dict()
    print("\nattempts: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    for status in ("failed", "timeout", "lost", "oom", "skipped"):
        for _, row in frame[frame["status"] == status].head(5).iterrows():
            print(f"  {status}: {row['variant']} {row['steps']} steps {row['height']}x{row['width']}: {row['error']}")
    if args.csv:
        frame.to_csv(args.csv, index=False)
        print(f"attempts csv: {args.csv}")
    if args.steps_csv:
        steps_frame(frame).to_csv(args.steps_csv, index=False)
        print(f"steps csv: {args.steps_csv}")
    if not args.no_store:
        with Store(args.store) as store:
            ids = [to_store(out, store) for out in args.out]
        print(f"store: {store.path} (runs {', '.join(i for i in ids if i)})")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from harness.core.options import parse_pairs
    from harness.device.profile import profile_model
    from harness.device.results import format_summary, records_frame, summary_frame, to_store
    from harness.registry import registry
    from harness.store import Store

    options = parse_pairs(args.model_args, "--model-args")
    model_cls = registry("models").load(args.model)
    checked = getattr(model_cls, "check_options", lambda o: {**model_cls.defaults, **o})(options)
    steps = args.steps or [_model_number(checked, "steps", "--steps")]
    res = args.resolution or [_model_number(checked, "resolution", "--resolution")]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out or "runs/device/host-profile")
    profile_model(args.model, options, steps=steps, resolutions=res, iters=args.iters, warmup=args.warmup,
                  prompt=args.prompt, seed=args.seed, out=out, progress=lambda m: print(m, file=sys.stderr))
    print(format_summary(summary_frame(records_frame(out))))
    with Store(args.store) as store:
        run_id = to_store(out, store)
    print(f"\nrecords: {out / 'records'}\nstore:   {store.path} (run {run_id})")
    return 0


def _model_number(options: dict[str, Any], key: str, flag: str) -> int:
    """The model's own ``steps``/``resolution`` for a profile, or one error asking for the flag."""
    from harness.core.errors import HarnessError

    value = options.get(key)
    if not POSITIVE_INT(value):
        raise HarnessError(f"{flag}: the model's {key} is {value!r}, not one positive number; pass {flag} N")
    return value


def run_device_command(args: argparse.Namespace) -> int:
    """Dispatch ``harness device ...``; errors propagate as HarnessError (one line, exit 2) to harness.cli."""
    commands = {"sweep": cmd_sweep, "info": cmd_info, "results": cmd_results, "profile": cmd_profile}
    command = getattr(args, "device_command", None)
    if command not in commands:
        args.device_parser.print_help()
        return 0 if command is None else 2
    return commands[command](args)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m device.cli ...``) until harness.cli wires ``device`` in."""
    from harness.core.errors import HarnessError

    parser = argparse.ArgumentParser(prog="harness")
    add_device_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if args.command != "device":
        parser.print_help()
        return 2
    try:
        return run_device_command(args)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
