"""`harness run imgedit` / `harness score imgedit` end to end: tiny model, demo cases, loopback judge.

The harness runs as real `python -m harness` subprocesses (so `kill -9` is a real kill) talking to the
loopback OpenAI peer over HTTP with the real openai client.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

from harness.store import Store

KEY = "sk-test-loopback"


def harness(*args: str, cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OPENAI_API_KEY": KEY, **(env or {})}
    out = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, env=env,
                         timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"harness {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def server(peer: ModuleType):
    with peer.serve(api_key=KEY) as srv:
        yield srv


def judge_args(url: str, *extra: str) -> list[str]:
    return ["--judge-base-url", url, "--judge-model", "gpt-4.1", "--no-progress", *extra]


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("imgedit-ref")
    before = server.state.requests["/v1/chat/completions"]
    out = harness("run", "imgedit", "--model", "tiny", "--cases", "demo", "--threads", "1", "--out", "run",
                  "--store", "h.db", *judge_args(server.url), cwd=cwd)
    return cwd, cwd / "run", out, server.state.requests["/v1/chat/completions"] - before


def test_run_writes_official_layout_summary_store_and_no_key(reference, server) -> None:
    from PIL import Image

    from harness.benchmarks.imgedit.data import demo_case_set

    cwd, run, out, requests = reference
    assert requests == 18
    assert "ImgEdit-demo — imgedit, mode: strict" in out.stdout and "meaningless" in out.stdout
    assert "18 = 18 scored + 0 parse_failed + 0 judge_failed" in out.stdout
    cs = demo_case_set()
    assert sorted(p.name for p in (run / "images").iterdir()) == sorted(f"{c.key}.png" for c in cs.cases)
    for c in cs.cases:  # resized back to the source's size
        with Image.open(run / "images" / f"{c.key}.png") as im, Image.open(cs.source_path(c)) as src:
            assert im.size == src.size
    cases = json.loads((run / "cases.json").read_text())
    assert cases["1"] == {"id": "add/0.png", "prompt": cs.cases[0].prompt, "edit_type": "add"}
    official = json.loads((run / "result.json").read_text())  # what basic_bench.py writes: key -> answer
    assert sorted(official, key=int) == [str(i) for i in range(1, 19)]
    assert all(v.startswith("Brief reasoning:") for v in official.values())
    assert json.loads((run / "judge_failures.json").read_text()) == {}
    summary = json.loads((run / "summary.json").read_text())
    assert summary["judge"]["returned_models"] == ["gpt-4.1-2025-04-14"] and summary["judge"]["requests"] == 18
    assert summary["judge"]["retries"] == 0 and summary["judge"]["failed_attempts"] == {}  # a fault-free peer
    assert summary["judge"]["endpoints"] == [server.url]
    assert summary["strict"]["scored"] == 18 and summary["mode"] == "strict" and summary["strict"]["complete"]
    assert summary["judge"]["cost_usd"] > 0 and summary["judge"]["prompt_tokens"] == 18 * (400 + 2 * 765)
    results = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    by_type: dict[str, list[float]] = {}
    for r in results:
        by_type.setdefault(r["edit_type"], []).append(sum(r["scores"]) / 3)
    for t, values in by_type.items():
        assert summary["strict"]["types"][t]["score"] == pytest.approx(sum(values) / len(values))
    assert summary["overall"] == pytest.approx(sum(sum(v) / len(v) for v in by_type.values()) / 9)
    with Store(cwd / "h.db") as store:
        run_id = summary["run_id"]
        assert len(store.samples(run_id)) == 18 and len(store.scores(run_id)) == 18
        metrics = store.metrics(run_id)
        overall = metrics[(metrics.subset == "overall") & (metrics.metric == "imgedit")]["value"].item()
        assert overall == pytest.approx(summary["overall"])
    for path in cwd.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in out.stdout + out.stderr


def test_rescoring_costs_nothing_and_parity_mode_is_stated(reference, server) -> None:
    cwd, run, _, _ = reference
    before = server.state.requests["/v1/chat/completions"]
    out = harness("score", "imgedit", "--images", "run/images", "--out", "rescore", "--store", "h.db", "--parity",
                  *judge_args(server.url), cwd=cwd)
    assert server.state.requests["/v1/chat/completions"] == before
    assert "mode: parity (official parser + dropping + 2-decimal rounding)" in out.stdout
    assert "0 requests (0 retries), 18 cached" in out.stdout
    ref = json.loads((run / "summary.json").read_text())
    new = json.loads((cwd / "rescore" / "summary.json").read_text())
    assert new["strict"]["types"] == ref["strict"]["types"] and new["overall"] == ref["parity"]["overall"]


def test_kill_during_judging_then_resume_loses_nothing(reference, peer, tmp_path) -> None:
    _, run, _, _ = reference
    with peer.serve(api_key=KEY, latency=0.3) as slow:
        cmd = ["run", "imgedit", "--model", "tiny", "--cases", "demo", "--threads", "1", "--out", "killed",
               "--store", "h.db", "--judge-concurrency", "1", "--judge-batch-size", "2",
               "--judge-cache", str(tmp_path / "kill.sqlite"), *judge_args(slow.url)]
        proc = subprocess.Popen([sys.executable, "-m", "harness", *cmd], cwd=tmp_path,
                                env={**os.environ, "OPENAI_API_KEY": KEY}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and slow.state.requests["/v1/chat/completions"] < 6:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first = slow.state.requests["/v1/chat/completions"]
        assert 6 <= first < 18
        out = harness(*cmd, cwd=tmp_path)
        total = slow.state.requests["/v1/chat/completions"]
    assert 18 <= total <= 18 + 1  # concurrency 1: at most the request in flight at the kill is asked again
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    ref = json.loads((run / "summary.json").read_text())
    assert summary["strict"]["types"] == ref["strict"]["types"]
    assert summary["judge"]["cache_hits"] >= 1  # answers that arrived before the kill came from the cache
    assert "18 scored" in out.stdout


def test_external_folder_bad_input_and_faults(reference, peer, tmp_path) -> None:
    _, run, _, _ = reference
    ext = tmp_path / "ext"
    shutil.copytree(run / "images", ext)
    args = ["score", "imgedit", "--images", str(ext), "--cases", "demo", "--store", str(tmp_path / "h.db")]
    with peer.serve(api_key=KEY, fault=peer.random_faults(0.3, seed=3), hold=1.0) as srv:
        jargs = judge_args(srv.url, "--judge-timeout", "0.5", "--judge-cache", str(tmp_path / "c.sqlite"))
        (ext / "5.png").unlink()
        bad = harness(*args, *jargs, cwd=tmp_path, check=False)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
        assert "1 of 18 case image(s) missing (5.png)" in bad.stderr and "--missing count" in bad.stderr
        shutil.copy(run / "images" / "5.png", ext / "99.png")
        bad = harness(*args, *jargs, "--missing", "count", cwd=tmp_path, check=False)
        assert bad.returncode == 2 and "1 image(s) match no case of ImgEdit-demo (99.png)" in bad.stderr
        (ext / "99.png").unlink()
        from PIL import Image

        Image.open(run / "images" / "3.png").resize((10, 10)).save(ext / "3.png")
        bad = harness(*args, *jargs, "--missing", "count", cwd=tmp_path, check=False)
        assert bad.returncode == 2 and "3.png 10x10 vs source 96x64" in bad.stderr
        assert "--size-check allow" in bad.stderr
        shutil.copy(run / "images" / "3.png", ext / "3.png")
        out = harness(*args, *jargs, "--missing", "count", "--judge-retries", "8", cwd=tmp_path)
        assert sum(srv.state.faults.values()) > 0
    summary = json.loads((ext / "summary.json").read_text())
    assert summary["strict"]["scored"] == 17 and summary["strict"]["judge_failed"] == 1
    assert summary["failures"] == [{"case": "5", "edit_type": "extract", "status": "judge_failed",
                                    "reason": "missing image"}]
    assert summary["judge"]["retries"] > 0 and "17 scored + 0 parse_failed + 1 judge_failed" in out.stdout
    ref = json.loads((run / "summary.json").read_text())
    for t, row in ref["strict"]["types"].items():
        if t != "extract":
            assert summary["strict"]["types"][t]["score"] == row["score"]


def test_official_scripts_run_on_a_folder_with_judge_failures_and_attempts_are_counted_by_cause(
        reference, peer, tmp_path, monkeypatch, capsys, official_scripts) -> None:
    """Cases the judge refused stay out of result.json (in judge_failures.json): ImgEdit's step 1 and step 2
    run on the folder as they are and give exactly the parity numbers; every failed attempt is counted by cause."""
    from harness.benchmarks.imgedit.data import demo_case_set
    from harness.cli import main

    _, run, _, _ = reference
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    refused = {c.prompt for c in demo_case_set().cases if c.key in ("2", "11")}
    transient = {0: "429", 1: "500", 2: "disconnect", 3: "truncated"}

    def fault(number: int, body: dict) -> str | None:
        text = body["messages"][0]["content"][0]["text"]
        return "content_filter" if any(p in text for p in refused) else transient.get(number)

    out = tmp_path / "scored"
    with peer.serve(api_key=KEY, fault=fault, answer=peer.mixed_answer) as srv:
        assert main(["score", "imgedit", "--images", str(run / "images"), "--out", str(out), "--store",
                     str(tmp_path / "h.db"), "--judge-cache", str(tmp_path / "c.sqlite"), "--parity",
                     *judge_args(srv.url)]) == 0
        injected, received = dict(srv.state.faults), srv.state.counter
    table = capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    failures = json.loads((out / "judge_failures.json").read_text())
    assert sorted(failures) == ["11", "2"] and all(r.startswith("content_filter") for r in failures.values())
    assert sorted(result, key=int) == [str(k) for k in range(1, 19) if k not in (2, 11)]
    assert all(isinstance(v, str) for v in result.values())
    summary = json.loads((out / "summary.json").read_text())
    expected = official_scripts(out / "result.json", run / "cases.json")
    assert {t: row["score"] for t, row in summary["parity"]["types"].items() if row["score"] is not None} == expected
    assert summary["overall"] == summary["parity"]["overall"] == sum(expected.values()) / len(expected)
    judge = summary["judge"]
    names = {"429": "http_429", "500": "http_500", "disconnect": "connection", "truncated": "parse",
             "content_filter": "content_filter"}
    assert judge["failed_attempts"] == {names[k]: n for k, n in sorted(injected.items())}
    retried = sum(n for kind, n in injected.items() if kind != "content_filter")  # requests 0-3 of other cases
    assert injected["content_filter"] == 2 and retried >= 2
    assert judge["requests"] == received == 18 + retried and judge["retries"] == retried
    causes = ", ".join(f"{cause} {n}" for cause, n in judge["failed_attempts"].items())
    assert f"{18 + retried} requests ({retried} retries; failed: {causes})" in table and "content_filter 2" in causes


def test_sharded_scoring_then_merge(reference, server, tmp_path, monkeypatch, capsys) -> None:
    """`--shard i/n` jobs judge disjoint batches; `harness merge` refuses until all are done, then finishes."""
    from harness.cli import main

    _, run, _, _ = reference
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    ext = tmp_path / "ext"
    shutil.copytree(run / "images", ext)
    base = ["score", "imgedit", "--images", str(ext), "--cases", "demo", "--store", str(tmp_path / "h.db"),
            "--judge-batch-size", "5", *judge_args(server.url)]
    assert main([*base, "--shard", "0/2"]) == 0
    assert "shard 0/2" in capsys.readouterr().out
    assert main(["merge", str(ext), "--store", str(tmp_path / "h.db")]) == 3  # batches of shard 1 missing
    assert "cases not judged yet" in capsys.readouterr().err
    assert main([*base, "--shard", "1/2"]) == 0
    assert main(["merge", str(ext), "--store", str(tmp_path / "h.db")]) == 0
    merged = json.loads((ext / "summary.json").read_text())
    ref = json.loads((run / "summary.json").read_text())
    assert merged["strict"]["types"] == ref["strict"]["types"] and merged["strict"]["scored"] == 18
    files = sorted(p.name.split("-")[2] for p in (ext / "records").glob("score-*.jsonl"))
    assert files == ["r0of2", "r1of2"]


def test_clip_metrics_offline(reference, server, tmp_path, monkeypatch, capsys) -> None:
    """CLIP metrics with a tiny random open_clip: an unchanged image scores clip_i 1 and no direction."""
    from harness.benchmarks.imgedit.data import demo_case_set
    from harness.cli import main

    _, run, _, _ = reference
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    cs = demo_case_set()
    same = tmp_path / "same"
    same.mkdir()
    for c in cs.cases:
        shutil.copy(cs.source_path(c), same / f"{c.key}.png")
    args = ["--cases", "demo", "--clip-metrics", "tiny", "--store", str(tmp_path / "h.db"), *judge_args(server.url)]
    assert main(["score", "imgedit", "--images", str(same), *args]) == 0
    assert "CLIP (tiny, no judge)" in capsys.readouterr().out
    clip = json.loads((same / "summary.json").read_text())["clip"]
    assert clip["cases"] == 18 and clip["overall"]["clip_i"] == pytest.approx(1.0, abs=1e-5)
    assert clip["overall"]["clip_dir"] == pytest.approx(0.0, abs=1e-6)
    assert main(["score", "imgedit", "--images", str(run / "images"), "--out", str(tmp_path / "edited"), *args]) == 0
    edited = json.loads((tmp_path / "edited" / "summary.json").read_text())["clip"]
    assert edited["overall"]["clip_i"] < 0.999 and -1 <= edited["overall"]["clip_t"] <= 1
    assert set(edited["types"]) == set(json.loads((run / "summary.json").read_text())["strict"]["types"])
    with Store(tmp_path / "h.db") as store:
        metrics = store.metrics()
        assert {"clip_i", "clip_t", "clip_dir"} <= set(metrics["metric"])


def test_merge_of_an_unjudged_run_checks_the_edits(reference, tmp_path, capsys) -> None:
    """`harness merge` after edit-only jobs: every edit there → says how to judge; one missing → exit 3 naming it."""
    from harness.cli import main

    _, run, _, _ = reference
    gen = tmp_path / "gen"
    shutil.copytree(run, gen, ignore=shutil.ignore_patterns("score-*", "scoring-*", "results.jsonl", "result.json",
                                                            "judge_failures.json", "summary.json"))
    store = ["--store", str(tmp_path / "h.db")]
    assert main(["merge", str(gen), *store]) == 0
    assert f"every image is generated; not scored yet: `harness score imgedit --images {gen / 'images'}`" in \
        capsys.readouterr().out
    assert not (gen / "summary.json").exists()
    victim = sorted((gen / "images").glob("*.png"))[0]
    victim.unlink()
    assert main(["merge", str(gen), *store]) == 3
    assert victim.stem in capsys.readouterr().err


def test_no_marked_secret_in_output_logs_run_folders_store_or_cache(peer, tmp_path) -> None:
    """A base URL with `user:password@` and `?api_key=`, and an API key: none of the three ever shows, with `-v`,
    in a judged run, against endpoints answering 401 and 404, or through the gpt-image-1 adapter."""
    import sqlite3

    secrets = ("SECRETPW", "SECRETQ", "SECRETKEY")
    env = {"OPENAI_API_KEY": "SECRETKEY"}

    def marked(url: str) -> str:
        return url.replace("http://", "http://user:SECRETPW@") + "?api_key=SECRETQ"

    common = ["--store", "h.db", "--judge-cache", "cache/judge.sqlite", "--judge-model", "gpt-4.1", "--no-progress"]
    with peer.serve(api_key="SECRETKEY", basic_auth="user:SECRETPW") as ok, peer.serve(api_key="another") as wrong:
        judged = harness("-v", "run", "imgedit", "--model", "tiny", "--cases", "demo", "--threads", "1", "--out", "run",
                         "--judge-base-url", marked(ok.url), *common, cwd=tmp_path, env=env)
        assert ok.state.requests["/v1/chat/completions"] == 18  # the query string sent as one, Basic auth accepted
        refused = harness("-v", "score", "imgedit", "--images", "run/images", "--out", "s401", "--judge-base-url",
                          marked(wrong.url), *common, cwd=tmp_path, env=env, check=False)
        unknown = harness("-v", "score", "imgedit", "--images", "run/images", "--out", "s404", "--judge-base-url",
                          marked(ok.url), *common, "--judge-model", "gpt-5-nonexistent", cwd=tmp_path, env=env,
                          check=False)
        edit = ["-v", "run", "imgedit", "--model", "gpt-image-1", "--cases", "demo", "--types", "add", "--limit", "1",
                "--no-score", "--no-progress", "--store", "h.db"]
        edited = harness(*edit, "--out", "api", "--model-args", f"base_url={marked(ok.url)}", cwd=tmp_path, env=env)
        api_refused = harness(*edit, "--out", "api401", "--model-args", f"base_url={marked(wrong.url)}", cwd=tmp_path,
                              env=env, check=False)
    assert "DEBUG" in judged.stderr  # -v logs were written
    assert refused.returncode == 2 and "judge endpoint http://***@127.0.0.1:" in refused.stderr
    assert "?api_key=*** refused the API key (HTTP 401)" in refused.stderr
    assert unknown.returncode == 2 and "does not serve model 'gpt-5-nonexistent'" in unknown.stderr
    assert edited.returncode == 0 and api_refused.returncode == 2 and "HTTP 401" in api_refused.stderr
    for out in (judged, refused, unknown, edited, api_refused):
        for secret in secrets:
            assert secret not in out.stdout + out.stderr, (secret, out.args)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "judge.sqlite" for p in files) and any(p.name == "h.db" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, (secret, path)
    for db in ("h.db", "cache/judge.sqlite"):
        with sqlite3.connect(tmp_path / db) as conn:
            rows = "\n".join(conn.iterdump())
        assert not any(secret in rows for secret in secrets), db
    with sqlite3.connect(tmp_path / "cache" / "judge.sqlite") as conn:
        stored = {row[0] for row in conn.execute("SELECT endpoint FROM answers")}
    assert stored == {ok.url.replace("http://", "http://***@") + "?api_key=***"}
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["judge"]["endpoints"] == list(stored) and summary["strict"]["scored"] == 18
