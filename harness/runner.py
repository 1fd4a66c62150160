"""Run a stage (generation or scoring) over work units: plan batches, skip done ones, record the rest.

Batches are planned from the *full* ordered unit list, never from what is left to do, so a batch has
the same members in an uninterrupted run, a resumed run, or on any shard: batched numerics (which can
depend on batch composition) are then identical, and so are the images and the summary. A batch with
any unit missing is run whole; only its missing records are appended.

``shard=(index, count)`` keeps the batches whose position in that plan is ``index`` modulo ``count``:
a balanced split, fixed for a given count, that never depends on what is already done and needs no
communication. Resuming with another count simply re-splits what is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from harness.units import RecordLog, chunks

U = TypeVar("U")
Record = dict[str, Any]


def run_stage(
    units: Sequence[U],
    *,
    key: Callable[[U], str],
    process: Callable[[list[U]], list[Record]],
    log: RecordLog,
    batch_size: int,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[int], None] | None = None,
) -> dict[str, Record]:
    """Process every not-yet-recorded batch of ``units``; return all records of this stage by key.

    ``process(batch)`` returns one record (a dict with ``"key"``) per unit of the batch. Records are
    appended and made durable after every batch, so an interruption loses at most the batch in flight.
    """
    done = log.read()
    index, count = shard
    for position, batch in enumerate(chunks(list(units), batch_size)):
        if position % count != index:
            continue
        keys = [key(u) for u in batch]
        if all(k in done for k in keys):
            if progress:
                progress(len(batch))
            continue
        records = process(batch)
        got = {r["key"] for r in records}
        if got != set(keys):
            raise RuntimeError(f"stage {log.stage}: a batch returned records for other units than it was given")
        fresh = [r for r in records if r["key"] not in done]
        log.append(fresh)
        done.update((r["key"], r) for r in fresh)
        if progress:
            progress(len(batch))
    return done
