"""``harness nightly CONFIG``: run the configured benchmarks for a model, compare each with its baseline
(a run folder/id, or ``last-good``: the newest comparable finished run not marked as regressed), write the
report, mark the run, and return a one-paragraph verdict.

Config (TOML)::

    store = "runs/harness.db"          # optional
    report = "runs/nightly-report"     # where index.html / summary.md go
    threshold = 0.01                   # optional, GenEval score units

    [model]
    name = "dreamlite-mobile"
    args = "dtype=bfloat16"            # --model-args

    [[benchmark]]
    name = "geneval"
    args = ["--prompts", "official"]   # extra `harness run geneval` options
    baseline = "last-good"             # or a run folder / run id
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import tomllib

from harness.errors import HarnessError


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check the nightly TOML; errors name the file and the field."""
    path = Path(path)
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HarnessError(f"{path}: no such nightly config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: not valid TOML ({exc})") from exc
    model = config.get("model")
    if not isinstance(model, dict) or not model.get("name"):
        raise HarnessError(f"{path}: [model] with name = \"...\" is required")
    benchmarks = config.get("benchmark")
    if not isinstance(benchmarks, list) or not benchmarks:
        raise HarnessError(f"{path}: at least one [[benchmark]] table with name = \"...\" is required")
    for i, bench in enumerate(benchmarks):
        if not bench.get("name"):
            raise HarnessError(f"{path}: benchmark[{i}] has no name")
        if not isinstance(bench.get("args", []), list):
            raise HarnessError(f"{path}: benchmark[{i}].args must be a list of strings")
    return config


def find_last_good(store_path: str | None, benchmark: str, exclude: str, current: Any) -> Any:
    """Newest finished run of ``benchmark`` (not ``exclude``) comparable with ``current``; None if none."""
    from harness.store import Store
    from reports.regression import check_comparable
    from reports.runs import load_run

    with Store(store_path) as store:
        runs = store.runs()
    candidates = runs[(runs["benchmark"] == benchmark) & (runs["status"] == "finished") & (runs["run_id"] != exclude)]
    for out_dir in candidates.sort_values("updated_at", ascending=False)["out_dir"]:
        if not out_dir or not (Path(out_dir) / "summary.json").is_file():
            continue
        run = load_run(out_dir, store_path)
        try:
            check_comparable(run, current)
        except HarnessError:
            continue
        return run
    return None


def run_nightly(config_path: str | Path) -> tuple[str, bool]:
    """Run, compare, report; returns (verdict paragraph, whether a regression was flagged)."""
    from harness.cli import execute_stage
    from harness.store import Store
    from reports.html import build_report
    from reports.plots import geneval_bars
    from reports.regression import compare_runs
    from reports.runs import load_run

    config = load_config(config_path)
    store_path = config.get("store")
    model = config["model"]
    threshold = float(config.get("threshold", 0.01))
    sentences, flagged_any, report_runs, comparisons_all = [], False, [], []
    for bench in config["benchmark"]:
        argv = ["--model", model["name"], "--model-args", model.get("args", ""), "--no-progress",
                *(["--store", store_path] if store_path else []), *bench.get("args", [])]
        _, outcome, _, _ = execute_stage("run", bench["name"], argv)
        current = load_run(str(outcome.out), store_path)
        baseline_ref = bench.get("baseline", "last-good")
        base = (find_last_good(store_path, bench["name"], current.run_id, current) if baseline_ref == "last-good"
                else load_run(baseline_ref, store_path))
        if base is None:
            sentences.append(f"{bench['name']}: {current.summary.get('overall', float('nan')):.3f} "
                             "(no comparable baseline yet; this run becomes the baseline).")
            report_runs.append(current)
            continue
        comparisons, notes = compare_runs(base, current, threshold=threshold)
        comparisons_all += comparisons
        report_runs += [base, current]
        overall = comparisons[0]
        flagged = [c.metric for c in comparisons if c.verdict == "regression"]
        flagged_any |= bool(flagged)
        ci = f"[{overall.ci95[0]:+.3f}, {overall.ci95[1]:+.3f}]" if overall.ci95 else ""
        sentences.append(
            f"{bench['name']}: {overall.new:.3f} vs {overall.base:.3f} for baseline {base.run_id} "
            f"(Δ {overall.delta:+.3f}, 95% CI {ci}, {overall.verdict})"
            + (f"; REGRESSION in {', '.join(flagged)}" if flagged else "") + "."
            + (" " + " ".join(notes) if notes else ""))
        if flagged:
            with Store(store_path) as store:
                store.upsert_run(current.run_id, bench["name"], status="regressed")
    report_dir = Path(config.get("report", "runs/nightly-report"))
    geneval = [r for r in report_runs if r.benchmark == "geneval"]
    html_path, _ = build_report(report_runs, report_dir, comparisons=comparisons_all,
                                bars_svg=geneval_bars(geneval) if geneval else "")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    verdict = (f"Nightly {day}, model {model['name']}: " + " ".join(sentences)
               + (" Verdict: REGRESSION flagged." if flagged_any else " Verdict: no regression flagged.")
               + f" Report: {html_path}")
    return verdict, flagged_any
