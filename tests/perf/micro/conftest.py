"""Micro-benchmarks of the hot pure paths: shared data (built once, never timed) and the regression gate.

Run them with ``tox -e perf``, or by hand::

    pytest tests/perf/micro --benchmark-only --benchmark-storage=file://.benchmarks --benchmark-autosave \
        --benchmark-compare --benchmark-compare-fail=median:20%

The plain test run skips them (``--benchmark-skip`` in pyproject). Two additions to pytest-benchmark's own
compare:

* with ``--benchmark-compare`` and no saved run yet for this machine, the run is not compared (the plugin
  would stop with a usage error) and is saved as the baseline;
* a run that fails ``--benchmark-compare-fail`` is not kept as the latest saved run, so the next run is still
  compared with the last good one. To accept a slowdown on purpose, delete ``.benchmarks/`` (a new baseline).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.benchmarks.geneval.rules import COLORS, ClassDetections, color_requests, evaluate, filter_detections

IMAGES_PER_PROMPT = 4
SEED = 20240613


# -- the gate ----------------------------------------------------------------------------------------------
def _saved_runs(config: pytest.Config) -> list[Path] | None:
    """This machine's saved runs in a ``file://`` benchmark storage (None for another kind of storage)."""
    from pytest_benchmark.utils import get_machine_id

    storage = str(config.getoption("benchmark_storage", "file://./.benchmarks"))
    if "://" in storage and not storage.startswith("file://"):
        return None
    folder = Path(storage.removeprefix("file://")) / get_machine_id()
    return sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.json"))


_BEFORE = pytest.StashKey[list[Path]]()
_NOTE = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """No saved run yet: run without comparing, so the first run passes and becomes the baseline."""
    if config.getoption("benchmark_compare", None) is not True:  # a run named by number must exist
        return
    saved = _saved_runs(config)
    if saved is None:
        return
    config.stash[_BEFORE] = saved
    if saved:
        config.stash[_NOTE] = f"benchmark gate: comparing with {saved[-1].name}"
    else:
        config.option.benchmark_compare = None
        config.option.benchmark_compare_fail = None
        config.stash[_NOTE] = "benchmark gate: no saved run to compare with; this run is saved as the baseline"


