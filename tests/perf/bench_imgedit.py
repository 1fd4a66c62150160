"""ImgEdit judge benchmark against the loopback OpenAI peer; prints one JSON object.

1. speed: the 737 Basic cases (official case and rubric files from ../shared/data, stand-in images) at
   300 ms latency per request, concurrency 32: wall time of `harness score imgedit` vs the ideal
   737 × 0.3 s / 32; then the same images re-scored into a new folder: requests sent (must be 0).
2. faults: 10% of requests fail (429 + Retry-After, 500, timeout, truncated JSON): every case ends
   scored (with the same answer as without faults) or judge_failed with its reason; none is lost.
3. parity: recorded judge answers in mixed formats (bold labels, 2 scores, a 10, plain); `--parity`
   equals ImgEdit's step1_get_avgscore.py + step2_typescore.py run on the written result.json.

Run: ``python tests/perf/bench_imgedit.py [--latency 0.3] [--concurrency 32]`` (about 1 minute).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "imgedit"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
KEY = "sk-bench-loopback"


@contextlib.contextmanager
def peer(**flags: object) -> Iterator[tuple[str, Callable[[], dict]]]:
    """The loopback peer in its own process (as a real endpoint is); yields its URL and a stats reader."""
    cmd = [sys.executable, str(ROOT / "tests" / "peers" / "openai_server.py"), "--api-key", KEY]
    for name, value in flags.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()

        def stats() -> dict:
            with urllib.request.urlopen(url.removesuffix("/v1") + "/stats") as resp:
                return json.loads(resp.read())
        yield url, stats
    finally:
        proc.kill()
        proc.wait()


def stand_in_images(work: Path) -> tuple[Path, Path, dict]:
    """Source images at every case id (small JPEGs) and one edited ``<key>.png`` per case, same size."""
    from PIL import Image

    cases = json.loads((DATA / "basic_edit.json").read_text())
    src, edits = work / "singleturn", work / "edits"
    edits.mkdir(parents=True)
    for key, case in cases.items():
        digest = hashlib.sha256(key.encode()).digest()
        path = src / case["id"]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (48, 32), tuple(hashlib.sha256(case["id"].encode()).digest()[:3])).save(path, "JPEG")
        Image.new("RGB", (48, 32), tuple(digest[:3])).save(edits / f"{key}.png")
    return src, edits, cases


def score(images: Path, out: Path, src: Path, url: str, cache: Path, *extra: str) -> tuple[float, dict]:
    from harness.cli import main

    argv = ["score", "imgedit", "--images", str(images), "--out", str(out), "--data-dir", str(DATA),
            "--source-root", str(src), "--judge-base-url", url, "--judge-model", "gpt-4.1", "--judge-cache",
            str(cache), "--store", str(out.parent / "h.db"), "--no-progress", *extra]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    wall = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"harness {' '.join(argv)} exited {rc}")
    return wall, json.loads((out / "summary.json").read_text())


def official(result: dict, cases: dict) -> dict[str, float]:
    """ImgEdit's step1_get_avgscore.py + step2_typescore.py, as the official code computes them."""
    averaged = {}
    for key, value in result.items():
        scores = []
        for line in value.splitlines():
            parts = line.strip().split(": ")
            if len(parts) == 2 and parts[1].isdigit():
                scores.append(int(parts[1]))
        if scores:
            averaged[key] = round(sum(scores) / len(scores), 2)
    by_type: dict[str, list[float]] = {}
    for key, s in averaged.items():
        by_type.setdefault(cases[key]["edit_type"], []).append(s)
    return {t: round(sum(v) / len(v), 2) for t, v in by_type.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=float, default=0.3)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--fault-rate", type=float, default=0.10)
    args = p.parse_args()
    os.environ["OPENAI_API_KEY"] = KEY
    report: dict = {"cases": 737, "latency_s": args.latency, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["HARNESS_CACHE"] = str(work / "cache")
        src, edits, cases = stand_in_images(work)
        conc = ["--judge-concurrency", str(args.concurrency)]

        # 1. speed, then the cache
        import openai  # noqa: F401 - imported once up front, as in any long-running process

        with peer(latency=args.latency) as (url, stats):
            load = os.getloadavg()[0]
            wall, first = score(edits, work / "s1", src, url, work / "c1.sqlite", *conc)
            sent_first = stats()["requests"].get("/v1/chat/completions", 0)
            wall2, second = score(edits, work / "s2", src, url, work / "c1.sqlite", *conc)
            sent_second = stats()["requests"].get("/v1/chat/completions", 0) - sent_first
            ideal = 737 * args.latency / args.concurrency
            report["speed"] = {"wall_s": round(wall, 2), "ideal_s": round(ideal, 2), "ratio": round(wall / ideal, 3),
                               "limit_ratio": 1.5, "requests": sent_first, "max_in_flight": stats()["max_in_flight"],
                               "cpu_load_avg_1m_before": round(load, 2), "cpus": os.cpu_count(),
                               "pass": wall <= 1.5 * ideal and sent_first == 737}
            report["cache"] = {"wall_s": round(wall2, 2), "requests_sent": sent_second,
                               "cache_hits": second["judge"]["cache_hits"],
                               "same_scores": second["strict"]["types"] == first["strict"]["types"],
                               "pass": sent_second == 0 and second["strict"]["types"] == first["strict"]["types"]}

        # 2. faults
        faults = {"fault_rate": args.fault_rate, "fault_seed": 1, "hold": 3.0, "retry_after": 1}
        with peer(latency=args.latency, **faults) as (url, stats):
            wall3, faulty = score(edits, work / "s3", src, url, work / "c3.sqlite", *conc,
                                  "--judge-timeout", "1.5", "--judge-retries", "6")
            injected = stats()["faults"]
            sent = stats()["requests"]["/v1/chat/completions"]
        clean = {r["case"]: r for r in map(json.loads, (work / "s1" / "results.jsonl").read_text().splitlines())}
        rows = [json.loads(line) for line in (work / "s3" / "results.jsonl").read_text().splitlines()]
        st = faulty["strict"]
        accounted = st["scored"] + st["parse_failed"] + st["judge_failed"]
        same = sum(r["answer"] == clean[r["case"]]["answer"] for r in rows if r["status"] != "judge_failed")
        report["faults"] = {
            "fault_rate": args.fault_rate, "injected": injected, "requests": sent, "wall_s": round(wall3, 2),
            "records": len(rows), "scored": st["scored"], "parse_failed": st["parse_failed"],
            "judge_failed": st["judge_failed"], "silently_lost": 737 - accounted,
            "answers_equal_to_fault_free_run": same, "retries": faulty["judge"]["retries"],
            "failure_reasons": sorted({f["reason"][:80] for f in faulty["failures"]}),
            "pass": accounted == 737 == len(rows) and same == st["scored"] + st["parse_failed"]
            and all(f["reason"] for f in faulty["failures"]),
        }

        # 3. parity on recorded answers in mixed formats
        with peer(answers="mixed") as (url, _):
            _, par = score(edits, work / "s4", src, url, work / "c4.sqlite", *conc, "--parity")
        result = json.loads((work / "s4" / "result.json").read_text())
        expected = official(result, cases)
        ours = {t: row["score"] for t, row in par["parity"]["types"].items()}
        report["parity"] = {
            "mode": par["mode"], "ours": ours, "official_scripts": expected,
            "overall": par["parity"]["overall_2dp"], "official_overall": round(sum(expected.values()) / 9, 2),
            "dropped_by_official": par["parity"]["dropped_unparseable"],
            "strict_overall": round(par["strict"]["overall"], 4), "strict_parse_failed": par["strict"]["parse_failed"],
            "pass": ours == expected and par["overall"] == sum(expected.values()) / 9,
        }
    report["pass"] = all(v["pass"] for v in report.values() if isinstance(v, dict))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
