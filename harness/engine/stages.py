"""Run one stage (generation or a scoring stage) over work units: plan batches, skip what is done, record the rest.

Batches are planned from the *full* ordered unit list, never from what is left to do, so a batch has the
same members in an uninterrupted run, a resumed run, or on any shard: batched numerics (which can depend on
batch composition) are then identical, and so are the images and the summary. With ``whole_batches`` a
batch with any unit left is run whole and only its missing records are appended; otherwise only the units
left are processed (independent units, such as judge requests).

``shard=(index, count)`` keeps the batches whose position in that plan is ``index`` modulo ``count``: a
balanced split, fixed for a given count, that never depends on what is already done and needs no
communication. Resuming with another count simply re-splits what is left.

A recorded unit counts as done when ``is_final(record)`` holds (by default always); a record that is not
final (a judge that failed) is tried again by the next run and the new record replaces it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from harness.core.fsio import RecordLog, chunks

U = TypeVar("U")
Record = dict[str, Any]


def run_stage(
    units: Sequence[U],
    *,
    key: Callable[[U], str],
    process: Callable[..., list[Record]],
    log: RecordLog,
    batch_size: int,
    shard: tuple[int, int] = (0, 1),
    progress: Callable[[int], None] | None = None,
    is_final: Callable[[Record], bool] | None = None,
    whole_batches: bool = True,
    live_progress: bool = False,
) -> dict[str, Record]:
    """Process every batch of ``units`` with a unit left; return all records of this stage by key.

    ``process(batch)`` (``process(batch, tick)`` with ``live_progress``) returns one record per unit it was
    given, in order (a record without ``"key"`` gets its unit's key). Records are appended and made durable
    after every batch, so an interruption loses at most the batch in flight.
    """
    done = log.read()
    final = is_final or (lambda record: True)
    tick = progress or (lambda n: None)
    index, count = shard
    for position, batch in enumerate(chunks(list(units), batch_size)):
        if position % count != index:
            continue
        keys = [key(u) for u in batch]
        left = [u for u, k in zip(batch, keys, strict=True) if k not in done or not final(done[k])]
        if not left:
            tick(len(batch))
            continue
        todo = batch if whole_batches else left
        if live_progress:
            tick(len(batch) - len(todo))
            records = process(todo, tick)
        else:
            records = process(todo)
        if len(records) == len(todo):
            for unit, record in zip(todo, records, strict=True):
                record.setdefault("key", key(unit))
        wanted = {key(u) for u in todo}
        if {r.get("key") for r in records} != wanted or len(records) != len(wanted):
            raise RuntimeError(f"stage {log.stage}: a batch returned records for other units than it was given")
        fresh = [r for r in records if r["key"] not in done or not final(done[r["key"]])]
        log.append(fresh)
        done.update((r["key"], r) for r in fresh)
        if not live_progress:
            tick(len(batch))
    return done
