"""A case's judge attempts → its scores, in the strict and the parity reading of the same answers.

Every attempt asks both questions, SC (instruction, source, edited) and PQ (edited), as the official
``VIEScore.evaluate`` does: it loops while either answer does not parse, re-sending both, and from the second
attempt on a reply without braces becomes a random guess (docs/gedit.md, "Retries and failures"). We ask again
while either reading needs it, up to ``max_attempts``:

* **parity** (:func:`official_outcome`): the official loop replayed on the recorded answers: the attempt at
  which it would stop, its SC and PQ (``min`` of each score list), and which of them it would have *guessed*
  (those are never drawn; the aggregation reports the interval they allow). A refusal or a failed request is the
  empty reply the official client returns. A sample the official code would rerun (an exception in the
  evaluation) starts a fresh evaluation at the next attempt. Not stopped within the attempts: undecided.
* **strict** (:func:`strict_outcome`): per question, the first answer with exactly two scores from 0 to 10;
  never a guess. Both found: ``scored``; a request that brought no answer: ``judge_failed`` (retried by the
  next run); otherwise ``parse_failed`` with the reasons.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.benchmarks.gedit.parse import ERROR, GUESS, official_overall, official_parse, official_value, strict_scores

KINDS: tuple[str, str] = ("SC", "PQ")


@dataclass(frozen=True)
class Reply:
    """One request's outcome: the answer text, or none with the reason (``refused``: a content-filter refusal,
    which asking again will not change; ``failed``: no answer after the judge's retries, retried next run)."""

    answer: str | None
    reason: str = ""
    refused: bool = False

    @property
    def failed(self) -> bool:
        return self.answer is None and not self.refused

    @property
    def official_text(self) -> str:
        """What the official client hands the parser: the answer, or "" after an API error."""
        return self.answer if self.answer is not None else ""

    def record(self) -> dict[str, Any]:
        return {"answer": self.answer, "reason": self.reason, "refused": self.refused}

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Reply:
        return cls(row.get("answer"), row.get("reason", ""), bool(row.get("refused")))


Attempt = Mapping[str, Reply]


@dataclass(frozen=True)
class Official:
    """Where the official loop stops (``attempt``, 1-based) and with what; ``None`` values are guesses."""

    decided: bool
    attempt: int | None = None
    sc: float | None = None
    pq: float | None = None
    sc_guess: bool = False
    pq_guess: bool = False

    def record(self) -> dict[str, Any]:
        return {"decided": self.decided, "attempt": self.attempt, "SC": self.sc, "PQ": self.pq,
                "SC_guess": self.sc_guess, "PQ_guess": self.pq_guess}


@dataclass(frozen=True)
class Strict:
    status: str
    reason: str = ""
    sc: float | None = None
    pq: float | None = None

    @property
    def o(self) -> float | None:
        return official_overall(self.sc, self.pq) if self.sc is not None and self.pq is not None else None


def official_outcome(attempts: Sequence[Attempt]) -> Official:
    """Replay the official evaluation loop on the attempts' answers."""
    tries = 0
    for number, attempt in enumerate(attempts, 1):
        tries += 1
        parsed = [official_parse(attempt[k].official_text, give_up=tries > 1) for k in KINDS]
        if any(p is False for p in parsed):
            continue
        sc, pq = (official_value(p) for p in parsed)
        numbers = sc not in (GUESS, ERROR) and pq not in (GUESS, ERROR)
        if ERROR in (sc, pq) or (numbers and official_overall(sc, pq) is None):
            tries = 0  # the driver catches the exception and evaluates the sample again from the start
            continue
        return Official(True, number, None if sc == GUESS else sc, None if pq == GUESS else pq, sc == GUESS,
                        pq == GUESS)
    return Official(False)


def strict_outcome(attempts: Sequence[Attempt]) -> Strict:
    """The first valid answer to each question over the attempts; a failure names its reason."""
    found: dict[str, float] = {}
    why: dict[str, str] = {}
    refused: dict[str, str] = {}
    for attempt in attempts:
        for kind in KINDS:
            reply = attempt[kind]
            if kind in found:
                continue
            if reply.failed:
                return Strict("judge_failed", f"{kind}: {reply.reason}")
            if reply.answer is None:
                refused[kind] = reply.reason
                continue
            scores, reason = strict_scores(reply.answer)
            if scores is None:
                why[kind] = reason
            else:
                found[kind] = min(scores)
    if len(found) == len(KINDS):
        return Strict("scored", "", found["SC"], found["PQ"])
    missing = [k for k in KINDS if k not in found]
    if any(k in refused for k in missing):
        return Strict("judge_failed", "; ".join(f"{k}: {refused[k]}" for k in missing if k in refused))
    return Strict("parse_failed", "; ".join(f"{k}: {why[k]}" for k in missing))


def needs_another(attempts: Sequence[Attempt], max_attempts: int) -> bool:
    """Whether to ask both questions again: a reading still lacks its answer, no request failed for good this
    round, and fewer than ``max_attempts`` attempts were made."""
    if not attempts or len(attempts) >= max_attempts or any(r.failed for r in attempts[-1].values()):
        return not attempts
    return not official_outcome(attempts).decided or strict_outcome(attempts).status != "scored"
