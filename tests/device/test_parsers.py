"""Runner parsers and device-state probes on output samples of the real tools (quoted in the tests).

Samples: MNN AUTOTIME format string from ``source/core/AutoTime.cpp`` (``"%s, %d, cost time: %f ms"``),
stable-diffusion.cpp log lines, TFLite ``benchmark_model`` and ``onnxruntime_perf_test`` output (formats in
docs/device.md, 'Runner output formats'), Android 14 ``dumpsys`` formats
('Device-state snapshots and the throttled flag') and toybox ``time -v``.
"""

from __future__ import annotations

import json

import pytest

from harness.device import probes
from harness.device.record import timing_fields
from harness.device.runners import get_runner
from harness.device.runners.jsonl import parse_contract
from harness.device.runners.mnn import parse_mnn
from harness.device.runners.sdcpp import parse_sdcpp
from harness.device.runners.tools import parse_ort, parse_tflite

MNN_TWO_GENERATIONS = """\
The device supports: i8sdot:1, fp16:1, i8mm:1, sve2:0, sme2:0
load, 289, cost time: 7312.500000 ms
text_encoder, 151, cost time: 61.300000 ms
unet, 209, cost time: 830.100000 ms
unet, 209, cost time: 812.300000 ms
unet, 209, cost time: 811.900000 ms
unet, 209, cost time: 813.000000 ms
vae_decoder, 254, cost time: 1502.700000 ms
run, 279, cost time: 4102.000000 ms
text_encoder, 151, cost time: 45.100000 ms
unet, 209, cost time: 801.000000 ms
unet, 209, cost time: 799.500000 ms
unet, 209, cost time: 802.200000 ms
unet, 209, cost time: 800.100000 ms
vae_decoder, 254, cost time: 1490.000000 ms
run, 279, cost time: 3980.500000 ms
"""


def test_mnn_groups_generations_and_steps():
    run = parse_mnn(MNN_TWO_GENERATIONS)
    assert run.load_ms == pytest.approx(7312.5)
    assert [it.complete for it in run.iterations] == [True, True]
    second = run.iterations[1]
    assert second.text_encoder_ms == pytest.approx(45.1)
    assert second.unet_step_ms == pytest.approx([801.0, 799.5, 802.2, 800.1])
    assert second.vae_decode_ms == pytest.approx(1490.0)
    assert second.e2e_ms == pytest.approx(3980.5)
    fields = timing_fields(get_runner("mnn").parse({"stdout.txt": MNN_TWO_GENERATIONS.encode()}, warmup_iters=1))
    assert fields["warmup_iters"] == 1 and fields["e2e_ms"] == pytest.approx([3980.5])
    assert fields["first_e2e_ms"] == pytest.approx(4102.0)
    assert fields["unet_step_ms_median"] == pytest.approx((800.1 + 801.0) / 2)


def test_mnn_truncated_output_is_a_partial_iteration():
    cut = MNN_TWO_GENERATIONS.split("unet, 209, cost time: 799.500000 ms")[0]
    run = parse_mnn(cut + "unet, 209, cost time: 799.5")  # the last line was cut mid-write
    assert [it.complete for it in run.iterations] == [True, False]
    assert run.iterations[1].unet_step_ms == pytest.approx([801.0])
    fields = timing_fields(get_runner("mnn").parse({"stdout.txt": cut.encode()}, warmup_iters=1))
    assert fields["measured_iters"] == 0 and fields["partial_iters"] == 1 and fields["e2e_ms"] == []


SDCPP = (
    "[INFO ] stable-diffusion.cpp:1656 - loading tensors completed, taking 3.27s (process: 0.00s, read: 2.71s)\n"
    "[INFO ] stable-diffusion.cpp:1368 - get_learned_condition completed, taking 1572 ms\n"
    "[INFO ] stable-diffusion.cpp:1392 - sampling using Euler A method\n"
    "  |=========================>                        | 2/4 - 1.02s/it\r"
    "  |==================================================| 4/4 - 0.98s/it\n"
    "[INFO ] stable-diffusion.cpp:1466 - sampling completed, taking 4.61s\n"
    "[INFO ] stable-diffusion.cpp:1491 - decode_first_stage completed, taking 490.42ms\n"
    "[INFO ] stable-diffusion.cpp:2004 - txt2img completed in 6.73s\n"
)


