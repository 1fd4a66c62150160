"""Sweeps end to end: the real adb-shell client → loopback fake adbd → detached fake benchmark."""

from __future__ import annotations

import dataclasses
import sys

import pytest

from harness.device.errors import ConfigError
from harness.device.orchestrator import SweepRunner
from harness.device.record import read_records
from harness.device.sweep import expand, load_sweep
from tests.device.conftest import FAKE_BENCH, make_device, write_sweep

pytestmark = pytest.mark.slow


def test_sweep_records_timings_memory_and_state(adbd, adb_key, tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "cfg", bench_args="--alloc-mb 40 --stage-ms 60",
                                   body="meminfo = true"))
    dev = make_device(adbd, adb_key)
    stats = SweepRunner(sweep, dev, tmp_path / "out").run()
    recs = read_records(tmp_path / "out")
    assert stats["records"] == 2 and [r["status"] for r in recs] == ["ok", "ok"], recs
    for r in recs:
        assert r["measured_iters"] == 1 and r["warmup_iters"] == 1
        assert len(r["unet_step_ms"]) == 1 and len(r["unet_step_ms"][0]) == r["steps"]
        assert all(x >= 60.0 for x in r["unet_step_ms"][0])  # it sleeps 60 ms per stage
        assert r["e2e_ms"][0] >= 60.0 * (r["steps"] + 2)
        assert r["max_rss_kb"] > 40 * 1024  # toybox time -v (wait4) saw the 40 MiB ballast
        assert r["stage_vm_hwm_kb"]["vae_decode"] > 40 * 1024
        assert r["model"] == "23127PN0CC" and r["soc"] == "SM8650" and r["transport"] == "tcp"
        assert r["thermal_status_before"] == 0 and r["sensor_c_before"] == pytest.approx(33.9)
        assert r["cpu_max_freq_khz_before"]["policy7"] == 3302400 and r["throttled"] is False
        assert r["mem_samples"] >= 1 and r["peak_vm_hwm_kb"] > 40 * 1024  # the 5 Hz on-phone sampler
        assert (r["pss_kb"], r["gfx_kb"]) == (3352147, 1048576)  # sampler ran the (stub, canned) dumpsys meminfo
        assert r["output_image_sha256"] and (tmp_path / "out" / "raw" / r["job_id"] / "1" / "out_1.png").is_file()
    assert sorted(r["job_id"] for r in recs) == sorted(j.job_id for j in expand(sweep, dev.serial))


def _spawns(adbd) -> int:
    return sum("nohup sh" in s for s in adbd.opens)


def _poll_match(job_id: str) -> tuple[str, str]:
    return f"{job_id}/1", "echo ABSENT"


def test_drop_mid_run_reconnects_and_collects_without_rerun(adbd, adb_key, tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "cfg", steps="[2]", bench_args="--stage-ms 80"))
    dev = make_device(adbd, adb_key)
    job = expand(sweep, dev.serial)[0]
    # polls 1-3 are: state check, spawn guard, first loop poll; drop the 4th and 5th (the job is running)
    adbd.inject("drop", *_poll_match(job.job_id), after=3, times=2)
    runner = SweepRunner(sweep, dev, tmp_path / "out", reconnect_first_delay_s=0.05)
    runner.run()
    (rec,) = read_records(tmp_path / "out")
    assert rec["status"] == "ok" and rec["attempt"] == 1, rec
    assert [k for k, _ in adbd.fired] == ["drop", "drop"] and runner.stats["disconnects"] == 2
    assert _spawns(adbd) == 1 and runner.stats["reboots"] == 0
    assert rec["e2e_ms"][0] >= 80 * 4


def test_reboot_marks_the_attempt_lost_then_retries(adbd, adb_key, tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "cfg", steps="[2]", bench_args="--stage-ms 80"))
    dev = make_device(adbd, adb_key)
    job = expand(sweep, dev.serial)[0]
    adbd.inject("reboot", *_poll_match(job.job_id), after=3)
    runner = SweepRunner(sweep, dev, tmp_path / "out", reconnect_first_delay_s=0.05)
    runner.run()
    recs = read_records(tmp_path / "out")
    assert [(r["attempt"], r["status"]) for r in recs] == [(1, "lost"), (2, "ok")], recs
    assert "rebooted" in recs[0]["error"] and recs[1]["boot_id"] == adbd.boot_ids[-1] != recs[0]["t_start_utc"]
    assert runner.stats["reboots"] == 1 and adbd.reboots == 1 and _spawns(adbd) == 2


