"""`harness run gedit` / `score` / `compare` / `report` / `nightly` end to end: tiny model, demo rows, the loopback
OpenAI peer answering VIEScore prompts (real openai client, real HTTP), harness as real subprocesses (so `kill -9`
is a real kill); the written layout re-scored by the transcribed official scorer."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from harness.benchmarks.gedit.prompts import PQ_PROMPT, SC_TEMPLATE
from harness.store import Store

KEY = "sk-test-loopback"


@pytest.fixture(scope="module")
def server(peer: ModuleType):
    with peer.serve(api_key=KEY, keep_bodies=True) as srv:
        yield srv


def judge_args(url: str, *extra: str) -> list[str]:
    return ["--judge-base-url", url, "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory, run_harness):
    cwd = tmp_path_factory.mktemp("gedit-ref")
    before = server.state.requests["/v1/chat/completions"]
    start = time.perf_counter()
    out = run_harness("run", "gedit", "--model", "tiny", "--cases", "demo", "--threads", "1", "--out", "run",
                      "--store", "h.db", *judge_args(server.url), cwd=cwd)
    seconds = time.perf_counter() - start
    bodies = list(server.state.bodies[-44:])
    return cwd, cwd / "run", out, server.state.requests["/v1/chat/completions"] - before, bodies, seconds


def results(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def test_run_writes_the_official_layout_csvs_summary_and_store(reference, server) -> None:
    from harness.benchmarks.gedit.data import demo_case_set

    cwd, run, out, requests, bodies, _ = reference
    assert requests == 44  # SC and PQ for each of the 22 English rows
    assert "GEdit-demo-EN — gedit, mode: strict" in out.stdout and "meaningless" in out.stdout
    assert "22 = 22 scored + 0 parse_failed + 0 judge_failed" in out.stdout
    en = [c for c in demo_case_set().cases if c.language == "en"]
    files = sorted(p.relative_to(run / "images").as_posix() for p in (run / "images").rglob("*.png"))
    assert files == sorted([c.edited_rel for c in en] + [c.source_rel for c in en])
    for c in en:  # the source written next to the edit is the dataset's image, byte for byte
        assert (run / "images" / c.source_rel).read_bytes() == demo_case_set().source_path(c).read_bytes()
    assert json.loads((run / "cases.json").read_text()) == [c.record() for c in en]
    summary = json.loads((run / "summary.json").read_text())
    strict = summary["strict"]["en"]
    assert summary["mode"] == "strict" and summary["label"] == "GEdit-demo-EN" and list(summary["strict"]) == ["en"]
    assert strict["scored"] == 22 and strict["complete"] and summary["judge"]["requests"] == 44
    assert summary["judge"]["returned_models"] == ["gpt-4.1-2025-04-14"] and summary["judge"]["cost_usd"] > 0
    assert summary["judge"]["parameters"]["max_tokens"] == 1400
    rows = results(run)
    groups: dict[str, list[float]] = {}
    for r in rows:
        assert r["O"] == pytest.approx(math.sqrt(r["SC"] * r["PQ"]))
        groups.setdefault(r["task_type"], []).append(r["O"])
    assert summary["overall"] == pytest.approx(sum(sum(v) / len(v) for v in groups.values()) / 11)
    assert summary["overall"] == pytest.approx(summary["parity"]["en"]["O"])  # plain JSON answers: same reading
    sc = [b for b in bodies if b["messages"][0]["content"][0]["text"].startswith(SC_TEMPLATE.split("<")[0])]
    assert len(sc) == 22 and all(len(b["messages"][0]["content"]) == 3 for b in sc)
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for b in bodies
               for p in b["messages"][0]["content"] if p["type"] == "image_url")
    assert sum(b["messages"][0]["content"][0]["text"] == PQ_PROMPT for b in bodies) == 22
    with Store(cwd / "h.db") as store:
        run_id = summary["run_id"]
        assert len(store.samples(run_id)) == 22 and len(store.scores(run_id)) == 22
        metrics = store.metrics(run_id)
        assert metrics[(metrics.subset == "en") & (metrics.metric == "O")]["value"].item() == pytest.approx(
            summary["overall"])
    for path in cwd.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_the_official_scorer_rescores_the_layout_unmodified(reference, server, official, tmp_path) -> None:
    """The transcribed test_gedit_score.py + calculate_statistics.py on the run folder (as --save_path, model name
    `images`): the same requests, byte for byte, and our parity numbers; and on the CSVs we wrote, the same."""
    _, run, _, _, bodies, _ = reference
    copy = tmp_path / "save"
    shutil.copytree(run, copy)
    rows = json.loads((copy / "cases.json").read_text())
    sent_before = len(server.state.bodies)
    official.score_layout(rows, str(copy), "images", "gpt4o",
                          lambda text, images: official.gpt_ask(server.url, KEY, text, images),
                          SC_TEMPLATE, PQ_PROMPT)
    theirs = server.state.bodies[sent_before:]
    assert sorted(json.dumps(b["messages"]) for b in theirs) == sorted(json.dumps(b["messages"]) for b in bodies)
    stats = official.analyze_scores(str(copy / "images" / "gpt4o" / "eval_results_new"), "images", "en")
    summary = json.loads((run / "summary.json").read_text())
    parity = summary["parity"]["en"]
    for m in ("SC", "PQ", "O"):
        assert stats[m]["avg"] == parity[m]
        assert all(stats[m][g] == parity["groups"][g][m] for g in parity["groups"])
        assert stats[f"{m}_i"]["avg"] == parity["intersection"][m]
    ours = official.analyze_scores(str(run / "gpt4o" / "eval_results_new"), "run", "en")
    assert ours == stats


@pytest.fixture(scope="module")
def rescored(reference, server, run_harness):
    """The reference run's images scored again into ``rescore`` with ``--parity``: (output, requests sent)."""
    cwd = reference[0]
    before = server.state.requests["/v1/chat/completions"]
    out = run_harness("score", "gedit", "--images", "run/images", "--out", "rescore", "--store", "h.db", "--parity",
                      *judge_args(server.url), cwd=cwd)
    return out, server.state.requests["/v1/chat/completions"] - before


