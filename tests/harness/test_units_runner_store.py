"""Work units, record logs (crash tolerance), the stage runner (resume, fixed batches) and the store."""

from __future__ import annotations

import json

import pytest

from harness.api.benchmark import WorkUnit
from harness.core.fsio import RecordLog, atomic_write_bytes, chunks
from harness.engine.stages import run_stage
from harness.store import Store


def unit(i: int, model: str = "m1") -> WorkUnit:
    return WorkUnit("geneval", f"{i // 4:05d}", "sha", i % 4, 42 + i % 4, model)


def test_unit_key_is_content_based():
    assert unit(0).key == unit(0).key
    assert unit(0).key != unit(1).key
    assert unit(0).key != unit(0, model="m2").key
    assert len(unit(0).key) == 24


def test_record_log_skips_partial_last_line_and_keeps_last_duplicate(tmp_path):
    log = RecordLog(tmp_path, "gen", token="a")
    log.append([{"key": "k1", "v": 1}, {"key": "k2", "v": 1}])
    log.close()
    with open(log.path, "a") as f:
        f.write('{"key": "k3", "v"')  # kill -9 in the middle of a write
    other = RecordLog(tmp_path, "gen", token="b")
    other.append([{"key": "k2", "v": 2}])
    other.close()
    done = RecordLog(tmp_path, "gen").read()
    assert sorted(done) == ["k1", "k2"]
    assert done["k2"]["v"] == 2


def test_record_log_stages_are_separate(tmp_path):
    RecordLog(tmp_path, "generate", token="x").append([{"key": "a"}])
    assert RecordLog(tmp_path, "score-abc").read() == {}


def test_atomic_write_leaves_no_temp(tmp_path):
    atomic_write_bytes(tmp_path / "d" / "x.png", b"123")
    assert (tmp_path / "d" / "x.png").read_bytes() == b"123"
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.png"]


def test_chunks():
    assert chunks([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValueError):
        chunks([1], 0)


class Recorder:
    def __init__(self, fail_after: int | None = None):
        self.batches: list[list[str]] = []
        self.fail_after = fail_after

    def __call__(self, batch):
        if self.fail_after is not None and len(self.batches) >= self.fail_after:
            raise RuntimeError("crash")
        self.batches.append([u.key for u in batch])
        return [{"key": u.key, "item": u.item_id, "n": len(batch)} for u in batch]


def test_resume_runs_only_missing_batches_with_the_same_composition(tmp_path):
    units = [unit(i) for i in range(10)]
    first = Recorder(fail_after=2)
    with pytest.raises(RuntimeError), RecordLog(tmp_path, "gen") as log:
        run_stage(units, key=lambda u: u.key, process=first, log=log, batch_size=4)
    assert len(RecordLog(tmp_path, "gen").read()) == 8  # two whole batches survived the crash

    # a unit of the last batch was recorded (e.g. by another process) but its batch is incomplete:
    RecordLog(tmp_path, "gen", token="other").append([{"key": units[8].key, "item": "x", "n": 1}])
    second = Recorder()
    ticks = []
    with RecordLog(tmp_path, "gen") as log:
        done = run_stage(units, key=lambda u: u.key, process=second, log=log, batch_size=4, progress=ticks.append)
    assert second.batches == [[units[8].key, units[9].key]]  # the planned batch, run whole
    assert sum(ticks) == 10
    assert set(done) == {u.key for u in units}
    assert done[units[8].key]["item"] == "x"  # an existing record is not duplicated or replaced
    lines = [json.loads(line) for p in sorted(tmp_path.glob("gen-*.jsonl")) for line in p.read_text().splitlines()]
    assert len(lines) == 10  # exactly one record per unit across all files


def test_runner_rejects_wrong_records(tmp_path):
    with pytest.raises(RuntimeError, match="other units"), RecordLog(tmp_path, "gen") as log:
        run_stage([unit(0)], key=lambda u: u.key, process=lambda b: [{"key": "nope"}], log=log, batch_size=1)


def test_shards_partition_batches(tmp_path):
    units = [unit(i) for i in range(40)]
    seen = []
    for index in range(3):
        rec = Recorder()
        with RecordLog(tmp_path / str(index), "gen") as log:
            run_stage(units, key=lambda u: u.key, process=rec, log=log, batch_size=4, shard=(index, 3))
        seen += [k for b in rec.batches for k in b]
    assert sorted(seen) == sorted(u.key for u in units)
    assert len(seen) == len(set(seen))


def test_store_roundtrip_is_idempotent_and_pandas_loadable(tmp_path):
    path = tmp_path / "h.db"
    with Store(path) as store:
        store.upsert_run("r1", "geneval", status="generating", model="tiny", config={"a": 1})
        recs = [{"key": f"k{i}", "item_id": "00000", "sample_index": i, "seed": 42 + i, "image": f"i{i}.png",
                 "sha256": "s", "seconds": 0.1} for i in range(3)]
        store.add_samples("r1", recs)
        store.add_samples("r1", recs)  # re-ingest after a resume: no duplicates
        store.add_scores("r1", "sc", [{"key": "k0", "image": "i0.png", "tag": "counting", "correct": True,
                                       "reason": "", "details": {"dog": []}, "metadata": {"tag": "counting"}}])
        store.set_metrics("r1", "sc", "geneval", [{"subset": "overall", "metric": "geneval", "value": 0.5}])
        store.upsert_run("r1", "geneval", status="finished")
    with Store(path) as store:  # reopen: migrations are not re-applied
        samples = store.samples("r1")
        assert list(samples["sample_index"]) == [0, 1, 2]
        assert store.scores("r1").loc[0, "correct"] == 1
        assert store.metrics("r1").loc[0, "value"] == 0.5
        runs = store.runs()
        assert runs.loc[0, "status"] == "finished" and json.loads(runs.loc[0, "config_json"]) == {"a": 1}
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        hist = store.history("geneval", "geneval", "overall")
        assert list(hist["value"]) == [0.5] and hist.loc[0, "model"] == "tiny"
        assert store.history("geneval", "accuracy").empty


def _open_store(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        with Store(path):
            results.put("ok")
    except Exception as exc:  # report, do not hang the parent
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    """Ranks open the same new store together: SQLite refuses a concurrent switch to WAL without waiting;
    the store retries it, so no rank dies with "database is locked"."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    outcomes = []
    for trial in range(20):
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_store, args=(str(tmp_path / f"s{trial}.db"), barrier, results))
                 for _ in range(4)]
        for p in procs:
            p.start()
        outcomes += [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join()
    assert outcomes == ["ok"] * 80
