"""Parity with the official scorer on recorded answers, the strict mode's counts, and dependency zeroing.

A synthetic question CSV in the official schema (the first row's item has children of that row, an item's
rows split by another's, children before parents, a parent the item lacks, 30 random DSG-style graphs) and a
folder of 2×2 tiles with the official layout's oddities (a .jpg twin, a text file, a sub-folder, an unknown
key, a tile too small, a prompt without a file, a tile the VQA fails on) are scored twice: by the official
rules re-implemented in ``conftest.run_official`` and by ``harness score dpg`` through the engine, both asking
the same oracle whose answers come in mixed formats.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from typing import Any, ClassVar

import pytest

from harness.benchmarks.dpg.aggregate import (
    Dropped,
    Image,
    parity_image,
    parity_items,
    parity_summary,
    strict_items,
    strict_summary,
    strict_tile,
)
from harness.benchmarks.dpg.benchmark import DPG
from harness.benchmarks.dpg.data import COLUMNS, Question
from harness.engine.lifecycle import score
from harness.scorers.vqa import VQAScorer

R = 16
L2 = ("entity - whole", "entity - part", "entity - state", "attribute - color", "attribute - size",
      "attribute - texture", "attribute - shape", "attribute - other", "relation - spatial", "relation - non-spatial",
      "other - count", "other - text", "global -")


class RecordedVQA(VQAScorer):
    """The harness side of the oracle: one batched ``answer`` per image."""

    name: ClassVar[str] = "vqa-recorded"

    def __init__(self, oracle: Any):
        super().__init__()
        self.oracle = oracle

    def answer(self, image: Any, questions: Any) -> list[str]:
        return self.oracle.answer(image, questions)

    def fingerprint(self) -> dict[str, Any]:
        return {"scorer": self.name, "formats": list(self.oracle.formats)}


def _rows() -> list[tuple[str, int, str, str, str]]:
    """(item, qid, dependency, tuple, question) in CSV order."""
    rows = [("alpha0", 1, "0", "entity - whole (fox)", "Is there a fox?"),  # data row 0: skipped officially
            ("alpha0", 2, "1", "attribute - color (fox, red)", "Is the fox red?"),  # its parent is row 0: KeyError
            ("alpha0", 3, "0", "global - (night)", "Is it night?"),
            ("beta1", 1, "0", "entity - whole (cup)", "Is there a cup?"),
            ("beta1", 2, "1", "entity - part (cup's handle)", "Does the cup have a handle?"),
            ("beta1", 3, "2", "attribute - shape (handle, round)", "Is the handle round?"),
            ("gamma2", 3, "2", "attribute - color (bird, blue)", "Is the bird blue?"),  # child before its parents
            ("gamma2", 2, "1", "entity - state (bird, fly)", "Is the bird flying?"),
            ("gamma2", 1, "0", "entity - whole (bird)", "Is there a bird?"),
            ("delta3", 1, "0", "entity - whole (boat)", "Is there a boat?"),
            ("delta3", 2, "1", "attribute - size (boat, small)", "Is the boat small?"),
            ("eps4", 1, "0", "entity - whole (sign)", "Is there a sign?"),
            ("eps4", 2, "1", "other - text (sign, STOP)", "Does the sign say STOP?"),
            ("delta3", 3, "0", "entity - whole (lake)", "Is there a lake?"),  # delta3 split: this block wins
            ("delta3", 4, "3,0", "relation - spatial (boat, lake, on)", "Is the boat on the lake?"),
            ("zeta5", 1, "0", "entity - whole (dogs)", "Are there dogs?"),
            ("zeta5", 2, "1", "other - count (dogs, ==2)", "Are there two dogs?"),
            ("zeta5", 3, "2,9", "relation - non-spatial (dogs, ball, chase)", "Are the dogs chasing a ball?")]
    rng = random.Random(3)
    for n in range(30):
        item = f"rand{n}"
        count = rng.randint(2, 9)
        for qid in range(1, count + 1):
            parents = sorted(rng.sample(range(1, qid), k=min(qid - 1, rng.randint(0, 2)))) or [0]
            l2 = rng.choice(L2)
            rows.append((item, qid, ",".join(map(str, parents)), f"{l2} (thing{qid})", f"Question {qid} of {item}?"))
    return rows


def write_dataset(root: Path, rows: list[tuple[str, int, str, str, str]]) -> Path:
    """``root/dpg_bench.csv`` and ``root/prompts/<id>.txt`` in the official layout."""
    (root / "prompts").mkdir(parents=True)
    with open(root / "dpg_bench.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for item, qid, dep, tup, question in rows:
            broad, _, detailed = tup.split("(")[0].partition("-")
            writer.writerow([item, f"prompt {item}", "", qid, dep, broad.strip(), detailed.strip(), tup, question])
    for item in dict.fromkeys(r[0] for r in rows):
        (root / "prompts" / f"{item}.txt").write_text(f"  A dense prompt for {item}.\n", encoding="utf-8")
    return root


def tile(seed: int, side: int = 2 * R) -> Any:
    import numpy as np
    from PIL import Image as PILImage

    return PILImage.fromarray(np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))


@pytest.fixture
def dataset(tmp_path: Path, oracle) -> dict[str, Any]:
    rows = _rows()
    data = write_dataset(tmp_path / "dpg_bench", rows)
    images = tmp_path / "images"
    images.mkdir()
    items = list(dict.fromkeys(r[0] for r in rows))
    for n, item in enumerate(items):
        if item == "rand7":
            continue  # a prompt without an image
        tile(n, R if item == "rand8" else 2 * R).save(images / f"{item}.png")  # rand8: too small, padded officially
    tile(1).save(images / "beta1.jpg", quality=95)  # the same key twice: both count officially
    tile(99).save(images / "unknown9.png")
    (images / "notes.txt").write_text("not an image")
    (images / "sub").mkdir()
    failing = tile(items.index("rand9")).crop((R, R, 2 * R, 2 * R))
    vqa = oracle(fail={oracle.pixels(failing)})
    return {"data": data, "images": images, "vqa": vqa, "rows": rows}


def test_parity_equals_the_official_scorer_on_recorded_answers(dataset, official_dpg, tmp_path: Path) -> None:
    official = official_dpg(dataset["images"], dataset["data"] / "dpg_bench.csv", R, 4, dataset["vqa"])
    bench = DPG(prompts=str(dataset["data"]), vqa="tiny", resolution=R, parity=True)
    bench._scorer = RecordedVQA(dataset["vqa"])
    summary = score(bench, dataset["images"], out=tmp_path / "out", store=tmp_path / "h.db").summary
    parity = summary["parity"]
    assert summary["mode"] == "parity" and summary["overall"] == parity["overall"]
    assert parity["overall"] == pytest.approx(official["overall"], abs=1e-9)
    assert parity["l1"].keys() == official["l1"].keys() and parity["l2"].keys() == official["l2"].keys()
    for level in ("l1", "l2"):
        for name, value in official[level].items():
            assert parity[level][name] == pytest.approx(value, abs=1e-9), (level, name)
    dropped = sorted(d["file"] for d in parity["dropped_files"])
    assert dropped == official["failed"]
    # what the official scorer drops: the first row's item (KeyError), the VQA failure, everything not a tile
    assert {"alpha0.png", "rand9.png", "notes.txt", "sub", "unknown9.png"} <= set(dropped)
    assert parity["images_scored"] == len(official["per_file"]) and "beta1.jpg" in official["per_file"]
    results = {r["file"]: r for r in _results(tmp_path / "out")}
    for name, tiles in official["per_file"].items():
        if name in results:
            assert results[name]["parity_tile_scores"] == pytest.approx([100 * t for t in tiles], abs=1e-12)
    text = (tmp_path / "out" / "dpg-bench_results.txt").read_text()
    assert f"DPG-Bench score: {parity['overall']}" in text


def test_strict_keeps_row_0_scores_failures_as_0_and_counts_them(dataset, tmp_path: Path) -> None:
    bench = DPG(prompts=str(dataset["data"]), vqa="tiny", resolution=R)
    bench._scorer = RecordedVQA(dataset["vqa"])
    summary = score(bench, dataset["images"], out=tmp_path / "out", store=tmp_path / "h.db").summary
    strict = summary["strict"]
    assert summary["mode"] == "strict" and summary["overall"] == strict["overall"]
    failed = {f["item_id"]: f["reason"] for f in strict["failed_images"]}
    assert set(failed) == {"rand7", "rand8", "rand9"}
    assert failed["rand7"] == "no image" and "size 16x16, expected 32x32" in failed["rand8"]
    assert "vqa_failed" in failed["rand9"] and "VQA failed on this image" in failed["rand9"]
    assert strict["images"] == 36 and strict["scored"] == 33 and strict["coverage"] == pytest.approx(33 / 36)
    assert strict["other_answer_count"] > 0 and {a for a, _ in strict["other_answers"]} <= {"", "maybe"}
    assert any("zeta5: question 3 names missing parent(s) 9" in p for p in strict["graph_problems"])
    per_item = {r["item_id"]: r for r in _results(tmp_path / "out")}
    assert per_item["alpha0"]["score"] is not None and per_item["alpha0"]["parity_score"] is None  # strict keeps it
    assert per_item["rand7"]["score"] == 0.0 and per_item["rand7"]["tile_scores"] == [0.0] * 4
    assert sum(r["score"] for r in per_item.values()) / 36 == pytest.approx(strict["overall"])
    # the same records answer both modes: switching the headline asks the VQA model nothing again
    calls = dataset["vqa"].calls
    again = DPG(prompts=str(dataset["data"]), vqa="tiny", resolution=R, parity=True)
    again._scorer = RecordedVQA(dataset["vqa"])
    flipped = score(again, dataset["images"], out=tmp_path / "out", store=tmp_path / "h.db").summary
    assert dataset["vqa"].calls - calls == 1  # only the failed tile is asked again (its first question fails)
    assert flipped["overall"] == flipped["parity"]["overall"] and flipped["strict"] == strict


def _results(out: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def _q(row: int, item: str, qid: int, parents: tuple[int, ...], question: str, tup: str = "entity - whole (x)"
       ) -> Question:
    return Question(row, item, qid, parents, tup, question)


def test_zeroing_cascades_in_csv_order_officially_and_through_every_ancestor_in_strict() -> None:
    answers = {"a": "no", "b": "yes", "c": "yes"}
    ordered = [_q(1, "x", 1, (0,), "a"), _q(2, "x", 2, (1,), "b"), _q(3, "x", 3, (2,), "c")]
    assert parity_image(parity_items(ordered)["x"], [answers])[0] == 0.0  # 2 zeroed by 1, then 3 by 2
    assert strict_tile(strict_items(ordered)[0]["x"], answers)[0] == 0.0
    reversed_ = [_q(1, "x", 3, (2,), "c"), _q(2, "x", 2, (1,), "b"), _q(3, "x", 1, (0,), "a")]
    assert parity_image(parity_items(reversed_)["x"], [answers])[0] == pytest.approx(1 / 3)  # 3 read 2 before it
    assert strict_tile(strict_items(reversed_)[0]["x"], answers)[0] == 0.0
    two_parents = [_q(1, "y", 1, (0,), "a"), _q(2, "y", 2, (0,), "b"), _q(3, "y", 3, (2, 1), "c")]
    assert parity_image(parity_items(two_parents)["y"], [answers])[0] == pytest.approx(1 / 3)


def test_row_0_split_items_missing_parents_and_last_tile_categories() -> None:
    rows = [_q(0, "x", 1, (0,), "a"), _q(1, "x", 2, (1,), "b"), _q(2, "y", 1, (0,), "c"), _q(3, "x", 3, (0,), "d")]
    items = parity_items(rows)
    assert list(items["x"].qid2question) == [3] and list(items["y"].qid2question) == [1]  # row 0 gone, x's last block
    with pytest.raises(Dropped, match="parent 1"):
        parity_image(parity_items(rows[:2])["x"], [{"b": "yes"}])
    short_circuit = [_q(1, "z", 1, (0,), "a"), _q(2, "z", 2, (1, 9), "b")]  # 9 is never looked up when 1 says no
    assert parity_image(parity_items(short_circuit)["z"], [{"a": "no", "b": "yes"}])[0] == 0.0
    cats = [_q(1, "w", 1, (0,), "a", "entity - whole (w)"), _q(2, "w", 2, (1,), "b", "attribute - color (w)")]
    tiles = ({"a": "yes", "b": "yes"}, {"a": "no", "b": "yes"})
    parity = parity_summary(cats, [Image("w.png", "w", tiles)])
    assert parity["overall"] == pytest.approx(100 * (1.0 + 0.0) / 2)
    assert parity["l2"] == {"attribute - color": 100.0, "entity - whole": 0.0}  # raw last tile, not zeroed
    strict = strict_summary(cats, ["w"], {"w": Image("w.png", "w", tiles)}, 2)
    assert strict["l2"] == {"attribute - color": 50.0, "entity - whole": 50.0}  # both tiles, after zeroing
    assert strict["l1"] == {"attribute": 50.0, "entity": 50.0} and strict["overall"] == pytest.approx(50.0)


def test_strict_reads_yes_in_any_case_and_with_a_full_stop_parity_only_exact() -> None:
    rows = [_q(1, "v", 1, (0,), "a"), _q(2, "v", 2, (0,), "b"), _q(3, "v", 3, (0,), "c"), _q(4, "v", 4, (0,), "d")]
    answers = {"a": "Yes.", "b": " yes ", "c": "yes", "d": "yes!"}
    assert parity_image(parity_items(rows)["v"], [answers])[0] == pytest.approx(1 / 4)
    assert strict_tile(strict_items(rows)[0]["v"], answers)[0] == 1.0