def test_rescoring_costs_nothing_and_parity_mode_is_stated(reference, rescored) -> None:
    cwd, run, _, _, _, _ = reference
    out, sent = rescored
    assert sent == 0
    assert "mode: parity (official parser and statistics" in out.stdout and "0 requests (0 retries), 44 cached" in \
        out.stdout
    ref, new = (json.loads((p / "summary.json").read_text()) for p in (run, cwd / "rescore"))
    assert new["strict"] == ref["strict"] and new["overall"] == ref["parity"]["en"]["O"]


def test_compare_and_report(reference, rescored, run_harness) -> None:
    cwd = reference[0]
    out = run_harness("compare", "run", "rescore", "--fail-on-regression", "--report", "cmp", cwd=cwd)
    assert "gedit_overall" in out.stdout and "regression" not in out.stdout.replace("no regression", "")
    rep = run_harness("report", "run", "rescore", "--out", "rep", cwd=cwd)
    assert rep.returncode == 0
    page = (cwd / "rep" / "index.html").read_text()
    assert "GEdit-Bench: " in page and "GEdit-Bench-EN full set, GPT-4.1 judge (published)" in page
    assert "Qwen-Image-Edit-2511" in page and "DreamLite README" in page
    assert page.count("class=prompt") >= 22 and "_SRCIMG.png" in page
    md = (cwd / "rep" / "summary.md").read_text()
    assert "| background_change |" in md and "| intersection |" in md


