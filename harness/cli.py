"""``harness`` command line: the only module that knows argparse, and the only one that prints.

It builds each benchmark's flags from the benchmark's config dataclass, calls the engine (``evaluate``,
``score``, ``merge``), reports and the nightly job, and prints. Nothing imports it. Imports are lazy:
``harness --help`` and ``harness list ...`` never import torch. Errors caused by input (:class:`HarnessError`)
are printed as one line and exit with status 2 (3: a run that is not finished yet); work already recorded
stays.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from harness.core.errors import HarnessError
from harness.core.options import NON_NEGATIVE_NUMBER, POSITIVE_INT
from harness.core.version import __version__

LIST_GROUPS = ("models", "benchmarks", "judges", "detectors", "scorers")


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit status 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"error: {self.prog}: {text} (see `{self.prog} --help`)\n")


def _pixels_option(p: argparse.ArgumentParser) -> None:
    from harness.core.images import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=POSITIVE_INT.argtype(), default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images with more pixels than this, checked from the header before decoding "
                        f"(default {DEFAULT_MAX_PIXELS} = 4096x4096)")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; benchmark-specific options are added once the benchmark is known."""
    parser = OneLineParser(
        prog="harness",
        description="Evaluate small image models: GenEval, ImgEdit, on-phone latency sweeps, reports, nightly runs.",
    )
    parser.add_argument("--version", action="version", version=f"dreamlite-harness {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_list = sub.add_parser("list", help="list registered models, benchmarks, judges or detectors")
    p_list.add_argument("group", choices=LIST_GROUPS)
    p_list.add_argument("--check", action="store_true", help="import each entry and report those that fail")

    p_run = sub.add_parser("run", help="generate images with a model and score them (resumable)", add_help=False)
    p_run.add_argument("benchmark", nargs="?", help="benchmark name (`harness list benchmarks`)")
    p_score = sub.add_parser("score", help="score an existing image folder (resumable)", add_help=False)
    p_score.add_argument("benchmark", nargs="?", help="benchmark name (`harness list benchmarks`)")

    p_report = sub.add_parser("report", help="HTML + Markdown report over one or more scored runs")
    p_report.add_argument("runs", nargs="+", help="run folders (or run ids in the store)")
    p_report.add_argument("--out", required=True, help="folder for index.html and summary.md")
    p_report.add_argument("--grid-limit", type=POSITIVE_INT.argtype(), default=None,
                          help="at most N prompts per image grid")
    p_report.add_argument("--store", default=None, help="SQLite results store (default runs/harness.db)")
    _pixels_option(p_report)

    p_compare = sub.add_parser("compare", help="paired comparison of two runs on the same prompts and seeds")
    p_compare.add_argument("base")
    p_compare.add_argument("new")
    p_compare.add_argument("--threshold", type=NON_NEGATIVE_NUMBER.argtype(), default=None,
                           help="smallest change that counts, in the benchmark's units (default: the benchmark's "
                                "own: GenEval 0.01, ImgEdit 0.1, device latency ratio 1.10)")
    p_compare.add_argument("--fail-on-regression", action="store_true", help="exit 1 on a flagged regression")
    p_compare.add_argument("--intersection", action="store_true",
                           help="compare only the shared prompts when the runs' prompt sets or scorers differ")
    p_compare.add_argument("--report", default=None, help="also write a report with the comparison to this folder")
    p_compare.add_argument("--store", default=None, help="SQLite results store (default runs/harness.db)")
    _pixels_option(p_compare)

    p_nightly = sub.add_parser("nightly", help="run the configured benchmarks, compare with the baseline, report")
    p_nightly.add_argument("config", help="nightly TOML file (see README)")

    from harness.device.cli import add_device_parser  # argparse only: no torch, no adb_shell at import

    add_device_parser(sub)

    p_merge = sub.add_parser("merge", help="merge the record files of all processes/shards into the results")
    p_merge.add_argument("out", help="the run (or scored image) folder")
    p_merge.add_argument("--scorer", default=None, help="scorer hash (default: the most recent scoring)")
    p_merge.add_argument("--store", default=None, help="SQLite results store (default runs/harness.db)")
    return parser


def _model_flags(rest: Sequence[str]) -> dict[str, str]:
    """The ``--model``'s own extra flags (``ImageModel.cli_flags``), if ``--model`` names a model."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model")
    name = pre.parse_known_args(list(rest))[0].model
    if not name:
        return {}
    from harness.registry import registry

    return dict(getattr(registry("models").load(name), "cli_flags", {}))


def _stage_parser(command: str, bench_name: str, bench_cls: Any,
                  model_flags: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The flags of ``harness run|score BENCHMARK``: the common ones, the model's own (``cli_flags``), then the
    benchmark's config fields."""
    from harness.core.options import config_fields

    p = OneLineParser(prog=f"harness {command} {bench_name}")
    common = p.add_argument_group("common")
    if command == "run":
        common.add_argument("--model", required=True, help="model name (`harness list models`)")
        common.add_argument("--model-args", default="",
                            help="key=value,...: weights (hub id or folder), dtype, device, steps, guidance, "
                                 "resolution, ...")
        common.add_argument("--out", default=None, help="run folder (default runs/<benchmark>/<model>-<id>)")
        common.add_argument("--no-score", action="store_true", help="generate only; score later with `harness score`")
        for flag, option in (model_flags or {}).items():
            common.add_argument(flag, dest=f"modelflag_{option}", default=None, metavar=option.upper(),
                                help=f"the model's {option} option (the same as --model-args {option}=...)")
    else:
        common.add_argument("--images", required=True, help="image folder in the official layout")
        common.add_argument("--out", default=None, help="where results.jsonl and summary.json go")
    common.add_argument("--store", default=None, help="SQLite results store (default runs/harness.db)")
    common.add_argument("--shard", default=None,
                        help="INDEX/COUNT: this job's share for independent jobs (Slurm arrays); finish with "
                             "`harness merge OUT`. Under accelerate launch/torchrun the ranks split work by themselves")
    common.add_argument("--threads", type=POSITIVE_INT.argtype(), default=None,
                        help="torch CPU threads (default: torch's)")
    common.add_argument("--no-progress", action="store_true", help="no progress bars")
    _pixels_option(common)
    own = p.add_argument_group(bench_name)
    for f in config_fields(bench_cls.Config):
        if command == "score" and f.stage != "score":
            continue
        if f.switch:
            own.add_argument(f.flag, dest=f"cfg_{f.name}", action="store_true", help=f.help)
        else:
            default = "" if f.default in (None, "") else f" (default {f.default})"
            own.add_argument(f.flag, dest=f"cfg_{f.name}", default=None, metavar=f.name.upper(),
                             help=f.help + default)
    return p


@contextmanager
def tqdm_progress(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on stderr for one stage."""
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
        yield bar.update


def cmd_list(args: argparse.Namespace) -> int:
    from harness.registry import registry

    reg = registry(args.group)
    entries = reg.entries()
    if not entries:
        print(f"no {args.group} registered (plugins add them under entry-point group harness.{args.group})")
        return 0
    failures = 0
    for e in entries:
        origin = "built-in" if e.builtin else f"plugin from {e.distribution} {e.version}"
        line = f"{e.name:<18} {e.target:<60} {origin}"
        if args.check:
            try:
                reg.load(e.name)
                line += "  ok"
            except HarnessError as exc:
                failures += 1
                line += f"  FAILED: {exc}"
        print(line)
    return 1 if failures else 0


def cmd_stage(command: str, bench_name: str | None, rest: Sequence[str]) -> int:
    from harness.registry import registry

    if not bench_name or bench_name.startswith("-"):
        names = ", ".join(registry("benchmarks").names())
        usage = f"harness {command} BENCHMARK [options]   (benchmarks: {names}; add --help for options)"
        if bench_name in ("-h", "--help") or {"-h", "--help"} & set(rest):
            print(f"usage: {usage}")
            return 0
        raise HarnessError(f"name a benchmark: {usage}")
    from harness.engine.lifecycle import benchmark_class, load_benchmark

    bench_cls = benchmark_class(bench_name)
    flags = _model_flags(rest) if command == "run" else {}
    args = _stage_parser(command, bench_name, bench_cls, flags).parse_args(list(rest))
    from harness.core.images import set_max_pixels
    from harness.engine import lifecycle
    from harness.engine.distributed import current_shard

    # every option is checked before any work: nothing is read, written or loaded for a bad one
    set_max_pixels(args.max_pixels)
    values = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v not in (None, False)}
    bench = load_benchmark(bench_name, values)
    shard = current_shard(args.shard)
    model = None
    if command == "run":
        from harness.core.options import coerce_text, parse_pairs

        model_args = parse_pairs(args.model_args, "--model-args")
        for option in flags.values():
            value = getattr(args, f"modelflag_{option}")
            if value is not None:
                if option in model_args:
                    raise HarnessError(f"--{option} and --model-args {option}=... both given; pass one")
                model_args[option] = coerce_text(value)
        model = lifecycle.load_model(args.model, model_args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    progress = _null_progress if args.no_progress or not shard.is_main else tqdm_progress
    if command == "run":
        outcome = lifecycle.evaluate(bench, model, out=args.out, store=args.store, shard=shard, progress=progress,
                                     score=not args.no_score)
    else:
        outcome = lifecycle.score(bench, args.images, out=args.out, store=args.store, shard=shard, progress=progress)
    if outcome.summary:
        print_outcome(bench, outcome, args.store)
    elif outcome.partial:
        if shard.jobs > 1 and shard.is_main:
            then = f"harness merge {outcome.out}"
            if command == "run":
                then = f"harness score {bench_name} --images {outcome.out / 'images'} [--shard I/N], then " + then
            print(f"{shard.describe()} of {outcome.out} done; when every shard is done: {then}")
    else:
        print(f"images: {outcome.out / 'images'} (not scored; `harness score {bench_name} --images ...`)")
    return 0


def print_outcome(bench: Any, outcome: Any, store_path: Any) -> None:
    """The benchmark's results table (its ``format_summary``) and where everything is."""
    from harness.store import default_store_path

    print(bench.format_summary(outcome.summary))
    print(f"\nresults: {outcome.out / 'results.jsonl'}\nsummary: {outcome.out / 'summary.json'}")
    print(f"store:   {store_path or default_store_path()} (run {outcome.run_id})")


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.core.paths import folder_arg
    from harness.engine.lifecycle import load_benchmark, merge

    folder_arg(args.out, flag="harness merge")
    outcome = merge(args.out, store=args.store, scorer=args.scorer)
    for path in outcome.repaired:
        print(f"repaired {path}: dropped a line cut short by a crash (its unit was not counted)")
    out = outcome.out
    if not outcome.summary:
        import json

        name = json.loads((out / "run.json").read_text(encoding="utf-8"))["config"]["benchmark"]
        print(f"{out}: every image is generated; not scored yet: `harness score {name} --images {out / 'images'}` "
              f"(or --shard I/N jobs), then `harness merge {out}`")
        return 0
    print_outcome(load_benchmark(outcome.summary["benchmark"]), outcome, args.store)
    return 0


@contextmanager
def _null_progress(desc: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.core.images import set_max_pixels
    from harness.core.paths import folder_arg
    from harness.reports.html import build_report
    from harness.reports.plots import history
    from harness.reports.runs import load_run

    folder_arg(args.out, flag="--out")
    set_max_pixels(args.max_pixels)
    runs = [load_run(ref, args.store) for ref in args.runs]
    html_path, md_path = build_report(runs, Path(args.out), history_svg=history(_history_frame(args.store)),
                                      grid_limit=args.grid_limit)
    print(md_path.read_text(encoding="utf-8"))
    print(f"report: {html_path}\nmarkdown: {md_path}")
    return 0


def _history_frame(store_path: str | None) -> Any:
    from harness.store import Store

    with Store(store_path) as store:
        return store.history()


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.core.images import set_max_pixels
    from harness.core.paths import folder_arg
    from harness.reports.regression import compare_runs
    from harness.reports.runs import load_run

    set_max_pixels(args.max_pixels)
    if args.report:
        folder_arg(args.report, flag="--report")
    base, new = load_run(args.base, args.store), load_run(args.new, args.store)
    comparisons, notes = compare_runs(base, new, threshold=args.threshold, intersection=args.intersection)
    print(f"{'metric':<26}{'base':>8}{'new':>8}{'delta':>9}  {'95% CI':<19}{'p':>8}  mark")
    for c in comparisons:
        ci = f"[{c.ci95[0]:+.3f}, {c.ci95[1]:+.3f}]" if c.ci95 else "–"
        print(f"{c.metric:<26}{c.base:>8.3f}{c.new:>8.3f}{c.delta:>+9.3f}  {ci:<19}{c.p_value or 1:>8.4f}  "
              f"{c.mark} {c.verdict}")
    for note in notes:
        print(f"note: {note}")
    if args.report:
        from harness.reports.html import build_report

        html_path, _ = build_report([base, new], Path(args.report), comparisons=comparisons)
        print(f"report: {html_path}")
    flagged = [c.metric for c in comparisons if c.verdict == "regression"]
    print(f"regression flagged in: {', '.join(flagged)}" if flagged else "no regression flagged")
    return 1 if flagged and args.fail_on_regression else 0


def cmd_nightly(args: argparse.Namespace) -> int:
    from harness.nightly import run_nightly

    verdict, failed = run_nightly(args.config)
    print(verdict)
    return 1 if failed else 0


def _redact_output() -> None:
    """Mask secrets in every log line (the root logger's handlers) and in the traceback of an unexpected error."""
    from harness.core.secrets import RedactingFilter, redact

    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    if not getattr(sys.excepthook, "redacts", False):
        import traceback

        def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
            sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))

        excepthook.redacts = True  # type: ignore[attr-defined]
        sys.excepthook = excepthook


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("run", "score"):  # only run/score parse the rest (the benchmark's options)
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    _redact_output()
    try:
        if args.command == "list":
            return cmd_list(args)
        if args.command in ("run", "score"):
            return cmd_stage(args.command, args.benchmark, rest)
        if args.command in ("report", "compare", "nightly"):
            return {"report": cmd_report, "compare": cmd_compare, "nightly": cmd_nightly}[args.command](args)
        if args.command == "device":
            from harness.device.cli import run_device_command

            return run_device_command(args)
        if args.command == "merge":
            return cmd_merge(args)
        parser.print_help()
        return 0
    except HarnessError as exc:
        from harness.core.secrets import redact

        print(f"error: {redact(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

