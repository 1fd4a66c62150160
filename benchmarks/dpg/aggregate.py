"""DPG-Bench scores from recorded VQA answers, two ways (pure functions; docs/dpg.md, "Scoring").

* **parity**: the official ``compute_dpg_bench.py`` step by step: the first CSV data row is skipped, an item
  whose rows are split keeps its last block, answers count only when exactly ``'yes'``, one score dict is
  carried from tile to tile, a parent absent from the item drops the image (the official ``KeyError``), so do
  a failed VQA call and an unreadable or unknown file, and the categories use the raw answers of the last
  tile only. Means are numpy's, as there.
* **strict**: every row kept, an item's rows grouped, answers normalised (case, spaces, a trailing full
  stop), a question zeroed when any ancestor is answered no, a failed or missing image scored 0 and
  listed, and the categories from every tile after zeroing.

In both, an image's score is the mean over its tiles of the mean over its questions, and the DPG-Bench
score is 100 × the mean over images. L2 is the tuple's text before ``(``, L1 the L2 text before ``-``;
a category's score is 100 × the mean over all its question answers (question-weighted).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.benchmarks.dpg.data import Question

Answers = Mapping[str, str]  # question text -> raw answer


def l2_of(tup: str) -> str:
    return tup.split("(")[0].strip()


def l1_of(l2: str) -> str:
    return l2.split("-")[0].strip()


def normalise(answer: str) -> str:
    """Strict reading of an answer: lower case, without surrounding spaces and a trailing ``.`` or ``!``."""
    return answer.strip().lower().rstrip(".!").strip()


# -- parity --------------------------------------------------------------------------------------------------------
@dataclass
class ParityItem:
    """One item as the official ``prepare_dpg_data`` builds it (dicts in insertion order)."""

    qid2tuple: dict[int, str] = field(default_factory=dict)
    qid2dependency: dict[int, list[int]] = field(default_factory=dict)
    qid2question: dict[int, str] = field(default_factory=dict)


class Dropped(Exception):
    """The official scorer would raise for this image and leave it out."""


def parity_items(rows: Sequence[Question]) -> dict[str, ParityItem]:
    """``prepare_dpg_data``: row 0 skipped; a row whose previous CSV row belongs to another item (or is row 0)
    starts a new dict for its item, replacing an earlier one. ``rows`` may be a subset of the CSV, as long as
    each row keeps its data-row index and every row of a kept item is there."""
    items: dict[str, ParityItem] = {}
    previous: tuple[int, str] | None = None
    for row in sorted(rows, key=lambda r: r.row):
        if row.row == 0:
            continue
        if previous != (row.row - 1, row.item_id):
            items[row.item_id] = ParityItem()
        item = items[row.item_id]
        item.qid2tuple[row.qid] = row.tuple
        item.qid2dependency[row.qid] = list(row.parents)
        item.qid2question[row.qid] = row.question
        previous = (row.row, row.item_id)
    return items


def parity_image(item: ParityItem | None, tiles: Sequence[Answers]) -> tuple[float, list[float], dict[int, float]]:
    """``compute_dpg_one_sample`` on recorded answers: (image score, tile scores, raw last-tile answers).

    Raises :class:`Dropped` where the official code raises (no questions for the key, a missing parent)."""
    if item is None:
        raise Dropped("no questions for this key (only the skipped first CSV row, or an unknown id)")
    qid2scores: dict[int, float] = {}  # one dict for all tiles, as there
    scores = []
    raw_last: dict[int, float] = {}
    for answers in tiles:
        for qid, question in item.qid2question.items():
            qid2scores[qid] = float(answers[question] == "yes")
        raw_last = qid2scores.copy()
        for qid, parents in item.qid2dependency.items():
            any_no = False
            for parent in parents:
                if parent == 0:
                    continue
                if parent not in qid2scores:
                    raise Dropped(f"question {qid} names parent {parent}, which the item does not have (KeyError)")
                if qid2scores[parent] == 0:
                    any_no = True
                    break
            if any_no:
                qid2scores[qid] = 0
        scores.append(sum(qid2scores.values()) / len(qid2scores))
    return sum(scores) / len(scores), scores, raw_last


@dataclass(frozen=True)
class Image:
    """One scored file: its name, item id, and per tile (index order) the answers, or why it failed."""

    file: str
    item_id: str
    tiles: tuple[Answers, ...]
    failure: str | None = None


def parity_summary(rows: Sequence[Question], images: Sequence[Image], dropped: Sequence[tuple[str, str]] = ()
                   ) -> dict[str, Any]:
    """The official ``main`` over ``images`` (plus files already dropped before any answer, ``(name, why)``)."""
    import numpy as np

    items = parity_items(rows)
    scores: list[float] = []
    per_image: dict[str, dict[str, Any]] = {}
    category: dict[str, list[float]] = {}
    out_dropped = [{"file": name, "reason": why} for name, why in dropped]
    for image in images:
        try:
            if image.failure:
                raise Dropped(image.failure)
            score, tiles, raw_last = parity_image(items.get(image.item_id), image.tiles)
        except Dropped as exc:
            out_dropped.append({"file": image.file, "reason": str(exc)})
            continue
        scores.append(score)
        per_image[image.file] = {"item_id": image.item_id, "score": score, "tile_scores": tiles}
        item = items[image.item_id]
        for qid, tup in item.qid2tuple.items():
            category.setdefault(l2_of(tup), []).append(raw_last[qid])
    l1: dict[str, list[float]] = {}
    for l2 in category:
        l1.setdefault(l1_of(l2), []).extend(category[l2])
    mean = (lambda v: float(np.mean(v)) * 100) if scores else (lambda v: None)
    return {"overall": mean(scores), "l1": {k: mean(v) for k, v in l1.items()},
            "l2": {k: mean(category[k]) for k in sorted(category)}, "images_scored": len(scores),
            "dropped": len(out_dropped), "dropped_files": out_dropped, "images": per_image}


# -- strict --------------------------------------------------------------------------------------------------------
@dataclass
class StrictItem:
    """An item's rows grouped in CSV order (qid → row, the last row of a repeated qid wins)."""

    rows: dict[int, Question] = field(default_factory=dict)