def test_kill_during_judging_then_resume_loses_nothing(reference, peer, tmp_path) -> None:
    _, run, _, _, _, _ = reference
    with peer.serve(api_key=KEY, latency=0.3) as slow:
        cmd = ["run", "gedit", "--model", "tiny", "--cases", "demo", "--threads", "1", "--out", "killed",
               "--store", "h.db", "--judge-concurrency", "1", "--judge-batch-size", "2",
               "--judge-cache", str(tmp_path / "kill.sqlite"), *judge_args(slow.url)]
        proc = subprocess.Popen([sys.executable, "-m", "harness", *cmd], cwd=tmp_path,
                                env={**os.environ, "OPENAI_API_KEY": KEY}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and slow.state.requests["/v1/chat/completions"] < 10:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = slow.state.requests["/v1/chat/completions"]
        assert 10 <= first < 44
        out = subprocess.run([sys.executable, "-m", "harness", *cmd], cwd=tmp_path, capture_output=True, text=True,
                             env={**os.environ, "OPENAI_API_KEY": KEY}, timeout=300)
        total = slow.state.requests["/v1/chat/completions"]
    assert out.returncode == 0, out.stderr
    assert 44 <= total <= 44 + 1  # concurrency 1: at most the request in flight at the kill is asked again
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    ref = json.loads((run / "summary.json").read_text())
    assert summary["strict"] == ref["strict"] and summary["parity"] == ref["parity"]
    assert summary["judge"]["cache_hits"] >= 1 and "22 scored" in out.stdout


def test_faults_guesses_and_refusals_are_counted(reference, peer, tmp_path, run_harness) -> None:
    """Transient faults are retried and counted by cause; a refused SC ends judge_failed in strict and is a case the
    official code would guess in parity; prose answers parse in neither; every case is accounted for."""
    from harness.benchmarks.gedit.data import demo_case_set

    _, run, _, _, _, _ = reference
    en = [c for c in demo_case_set().cases if c.language == "en"]
    refused, prose = en[0].instruction, en[2].instruction  # two groups: each keeps a parsed row
    transient = {0: "429", 1: "500", 2: "disconnect", 3: "truncated"}

    def fault(number: int, body: dict) -> str | None:
        text = body["messages"][0]["content"][0]["text"]
        return "content_filter" if text.endswith(f"Editing instruction: {refused}\n") else transient.get(number)

    def answer(body: dict, images: list) -> str:
        text = body["messages"][0]["content"][0]["text"]
        if text.endswith(f"Editing instruction: {prose}\n"):
            return "It follows the instruction well, I would say seven."
        return peer.viescore_answer(body, images)

    ext = tmp_path / "ext"
    shutil.copytree(run / "images", ext)
    with peer.serve(api_key=KEY, fault=fault, answer=answer) as srv:
        out = run_harness("score", "gedit", "--images", str(ext), "--cases", "demo", "--store", str(tmp_path / "h.db"),
                          "--judge-cache", str(tmp_path / "c.sqlite"), *judge_args(srv.url), cwd=tmp_path)
        injected = dict(srv.state.faults)
    summary = json.loads((ext / "summary.json").read_text())
    strict, parity = summary["strict"]["en"], summary["parity"]["en"]
    assert (strict["scored"], strict["parse_failed"], strict["judge_failed"]) == (20, 1, 1)
    failures = {f["case"]: f for f in summary["failures"]}
    assert failures[en[0].id]["status"] == "judge_failed" and "content_filter" in failures[en[0].id]["reason"]
    assert failures[en[2].id]["status"] == "parse_failed" and "no JSON object" in failures[en[2].id]["reason"]
    assert injected["content_filter"] == 3  # asked three times (--judge-attempts 3), refused each time
    assert parity["unknown_cases"] == 2 and parity["guessed"] == 2 and parity["rows"] == 20
    lo, hi = parity["interval"]["O"]
    assert lo <= parity["O"] <= hi and lo < hi
    names = {"429": "http_429", "500": "http_500", "disconnect": "connection", "truncated": "parse",
             "content_filter": "content_filter"}
    assert summary["judge"]["failed_attempts"] == {names[k]: n for k, n in sorted(injected.items())}
    assert "20 scored + 1 parse_failed + 1 judge_failed" in out.stdout and "2 with a guessed or unknown" in out.stdout
    csv_rows = (ext / "gpt4o" / "eval_results_new" / "ext_combined_gpt_score.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 20  # the guessed cases are not written


def test_external_folder_missing_images_and_bad_input(reference, server, tmp_path, run_harness) -> None:
    _, run, _, _, _, _ = reference
    ext = tmp_path / "method"
    shutil.copytree(run / "images", ext)
    victim = next((ext / "fullset" / "color_alter" / "en").glob("*_SRCIMG.png"))
    victim.unlink()
    args = ["score", "gedit", "--images", str(ext), "--cases", "demo", "--store", str(tmp_path / "h.db"),
            *judge_args(server.url)]
    bad = run_harness(*args, cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "1 of 22 row image(s) missing (fullset/color_alter/en/" in bad.stderr and "--missing count" in bad.stderr
    run_harness(*args, "--missing", "count", cwd=tmp_path)
    summary = json.loads((ext / "summary.json").read_text())
    assert summary["strict"]["en"]["judge_failed"] == 1 and summary["parity"]["en"]["missing_images"] == 1
    assert summary["parity"]["en"]["rows"] == 21
    (ext / "fullset" / "color_alter" / "en" / "stray.png").write_bytes(b"x")
    stray = run_harness(*args, "--missing", "count", "--out", str(tmp_path / "o2"), cwd=tmp_path, check=False)
    assert stray.returncode == 2 and "1 image(s) match no row of GEdit-demo (fullset/color_alter/en/stray.png)" in \
        stray.stderr
    for flags, message in ((["--language", "de"], "--language 'de': expected one of en, cn, both"),
                           (["--types", "colour"], "--types: unknown task type(s) colour"),
                           (["--judge-profile", "x"], "expected one of gpt, qwen"),
                           (["--revision", "a b"], "expected a dataset revision")):
        out = run_harness("run", "gedit", "--model", "tiny", "--cases", "demo", *flags, "--out", str(tmp_path / "x"),
                          cwd=tmp_path, check=False)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr
    empty = run_harness("score", "gedit", "--images", str(tmp_path), "--cases", "demo", cwd=tmp_path, check=False)
    assert empty.returncode == 2 and "no fullset/ folder" in empty.stderr


def test_both_languages_and_the_qwen_profile(reference, peer, tmp_path, run_harness) -> None:
    """`--language both` scores English and Chinese rows apart; the qwen profile sends images first, as PNG."""
    with peer.serve(api_key=KEY, keep_bodies=True) as srv:
        run_harness("run", "gedit", "--model", "tiny", "--cases", "demo", "--threads", "1", "--language", "both",
                    "--types", "color_alter,ps_human", "--judge-profile", "qwen", "--judge-model", "judge-small",
                    "--out", "both", "--store", "h.db", *judge_args(srv.url), cwd=tmp_path)
        bodies = srv.state.bodies
    summary = json.loads((tmp_path / "both" / "summary.json").read_text())
    assert set(summary["strict"]) == {"en", "cn"} and summary["label"] == "GEdit-demo-EN+CN"
    assert summary["strict"]["cn"]["cases"] == 4 and summary["headline_language"] == "en"
    assert summary["overall"] == summary["strict"]["en"]["O"] and not summary["strict"]["en"]["complete"]
    assert len(bodies) == 16 and all(b["max_tokens"] == 512 for b in bodies)
    for b in bodies:
        parts = b["messages"][0]["content"]
        assert parts[-1]["type"] == "text" and all(p["image_url"]["url"].startswith("data:image/png;base64,")
                                                   for p in parts[:-1])
    assert any("把圆变成绿色" in b["messages"][0]["content"][-1]["text"] for b in bodies)
    assert (tmp_path / "both" / "qwen25vl" / "eval_results_new" / "both_combined_gpt_score.csv").is_file()


def test_nightly_rejudges_the_frozen_anchor_with_a_fresh_cache(reference, server, tmp_path, run_harness) -> None:
    _, run, _, _, _, _ = reference
    shutil.copytree(run, tmp_path / "anchor", ignore=shutil.ignore_patterns(".harness-lock"))
    config = f"""
store = "h.db"
report = "report"
[model]
name = "tiny"
[[benchmark]]
name = "gedit"
config = {{ cases = "demo", judge_base_url = "{server.url}" }}
args = ["--threads", "1", "--judge-cache", "night.db"]
anchor = "anchor"
"""
    (tmp_path / "n.toml").write_text(config)
    before = server.state.requests["/v1/chat/completions"]
    out = run_harness("nightly", "n.toml", cwd=tmp_path)
    assert "gedit" in out.stdout and "Scorer stable on the frozen anchor" in out.stdout
    assert server.state.requests["/v1/chat/completions"] - before == 44 + 44  # tonight's run and the anchor, fresh
    assert (tmp_path / "report" / "index.html").is_file()