def _variants(*specs: tuple[str, str]) -> str:
    return "\n".join(f"""
[[variants]]
name = "{name}"
runner = "jsonl"
command = "{sys.executable} {{bench}} --steps {{steps}} --iters {{iters}} --warmup {{warmup}} --stage-ms 2 {args}"
files = {{ bench = "{FAKE_BENCH}" }}
""" for name, args in specs)


def test_failures_are_recorded_with_reasons_never_numbers(adbd, adb_key, tmp_path):
    cfg = tmp_path / "cfg" / "s.toml"
    cfg.parent.mkdir()
    cfg.write_text("name = \"bad\"\nsteps = [2]\nresolutions = [64]\niters_per_process = 2\nwarmup_iters = 1\n"
                   "poll_s = 0.05\njob_timeout_s = 1.5\nmax_attempts = 1\norder = \"sequential\"\n"
                   "[cooldown]\nmax_s = 1\n" + _variants(
                       ("crash", "--crash-at 1:unet0"), ("hang", "--hang"), ("garbage", "--garbage"),
                       ("silent", "--silent"), ("exit3", "--exit-code 3"), ("fine", "")))
    sweep = load_sweep(cfg)
    SweepRunner(sweep, make_device(adbd, adb_key), tmp_path / "out").run()
    recs = {r["variant"]: r for r in read_records(tmp_path / "out")}
    crash = recs["crash"]
    assert crash["status"] == "failed" and "signal 11" in crash["error"] and crash["exit_code"] == 139
    assert crash["first_e2e_ms"] > 0 and crash["warmup_iters"] == 1 and crash["e2e_ms"] == []  # partial kept
    assert crash["partial_iters"] == 1 and crash["unet_step_ms"] == []
    hang = recs["hang"]
    assert hang["status"] == "timeout" and hang["load_ms"] > 0 and hang["e2e_ms"] == [] and hang["wall_s"] >= 1.5
    assert recs["garbage"]["status"] == "failed" and "no recognisable timing lines" in recs["garbage"]["error"]
    assert "garbage only" not in recs["garbage"]["error"] and "random noise" in recs["garbage"]["error"]
    assert recs["silent"]["status"] == "failed" and recs["silent"]["e2e_ms_median"] is None
    assert recs["exit3"]["status"] == "failed" and recs["exit3"]["error"] == "exit code 3"
    assert recs["exit3"]["e2e_ms"]  # its numbers are kept, but the attempt is not ok
    assert recs["fine"]["status"] == "ok"
    for name in ("crash", "hang", "garbage", "silent"):
        assert recs[name]["e2e_ms_median"] is None, name


