"""Records → pandas (attempts, iterations, U-Net steps, summary) and → the harness results store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.device.record import read_records

if TYPE_CHECKING:
    import pandas as pd

    from harness.store import Store

GROUP = ["variant", "runtime", "backend", "precision", "steps", "height", "width"]


def records_frame(source: str | Path | list[dict[str, Any]], *, ok_only: bool = False) -> pd.DataFrame:
    """One row per attempt (``pd.json_normalize``: dicts such as ``temps_before`` become dotted columns)."""
    import pandas as pd

    recs = read_records(source) if isinstance(source, (str, Path)) else list(source)
    if ok_only:
        recs = [r for r in recs if r.get("status") == "ok"]
    if not recs:
        return pd.DataFrame()
    return pd.json_normalize(recs)


def iterations_frame(records: pd.DataFrame) -> pd.DataFrame:
    """One row per measured iteration of an ``ok`` attempt (``e2e_ms``, text encoder, VAE, U-Net total)."""
    import pandas as pd

    rows = []
    for rec in _ok(records):
        n = len(rec.get("e2e_ms") or [])
        for i in range(n):
            rows.append({**{k: rec.get(k) for k in ("job_id", "attempt", "serial", *GROUP, "repeat_idx")},
                         "iteration": i, "e2e_ms": rec["e2e_ms"][i],
                         "text_encoder_ms": _at(rec.get("text_encoder_ms"), i),
                         "vae_decode_ms": _at(rec.get("vae_decode_ms"), i),
                         "unet_total_ms": _at(rec.get("unet_total_ms"), i)})
    return pd.DataFrame(rows)


def steps_frame(records: pd.DataFrame) -> pd.DataFrame:
    """One row per (iteration, U-Net step) of an ``ok`` attempt."""
    import pandas as pd

    rows = []
    for rec in _ok(records):
        for i, steps in enumerate(rec.get("unet_step_ms") or []):
            for s, ms in enumerate(steps):
                rows.append({**{k: rec.get(k) for k in ("job_id", "attempt", "serial", *GROUP, "repeat_idx")},
                             "iteration": i, "step": s, "unet_step_ms": ms})
    return pd.DataFrame(rows)


def summary_frame(records: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: median and p90 end-to-end over all measured iterations, step median, peaks, counts."""
    import pandas as pd

    it = iterations_frame(records)
    st = steps_frame(records)
    ok = records[records["status"] == "ok"] if len(records) else records
    if it.empty and ok.empty:
        return pd.DataFrame()
    keys = [k for k in GROUP if k in ok.columns]
    def peak_mb(col: str) -> tuple[str, Any]:
        return col, lambda s: s.max() / 1024 if s.notna().any() else None

    aggs: dict[str, Any] = {"jobs": ("job_id", "count")}
    optional = {"e2e_ms_median_of_jobs": ("e2e_ms_median", "median"), "peak_rss_mb": peak_mb("max_rss_kb"),
                "sampled_peak_rss_mb": peak_mb("peak_vm_hwm_kb"),
                "throttled": ("throttled", lambda s: int(s.fillna(False).astype(bool).sum()))}
    aggs.update({name: spec for name, spec in optional.items() if spec[0] in ok.columns})
    base = ok.groupby(keys, dropna=False).agg(**aggs)
    if not it.empty:
        its = it.groupby(keys, dropna=False)["e2e_ms"].agg(
            iterations="count", e2e_ms_median="median", e2e_ms_p90=lambda s: s.quantile(0.9),
            e2e_ms_iqr=lambda s: s.quantile(0.75) - s.quantile(0.25))
        base = base.join(its)
    if not st.empty:
        base = base.join(st.groupby(keys, dropna=False)["unet_step_ms"].median().rename("unet_step_ms_median"))
    return base.reset_index()


def to_store(out: str | Path, store: Store) -> str | None:
    """Upsert the sweep as a run (benchmark ``device``) and its per-configuration metrics; returns the run id."""
    out = Path(out)
    recs = read_records(out)
    if not recs:
        return None
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    run_id = recs[0]["run_id"]
    frame = records_frame(recs)
    summary = summary_frame(frame)
    statuses = frame["status"].value_counts().to_dict()
    store.upsert_run(run_id, "device", status="complete" if set(statuses) == {"ok"} else "partial",
                     model=",".join(sorted(frame["variant"].unique())), out_dir=str(out),
                     config=manifest.get("sweep"), provenance={"device": manifest.get("device"), "statuses": statuses})
    rows = []
    for rec in summary.to_dict("records"):
        subset = f"{rec['variant']}|{rec['steps']}steps|{rec['height']}x{rec['width']}"
        n = int(rec.get("iterations") or rec.get("jobs") or 0)
        for metric in ("e2e_ms_median", "e2e_ms_p90", "unet_step_ms_median", "peak_rss_mb"):
            value = rec.get(metric)
            if value is not None and value == value:
                rows.append({"subset": subset, "metric": metric, "value": float(value), "n": n,
                             "higher_is_better": False})
    store.set_metrics(run_id, "device", "device", rows)
    return run_id


def format_summary(summary: pd.DataFrame) -> str:
    """A plain-text table for the CLI."""
    if summary.empty:
        return "no ok records yet"
    cols = [c for c in ("variant", "backend", "precision", "steps", "height", "width", "jobs", "iterations",
                        "e2e_ms_median", "e2e_ms_p90", "unet_step_ms_median", "peak_rss_mb",
                        "sampled_peak_rss_mb", "throttled")
            if c in summary.columns]
    return summary[cols].to_string(index=False, float_format=lambda x: f"{x:.1f}")


def _ok(records: pd.DataFrame) -> list[dict[str, Any]]:
    if records is None or len(records) == 0:
        return []
    return [r for r in records.to_dict("records") if r.get("status") == "ok"]


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, list) and i < len(values) else None
