"""ImgEdit test fixtures: the shared official data and ImgEdit's two official scoring scripts written out (they
are not in the repository). The loopback OpenAI peer and an API key come from ``tests/conftest.py``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

IMGEDIT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "imgedit"


@pytest.fixture(scope="session")
def imgedit_data() -> Path:
    """``../shared/data/imgedit`` (official case and rubric files; read-only, never copied)."""
    if not (IMGEDIT_DATA / "basic_edit.json").is_file():
        pytest.skip(f"official ImgEdit data not found at {IMGEDIT_DATA}")
    return IMGEDIT_DATA


def official_step1(result_json: Path, average_score_json: Path) -> None:
    """``step1_get_avgscore.py --result_json R --average_score_json A``, as the official code does it.

    Each value's lines are split on ``': '``; a 2-part line whose right side ``isdigit()`` is a score; the
    case score is ``round(mean, 2)``; a case without any score is left out. A non-text value (e.g. an
    ``{"error": ...}`` object) crashes it with ``'dict' object has no attribute 'splitlines'``.
    """
    data = json.loads(result_json.read_text(encoding="utf-8"))
    averaged = {}
    for key, entry in data.items():
        scores = []
        for line in entry.splitlines():
            parts = line.strip().split(": ")
            if len(parts) == 2 and parts[1].isdigit():
                scores.append(int(parts[1]))
        if scores:
            averaged[key] = round(sum(scores) / len(scores), 2)
    average_score_json.write_text(json.dumps(averaged, indent=2), encoding="utf-8")


def official_step2(average_score_json: Path, basic_edit: Path, typescore_json: Path) -> None:
    """``step2_typescore.py --average_score_json A --basic_edit B --typescore_json T``: per type round(mean, 2)."""
    scores = json.loads(average_score_json.read_text(encoding="utf-8"))
    meta = json.loads(basic_edit.read_text(encoding="utf-8"))
    by_type: dict[str, list[float]] = {}
    for key, score in scores.items():
        edit_type = meta.get(key, {}).get("edit_type")
        if edit_type is not None:
            by_type.setdefault(edit_type, []).append(score)
    typescore = {t: round(sum(v) / len(v), 2) for t, v in by_type.items() if v}
    typescore_json.write_text(json.dumps(typescore, indent=2), encoding="utf-8")


@pytest.fixture
def official_scripts(tmp_path: Path) -> Callable[[Path, Path], dict[str, float]]:
    """Run step 1 then step 2 on a ``result.json`` and a case file; returns the per-type scores step 2 wrote."""
    def run(result_json: Path, basic_edit: Path) -> dict[str, float]:
        work = tmp_path / "official"
        work.mkdir(exist_ok=True)
        official_step1(result_json, work / "average_score.json")
        official_step2(work / "average_score.json", basic_edit, work / "typescore.json")
        return json.loads((work / "typescore.json").read_text(encoding="utf-8"))
    return run