def test_cooldown_waits_for_temperature_then_skips_when_too_hot(adbd, adb_key, sandbox, tmp_path, monkeypatch):
    import harness.device.orchestrator as orch

    thermal = sandbox / "android" / "thermalservice.txt"
    cool = thermal.read_text()
    thermal.write_text(cool.replace("mValue=33.9, mType=3", "mValue=41.5, mType=3"))
    real_snapshot, calls = orch.snapshot, []

    def snapshot(dev):  # the phone cools down after the gate has seen it hot twice (preflight + 2 polls)
        snap = real_snapshot(dev)
        calls.append(snap["temps"]["skin-msm-therm"])
        if len(calls) == 3:
            thermal.write_text(cool)
        return snap

    monkeypatch.setattr(orch, "snapshot", snapshot)
    sweep = load_sweep(write_sweep(tmp_path / "cfg", steps="[1]"))
    sweep.cooldown = dataclasses.replace(sweep.cooldown, max_s=10.0, poll_s=0.1)
    SweepRunner(sweep, make_device(adbd, adb_key), tmp_path / "out").run()
    (rec,) = read_records(tmp_path / "out")
    assert calls[:4] == [41.5, 41.5, 41.5, 33.9]
    assert rec["status"] == "ok" and 0.2 <= rec["cooldown_wait_s"] < 10 and rec["sensor_c_before"] == 33.9
    monkeypatch.setattr(orch, "snapshot", real_snapshot)

    thermal.write_text(cool.replace("mValue=33.9, mType=3", "mValue=44.0, mType=3").replace(
        "Thermal Status: 0", "Thermal Status: 2"))
    sweep2 = load_sweep(write_sweep(tmp_path / "cfg2", name="hot", steps="[1]"))
    sweep2.cooldown = dataclasses.replace(sweep2.cooldown, max_s=0.3, poll_s=0.05)
    spawns = _spawns(adbd)
    SweepRunner(sweep2, make_device(adbd, adb_key), tmp_path / "out2").run()
    (rec2,) = read_records(tmp_path / "out2")
    assert rec2["status"] == "skipped" and "too hot after the 0.3 s cooldown limit" in rec2["error"]
    assert "SKIN 44.0 °C > 38.0 °C" in rec2["error"] and "thermal status 2 > 0" in rec2["error"]
    assert "e2e_ms" not in rec2 and "max_rss_kb" not in rec2  # nothing measured, nothing invented
    assert _spawns(adbd) == spawns


def test_battery_precondition_skips(adbd, adb_key, tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "cfg", steps="[1]", body="[preconditions]\nmin_battery = 90\n"))
    SweepRunner(sweep, make_device(adbd, adb_key), tmp_path / "out").run()
    (rec,) = read_records(tmp_path / "out")
    assert rec["status"] == "skipped" and rec["error"] == "battery 81% < preconditions.min_battery 90%"


def test_resume_after_host_crash_never_reruns_finished_work(adbd, adb_key, tmp_path, monkeypatch):
    sweep = load_sweep(write_sweep(tmp_path / "cfg", steps="[1, 2]", repeats=2))
    out = tmp_path / "out"

    def crash(rec):
        raise KeyboardInterrupt("host crashed")

    with pytest.raises(KeyboardInterrupt):
        SweepRunner(sweep, make_device(adbd, adb_key), out, on_record=crash).run()
    assert len(read_records(out)) == 1 and _spawns(adbd) == 1

    calls = {"n": 0}
    real_collect = SweepRunner.collect

    def crash_before_record(self, *a, **kw):  # the 2nd job finishes on the phone, the host dies before recording
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("host crashed while collecting")
        return real_collect(self, *a, **kw)

    monkeypatch.setattr(SweepRunner, "collect", crash_before_record)
    with pytest.raises(KeyboardInterrupt):
        SweepRunner(sweep, make_device(adbd, adb_key), out).run()
    assert len(read_records(out)) == 1 and _spawns(adbd) == 2
    monkeypatch.setattr(SweepRunner, "collect", real_collect)
    runner = SweepRunner(sweep, make_device(adbd, adb_key), out)
    stats = runner.run()
    assert stats["already_done"] == 1 and stats["collected_after_resume"] == 1 and stats["spawned"] == 2
    recs = read_records(out)
    assert len(recs) == 4 and all(r["status"] == "ok" and r["attempt"] == 1 for r in recs)
    assert _spawns(adbd) == 4  # 1 + 1 (collected, not re-run) + 2
    again = SweepRunner(sweep, make_device(adbd, adb_key), out).run()
    assert again["jobs"] == 0 and again["already_done"] == 4 and _spawns(adbd) == 4


def test_out_folder_of_another_sweep_is_refused(adbd, adb_key, tmp_path):
    SweepRunner(load_sweep(write_sweep(tmp_path / "a", steps="[1]")), make_device(adbd, adb_key),
                tmp_path / "out").run()
    with pytest.raises(ConfigError, match="pass another --out"):
        SweepRunner(load_sweep(write_sweep(tmp_path / "b", name="other", steps="[1]")), make_device(adbd, adb_key),
                    tmp_path / "out").run()
