"""The engine's merge of a scored GenEval run (2,212 records in 2 rank files) and the store's ingest of 2,212 rows;
each round starts from the same files and a fresh SQLite file."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from harness.benchmarks.geneval.summary import metric_rows, summarize
from harness.core.fsio import RecordLog, atomic_write_text
from harness.core.hashing import content_hash
from harness.core.jsonio import dumps
from harness.core.version import __version__
from harness.engine.lifecycle import finalize
from harness.store import Store

IMAGES = 2212
RUN_ID = "geneval-micro"
SCORER = {"name": "geneval", "detector": "mask2former-hf", "clip": "ViT-L-14:openai", "rules": 2, "options": {}}


class FreshStores:
    """pedantic's setup/teardown: a new SQLite file per round; after each round its rows are checked."""

    def __init__(self, folder: Path, check: Callable[[Store], None]):
        self.folder, self.check, self.numbers = folder, check, count()

    def open(self) -> Store:
        return Store(self.folder / f"store-{next(self.numbers)}.db")

    def close(self, store: Store) -> None:
        try:
            self.check(store)
        finally:
            store.close()
            for path in store.path.parent.glob(store.path.name + "*"):
                path.unlink()


def count_rows(store: Store, table: str) -> int:
    return store.db.execute(f"SELECT count(*) FROM {table} WHERE run_id=?", (RUN_ID,)).fetchone()[0]


@pytest.fixture
def scored_run(tmp_path: Path, scored_records: list[dict[str, Any]]) -> tuple[Path, str]:
    """A run folder as two scoring ranks leave it: the scoring manifest and one record file per rank."""
    out = tmp_path / "run"
    scorer_hash = content_hash(SCORER, 12)
    stage = f"score-{scorer_hash}"
    for rank in (0, 1):
        with RecordLog(out / "records", stage, token=f"rank{rank}") as log:
            log.append(scored_records[rank::2])
    manifest = {
        "benchmark": "geneval", "run_id": RUN_ID, "label": "GenEval-HF", "scorer": SCORER, "scorer_hash": scorer_hash,
        "provenance": {"benchmark": {"name": "geneval"}}, "images_dir": "images", "harness_version": __version__,
        "extra": {"prompt_set": {"name": "official", "indices": 553}, "expected_images": IMAGES},
        "stages": [[stage, [[r["key"], r["image"]] for r in scored_records]]], "context": {},
    }
    atomic_write_text(out / f"scoring-{scorer_hash}.json", dumps(manifest, indent=1, sort_keys=True) + "\n")
    return out, scorer_hash


def test_finalize_merges_two_ranks(benchmark: Any, scored_run: tuple[Path, str], tmp_path: Path,
                                   scored_records: list[dict[str, Any]]) -> None:
    out, scorer_hash = scored_run

    def check(store: Store) -> None:
        assert (count_rows(store, "scores"), count_rows(store, "metrics")) == (IMAGES, 7)
        assert store.db.execute("SELECT status FROM runs WHERE run_id=?", (RUN_ID,)).fetchone()[0] == "finished"
        assert len((out / "results.jsonl").read_text().splitlines()) == IMAGES
        assert json.loads((out / "summary.json").read_text())["images"] == IMAGES

    stores = FreshStores(tmp_path, check)

    def setup() -> tuple[tuple[Path, Store], dict[str, Any]]:
        for name in ("results.jsonl", "summary.json"):
            (out / name).unlink(missing_ok=True)
        return (out, stores.open()), {"scorer_hash": scorer_hash}

    summary = benchmark.pedantic(finalize, setup=setup, teardown=lambda out, store, **_: stores.close(store),
                                 rounds=15, warmup_rounds=1)
    expected = summarize(scored_records)
    assert (summary["run_id"], summary["images"], summary["prompts"]) == (RUN_ID, IMAGES, 553)
    assert summary["overall"] == expected["overall"] and summary["tags"] == expected["tags"]


def test_store_ingest(benchmark: Any, tmp_path: Path, geneval_images: list,
                      scored_records: list[dict[str, Any]]) -> None:
    samples = [{"key": content_hash({"unit": img.name}, 24), "item_id": img.item_id,
                "sample_index": int(img.name[-8:-4]), "seed": 42 + int(img.name[-8:-4]), "image": img.name,
                "sha256": content_hash(img.name, 64), "seconds": 0.5} for img in geneval_images]
    metrics = metric_rows(summarize(scored_records))

    def check(store: Store) -> None:
        assert [count_rows(store, t) for t in ("samples", "scores", "metrics")] == [IMAGES, IMAGES, len(metrics)]
        assert store.db.execute("SELECT sum(correct) FROM scores").fetchone()[0] == sum(
            r["correct"] for r in scored_records)

    stores = FreshStores(tmp_path, check)

    def ingest(store: Store) -> None:
        store.add_samples(RUN_ID, samples)
        store.add_scores(RUN_ID, "micro", scored_records)
        store.set_metrics(RUN_ID, "micro", "geneval", metrics)

    benchmark.pedantic(ingest, setup=lambda: ((stores.open(),), {}), teardown=stores.close, rounds=20,
                       warmup_rounds=1)
