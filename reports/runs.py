"""Load finished runs for reports and comparisons: a run folder (or a run id from the store) → plain data.

Each folder is read by its own benchmark's loader (``Reportable.load_run``): the benchmark named in its
``summary.json``, or the reportable that claims a folder without one (device sweeps). Reads only what the
stages wrote; never runs a model.
"""

from __future__ import annotations

from pathlib import Path

from harness.api.reporting import Reportable, RunData
from harness.core.errors import HarnessError
from harness.core.jsonio import load_json
from harness.reports.regression import reportable

__all__ = ["RunData", "load_run", "resolve_run"]


def _kind(path: Path) -> type[Reportable] | None:
    """The reportable that reads ``path``, or None when it is not a finished run of any."""
    if (path / "summary.json").is_file():
        summary = load_json(path / "summary.json", f"it is written by `harness run`/`score`; rerun `harness merge "
                                                   f"{path}`")
        name = summary.get("benchmark")
        if not isinstance(name, str) or not name:
            raise HarnessError(f"{path / 'summary.json'}: no 'benchmark' field; rerun `harness merge {path}`")
        return reportable(name)
    if path.is_dir():
        from harness.registry import registry

        for name in registry("benchmarks").names():
            try:
                cls = reportable(name)
            except HarnessError:
                continue  # a broken plugin never breaks the others
            if cls.claims(path):
                return cls
    return None


def resolve_run(ref: str, store_path: str | None = None) -> tuple[Path, type[Reportable]]:
    """A run folder, or a run id looked up in the store, with the reportable that reads it."""
    path = Path(ref)
    kind = _kind(path)
    if kind is not None:
        return path, kind
    from harness.store import Store

    with Store(Path(store_path) if store_path else None) as store:
        runs = store.runs()
    match = runs[runs["run_id"] == ref]
    if len(match) and match.iloc[0]["out_dir"]:
        found = Path(match.iloc[0]["out_dir"])
        kind = _kind(found)
        if kind is not None:
            return found, kind
    raise HarnessError(f"{ref}: not a scored run folder (no summary.json) nor a finished run id in the store; "
                       "pass the folder `harness run` printed")


def load_run(ref: str, store_path: str | None = None) -> RunData:
    """Read a run through its benchmark's loader; unreadable files name themselves."""
    out, kind = resolve_run(ref, store_path)
    return kind.load_run(out)
