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
    config = { prompts = "official" }  # the benchmark's settings (its config fields) ...
    args = ["--tags", "counting"]      # ... and/or the same as `harness run geneval` flags
    baseline = "last-good"             # or a run folder / run id
    threshold = 0.01                   # optional; default: the benchmark's own

    [[benchmark]]
    name = "imgedit"
    args = ["--judge-model", "gpt-4.1"]
    anchor = "runs/imgedit/anchor"     # a frozen scored run, re-judged every night: judge drift control
    anchor_args = []                   # extra `harness score` flags for it (e.g. the judge's --judge-base-url)

Judge drift control: the anchor's unchanged images are scored again with tonight's scorer (with whatever the
benchmark needs to make every answer new, e.g. a fresh judge cache: ``Benchmark.fresh_scoring``) and compared
with the anchor's own results. If the scorer moved significantly, tonight's model comparison is labelled
"judge drift" and not gated.

The job calls the engine (``evaluate``, ``score``) and the reports directly; it knows no benchmark by name.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from harness.core.errors import HarnessError


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
        if not isinstance(bench.get("config", {}), dict):
            raise HarnessError(f"{path}: benchmark[{i}].config must be a table of the benchmark's settings")
        if "threshold" in bench and not NON_NEGATIVE_NUMBER(bench["threshold"]):
            raise HarnessError(f"{path}: benchmark[{i}].threshold = {bench['threshold']!r}: expected "
                               f"{NON_NEGATIVE_NUMBER.expected}")
    return config


def find_last_good(store_path: str | None, benchmark: str, exclude: str, current: Any) -> Any:
    """Newest finished run of ``benchmark`` (not ``exclude``) comparable with ``current``; None if none."""
    from harness.reports.regression import check_comparable
    from harness.reports.runs import load_run
    from harness.store import Store

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


#: flags of `harness run`/`score` that are not a benchmark's settings, accepted in ``args``/``anchor_args``
COMMON_FLAGS = {"--out": "out", "--threads": "threads", "--max-pixels": "max_pixels"}


def apply_common(values: dict[str, Any]) -> str | None:
    """Apply (and remove) the common flags' values; returns ``--out`` if given."""
    from harness.core.images import set_max_pixels
    from harness.core.options import POSITIVE_INT

    for name in ("threads", "max_pixels"):
        if name in values:
            value = POSITIVE_INT.parse(values.pop(name))
            if not POSITIVE_INT(value):
                raise HarnessError(f"--{name.replace('_', '-')} {value!r}: expected {POSITIVE_INT.expected}")
            if name == "threads":
                import torch

                torch.set_num_threads(value)
            else:
                set_max_pixels(value)
    return values.pop("out", None)


def bench_values(bench: dict[str, Any], argv: list[str], where: str, stage: str) -> dict[str, Any]:
    """A benchmark's settings from its ``config`` table plus flags given as ``args``/``anchor_args``."""
    from harness.core.options import config_fields, flags_to_values
    from harness.engine.lifecycle import benchmark_class

    fields = [f for f in config_fields(benchmark_class(bench["name"]).Config) if stage == "run" or f.stage == "score"]
    return {**bench.get("config", {}), **flags_to_values(fields, argv, where, COMMON_FLAGS)}


def judge_drift(bench: dict[str, Any], report_dir: Path, path: Path, threshold: float | None) -> list[str]:
    """Score the frozen anchor's images again with tonight's scorer; the metrics that moved significantly."""
    import shutil

    from harness.engine.lifecycle import load_benchmark, score
    from harness.reports.regression import compare_runs
    from harness.reports.runs import load_run

    anchor = Path(bench["anchor"])
    if not (anchor / "summary.json").is_file() or not (anchor / "images").is_dir():
        raise HarnessError(f"{anchor}: not a scored run folder (needs summary.json and images/); set anchor to a "
                           "run made once with `harness run` and kept unchanged")
    out = report_dir / f"anchor-{bench['name']}"
    shutil.rmtree(out, ignore_errors=True)
    values = bench_values(bench, bench.get("anchor_args", []), f"{path}: {bench['name']}.anchor_args", "score")
    apply_common(values)
    scorer = load_benchmark(bench["name"], values)
    fresh = {k: v for k, v in scorer.fresh_scoring(out).items() if k not in values}
    if fresh:  # every answer new: that is the point
        scorer = load_benchmark(bench["name"], values | fresh)
    # its own store: a re-scored anchor is a scorer check, never a candidate baseline for the model
    score(scorer, anchor / "images", out=out, store=report_dir / "anchor-store.db")
    comparisons, _ = compare_runs(load_run(str(anchor)), load_run(str(out)), threshold=threshold, intersection=True)
    return [c.metric for c in comparisons if c.verdict in ("regression", "improvement")]


def run_nightly(config_path: str | Path) -> tuple[str, bool]:
    """Run, compare, report; returns (verdict paragraph, whether a regression was flagged)."""
    from harness.core.options import parse_pairs
    from harness.engine.lifecycle import evaluate, load_benchmark
    from harness.reports.html import build_report
    from harness.reports.regression import compare_runs
    from harness.reports.runs import load_run
    from harness.store import Store

    path = Path(config_path)
    config = load_config(path)
    store_path = config.get("store")
    model = config["model"]
    sentences, flagged_any, report_runs, comparisons_all = [], False, [], []
    report_dir = Path(config.get("report", "runs/nightly-report"))
    model_args = parse_pairs(model.get("args", ""), f"{path}: model.args")
    for bench in config["benchmark"]:
        threshold = bench.get("threshold", config.get("threshold"))
        values = bench_values(bench, bench.get("args", []), f"{path}: {bench['name']}.args", "run")
        out = apply_common(values)
        outcome = evaluate(load_benchmark(bench["name"], values), model["name"], model_args=model_args, out=out,
                           store=store_path)
        drift = judge_drift(bench, report_dir, path, threshold) if bench.get("anchor") else []
        current = load_run(str(outcome.out), store_path)
        baseline_ref = bench.get("baseline", "last-good")
        base = (find_last_good(store_path, bench["name"], current.run_id, current) if baseline_ref == "last-good"
                else load_run(baseline_ref, store_path))
        if base is None:
            overall = current.summary.get("overall")
            sentences.append(f"{bench['name']}: {'–' if overall is None else f'{overall:.3f}'} "
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
    html_path, _ = build_report(report_runs, report_dir, comparisons=comparisons_all)
    day = time.strftime("%Y-%m-%d", time.gmtime())
    verdict = (f"Nightly {day}, model {model['name']}: " + " ".join(sentences)
               + (" Verdict: REGRESSION flagged." if flagged_any else " Verdict: no regression flagged.")
               + f" Report: {html_path}")
    return verdict, flagged_any