def test_sdcpp_units_and_stages():
    run = parse_sdcpp(SDCPP)
    assert run.load_ms == pytest.approx(3270.0)
    (it,) = run.iterations
    assert it.text_encoder_ms == pytest.approx(1572.0)
    assert it.unet_total_ms == pytest.approx(4610.0)
    assert it.vae_decode_ms == pytest.approx(490.42)
    assert it.e2e_ms == pytest.approx(6730.0) and it.complete
    assert it.unet_step_ms == []  # sd.cpp prints no per-step times; the s/it average is not invented into steps


TFLITE = """\
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Loaded model unet.tflite
INFO: The input model file size (MB): 405.12
INFO: Initialized session in 119.515ms.
INFO: count=10 first=87112 curr=58147 min=57980 max=87112 avg=61100.2 std=8600
INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 p5=49620 median=51891 p95=68628
INFO: Inference timings in us: Init: 119515, First inference: 87112, Warmup (avg): 58147.4, Inference (avg): 63743.2
INFO: Memory footprint delta from the start of the tool (MB): init=55.4961 overall=55.4961
INFO: Overall peak memory footprint (MB) via periodic monitoring: 93.2383
"""


def test_tflite_benchmark_model_summary():
    run = parse_tflite(TFLITE)
    s = run.summary
    assert run.load_ms == pytest.approx(119.515)
    assert s["iterations"] == 1000 and s["e2e_ms_median"] == pytest.approx(51.891)
    assert s["e2e_ms_p95"] == pytest.approx(68.628) and s["first_e2e_ms"] == pytest.approx(87.112)
    assert s["tool_peak_mem_mb"] == pytest.approx(93.2383) and s["rss_delta_overall_mb"] == pytest.approx(55.4961)
    assert run.iterations == []
    assert timing_fields(run)["e2e_ms_median"] == pytest.approx(51.891)


ORT = """\
Session creation time cost: 0.217932 s
First inference time cost: 196 ms
Total inference time cost: 9.8962 s
Total inference requests: 100
Average inference time cost total: 98.961997 ms
Total inference run time: 9.91 s
Number of inferences per second: 10.09
Avg CPU usage: 98 %
Peak working set size: 271122432 bytes
Min Latency: 0.0958204 s
Max Latency: 0.110211 s
P50 Latency: 0.0985 s
P90 Latency: 0.101519 s
P95 Latency: 0.102 s
P99 Latency: 0.109 s
P999 Latency: 0.110211 s
"""


def test_onnxruntime_perf_test_summary():
    run = parse_ort(ORT)
    s = run.summary
    assert run.load_ms == pytest.approx(217.932)
    assert s["e2e_ms_avg"] == pytest.approx(98.961997) and s["e2e_ms_median"] == pytest.approx(98.5)
    assert s["e2e_ms_p90"] == pytest.approx(101.519) and s["peak_working_set_bytes"] == 271122432
    assert s["iterations"] == 100
    older = parse_ort("Average inference time cost: 12.5 ms\n")
    assert older.summary["e2e_ms_avg"] == pytest.approx(12.5)


def _contract(*events: dict) -> list[str]:
    return [json.dumps({"v": 1, "t_ms": 0, **e}) for e in events]


def test_contract_partial_iteration_unknown_fields_and_garbage():
    lines = [*_contract(
        {"event": "meta", "runtime": "mnn", "backend": "opencl", "future_field": 1},
        {"event": "load", "ms": 7312.5, "component": "all"},
        {"event": "iter_start", "iter": 0, "warmup": True},
        {"event": "stage", "iter": 0, "stage": "text_encoder", "ms": 45.1, "vm_hwm_kb": 1500000},
        {"event": "stage", "iter": 0, "stage": "unet", "step": 0, "ms": 812.3},
        {"event": "stage", "iter": 0, "stage": "vae_decode", "ms": 1502.7, "vm_hwm_kb": 2893312},
        {"event": "iter_end", "iter": 0, "e2e_ms": 2360.1},
        {"event": "iter_start", "iter": 1, "warmup": False},
        {"event": "stage", "iter": 1, "stage": "unet", "step": 0, "ms": 800.0},
        {"event": "stage", "iter": 1, "stage": "unet", "ms": "not a number"},
    ), "not json at all", '{"v": 2, "event": "load", "ms": 1}', "[1, 2]"]
    run = parse_contract(lines)
    assert run.meta["backend"] == "opencl" and run.load_ms == pytest.approx(7312.5)
    assert run.matched_lines == 9  # the malformed stage, the v2 line and the garbage are ignored
    first, second = run.iterations
    assert first.warmup and first.complete and first.stage_vm_hwm_kb == {"text_encoder": 1500000,
                                                                           "vae_decode": 2893312}
    assert not second.complete and second.unet_step_ms == [800.0]
    fields = timing_fields(run)
    assert fields["measured_iters"] == 0 and fields["partial_iters"] == 1


