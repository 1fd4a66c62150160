"""Host-side reference profile of a real model adapter (the tiny DreamLite, CPU) through the CLI."""

from __future__ import annotations

import pytest

from harness.device.cli import main as device_main
from harness.device.record import read_records
from harness.device.results import records_frame, summary_frame
from harness.store import Store

pytestmark = pytest.mark.slow
pytest.importorskip("diffusers")


def test_profile_tiny_mobile_per_stage(tmp_path, capsys):
    out, db = tmp_path / "prof", tmp_path / "h.db"
    rc = device_main(["device", "profile", "--model", "tiny", "--model-args", "mobile=true", "--steps", "2",
                      "--resolution", "64", "--iters", "2", "--warmup", "1", "--threads", "1", "--out", str(out),
                      "--store", str(db)])
    assert rc == 0
    (rec,) = read_records(out)
    assert rec["status"] == "ok" and rec["runtime"] == "torch" and rec["backend"] == "cpu"
    assert rec["unet_calls_per_iter"] == [2, 2]  # the 4-step-style mobile pipeline: one U-Net call per step
    assert rec["warmup_iters"] == 1 and rec["measured_iters"] == 1
    (steps,) = rec["unet_step_ms"]
    assert len(steps) == 2 and all(s > 0 for s in steps)
    (te,), (vae,), (e2e,) = rec["text_encoder_ms"], rec["vae_decode_ms"], rec["e2e_ms"]
    assert te > 0 and vae > 0 and e2e >= te + sum(steps) + vae  # stages are inside the generation
    assert rec["load_ms"] > 0 and rec["max_rss_kb"] > 0 and rec["peak_rss_anon_kb"] > 0
    assert set(rec["stage_vm_hwm_kb"]) == {"text_encoder", "unet", "vae_decode"}
    assert rec["serial"].startswith("host:") and rec["height"] == rec["width"] == 64
    summary = summary_frame(records_frame(out))
    assert summary.loc[0, "unet_step_ms_median"] == pytest.approx(sorted(steps)[0] / 2 + sorted(steps)[1] / 2)
    with Store(db) as store:
        assert "device-host-profile" in store.runs().iloc[0]["run_id"]
    assert "tiny" in capsys.readouterr().out
