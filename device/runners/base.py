"""Runner interface: which files a run leaves behind and how its output becomes a :class:`ParsedRun`.

Parsers are tolerant: truncated or partial output gives partial iterations (flagged ``complete=False``),
unknown lines are ignored, and nothing is ever invented (a missing number stays ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

BASE_OUTPUTS = ("stdout.txt", "stderr.txt", "time.txt", "mem.tsv", "meminfo.tsv", "t_start", "t_end")


@dataclass
class Iteration:
    """One generation (or one inference) inside a benchmark process."""

    index: int
    warmup: bool = False
    e2e_ms: float | None = None
    text_encoder_ms: float | None = None
    unet_step_ms: list[float] = field(default_factory=list)
    unet_total_ms: float | None = None
    vae_decode_ms: float | None = None
    stage_vm_hwm_kb: dict[str, int] = field(default_factory=dict)
    other_ms: dict[str, float] = field(default_factory=dict)
    output: str | None = None
    complete: bool = False


@dataclass
class ParsedRun:
    """What a runner's output says: load time, iterations, optional tool summary, errors."""

    load_ms: float | None = None
    iterations: list[Iteration] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # tool-level stats when there is no per-iteration list
    errors: list[str] = field(default_factory=list)
    matched_lines: int = 0

    @property
    def empty(self) -> bool:
        """True when nothing recognisable was printed."""
        return self.matched_lines == 0


class Runner:
    """Base runner; subclasses set ``name``/``version`` and implement :meth:`parse`."""

    name: ClassVar[str] = "base"
    version: ClassVar[str] = "1"
    extra_outputs: ClassVar[tuple[str, ...]] = ()

    def outputs(self, variant_outputs: tuple[str, ...] = ()) -> list[str]:
        """Files to pull from the run folder (missing ones are simply absent)."""
        return [*BASE_OUTPUTS, *self.extra_outputs, *variant_outputs]

    def placeholders(self) -> dict[str, str]:
        """Extra ``{name}`` values for the variant's command template."""
        return {}

    def parse(self, files: dict[str, bytes], warmup_iters: int = 0) -> ParsedRun:
        raise NotImplementedError


class TextRunner(Runner):
    """A runner whose tool reports on stdout/stderr: subclasses set ``parse_text`` (text → :class:`ParsedRun`)
    and ``marks_warmup`` when the tool does not say which iterations were warm-up."""

    #: whether the first ``warmup_iters`` iterations are flagged here (the tool does not flag them itself)
    marks_warmup: ClassVar[bool] = True

    @staticmethod
    def parse_text(text: str) -> ParsedRun:
        raise NotImplementedError

    def parse(self, files: dict[str, bytes], warmup_iters: int = 0) -> ParsedRun:
        run = self.parse_text(text_of(files, "stdout.txt") + "\n" + text_of(files, "stderr.txt"))
        return mark_warmup(run, warmup_iters) if self.marks_warmup else run


def text_of(files: dict[str, bytes], name: str) -> str:
    """A pulled file as text (empty if absent); ``\\r`` progress redraws become line breaks."""
    return files.get(name, b"").decode("utf-8", errors="replace").replace("\r", "\n")


def mark_warmup(run: ParsedRun, warmup_iters: int) -> ParsedRun:
    """Flag the first ``warmup_iters`` iterations as warm-up (for tools that do not say)."""
    for it in run.iterations[:warmup_iters]:
        it.warmup = True
    return run