def test_contract_from_stdout_prefix_and_error_event():
    out = "\n".join(["noise", *("@@BENCH " + ln for ln in _contract(
        {"event": "error", "message": "CL_OUT_OF_RESOURCES"}))]).encode()
    run = get_runner("jsonl").parse({"stdout.txt": out})
    assert run.errors == ["CL_OUT_OF_RESOURCES"]
    assert get_runner("jsonl").parse({"stdout.txt": b"garbage only\n"}).empty


def test_thermal_battery_power_snapshot(tmp_path):
    from tests.device.conftest import FIXTURES

    android = FIXTURES / "android"
    text = ("@@thermal\n" + (android / "thermalservice.txt").read_text() + "@@battery\n"
            + (android / "battery.txt").read_text() + "@@power\n  mWakefulness=Asleep\n@@cpufreq\n"
            "policy0 1785600 2265600\npolicy7 2841600 1900800\n@@gpu\n903000000\n@@meminfo\n"
            "MemTotal:       15644960 kB\nMemAvailable:    7312224 kB\n@@end\n")
    snap = probes.parse_snapshot(text)
    assert snap["thermal_status"] == 0
    assert snap["temps"]["skin-msm-therm"] == pytest.approx(33.9)
    # only the HAL block counts (the "Cached temperatures" line is not a current reading)
    assert len(snap["temps"]) == 5
    assert probes.sensor_temp({"temps": snap["temps"], "types": snap["thermal_types"]}, "SKIN") == pytest.approx(33.9)
    assert probes.sensor_temp({"temps": snap["temps"], "types": snap["thermal_types"]}, "CPU") == pytest.approx(36.2)
    assert snap["battery_level"] == 81 and snap["battery_temp_c"] == pytest.approx(30.2) and snap["charging"]
    assert snap["screen"] == "off"
    assert snap["cpu_max_freq_khz"] == {"policy0": 2265600, "policy7": 1900800}
    assert snap["gpu_freq_hz"] == 903000000 and snap["mem_available_kb"] == 7312224


def test_time_v_mem_tsv_meminfo_getprop():
    tv = probes.parse_time_v("Real time (s): 12.345\nSystem time (s): 0.5\nUser time (s): 30.1\n"
                             "Max RSS (KiB): 2893312\nMajor faults: 12\nMinor faults: 4567\n")
    assert tv == {"real_s": 12.345, "sys_s": 0.5, "user_s": 30.1, "max_rss_kb": 2893312, "major_faults": 12,
                  "minor_faults": 4567}
    samples = probes.parse_mem_tsv("3206.12 VmHWM: 10408 kB VmRSS: 10408 kB RssAnon: 4440 kB RssFile: 5968 kB\n"
                                   "garbage line\n3206.37 VmHWM: 42024 kB VmRSS: 42024 kB RssAnon: 35312 kB\n")
    assert [s["RssAnon"] for s in samples] == [4440, 35312] and samples[1]["t_s"] == pytest.approx(3206.37)
    from tests.device.conftest import FIXTURES

    mi = probes.parse_meminfo_pid((FIXTURES / "android/meminfo_pid.txt").read_text())
    assert mi == {"pss_kb": 3352147, "gfx_kb": 1048576, "gl_mtrack_kb": 65536}
    props = probes.parse_getprop("[ro.soc.model]: [SM8650]\n[ro.product.model]: [23127PN0CC]\nkernel=6.1.25\n")
    assert props == {"ro.soc.model": "SM8650", "ro.product.model": "23127PN0CC", "kernel": "6.1.25"}
