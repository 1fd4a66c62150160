"""LocalDevice dry runs, pandas frames, the results store, and the ``harness device`` commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.device.cli import main as device_main
from harness.device.local import LocalDevice
from harness.device.orchestrator import SweepRunner
from harness.device.record import read_records
from harness.device.results import iterations_frame, records_frame, steps_frame, summary_frame, to_store
from harness.device.sweep import load_sweep
from harness.store import Store
from tests.device.conftest import write_sweep


def test_local_dry_run_frames_and_store(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "cfg", steps="[1, 3]", repeats=2, bench_args="--alloc-mb 30"))
    dev = LocalDevice(str(tmp_path / "workdir"))
    stats = SweepRunner(sweep, dev, tmp_path / "out").run()
    assert stats["records"] == 4 and stats["disconnects"] == 0
    frame = records_frame(tmp_path / "out")
    assert list(frame["status"]) == ["ok"] * 4 and set(frame["transport"]) == {"local"}
    # peak memory without toybox: the 5 Hz sampler may or may not catch the ballast, time -v is absent → None
    assert frame["max_rss_kb"].isna().all() or (frame["max_rss_kb"] > 30 * 1024).all()
    assert (frame["stage_vm_hwm_kb.vae_decode"] > 30 * 1024).all()
    its = iterations_frame(frame)
    assert len(its) == 4 and (its["e2e_ms"] > 0).all()
    steps = steps_frame(frame)
    assert sorted(steps.groupby("job_id").size()) == [1, 1, 3, 3]
    summary = summary_frame(frame).set_index("steps")
    assert list(summary["jobs"]) == [2, 2] and list(summary["iterations"]) == [2, 2]
    assert summary.loc[3, "e2e_ms_median"] > summary.loc[1, "e2e_ms_median"]  # 3 steps sleep longer than 1
    with Store(tmp_path / "h.db") as store:
        run_id = to_store(tmp_path / "out", store)
        runs = store.runs()
        metrics = store.metrics(run_id)
    assert runs.iloc[0]["benchmark"] == "device" and runs.iloc[0]["status"] == "complete"
    got = metrics.set_index(["subset", "metric"])["value"]
    assert got[("fake-fp32|3steps|64x64", "e2e_ms_median")] == pytest.approx(summary.loc[3, "e2e_ms_median"])


def test_cli_sweep_info_results_over_fake_adbd(adbd, adb_key, tmp_path, capsys):
    cfg = write_sweep(tmp_path / "cfg", steps="[2]")
    common = ["--host", f"127.0.0.1:{adbd.port}", "--key", str(adb_key), "--workdir",
              f"{adbd.sandbox}/data/local/tmp/bench", "--sysroot", str(adbd.sandbox)]
    assert device_main(["device", "info", *common]) == 0
    info = capsys.readouterr().out
    assert "23127PN0CC" in info and "SM8650" in info and "skin-msm-therm" in info and "33.9" in info
    assert device_main(["device", "info", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["state"]["battery_level"] == 81
    out, db = tmp_path / "out", tmp_path / "h.db"
    assert device_main(["device", "sweep", str(cfg), "--out", str(out), "--store", str(db), *common]) == 0
    text = capsys.readouterr().out
    assert "fake-fp32" in text and "jobs run: 1" in text
    csv = tmp_path / "a.csv"
    assert device_main(["device", "results", str(out), "--csv", str(csv), "--store", str(db)]) == 0
    assert "attempts: ok=1" in capsys.readouterr().out and csv.read_text().count("\n") == 2
    assert device_main(["device", "sweep", str(cfg), "--out", str(out), "--store", str(db), *common]) == 0
    assert "jobs run: 0 (already done, skipped: 1)" in capsys.readouterr().out
    assert len(read_records(out)) == 1


def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADB_HOST", raising=False)
    cfg = write_sweep(tmp_path / "cfg")
    assert device_main(["device", "sweep", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no device given: pass --host") and "\n" not in err
    cfg.write_text(cfg.read_text().replace("repeats = 1", "repeats = 1\nrepeat = 2"))
    assert device_main(["device", "sweep", str(cfg), "--backend", "local"]) == 2
    assert "unknown key 'repeat'; did you mean 'repeats'?" in capsys.readouterr().err
    assert device_main(["device", "results", str(tmp_path)]) == 2
    assert "no records/ folder" in capsys.readouterr().err


def test_cli_import_is_light():
    code = ("import sys, argparse, harness.device.cli as c; p = argparse.ArgumentParser(); "
            "c.add_device_parser(p.add_subparsers(dest='command')); "
            "print(sorted(m for m in ('torch', 'adb_shell', 'pandas', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_device_parser_plugs_into_the_harness_parser():
    """The wiring harness.cli will use: add_device_parser on its subparsers, dispatch on args.command."""
    import argparse

    from harness.cli import build_parser
    from harness.device.cli import add_device_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if "device" not in sub.choices:  # harness.cli may already wire it in
        add_device_parser(sub)
    args, rest = parser.parse_known_args(["device", "sweep", "s.toml", "--backend", "local", "--max-jobs", "2"])
    assert (args.command, args.device_command, args.file, args.backend, args.max_jobs, rest) == (
        "device", "sweep", "s.toml", "local", 2, [])
    args, _ = parser.parse_known_args(["-v", "device", "profile", "--model", "tiny", "--steps", "1", "2"])
    assert args.verbose and args.steps == [1, 2] and args.iters == 3
