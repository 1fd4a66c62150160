"""GenEval aggregation: per-tag image accuracy, overall = unweighted mean of tag scores, bootstrap CIs.

Matches ``evaluation/summary_scores.py``: a tag's score is the mean of ``correct`` over its images, and
the GenEval overall is the plain mean of the tag scores (not "% correct images"). The 95% interval is
a stratified bootstrap over prompts (prompts resampled within each tag, all images of a prompt kept
together), with a fixed seed so that the same records always give the same summary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.benchmarks.geneval.rules import TAGS

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0


def summarize(records: Sequence[Mapping[str, Any]], *, bootstrap: int = BOOTSTRAP_SAMPLES) -> dict[str, Any]:
    """Summary of per-image records (each with ``tag``, ``item_id`` and bool ``correct``)."""
    import numpy as np

    by_tag: dict[str, dict[str, list[bool]]] = {}
    for r in records:
        by_tag.setdefault(r["tag"], {}).setdefault(str(r["item_id"]), []).append(bool(r["correct"]))
    tags = [t for t in TAGS if t in by_tag] + sorted(t for t in by_tag if t not in TAGS)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    tag_rows: dict[str, Any] = {}
    boot = np.zeros((bootstrap, len(tags)))
    for j, tag in enumerate(tags):
        prompts = by_tag[tag]
        correct = np.array([sum(v) for v in prompts.values()], dtype=float)
        images = np.array([len(v) for v in prompts.values()], dtype=float)
        score = float(correct.sum() / images.sum())
        if bootstrap:
            idx = rng.integers(0, len(prompts), size=(bootstrap, len(prompts)))
            boot[:, j] = correct[idx].sum(axis=1) / images[idx].sum(axis=1)
        tag_rows[tag] = {
            "score": score,
            "ci95": _interval(boot[:, j]) if bootstrap else None,
            "correct_images": int(correct.sum()),
            "images": int(images.sum()),
            "prompts": len(prompts),
        }
    all_images = [c for tag in tags for v in by_tag[tag].values() for c in v]
    all_prompts = [any(v) for tag in tags for v in by_tag[tag].values()]
    overall = float(np.mean([tag_rows[t]["score"] for t in tags])) if tags else float("nan")
    failed = sum(bool(r.get("generation_failed")) for r in records)
    return {
        **({"generation_failed": failed} if failed else {}),
        "overall": overall,
        "overall_ci95": _interval(boot.mean(axis=1)) if bootstrap and tags else None,
        "tags": tag_rows,
        "images": len(all_images),
        "prompts": len(all_prompts),
        "correct_images_fraction": float(np.mean(all_images)) if all_images else float("nan"),
        "any_correct_prompts_fraction": float(np.mean(all_prompts)) if all_prompts else float("nan"),
        "bootstrap": {"samples": bootstrap, "seed": BOOTSTRAP_SEED, "unit": "prompt, stratified by tag"},
        "complete": sorted(tags) == sorted(TAGS),
    }


def _interval(values: Any) -> list[float]:
    import numpy as np

    lo, hi = np.percentile(values, [2.5, 97.5])
    return [float(lo), float(hi)]


def metric_rows(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows for the store's ``metrics`` table: one per tag plus ``overall``."""
    rows = [{"subset": "overall", "metric": "geneval", "value": summary["overall"],
             "ci_lo": (summary["overall_ci95"] or [None, None])[0],
             "ci_hi": (summary["overall_ci95"] or [None, None])[1], "n": summary["images"]}]
    for tag, row in summary["tags"].items():
        ci = row["ci95"] or [None, None]
        rows.append({"subset": tag, "metric": "accuracy", "value": row["score"], "ci_lo": ci[0], "ci_hi": ci[1],
                     "n": row["images"]})
    return rows


def format_table(summary: Mapping[str, Any]) -> str:
    """The terminal table: one row per tag with score, 95% CI and counts, then the overall."""
    lines = [f"{summary['label']} — {summary['benchmark']} ({summary['images']} images, "
             f"{summary['prompts']} prompts)"]
    lines.append(f"{'tag':<15}{'score':>8}  {'95% CI':<17}{'correct/images':>16}")
    for tag, row in summary["tags"].items():
        ci = row["ci95"]
        ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
        lines.append(f"{tag:<15}{row['score']:>8.3f}  {ci_text:<17}{row['correct_images']:>8}/{row['images']:<7}")
    ci = summary.get("overall_ci95")
    ci_text = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
    lines.append(f"{'overall':<15}{summary['overall']:>8.3f}  {ci_text:<17}(unweighted mean of tags)")
    if not summary.get("complete", True):
        lines.append("note: not all six tags were run; the overall is not comparable to published GenEval")
    if "tiny" in summary["label"] or summary.get("model", {}).get("adapter") == "tiny":
        lines.append("note: random-weight tiny models — this score is meaningless; it only shows the harness works")
    skipped = summary.get("skipped_files")
    if skipped:
        lines.append(f"note: {len(skipped)} file(s) in sample folders were not PNG samples and were skipped "
                     f"(e.g. {skipped[0]}); see summary.json")
    if summary.get("generation_failed"):
        lines.append(f"note: {summary['generation_failed']} image(s) the model could not make count as incorrect "
                     "(reasons in results.jsonl); rerun `harness run` to try them again")
    fewer = summary.get("prompts_with_fewer_images")
    if fewer:
        lines.append(f"note: {len(fewer)} prompt folder(s) have fewer images than the others (e.g. {fewer[0]})")
    return "\n".join(lines)
