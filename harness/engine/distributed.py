"""Which share of the work this process does: single process, `accelerate launch`/`torchrun`, or `--shard i/n`.

Launch with ``accelerate launch --multi_gpu --num_processes N -m harness ...`` or ``torchrun
--nproc_per_node N -m harness ...`` (on CPU too: ``accelerate launch --cpu`` starts one process only).
Work units never talk to each other, so ranks exchange nothing but two barriers (after generation and
after scoring, through accelerate's ``PartialState``, gloo on CPU). Each rank writes its own record files;
rank 0 (or ``harness merge OUT`` later) reads them all and writes the results. ``--shard i/n`` splits work
between independent jobs (Slurm arrays, several nodes) that cannot wait for each other: they only record,
and ``harness merge OUT`` finishes. Both compose: job i of n, launched with k processes, is shard
``i*k + rank`` of ``n*k``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from harness.core.errors import HarnessError


@dataclass(frozen=True)
class Shard:
    """This process's share: batches whose index is ``index`` modulo ``count``."""

    index: int = 0
    count: int = 1
    #: ranks of one launch (accelerate/torchrun) that can wait for each other
    local_rank: int = 0
    local_count: int = 1
    #: independent jobs (``--shard``) that cannot
    jobs: int = 1

    @property
    def finalizes(self) -> bool:
        """Whether this process writes the run's results (rank 0 of a single job)."""
        return self.jobs == 1 and self.local_rank == 0

    @property
    def is_main(self) -> bool:
        """Rank 0 of this launch: prints and shows progress."""
        return self.local_rank == 0

    def barrier(self) -> None:
        """Wait for the other ranks of this launch (no-op for a single process)."""
        if self.local_count > 1:
            _state().wait_for_everyone()

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank of this launch (``value`` itself for a single process)."""
        if self.local_count == 1:
            return value
        from accelerate.utils import broadcast_object_list

        _state()
        box = [value]
        broadcast_object_list(box, from_process=0)
        return box[0]

    @property
    def job(self) -> int:
        """Which ``--shard`` job this process belongs to (0 without ``--shard``)."""
        return self.index // self.local_count

    def describe(self) -> str:
        return f"shard {self.index}/{self.count}" if self.count > 1 else "single process"


SINGLE = Shard()


def launch_identity() -> str | None:
    """``MASTER_ADDR:MASTER_PORT`` (and torchrun's run id) of this process's launch; None for a plain process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    ident = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return f"{ident} run {run_id}" if run_id and run_id != "none" else ident


def parse_shard(spec: str) -> tuple[int, int]:
    """``"2/8"`` → (2, 8); the index counts from 0."""
    try:
        index, count = (int(x) for x in spec.split("/"))
    except ValueError:
        raise HarnessError(f"--shard {spec!r}: use INDEX/COUNT, e.g. 0/4 (index from 0)") from None
    if count < 1 or not 0 <= index < count:
        raise HarnessError(f"--shard {spec!r}: need 0 <= INDEX < COUNT")
    return index, count


def current_shard(spec: str | None = None) -> Shard:
    """The shard of this process: from ``--shard`` and/or the launcher's ``WORLD_SIZE``/``RANK``."""
    job, jobs = parse_shard(spec) if spec else (0, 1)
    rank, world = 0, 1
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        rank, world = _launcher_state()
    return Shard(index=job * world + rank, count=jobs * world, local_rank=rank, local_count=world, jobs=jobs)


def _state() -> Any:
    """accelerate's process state; on a machine without CUDA the ranks talk over gloo (``cpu=True``)."""
    import torch
    from accelerate import PartialState

    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") or not torch.cuda.is_available()
    return PartialState(cpu=use_cpu)


def _launcher_state() -> tuple[int, int]:
    state = _state()
    if state.num_processes != int(os.environ["WORLD_SIZE"]):
        raise HarnessError(f"launcher says WORLD_SIZE={os.environ['WORLD_SIZE']} but accelerate set up "
                           f"{state.num_processes} process(es); use `accelerate launch --multi_gpu` or torchrun")
    return state.process_index, state.num_processes
