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

    [[benchmark]]
    name = "imgedit"
    args = ["--judge-model", "gpt-4.1"]
    anchor = "runs/imgedit/anchor"     # a frozen scored run, re-judged every night: judge drift control
    anchor_args = []                   # extra `harness score` options for it (e.g. the judge's --judge-base-url)

Judge drift control: the anchor's unchanged images are scored again with tonight's scorer (for ImgEdit
with a fresh judge cache, so every answer is new) and compared with the anchor's own results. If the
scorer moved significantly, tonight's model comparison is labelled "judge drift" and not gated.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import tomllib

from harness.errors import HarnessError


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and check the nightly TOML; errors name the file and the field."""
    from harness.core.jsonio import read_text
    from harness.core.options import NON_NEGATIVE_NUMBER

    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such nightly config file")
    try:
        config = tomllib.loads(read_text(path, "save the nightly config as UTF-8 TOML"))
    except tomllib.TOMLDecodeError as exc:
        raise HarnessError(f"{path}: not valid TOML ({exc})") from exc
    model = config.get("model")
    if not isinstance(model, dict) or not model.get("name"):
        raise HarnessError(f"{path}: [model] with name = \"...\" is required")
    if not isinstance(model.get("args", ""), str):
        raise HarnessError(f"{path}: model.args must be a string of key=value,... (the --model-args text)")
    if "threshold" in config and not NON_NEGATIVE_NUMBER(config["threshold"]):
        raise HarnessError(f"{path}: threshold = {config['threshold']!r}: expected {NON_NEGATIVE_NUMBER.expected}")
    benchmarks = config.get("benchmark")
    if not isinstance(benchmarks, list) or not benchmarks:
        raise HarnessError(f"{path}: at least one [[benchmark]] table with name = \"...\" is required")
    for i, bench in enumerate(benchmarks):
        if not isinstance(bench, dict) or not bench.get("name"):
            raise HarnessError(f"{path}: benchmark[{i}] has no name")
        for key in ("args", "anchor_args"):
            value = bench.get(key, [])
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                raise HarnessError(f"{path}: benchmark[{i}].{key} must be a list of strings")
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


def judge_drift(bench: dict[str, Any], report_dir: Path, store_path: str | None, threshold: float) -> list[str]:
    """Score the frozen anchor's images again with tonight's scorer; the metrics that moved significantly."""
    import shutil

    from harness.cli import execute_stage
    from reports.regression import compare_runs
    from reports.runs import load_run

    anchor = Path(bench["anchor"])
    if not (anchor / "summary.json").is_file() or not (anchor / "images").is_dir():
        raise HarnessError(f"{anchor}: not a scored run folder (needs summary.json and images/); set anchor to a "
                           "run made once with `harness run` and kept unchanged")
    out = report_dir / f"anchor-{bench['name']}"
    shutil.rmtree(out, ignore_errors=True)
    # its own store: a re-scored anchor is a scorer check, never a candidate baseline for the model
    argv = ["--images", str(anchor / "images"), "--out", str(out), "--no-progress",
            "--store", str(report_dir / "anchor-store.db"), *bench.get("anchor_args", [])]
    if bench["name"] == "imgedit" and "--judge-cache" not in argv:
        argv += ["--judge-cache", str(out / "fresh-judge-cache.db")]  # every answer new: that is the point
    execute_stage("score", bench["name"], argv)
    comparisons, _ = compare_runs(load_run(str(anchor)), load_run(str(out)),
                                  threshold=threshold, intersection=True)
    return [c.metric for c in comparisons if c.verdict in ("regression", "improvement")]


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
    report_dir = Path(config.get("report", "runs/nightly-report"))
    for bench in config["benchmark"]:
        argv = ["--model", model["name"], "--model-args", model.get("args", ""), "--no-progress",
                *(["--store", store_path] if store_path else []), *bench.get("args", [])]
        _, outcome, _, _ = execute_stage("run", bench["name"], argv)
        drift = judge_drift(bench, report_dir, store_path, threshold) if bench.get("anchor") else []
        current = load_run(str(outcome.out), store_path)
        baseline_ref = bench.get("baseline", "last-good")
        base = (find_last_good(store_path, bench["name"], current.run_id, current) if baseline_ref == "last-good"
                else load_run(baseline_ref, store_path))
        if base is None:
            sentences.append(f"{bench['name']}: {current.summary.get('overall', float('nan')):.3f} "
                             "(no comparable baseline yet; this run becomes the baseline)."
                             + (f" JUDGE DRIFT on the frozen anchor ({', '.join(drift)})." if drift else
                                " Scorer stable on the frozen anchor." if bench.get("anchor") else ""))
            report_runs.append(current)
            continue
        comparisons, notes = compare_runs(base, current, threshold=threshold)
        comparisons_all += comparisons
        report_runs += [base, current]
        overall = comparisons[0]
        flagged = [c.metric for c in comparisons if c.verdict == "regression"]
        if drift:
            notes.append(f"JUDGE DRIFT on the frozen anchor ({', '.join(drift)}): the scorer changed, so tonight's "
                         "model comparison is not gated.")
            flagged = []
        elif bench.get("anchor"):
            notes.append("Scorer stable on the frozen anchor.")
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
    geneval = [r for r in report_runs if r.benchmark == "geneval"]
    html_path, _ = build_report(report_runs, report_dir, comparisons=comparisons_all,
                                bars_svg=geneval_bars(geneval) if geneval else "")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    verdict = (f"Nightly {day}, model {model['name']}: " + " ".join(sentences)
               + (" Verdict: REGRESSION flagged." if flagged_any else " Verdict: no regression flagged.")
               + f" Report: {html_path}")
    return verdict, flagged_any
