"""ImgEdit's part of the judge: its message layout, the request of a case and the cache fields of an answer.

The judge itself (concurrency, retries, refusals, the answer cache, prices) is the shared OpenAI-compatible
judge of :mod:`harness.scorers.openai_judge`. ImgEdit asks it, per case, exactly what ``basic_bench.py``
sends (docs/imgedit.md, "Judge request"): one user message of [the rubric of the case's edit type with
``<edit_prompt>`` replaced by the instruction, the original image, the edited image]. An answer is cached
under the rubric's sha256, the case key, the instruction and the sha256 of both images (docs/imgedit.md,
"Judge cache").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.scorers.openai_judge import DEFAULT_MODEL, JudgeRequest

__all__ = ["DEFAULT_MODEL", "PROTOCOL", "cache_fields", "judge_request", "rubric_text"]

#: the judge's ``protocol``: ImgEdit's message layout (part of every cache key; changing it re-asks everything)
PROTOCOL = "imgedit-basic-v1: user[text, original, edited] png data urls"


def rubric_text(rubric: str, instruction: str) -> str:
    """The rubric with the case's instruction in place of ``<edit_prompt>``."""
    return rubric.replace("<edit_prompt>", instruction)


def judge_request(key: str, rubric: str, instruction: str, source: Path, edited: Path) -> JudgeRequest:
    """One case's request: [rubric text, original image, edited image]."""
    return JudgeRequest(key, [rubric_text(rubric, instruction), source, edited])


def cache_fields(*, rubric_sha: str, case: str, instruction: str, source_sha: str, edited_sha: str) -> dict[str, Any]:
    """What an ImgEdit answer depends on besides the judge (pass to ``OpenAIJudge.cache_key``)."""
    return {"rubric_sha": rubric_sha, "case": case, "instruction": instruction, "images": [source_sha, edited_sha]}

