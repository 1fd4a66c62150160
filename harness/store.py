"""SQLite results store (WAL mode): runs, samples, scores and aggregate metrics, one pandas call each.

The per-run record files (``records/*.jsonl``) are the crash-safe log written while a run works; the
store is the queryable history across runs. Ingesting is an idempotent upsert keyed by
``(run_id, key)``, so it can be repeated after every stage and after every resume. Schema changes are
ordered, named migrations recorded in ``_migrations`` (the ``llm`` pattern).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.core.errors import HarnessError

if TYPE_CHECKING:
    import pandas as pd

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []
migration = MIGRATIONS.append


@migration
def m001_initial(db: sqlite3.Connection) -> None:
    _execute_all(
        db,
        """
        CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, benchmark TEXT NOT NULL, model TEXT, model_hash TEXT, out_dir TEXT,
            status TEXT, created_at REAL, updated_at REAL, harness_version TEXT,
            config_json TEXT, provenance_json TEXT
        );
        CREATE TABLE samples (
            run_id TEXT NOT NULL, key TEXT NOT NULL, item_id TEXT, sample_index INTEGER, seed INTEGER,
            image TEXT, sha256 TEXT, seconds REAL, PRIMARY KEY (run_id, key)
        );
        CREATE TABLE scores (
            run_id TEXT NOT NULL, key TEXT NOT NULL, scorer TEXT NOT NULL, image TEXT, item_id TEXT,
            tag TEXT, correct INTEGER, reason TEXT, details_json TEXT, metadata_json TEXT,
            PRIMARY KEY (run_id, key)
        );
        CREATE INDEX scores_by_scorer ON scores (run_id, scorer);
        CREATE TABLE metrics (
            run_id TEXT NOT NULL, scorer TEXT NOT NULL, benchmark TEXT NOT NULL, subset TEXT NOT NULL,
            metric TEXT NOT NULL, value REAL, ci_lo REAL, ci_hi REAL, n INTEGER,
            higher_is_better INTEGER DEFAULT 1,
            PRIMARY KEY (run_id, scorer, benchmark, subset, metric)
        );
        """
    )


def _execute_all(db: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the current transaction (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def default_store_path() -> Path:
    """``$HARNESS_STORE`` or ``runs/harness.db`` under the working directory."""
    return Path(os.environ.get("HARNESS_STORE", "runs/harness.db"))


class Store:
    """A SQLite results database; safe for several processes (WAL, busy timeout)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_store_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HarnessError(f"{self.path}: cannot create its folder ({exc.strerror}); pass another --store"
                               ) from None
        try:  # the first statement reads the header: a file that is not SQLite fails there, before any write
            self.db = sqlite3.connect(self.path, timeout=60)
            self._wal_mode()
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=60000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if hasattr(self, "db"):
                self.db.close()
            if "locked" in str(exc):  # busy, not broken: another process holds a lock
                raise HarnessError(f"{self.path}: the results store stayed locked by another process for over "
                                   "60 s; rerun when that process is done") from None
            raise HarnessError(f"{self.path}: not a usable SQLite results store ({exc}); it was left untouched: "
                               "pass another --store (or set HARNESS_STORE), or move that file away") from None

    def _wal_mode(self, wait_s: float = 60.0) -> None:
        """Switch to WAL. SQLite refuses the switch at once (no busy wait) while another process opening the
        same new file switches it too, so a refusal is retried for as long as the busy timeout."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _migrate(self) -> None:
        """Apply pending migrations under the write lock, so that concurrent processes (ranks) never race."""
        self.db.isolation_level = None  # explicit transactions: DDL included
        try:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
            applied = {row[0] for row in self.db.execute("SELECT name FROM _migrations")}
            for fn in MIGRATIONS:
                if fn.__name__ not in applied:
                    fn(self.db)
                    self.db.execute("INSERT INTO _migrations VALUES (?, ?)", (fn.__name__, time.time()))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        finally:
            self.db.isolation_level = ""

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------------
    def upsert_run(self, run_id: str, benchmark: str, *, status: str, model: str | None = None,
                   model_hash: str | None = None, out_dir: str | None = None, config: Mapping | None = None,
                   provenance: Any = None, harness_version: str | None = None) -> None:
        """Create or update a run row (creation time is kept on update)."""
        now = time.time()
        with self.db:
            self.db.execute(
                """INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(run_id) DO UPDATE SET status=excluded.status, updated_at=excluded.updated_at,
                   model=coalesce(excluded.model, model), model_hash=coalesce(excluded.model_hash, model_hash),
                   out_dir=coalesce(excluded.out_dir, out_dir),
                   config_json=coalesce(excluded.config_json, config_json),
                   provenance_json=coalesce(excluded.provenance_json, provenance_json)""",
                (run_id, benchmark, model, model_hash, out_dir, status, now, now, harness_version,
                 _dumps(config), _dumps(provenance)),
            )

    def add_samples(self, run_id: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Upsert generation records; returns how many were written."""
        rows = [(run_id, r["key"], r.get("item_id"), r.get("sample_index"), r.get("seed"), r.get("image"),
                 r.get("sha256"), r.get("seconds")) for r in records]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO samples VALUES (?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def add_scores(self, run_id: str, scorer: str, records: Iterable[Mapping[str, Any]]) -> int:
        """Upsert per-image scoring records; returns how many were written."""
        rows = [(run_id, r["key"], scorer, r.get("image"), r.get("item_id"), r.get("tag"),
                 None if r.get("correct") is None else int(bool(r["correct"])), r.get("reason"),
                 _dumps(r.get("details")), _dumps(r.get("metadata"))) for r in records]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?,?,?,?,?,?)", rows)
        return len(rows)

    def set_metrics(self, run_id: str, scorer: str, benchmark: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the aggregate metrics of one (run, scorer, benchmark)."""
        with self.db:
            self.db.execute("DELETE FROM metrics WHERE run_id=? AND scorer=? AND benchmark=?",
                            (run_id, scorer, benchmark))
            self.db.executemany(
                "INSERT INTO metrics VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(run_id, scorer, benchmark, r["subset"], r["metric"], r.get("value"), r.get("ci_lo"),
                  r.get("ci_hi"), r.get("n"), int(r.get("higher_is_better", True))) for r in rows],
            )

    # -- reading (pandas) ---------------------------------------------------------------------------
    def _frame(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        import pandas as pd

        return pd.read_sql_query(sql, self.db, params=params)

    def runs(self) -> pd.DataFrame:
        """All runs, newest first."""
        return self._frame("SELECT * FROM runs ORDER BY created_at DESC")

    def samples(self, run_id: str) -> pd.DataFrame:
        """One row per generated image of a run."""
        return self._frame("SELECT * FROM samples WHERE run_id=? ORDER BY item_id, sample_index", (run_id,))

    def scores(self, run_id: str, scorer: str | None = None) -> pd.DataFrame:
        """One row per scored image of a run (optionally of one scorer)."""
        if scorer is None:
            return self._frame("SELECT * FROM scores WHERE run_id=? ORDER BY image", (run_id,))
        return self._frame("SELECT * FROM scores WHERE run_id=? AND scorer=? ORDER BY image", (run_id, scorer))

    def metrics(self, run_id: str | None = None) -> pd.DataFrame:
        """Aggregate metrics, of one run or of all runs."""
        if run_id is None:
            return self._frame("SELECT * FROM metrics")
        return self._frame("SELECT * FROM metrics WHERE run_id=?", (run_id,))


    def history(self, benchmark: str | None = None, metric: str | None = None,
                subset: str | None = None) -> pd.DataFrame:
        """Metric values across runs, oldest first, with the run's model and status: the history view."""
        sql = ("SELECT m.*, r.model, r.model_hash, r.status, r.created_at, r.out_dir FROM metrics m "
               "JOIN runs r USING (run_id) WHERE 1=1")
        params: list[Any] = []
        for column, value in (("m.benchmark", benchmark), ("m.metric", metric), ("m.subset", subset)):
            if value is not None:
                sql += f" AND {column}=?"
                params.append(value)
        return self._frame(sql + " ORDER BY r.created_at", tuple(params))


def _dumps(obj: Any) -> str | None:
    if obj is None:
        return None
    return obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, ensure_ascii=False)
