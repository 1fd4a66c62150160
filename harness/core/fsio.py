"""Files that survive a crash: atomic writes, per-process append-only record files, and their repair.

Record files are JSON lines, one file per process and stage (``records/<stage>-<token>.jsonl``), flushed
and fsynced after every batch. A line cut short by ``kill -9`` is ignored when reading (and its unit simply
runs again); duplicates (the same unit recorded twice) keep the last record.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part.

    The rename is atomic against a killed process either way; ``fsync=False`` skips forcing the bytes
    to disk (only a power loss could then leave a short file, which scoring reports as a corrupt PNG).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: str | os.PathLike, text: str, *, fsync: bool = True) -> None:
    """Text variant of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


class RecordLog:
    """Append-only JSON-lines records of one stage of one run, one file per writing process."""

    def __init__(self, folder: str | os.PathLike, stage: str, token: str | None = None):
        self.folder = Path(folder)
        self.stage = stage
        self.token = token or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._file = None

    @property
    def path(self) -> Path:
        """This process's record file."""
        return self.folder / f"{self.stage}-{self.token}.jsonl"

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        """Append records and make them durable (flush + fsync) before returning."""
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        for record in records:
            self._file.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def files(self) -> list[Path]:
        """All record files of this stage, from every process that ever ran it, least recently written first."""
        return sorted(self.folder.glob(f"{self.stage}-*.jsonl"), key=lambda p: (p.stat().st_mtime_ns, p.name))

    def read(self) -> dict[str, dict[str, Any]]:
        """Records of this stage from all files, by unit key; the last written wins (a unit retried by a later
        run, e.g. after a failure, is read from the later record)."""
        done: dict[str, dict[str, Any]] = {}
        for path in self.files():
            for record in iter_complete_lines(path):
                done[record["key"]] = record
        return done


def iter_complete_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Parsed JSON objects of a JSONL file, skipping a final line cut short by a crash."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # partial last line from an interrupted write: its unit runs again
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "key" in record:
                yield record


def repair_record_file(path: Path) -> bool:
    """Drop a final line cut short by a crash (only that line); True if the file was changed.

    Only for files no process is writing any more (``harness merge``): a live writer's last line can be
    momentarily incomplete, which readers already tolerate.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    written = path.stat()
    atomic_write_bytes(path, data[: data.rfind(b"\n") + 1])
    os.utime(path, ns=(written.st_atime_ns, written.st_mtime_ns))  # still as old as its records (see files())
    return True


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """Split into consecutive chunks of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError("chunk size must be >= 1")
    return [items[i : i + size] for i in range(0, len(items), size)]


#: the lock file at the top of a run folder; ``--shard`` jobs add ``.harness-lock-shard-I-of-N``
LOCK_FILE = ".harness-lock"


def is_lock_file(name: str) -> bool:
    """One of the lock files the engine leaves in a run folder (never an input to score)."""
    return name == LOCK_FILE or name.startswith(LOCK_FILE + "-")


def listing(names: list[str], most: int = 10) -> str:
    """The first ``most`` names, then how many more: for error messages that name missing units."""
    shown = ", ".join(names[:most])
    return shown + (f", ... and {len(names) - most} more" if len(names) > most else "")
