"""The scorer contract: detectors, judges and VQA models behind a benchmark's scoring stages.

A scorer is built from its options without loading anything; :meth:`Scorer.resolve` then checks, in seconds,
that everything it will need is there (weights on disk or reachable, an endpoint that answers and serves the
model name) so that a run fails before its first image rather than after the last; :meth:`Scorer.load`
loads it once per process, right before scoring. Its :meth:`Scorer.fingerprint` (plain data) names
everything that changes scores; its hash keys every scoring unit.
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.core.hashing import content_hash
from harness.core.options import Configurable


class Scorer(Configurable):
    """Base of scorers (registered under ``harness.detectors``, ``harness.judges`` or ``harness.scorers``)."""

    kind: ClassVar[str] = "scorer"
    #: how results of this scorer are labelled; numbers of different labels are never mixed
    label: ClassVar[str] = "scorer"

    def resolve(self) -> None:
        """Fail now, with one line, if something this scorer needs is missing (loads nothing heavy)."""

    def load(self) -> None:
        """Load weights or open clients (once per process, before the first batch)."""

    def close(self) -> None:
        """Release what :meth:`load` acquired."""

    def fingerprint(self) -> dict[str, Any]:
        """Plain data naming everything that changes scores."""
        return {"scorer": self.name, **self.option_fingerprint()}

    def scorer_hash(self) -> str:
        return content_hash(self.fingerprint(), 12)
