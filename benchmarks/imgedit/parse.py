"""Parse judge answers into the three 1-5 sub-scores: the strict parser and the official one (parity).

Pure functions: no I/O, no torch. The strict parser accepts the formatting variants judges produce
(``**Label:** 4``, ``Label: 4/5``, ``Label: 4.``, ``Label: 4 (good)``, ``"Label": 4,``), but requires
exactly the rubric's three labels, each once, each an integer 1-5; anything else is a counted
``parse_failed`` with its reason. :func:`parse_official` is ``step1_get_avgscore.py`` verbatim in
behaviour: ``line.strip().split(': ')`` with exactly two parts and ``str.isdigit()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: one "label: number" line; label = short words (letters, &, /, parentheses, hyphens), optional markdown
_SCORE_LINE = re.compile(
    r"""^[\s>*#_\-"'`]*                           # bullets, markdown, quotes
        (?P<label>[A-Za-z][A-Za-z &/()\-,']{0,80}?)  # the label
        [\s*_"'`]*:[\s*_"'`]*                        # colon, with markdown/quotes on either side
        (?P<value>-?\d+(?:\.\d+)?)                   # the score
        (?P<rest>.*)$""",
    re.VERBOSE,
)
_REST_OK = re.compile(r"^\s*(?:/\s*5|out of 5)?\s*[.,;]?\s*(?:\(.*\))?\s*[*_`\"']*\s*[,.]?\s*$", re.IGNORECASE)
_RUBRIC_LABEL = re.compile(r"^(.+?): A number from 1 to 5\.\s*$", re.MULTILINE)
NOT_SCORES = ("brief reasoning", "reasoning", "editing instruction is")


@dataclass(frozen=True)
class Parsed:
    """Strict parse of one answer: three scores in rubric order, or None and the reason."""

    scores: tuple[int, int, int] | None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.scores is not None


def rubric_labels(rubric: str) -> tuple[str, ...]:
    """The response labels a rubric asks for (its "Example Response Format" lines)."""
    return tuple(m.strip() for m in _RUBRIC_LABEL.findall(rubric))


def _norm(label: str) -> str:
    return " ".join(re.sub(r"[^a-z&/ ]", " ", label.lower()).split())


def parse_strict(text: str | None, labels: tuple[str, ...]) -> Parsed:
    """Exactly one integer 1-5 per expected label, and no other scored line; else a reason."""
    if not text or not text.strip():
        return Parsed(None, "empty answer")
    wanted = {_norm(label): i for i, label in enumerate(labels)}
    found: dict[int, int] = {}
    extra: list[str] = []
    for raw in text.splitlines():
        m = _SCORE_LINE.match(raw.strip())
        if not m or _norm(m["label"]).startswith(NOT_SCORES):
            continue
        if not _REST_OK.match(m["rest"]):
            continue  # "Label: 4 apples and ..." is prose, not a score line
        name = _norm(m["label"])
        if name not in wanted:
            extra.append(m["label"].strip())
            continue
        index = wanted[name]
        if index in found:
            return Parsed(None, f"label {labels[index]!r} scored twice")
        value = m["value"]
        if not value.lstrip("-").isdigit():
            return Parsed(None, f"{labels[index]}: {value} is not an integer")
        score = int(value)
        if not 1 <= score <= 5:
            return Parsed(None, f"{labels[index]}: {score} is out of range 1-5")
        found[index] = score
    total = len(found) + len(extra)
    if extra:
        return Parsed(None, f"{total} scores (unexpected label(s) {', '.join(map(repr, extra))}); expected exactly "
                            f"{', '.join(labels)}")
    if len(found) != len(labels):
        missing = [labels[i] for i in range(len(labels)) if i not in found]
        return Parsed(None, f"{len(found)} of {len(labels)} scores (missing {', '.join(missing)})")
    return Parsed(tuple(found[i] for i in range(len(labels))))  # type: ignore[arg-type]


def parse_official(text: str) -> list[int]:
    """``extract_scores_and_average``'s parse: lines ``X: D`` split on exactly ``': '`` with digit-only D."""
    scores = []
    for line in text.splitlines():
        parts = line.strip().split(": ")
        if len(parts) == 2 and parts[1].isdigit():
            scores.append(int(parts[1]))
    return scores


def official_case_score(text: str) -> float | None:
    """``round(sum/len, 2)`` of the official parse, or None (the official script drops the case)."""
    scores = parse_official(text)
    return round(sum(scores) / len(scores), 2) if scores else None