def strict_items(rows: Sequence[Question]) -> tuple[dict[str, StrictItem], list[str]]:
    """Every row, grouped by item; and the graph problems found (repeated qids, parents the item lacks,
    cycles), as sentences. A missing parent is then ignored."""
    items: dict[str, StrictItem] = {}
    problems = []
    for row in rows:
        item = items.setdefault(row.item_id, StrictItem())
        if row.qid in item.rows:
            problems.append(f"item {row.item_id}: question {row.qid} appears twice (data rows "
                            f"{item.rows[row.qid].row} and {row.row}); the later one is used")
        item.rows[row.qid] = row
    for item_id, item in items.items():
        for row in item.rows.values():
            lost = [p for p in row.parents if p != 0 and p not in item.rows]
            if lost:
                problems.append(f"item {item_id}: question {row.qid} names missing parent(s) "
                                f"{', '.join(map(str, lost))}; ignored")
    return items, problems


def strict_tile(item: StrictItem, answers: Answers) -> tuple[float, dict[int, float], list[str]]:
    """(tile score, each question's score after zeroing, the answers that were neither yes nor no)."""
    said = {qid: normalise(answers[row.question]) for qid, row in item.rows.items()}
    other = [a for a in said.values() if a not in ("yes", "no")]
    memo: dict[int, float] = {}

    def value(qid: int, path: frozenset[int]) -> float:
        if qid not in memo:
            row = item.rows[qid]
            ok = said[qid] == "yes" and all(value(p, path | {qid}) == 1.0 for p in row.parents
                                            if p != 0 and p in item.rows and p not in path)
            memo[qid] = 1.0 if ok else 0.0
        return memo[qid]

    scores = {qid: value(qid, frozenset()) for qid in item.rows}
    return sum(scores.values()) / len(scores), scores, other


def strict_summary(rows: Sequence[Question], item_ids: Sequence[str], images: Mapping[str, Image], tiles: int
                   ) -> dict[str, Any]:
    """Every selected item scored: ``images[item]`` with ``tiles`` answered tiles, else 0 and listed."""
    items, problems = strict_items(rows)
    per_image: dict[str, dict[str, Any]] = {}
    category: dict[str, list[float]] = {}
    failed: list[dict[str, Any]] = []
    others: Counter = Counter()
    for item_id in item_ids:
        image = images.get(item_id)
        why = ("no image" if image is None else image.failure
               or (f"{len(image.tiles)} of {tiles} tile(s) answered" if len(image.tiles) != tiles else None))
        if why:
            failed.append({"item_id": item_id, "file": image.file if image else None, "reason": why})
            per_image[item_id] = {"score": 0.0, "tile_scores": [0.0] * tiles, "failure": why}
            continue
        tile_scores = []
        for answers in image.tiles:
            score, by_qid, other = strict_tile(items[item_id], answers)
            tile_scores.append(score)
            others.update(other)
            for qid, value in by_qid.items():
                category.setdefault(l2_of(items[item_id].rows[qid].tuple), []).append(value)
        per_image[item_id] = {"score": sum(tile_scores) / len(tile_scores), "tile_scores": tile_scores}
    l1: dict[str, list[float]] = {}
    for l2 in sorted(category):
        l1.setdefault(l1_of(l2), []).extend(category[l2])
    mean = _mean100
    n = len(item_ids)
    return {"overall": mean([v["score"] for v in per_image.values()]), "l1": {k: mean(v) for k, v in l1.items()},
            "l2": {k: mean(category[k]) for k in sorted(category)}, "images": n, "scored": n - len(failed),
            "failed": len(failed), "failed_images": failed, "coverage": (n - len(failed)) / n if n else None,
            "other_answer_count": sum(others.values()), "other_answers": [list(x) for x in others.most_common(20)],
            "graph_problems": problems,
            "per_image": per_image}


def _mean100(values: Sequence[float]) -> float | None:
    return 100 * sum(values) / len(values) if values else None
