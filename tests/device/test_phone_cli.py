"""``harness run geneval|imgedit --model phone`` as real processes against the loopback fake adbd.

The deployed variant is an ordinary model: the same run through ``backend=local`` (this host runs the same
binary) is byte-identical; a host killed with ``kill -9`` in the middle of a batch resumes by collecting
what the phone made meanwhile, generating nothing twice and recording every unit once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.device.conftest import fake_phone, phone_env, write_gen_sweep

pytestmark = pytest.mark.slow

GENEVAL = ["run", "geneval", "--model", "phone", "--prompts", "demo", "--detector", "tiny", "--clip", "tiny",
           "--images-per-prompt", "2", "--batch-size", "16", "--no-progress"]


def harness(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600, env={**os.environ, **(env or {})})
    assert out.returncode == 0, f"harness {' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def files(folder: Path, *names: str) -> dict[str, bytes]:
    """Every image of a run folder, and the named files (the folder's own path in them made relative)."""
    found = {str(p.relative_to(folder)): p.read_bytes() for p in sorted((folder / "images").rglob("*.png"))}
    own = str(folder.resolve()).encode()
    return {**found, **{name: (folder / name).read_bytes().replace(own, b"RUN") for name in names}}


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((folder / "records").glob("generate-*.jsonl"))
            for line in p.read_text().splitlines() if line.strip()]


def local_args(sweep: Path, tmp_path: Path) -> str:
    return f"sweep={sweep},backend=local,workdir={tmp_path / 'local-phone'}"


def test_geneval_over_adb_equals_the_same_run_on_this_host_byte_for_byte(sandbox, adb_key, tmp_path):
    sweep = write_gen_sweep(tmp_path / "cfg")
    with fake_phone(sandbox, adb_key, tmp_path) as phone:
        harness(tmp_path, *GENEVAL, "--model-args", phone.model_args(sweep), "--out", "adb", "--store", "a.db")
        assert sum(phone.generated().values()) == 48
    harness(tmp_path, *GENEVAL, "--model-args", local_args(sweep, tmp_path), "--out", "local", "--store", "l.db",
            env=phone_env(tmp_path / "local-env"))
    adb, local = files(tmp_path / "adb", "summary.json", "results.jsonl"), files(tmp_path / "local", "summary.json",
                                                                                  "results.jsonl")
    assert len(adb) == 48 + 2 and adb == local
    summary = json.loads(adb["summary.json"])
    model = summary["model"]
    assert (model["adapter"], model["variant"], model["steps"], model["width"]) == ("phone", "fake-gen", 4, 64)
    assert not {"host", "key", "workdir", "sysroot"} & set(model)  # where it ran is not what it computes
    assert any(r["correct"] for r in map(json.loads, adb["results.jsonl"].decode().splitlines()))  # some found
    recs = records(tmp_path / "adb")
    assert len(recs) == 48 and all(r["seconds"] >= 0.02 and len(r["stage_ms"]["unet"]) == 4 for r in recs)
    assert {r["device"] for r in recs} == {"23127PN0CC (adb) fake-gen"} and all(r["peak_rss_kb"] for r in recs)
    assert {r["battery_before"] for r in recs} == {81} and {r["throttled"] for r in recs} == {False}