def pytest_report_header(config: pytest.Config) -> str | None:
    return config.stash.get(_NOTE, None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Runs after pytest-benchmark saved this run and found its regressions: a regressed run is deleted, so
    that it never becomes the run the next one is compared with."""
    config = session.config
    bench = getattr(config, "_benchmarksession", None)
    if bench is None or not bench.performance_regressions or not config.stash.get(_BEFORE, None):
        return
    before = config.stash[_BEFORE]
    for path in sorted(set(_saved_runs(config) or []) - set(before)):
        path.unlink()
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"benchmark gate: {path.name} regressed, deleted; the next run compares with "
                                f"{before[-1].name} again")


# -- GenEval: 553 official prompts x 4 images of synthetic float32 detections -------------------------------
@dataclass(frozen=True)
class Image:
    """One image to judge: its prompt's metadata, the detector's raw output, the colours CLIP would find."""

    name: str
    item_id: str
    metadata: dict[str, Any]
    raw: dict[str, ClassDetections]
    palette: dict[int, list[str]]


def _detections(rng: np.random.Generator, count: int) -> ClassDetections:
    """``count`` float32 boxes in a 512x512 image with scores around the thresholds (0.3, and 0.9 for counting)."""
    xy = rng.uniform(0, 400, size=(count, 2))
    wh = rng.uniform(16, 112, size=(count, 2))
    return ClassDetections(np.hstack([xy, xy + wh]).astype(np.float32),
                           rng.uniform(0.25, 1.0, size=count).astype(np.float32))


@pytest.fixture(scope="session")
def geneval_images(shared_data: Path) -> list[Image]:
    """2,212 images: per prompt 4 images; per included class 0 to count+2 detections, plus 2 distractor
    classes and any excluded class; a fixed seed, so every run judges the same data."""
    rng = np.random.default_rng(SEED)
    lines = (shared_data / "geneval" / "evaluation_metadata.jsonl").read_text().splitlines()
    classes = (shared_data / "geneval" / "object_names.txt").read_text().split("\n")
    classes = [c for c in classes if c]
    images = []
    for index, line in enumerate(lines):
        meta = json.loads(line)
        for k in range(IMAGES_PER_PROMPT):
            raw = {}
            for clause in [*meta["include"], *meta.get("exclude", [])]:
                raw[clause["class"]] = _detections(rng, int(rng.integers(0, clause["count"] + 3)))
            for name in rng.choice(classes, size=2, replace=False):
                raw.setdefault(str(name), _detections(rng, int(rng.integers(1, 4))))
            palette = {i: [c["color"] if rng.random() < 0.75 else str(rng.choice(COLORS)) for _ in range(8)]
                       for i, c in enumerate(meta["include"]) if "color" in c}
            images.append(Image(f"{index:05d}/samples/{k:04d}.png", f"{index:05d}", meta, raw, palette))
    return images


def judge_images(images: Sequence[Image]) -> list[dict[str, Any]]:
    """The scorer's pure path per image: filter, colour requests, evaluate; a record as the scorer writes it."""
    records = []
    for img in images:
        detected = filter_detections(img.raw, img.metadata["tag"])
        colors = {i: img.palette[i][:len(objs)] for i, _, objs in color_requests(img.metadata, detected)}
        verdict = evaluate(img.metadata, detected, colors)
        records.append({"image": img.name, "item_id": img.item_id, "tag": img.metadata["tag"],
                        "correct": verdict.correct, "reason": verdict.reason, "metadata": img.metadata,
                        "details": {name: [d.box5() for d in dets] for name, dets in detected.items()},
                        "colors": {str(i): v for i, v in colors.items()}})
    return records


@pytest.fixture(scope="session")
def judge() -> Callable[[Sequence[Image]], list[dict[str, Any]]]:
    """:func:`judge_images` (the timed GenEval path)."""
    return judge_images


@pytest.fixture(scope="session")
def geneval_records(geneval_images: list[Image]) -> list[dict[str, Any]]:
    """The 2,212 per-image records of the rules (computed once, untimed)."""
    return judge_images(geneval_images)


@pytest.fixture(scope="session")
def scored_records(geneval_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as the scoring stage keeps them: with a unit key, the image's sha256 and the prompt."""
    from harness.core.hashing import content_hash

    return [{**r, "key": content_hash({"image": r["image"], "scorer": "micro"}, 24),
             "sha256": content_hash(r["image"], 64), "prompt": r["metadata"]["prompt"]} for r in geneval_records]


# -- ImgEdit: 737 Basic cases, judge answers in the formats judges produce --------------------------------------
@dataclass(frozen=True)
class Answer:
    """One judge answer: its case, edit type, rubric labels, format, text, the scores the strict parser reads in
    it (None: it fails), and whether the official parser keeps any score of it."""

    case: str
    edit_type: str
    labels: tuple[str, ...]
    form: str
    text: str
    strict_scores: tuple[int, ...] | None
    official_keeps: bool


def _lines(labels: Sequence[str], scores: Sequence[int], form: str) -> list[str]:
    pairs = list(zip(labels, scores, strict=True))
    return {
        "plain": [f"{lb}: {s}" for lb, s in pairs],
        "bold": [f"**{lb}:** {s}" for lb, s in pairs],
        "of5": [f"- {lb}: {s}/5" for lb, s in pairs],
        "notes": [f"{lb}: {s}{'.' if i % 2 else ' (good)'}" for i, (lb, s) in enumerate(pairs)],
        "json": ["{", *[f'"{lb}": {s},' for lb, s in pairs], "}"],
        "two": [f"{lb}: {s}" for lb, s in pairs[:2]],
        "ten": [f"{pairs[0][0]}: 10", *[f"{lb}: {s}" for lb, s in pairs[1:]]],
        "extra": [*[f"{lb}: {s}" for lb, s in pairs], "Overall: 3"],
        "refusal": ["I cannot evaluate these images."],
        "empty": [],
    }[form]


#: answer formats: how often judges produce them, whether the strict parser reads them, whether the official
#: parser (``split(': ')`` and ``isdigit``) keeps any score of them; "empty" stands for a judge that failed
FORMS = {"plain": (0.50, True, True), "bold": (0.10, True, False), "of5": (0.08, True, False),
         "notes": (0.08, True, False), "json": (0.06, True, False), "two": (0.05, False, True),
         "ten": (0.04, False, True), "extra": (0.04, False, True), "refusal": (0.03, False, False),
         "empty": (0.02, False, False)}


@pytest.fixture(scope="session")
def imgedit_answers(shared_data: Path) -> list[Answer]:
    """One answer per official Basic case (737), formats drawn with a fixed seed."""
    from harness.benchmarks.imgedit.parse import rubric_labels

    folder = shared_data / "imgedit"
    if not (folder / "basic_edit.json").is_file():
        pytest.skip(f"official ImgEdit data not found at {folder}")
    cases = json.loads((folder / "basic_edit.json").read_text())
    rubrics = json.loads((folder / "prompts.json").read_text())
    rng = np.random.default_rng(SEED)
    names = list(FORMS)
    weights = np.array([FORMS[f][0] for f in names])
    answers = []
    for key, case in cases.items():
        labels = rubric_labels(rubrics[case["edit_type"]])
        scores = [int(s) for s in rng.integers(1, 6, size=len(labels))]
        form = str(rng.choice(names, p=weights / weights.sum()))
        body = _lines(labels, scores, form)
        text = "\n".join(["Brief reasoning: recorded.", *body]) if body else ""
        _, strict_ok, official_ok = FORMS[form]
        answers.append(Answer(key, case["edit_type"], labels, form, text, tuple(scores) if strict_ok else None,
                              official_ok))
    return answers


# -- adb: the project's transport against the loopback fake adbd ------------------------------------------------
@pytest.fixture(scope="session")
def adb_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An ``AdbShellDevice`` connected to the fake adbd (its own thread, 127.0.0.1), with an adb-shell key."""
    pytest.importorskip("adb_shell")
    from adb_shell.auth.keygen import keygen

    from tests.device.conftest import make_device, make_sandbox
    from tests.peers.fake_adbd import FakeAdbd

    root = tmp_path_factory.mktemp("adb")
    key = root / "adbkey"
    keygen(str(key))
    sandbox = make_sandbox(root / "phone")
    with FakeAdbd(sandbox, known_keys=[Path(str(key) + ".pub").read_bytes()]) as adbd:
        dev = make_device(adbd, key)
        dev.connect()
        yield dev
        dev.close()
