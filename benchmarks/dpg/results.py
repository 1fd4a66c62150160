"""DPG-Bench results: the summary (strict and parity, the headline by ``--parity``), ``results.jsonl`` (one line
per prompt), the official-format text results, the 2×2 tiles of a run, store rows and the terminal table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.benchmarks.dpg.aggregate import Image, parity_summary, strict_summary
from harness.benchmarks.dpg.data import Question
from harness.benchmarks.dpg.tiles import TILES_DIR, write_tiles
from harness.core.fsio import atomic_write_text
from harness.core.jsonio import dumps

Record = dict[str, Any]
OFFICIAL_TEXT = "dpg-bench_results.txt"


def _groups(records: Sequence[Record], layout: str) -> dict[str, list[Record]]:
    """Records by scored file (a run: by prompt, its single images are one tile), in tile order."""
    groups: dict[str, list[Record]] = {}
    for r in sorted(records, key=lambda r: (r["file"], r["index"])):
        groups.setdefault(r["item_id"] if layout == "singles" else r["file"], []).append(r)
    return groups


def _image(name: str, recs: list[Record], size_ok: Any = None) -> Image:
    bad = next((r for r in recs if r["status"] != "answered"), None)
    failure = f"{bad['image']}: {bad['status']}: {bad.get('reason', '')}" if bad else None
    if failure is None and size_ok is not None:
        failure = size_ok(recs[0]["size"])
    return Image(name, recs[0]["item_id"], tuple(r.get("answers") or {} for r in recs), failure)


def scores(records: Sequence[Record], manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(strict, parity) from the VQA records and the scoring manifest's context."""
    ctx = manifest["context"]
    rows = [Question.from_list(q, "scoring manifest") for q in ctx["rows"]]
    n, layout, r = ctx["images_per_prompt"], ctx["layout"], ctx.get("resolution")
    groups = _groups(records, layout)
    if layout == "singles":
        parity_images = [_image(f"{TILES_DIR}/{item}.png", groups[item]) for item in ctx["items"] if item in groups]
        strict_images = {item: _image(item, recs) for item, recs in groups.items()}
    else:
        want = (r, r) if n == 1 else (2 * r, 2 * r)

        def size_ok(size: list[int]) -> str | None:
            return None if tuple(size) == want else f"size {size[0]}x{size[1]}, expected {want[0]}x{want[1]}"

        parity_images = [_image(name, recs) for name, recs in groups.items()]
        strict_images = {recs[0]["item_id"]: _image(name, recs, size_ok) for name, recs in groups.items()
                         if name == f"{recs[0]['item_id']}.png"}
    skipped = [(name, why) for name, why in (manifest.get("extra") or {}).get("skipped_files", [])]
    return (strict_summary(rows, ctx["items"], strict_images, n), parity_summary(rows, parity_images, skipped))


def summarize(records: Sequence[Record], manifest: dict[str, Any]) -> dict[str, Any]:
    """The summary: the headline (strict, or parity with ``--parity``), both modes, counts, tiles."""
    ctx = manifest["context"]
    strict, parity = scores(records, manifest)
    head = parity if ctx["mode"] == "parity" else strict
    summary: dict[str, Any] = {
        "mode": ctx["mode"], "overall": head["overall"], "l1": head["l1"], "l2": head["l2"],
        "strict": {k: v for k, v in strict.items() if k != "per_image"},
        "parity": {k: v for k, v in parity.items() if k != "images"},
        "images_per_prompt": ctx["images_per_prompt"], "layout": ctx["layout"], "prompts": len(ctx["items"]),
        "scorer": manifest["scorer"], "answer_rule": {"parity": "answer == 'yes'",
                                                      "strict": "answer.strip().lower().rstrip('.!') == 'yes'"},
    }
    if ctx["layout"] == "singles":
        summary["tiles"] = _tile_plan(records, ctx["images_per_prompt"])
    failed = sum(r["status"] == "generation_failed" for r in records)
    if failed:
        summary["generation_failed"] = failed
    else:
        summary["resolution"] = ctx["resolution"]
    return summary


def _tile_plan(records: Sequence[Record], n: int) -> dict[str, Any]:
    """Where a run's official tiles go and how to re-score them, or why they cannot be written."""
    sizes = {tuple(r["size"]) for r in records if r.get("size")}
    if len(sizes) != 1 or len(next(iter(sizes))) != 2 or len(set(next(iter(sizes)))) != 1:
        return {"written": False, "reason": f"the images are not all one square size ({sorted(sizes)[:3]})"}
    side = next(iter(sizes))[0]
    return {"written": True, "folder": TILES_DIR, "resolution": side, "pic_num": n,
            "official_command": f"python dpg_bench/compute_dpg_bench.py --image-root-path {TILES_DIR} --resolution "
                                f"{side} --pic-num {n} --vqa-model mplug --res-path dpg-official.txt"}