def test_host_killed_mid_batch_resumes_collecting_what_the_phone_made_meanwhile(sandbox, adb_key, tmp_path):
    sweep = write_gen_sweep(tmp_path / "cfg", per_image_ms=400)
    run = ["run", "geneval", "--model", "phone", "--prompts", "demo", "--tags", "single_object", "--limit", "4",
           "--images-per-prompt", "2", "--batch-size", "8", "--no-score", "--no-progress"]
    with fake_phone(sandbox, adb_key, tmp_path) as phone:
        args = [*run, "--model-args", phone.model_args(sweep), "--out", "k", "--store", "k.db"]
        proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 240
        while time.time() < deadline and len(phone.out_pngs()) < 3 and proc.poll() is None:
            time.sleep(0.05)
        proc.kill()  # SIGKILL: the host dies in the middle of the batch
        proc.wait()
        killed_at = len(phone.out_pngs())
        while time.time() < deadline and not list(Path(phone.workdir, "gen").glob("*/*/*/a1/done")):
            time.sleep(0.05)  # meanwhile the phone finishes the batch on its own
        assert 3 <= killed_at < 8 and not records(tmp_path / "k")
        harness(tmp_path, *args)
        made = phone.generated()
    assert sum(made.values()) == 8 and set(made.values()) == {1}  # collected, none generated again
    recs = records(tmp_path / "k")
    assert len(recs) == 8 and len({r["key"] for r in recs}) == 8 and all(r["seconds"] >= 0.4 for r in recs)
    harness(tmp_path, *run, "--model-args", local_args(sweep, tmp_path), "--out", "ref", "--store", "r.db",
            env=phone_env(tmp_path / "local-env"))
    assert files(tmp_path / "k") == files(tmp_path / "ref") and len(files(tmp_path / "k")) == 8


def test_imgedit_edits_are_made_on_the_phone_from_pushed_sources(sandbox, adb_key, tmp_path):
    sweep = write_gen_sweep(tmp_path / "cfg", size="128x128")
    with fake_phone(sandbox, adb_key, tmp_path) as phone:
        harness(tmp_path, "run", "imgedit", "--model", "phone", "--model-args", phone.model_args(sweep), "--cases",
                "demo", "--types", "add,remove", "--batch-size", "4", "--no-score", "--no-progress", "--out", "e",
                "--store", "e.db")
        cached = list(Path(phone.workdir, "cas").iterdir())
    recs = records(tmp_path / "e")
    assert len(recs) == 4 and all(r["model_size"] == [128, 128] and r["seconds"] > 0 for r in recs)
    assert len(cached) == 1 + 4  # the generator and the four sources, content-addressed


def test_an_image_the_phone_fails_is_counted_then_made_by_the_rerun(sandbox, adb_key, tmp_path):
    sweep = write_gen_sweep(tmp_path / "cfg")
    args = [*GENEVAL, "--limit", "1", "--out", "run", "--store", "h.db"]
    with fake_phone(sandbox, adb_key, tmp_path) as phone:
        phone.fault(crash=["a photo of a dog"])
        harness(tmp_path, *args, "--model-args", phone.model_args(sweep))
        summary = json.loads((tmp_path / "run" / "summary.json").read_text())
        results = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
        failed = [r for r in results if r["reason"].startswith("generation failed: ")]
        assert summary["generation_failed"] == len(failed) >= 1 and not any(r["correct"] for r in failed)
        assert all("variant fake-gen" in r["reason"] for r in failed)
        made = phone.generated()
        phone.fault()
        harness(tmp_path, *args, "--model-args", phone.model_args(sweep))
        again = phone.generated() - made
    assert sum(again.values()) == len(failed)  # only the failed images were made again
    assert "generation_failed" not in json.loads((tmp_path / "run" / "summary.json").read_text())


def test_the_models_own_flags_are_its_options(tmp_path):
    """`--backend local` (a `cli_flags` entry of the phone model) is `--model-args backend=local`; both is an error."""
    sweep = write_gen_sweep(tmp_path / "cfg")
    own = f"sweep={sweep},workdir={tmp_path / 'local-phone'}"
    args = [*GENEVAL, "--limit", "1", "--no-score", "--store", "h.db"]
    harness(tmp_path, *args, "--model-args", own, "--backend", "local", "--out", "flag",
            env=phone_env(tmp_path / "local-env"))
    assert len(records(tmp_path / "flag")) == 12
    both = subprocess.run([sys.executable, "-m", "harness", *args, "--model-args", own + ",backend=local",
                           "--backend", "local", "--out", "both"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert both.returncode == 2 and "--backend and --model-args backend=... both given" in both.stderr