def write_results(records: Sequence[Record], out: Path, images_dir: Path, manifest: dict[str, Any]) -> None:
    """``results.jsonl`` (per prompt: both modes' scores, failures, answers), the official-format text
    (parity numbers), and for a run the official tiles ``tiles/<id>.png``."""
    ctx = manifest["context"]
    strict, parity = scores(records, manifest)
    groups = _groups(records, ctx["layout"])
    lines = []
    for item in ctx["items"]:
        recs = groups.get(item if ctx["layout"] == "singles" else f"{item}.png", [])
        file = f"{TILES_DIR}/{item}.png" if ctx["layout"] == "singles" else f"{item}.png"
        mine, official = strict["per_image"][item], parity["images"].get(file)
        lines.append({
            "item_id": item, "family": ctx["families"][item], "prompt": ctx["texts"][item], "file": file,
            "score": 100 * mine["score"], "tile_scores": [100 * s for s in mine["tile_scores"]],
            "failure": mine.get("failure"),
            "parity_score": None if official is None else 100 * official["score"],
            "parity_tile_scores": None if official is None else [100 * s for s in official["tile_scores"]],
            "images": [r["image"] for r in recs], "answers": [r.get("answers") for r in recs]})
    atomic_write_text(out / "results.jsonl", "".join(dumps(x, ensure_ascii=False) + "\n" for x in lines))
    root = out / TILES_DIR if ctx["layout"] == "singles" else images_dir
    atomic_write_text(out / OFFICIAL_TEXT, official_text(parity, manifest, str(root)))
    tiles = _tile_plan(records, ctx["images_per_prompt"]) if ctx["layout"] == "singles" else {}
    if tiles.get("written"):
        write_tiles(out, images_dir, {item: [(r["file"], r["sha256"]) for r in groups[item]]
                                      for item in ctx["items"] if item in groups and _made(groups[item])})


def _made(recs: Sequence[Record]) -> bool:
    """Whether every single image of a tile was made (a tile missing one is not written: the official scorer
    then never sees it, as parity drops it)."""
    return all(r["status"] != "generation_failed" for r in recs)


def official_text(parity: dict[str, Any], manifest: dict[str, Any], image_root: str) -> str:
    """The parity numbers as ``compute_dpg_bench.py`` writes them (its per-image lines, then its summary)."""
    lines = [f"{name}, " + ", ".join(str(s) for s in row["tile_scores"]) + f", {row['score']}"
             for name, row in parity["images"].items()]
    lines.append(f"Model: {Path(image_root).name}")
    lines.append("L1 category scores:")
    lines += [f"\t{k}: {v}" for k, v in parity["l1"].items()]
    lines.append("L2 category scores:")
    lines += [f"\t{k}: {v}" for k, v in parity["l2"].items()]
    lines += [f"Image path: {image_root}", f"DPG-Bench score: {parity['overall']}",
              f"(harness parity mode, scorer {manifest['scorer_hash']}; {parity['dropped']} file(s) dropped)"]
    return "\n".join(lines) + "\n"


def counts_line(summary: dict[str, Any]) -> str:
    """What was scored, failed and dropped in each mode."""
    strict, parity = summary.get("strict") or {}, summary.get("parity") or {}
    return (f"strict: {strict.get('scored')} of {strict.get('images')} prompts scored, {strict.get('failed')} failed "
            f"(scored 0); parity: {parity.get('images_scored')} images, {parity.get('dropped')} dropped")


def store_rows(records: Sequence[Record]) -> list[Record]:
    """One row per questioned image: its status and answers."""
    return [{"key": r["key"], "image": r["image"], "item_id": r["item_id"], "tag": None, "correct": None,
             "reason": r["status"] + (f": {r['reason']}" if r.get("reason") else ""),
             "details": {"answers": r.get("answers"), "box": r.get("box")}} for r in records]


def metric_rows(summary: dict[str, Any]) -> list[Record]:
    """The headline overall, L1 and L2 scores, and each mode's overall."""
    rows = [{"subset": "overall", "metric": "dpg", "value": summary.get("overall"), "n": summary.get("prompts")}]
    for mode in ("strict", "parity"):
        rows.append({"subset": "overall", "metric": f"dpg_{mode}", "value": (summary.get(mode) or {}).get("overall"),
                     "n": None})
    for level in ("l1", "l2"):
        rows += [{"subset": f"{level.upper()}:{k}", "metric": "dpg", "value": v, "n": None}
                 for k, v in (summary.get(level) or {}).items()]
    return rows


def format_table(summary: dict[str, Any]) -> str:
    """The terminal table: L1 and L2 categories in both modes, the overall, counts and notes."""
    strict, parity = summary.get("strict") or {}, summary.get("parity") or {}

    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:.2f}"

    lines = [f"{summary.get('label', 'DPG-Bench')} — mode: {summary.get('mode')} (headline)",
             f"{'category':<26} {'strict':>8} {'parity':>8}"]
    for level in ("l1", "l2"):
        names = list(dict.fromkeys([*(strict.get(level) or {}), *(parity.get(level) or {})]))
        for name in sorted(names):
            lines.append(f"{(level.upper() + ' ' + name):<26} {cell((strict.get(level) or {}).get(name)):>8} "
                         f"{cell((parity.get(level) or {}).get(name)):>8}")
    lines.append(f"{'DPG-Bench score':<26} {cell(strict.get('overall')):>8} {cell(parity.get('overall')):>8}")
    lines.append(counts_line(summary))
    if strict.get("other_answer_count"):
        lines.append(f"answers neither yes nor no (strict counts them as no): {strict['other_answer_count']}")
    if summary.get("generation_failed"):
        lines.append(f"note: {summary['generation_failed']} image(s) the model could not make: their prompts score 0 "
                     "in strict and are dropped in parity; rerun the same command to make them")
    tiles = summary.get("tiles") or {}
    if tiles.get("written"):
        lines.append(f"official tiles: {tiles['folder']}/ (resolution {tiles['resolution']}); re-score with "
                     f"{tiles['official_command']}")
    if "tiny" in str(summary.get("label", "")) or (summary.get("prompt_set") or {}).get("name") == "demo":
        lines.append("note: demo prompts and/or random-weight tiny models — this score is meaningless")
    return "\n".join(lines)
