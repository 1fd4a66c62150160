"""Our GenEval decisions against the official decision code, on thousands of random raw detection sets.

The reference is ``official_decisions.py`` beside this file: the official ``evaluate_images.py`` decision code
transcribed, run as a script through numpy on the same float32 arrays, with numpy's SIMD sorts disabled so that
``np.argsort`` is the introsort that the official numpy 1.23.1 runs. The sets are drawn to sit on the
boundaries: scores at and next to float32(0.3) and float32(0.9), ties, more than 16 rows per class, boxes that
overlap around the NMS thresholds, positions on the edges of the relation rule (0.5 and 1e-3), all six tags,
colour clauses fed the same fake CLIP answers. Run with ``-s`` to see the agreement figures.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.benchmarks.geneval import rules
from harness.benchmarks.geneval.rules import (
    COLORS,
    RELATIONS,
    TAGS,
    ClassDetections,
    Options,
    classic_argsort,
    color_requests,
    detection_details,
    evaluate,
    filter_detections,
)

HERE = Path(__file__).resolve().parent
CASES = 6000
SEED = 20240611
POOL = ("dog", "cat", "bench", "clock")
F32 = np.float32


def neighbours(x: float) -> list[np.float32]:
    f = F32(x)
    return [np.nextafter(f, F32(0)), f, np.nextafter(f, F32(1))]


BOUNDARY_SCORES = neighbours(0.3) + neighbours(0.9) + neighbours(0.5) + neighbours(0.1)


def classic_numpy_env() -> dict[str, str]:
    """The environment for a child Python whose ``np.argsort`` is numpy's classic introsort (no SIMD sort)."""
    try:
        from numpy._core import _multiarray_umath as umath
    except ImportError:  # numpy 1.x
        from numpy.core import _multiarray_umath as umath
    found = [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]
    return {**os.environ, "NPY_DISABLE_CPU_FEATURES": " ".join(found), "PYTHONHASHSEED": "0"}


def run_classic(args: list[str], cwd: Path, python: str = sys.executable) -> None:
    """Run ``python args`` in ``cwd``; this Python runs with numpy's SIMD sorts disabled. Another ``python`` runs
    as it is (a numpy 1.23 there sorts as the official code)."""
    env = classic_numpy_env() if python == sys.executable else {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run([python, *args], env=env, capture_output=True, text=True, cwd=cwd, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def official_results(cases: list[dict], workdir: Path, python: str = sys.executable) -> list[dict]:
    """The official transcription's ``correct``, ``reason`` and ``details`` for each case, run by ``python``."""
    portable = [{**c, "rows": {n: r.tolist() for n, r in c["rows"].items()}} for c in cases]  # any numpy reads it
    (workdir / "cases.pkl").write_bytes(pickle.dumps(portable))
    run_classic([str(HERE / "official_decisions.py"), "cases.pkl", "results.pkl"], workdir, python)
    return pickle.loads((workdir / "results.pkl").read_bytes())


def agreement(official: list[dict], mine: list[dict]) -> dict[str, int]:
    """How many cases agree: verdicts, reasons (modulo relation order), details."""
    pairs = list(zip(official, mine, strict=True))
    return {"cases": len(pairs), "verdicts": sum(o["correct"] == m["correct"] for o, m in pairs),
            "reasons": sum(modulo_relation_order(o["reason"]) == m["reason"] for o, m in pairs),
            "details": sum(o["details"] == m["details"] for o, m in pairs)}


def generate_cases(count: int = CASES, seed: int = SEED) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [make_case(rng, i) for i in range(count)]


# -- random detection sets --------------------------------------------------------------------------------------
def make_options(rng: np.random.Generator, tag: str) -> dict[str, float]:
    options: dict[str, float] = {}
    if rng.random() < 0.3:
        options["max_overlap"] = float(rng.choice([0.3, 0.5, 0.75, 0.9, 1 / 3]))
    if tag == "position" and rng.random() < 0.3:
        options["position_threshold"] = float(rng.choice([0.0, 0.05, 0.25]))
    if rng.random() < 0.1:
        options["threshold"] = float(rng.choice([0.1, 0.5]))
    return options


def make_metadata(rng: np.random.Generator, tag: str) -> dict:
    a, b = (str(c) for c in rng.choice(POOL, 2, replace=False))
    color = lambda: str(rng.choice(COLORS))  # noqa: E731
    count = lambda: int(rng.choice([1, 1, 1, 2]))  # noqa: E731
    if tag == "single_object":
        include, exclude = [{"class": a, "count": 1}], []
    elif tag == "two_object":
        include, exclude = [{"class": a, "count": 1}, {"class": b, "count": 1}], []
    elif tag == "counting":
        n = int(rng.integers(2, 5))
        include, exclude = [{"class": a, "count": n}], [{"class": a, "count": n + 1}]
    elif tag == "colors":
        include, exclude = [{"class": a, "count": count(), "color": color()}], []
    elif tag == "position":
        include = [{"class": b, "count": count()},
                   {"class": a, "count": count(), "position": [str(rng.choice(RELATIONS)), 0]}]
        exclude = []
    else:
        include = [{"class": a, "count": count(), "color": color()}, {"class": b, "count": count(), "color": color()}]
        exclude = []
    meta = {"tag": tag, "include": include, "prompt": f"{tag} prompt"}
    return {**meta, "exclude": exclude} if exclude else meta


def make_scores(rng: np.random.Generator, n: int, tag: str) -> np.ndarray:
    high = 0.85 if tag == "counting" else 0.0
    pool = np.concatenate([rng.choice(BOUNDARY_SCORES, 2), rng.uniform(high, 1, 2).astype(F32)])
    kind = rng.choice(3, n, p=[0.45, 0.25, 0.3])  # a tie with the class's pool, a boundary score, uniform
    ties = rng.choice(pool, n)
    boundary = rng.choice(BOUNDARY_SCORES, n)
    uniform = rng.uniform(high, 1, n).astype(F32)
    return np.where(kind == 0, ties, np.where(kind == 1, boundary, uniform)).astype(F32)


def nudge(rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
    """The box with each coordinate moved by up to 3 float32 steps: across an edge, if it was on one."""
    return (box + rng.integers(-3, 4, 4) * np.spacing(box)).astype(F32)


def near_boundary(rng: np.random.Generator, anchor: np.ndarray, pt: float, relation: str) -> np.ndarray:
    """A box placed against ``anchor`` on an edge of the relation rule (component 0.5, 1e-3, or diagonal),
    mostly on the side of ``relation``."""
    wa, ha = rng.choice([0.0, 0.3, 1.0, 2.5, 3.0, 7.0, 10.0, 41.0], 2)
    wb, hb = float(anchor[2] - anchor[0]), float(anchor[3] - anchor[1])
    mx, my = pt * (wa + wb), pt * (ha + hb)
    kind = rng.integers(4) if rng.random() < 0.3 else int(relation in ("above", "below"))
    if kind < 2:  # the shrunk component is half the offset: the 0.5 edge, horizontally or vertically
        other = float(rng.choice([0.0, rng.uniform(0.01, 5), rng.uniform(5, 100)]))
        m = mx if kind == 0 else my
        main = (2 * m + np.sqrt(m * m + 0.75 * other * other)) / 1.5
        off = (main, other) if kind == 0 else (other, main)
    elif kind == 2:  # shrunk to 1e-3 on one axis, less on the other: the "too close" edge
        off = (mx + 1e-3, my + 1e-3 * float(rng.random()))
    else:  # diagonal
        d = float(rng.choice([rng.integers(1, 100), rng.uniform(0.01, 5)]))
        off = (d, d)
    sx, sy = rng.choice([-1.0, 1.0], 2)
    if rng.random() < 0.7:  # on the side of the relation
        sx, sy = {"left of": (-1, sy), "right of": (1, sy), "above": (sx, -1), "below": (sx, 1)}[relation]
    cx = (anchor[0] + anchor[2]) / 2 + sx * off[0]
    cy = (anchor[1] + anchor[3]) / 2 + sy * off[1]
    return nudge(rng, np.array([cx - wa / 2, cy - ha / 2, cx + wa / 2, cy + ha / 2], F32))


def overlapping(rng: np.random.Generator, box: np.ndarray) -> np.ndarray:
    """A box overlapping ``box``: IoU at an exact ratio (1/2, 1/3, 3/10, 3/4, 9/10: the NMS thresholds used),
    on fractional coordinates (so float32 and float64 differences differ), or a jittered copy."""
    kind = rng.integers(3)
    if kind == 2:
        return (box + rng.choice([0.0, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0], 4)).astype(F32)
    num, den = ((1, 2), (1, 3), (3, 10), (3, 4), (9, 10))[rng.integers(5)]
    h = float(box[3] - box[1]) + 1  # "+1" heights: inter = h, union = h * den / num when B contains A
    grown = box.astype(np.float64)
    grown[3] = box[1] + h * den / num - 1
    return nudge(rng, grown) if kind == 1 else grown.astype(F32)


def random_boxes(rng: np.random.Generator, n: int, small: bool) -> np.ndarray:
    """Mask-like integer boxes, or fractional ones; ``small`` keeps them near the origin (fine float32 steps)."""
    if small:
        xy = rng.uniform(0, 8, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(0, 4, (n, 2))], axis=1).astype(F32)
    xy = rng.integers(0, 400, (n, 2)).astype(np.float64)
    box = np.concatenate([xy, xy + rng.integers(0, 150, (n, 2))], axis=1)
    return (box + (rng.random((n, 1)) < 0.3) * rng.random((n, 4)) * 10).astype(F32)


def make_boxes(rng: np.random.Generator, n: int, small: bool, placed: tuple | None = None) -> np.ndarray:
    """``placed`` = (target boxes, best first; position threshold; relation): most rows go on the edges."""
    boxes = random_boxes(rng, n, small)
    for i in range(n):
        if placed is not None and rng.random() < 0.6:
            anchors, pt, relation = placed
            anchor = anchors[0] if rng.random() < 0.7 else anchors[rng.integers(len(anchors))]
            boxes[i] = near_boundary(rng, anchor, pt, relation)
        elif i > 0 and rng.random() < 0.3:
            boxes[i] = overlapping(rng, boxes[rng.integers(i)])
    return boxes


def make_case(rng: np.random.Generator, index: int) -> dict:
    tag = TAGS[index % len(TAGS)]
    options = make_options(rng, tag)
    metadata = make_metadata(rng, tag)
    pt = options.get("position_threshold", 0.1)
    named = [c["class"] for c in metadata["include"]]
    rows: dict[str, np.ndarray] = {}
    for name in named + [c for c in rng.permutation(POOL).tolist() if c not in named]:
        if rng.random() < 0.15:
            continue  # class not detected at all
        n = int(rng.integers(17, 40)) if rng.random() < 0.2 else int(rng.integers(1, 7))
        scores = make_scores(rng, n, tag)
        placed = None
        if tag == "position" and name == named[1] and named[0] in rows:  # placed against the best targets
            target = rows[named[0]]
            placed = (target[np.argsort(-target[:, 4], kind="stable"), :4], pt, metadata["include"][1]["position"][0])
        boxes = make_boxes(rng, n, rng.random() < (0.5 if tag == "position" else 0.2), placed)
        rows[name] = np.concatenate([boxes, scores[:, None]], axis=1).astype(F32)
    wanted = {c["class"]: c["color"] for c in metadata["include"] if "color" in c}
    colors = {(name, i): wanted[name] if name in wanted and rng.random() < 0.7 else str(rng.choice(COLORS))
              for name, r in rows.items() for i in range(len(r))}
    return {"options": options, "metadata": metadata, "rows": rows, "colors": colors}


def ours(case: dict) -> dict:
    """Our pipeline on one case, as ``GenEvalScorer.score_batch`` runs it (colours from the same table)."""
    options = Options(**case["options"])
    raw = {name: ClassDetections(r[:, :4], r[:, 4], list(range(len(r)))) for name, r in case["rows"].items()}
    detected = filter_detections(raw, case["metadata"]["tag"], options)
    colors = {i: [case["colors"][(name, d.mask)] for d in objs]
              for i, name, objs in color_requests(case["metadata"], detected)}
    verdict = evaluate(case["metadata"], detected, colors, options)
    return {"correct": verdict.correct, "reason": verdict.reason, "details": json.dumps(detection_details(detected))}


FOUND_RELATIONS = re.compile(r"^(expected .* target, found )(.*)( target)$")


def modulo_relation_order(reason: str) -> str:
    """The reason with each "found X and Y target" list sorted (the official code joins a set)."""
    lines = []
    for line in reason.split("\n"):
        m = FOUND_RELATIONS.match(line)
        lines.append(m[1] + " and ".join(sorted(m[2].split(" and "))) + m[3] if m else line)
    return "\n".join(lines)


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> tuple[list[dict], list[dict], list[dict]]:
    cases = generate_cases()
    official = official_results(cases, tmp_path_factory.mktemp("official"))
    return cases, official, [ours(c) for c in cases]


def test_every_verdict_reason_and_detail_agrees_with_the_official_code(compared):
    cases, official, mine = compared
    print(f"\nGenEval agreement with the official decision code: {json.dumps(agreement(official, mine))}")
    for case, o, m in zip(cases, official, mine, strict=True):
        assert (m["correct"], m["reason"], m["details"]) == (
            o["correct"], modulo_relation_order(o["reason"]), o["details"]), case


def load_official():
    spec = importlib.util.spec_from_file_location("official_decisions", HERE / "official_decisions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cases_sit_on_the_boundaries(compared):
    """The comparison is only as good as its cases: they must reach every path and boundary, both verdicts."""
    cases, official, _ = compared
    by_tag = {tag: [o["correct"] for c, o in zip(cases, official, strict=True) if c["metadata"]["tag"] == tag]
              for tag in TAGS}
    assert all(0.05 < sum(v) / len(v) < 0.95 for v in by_tag.values()), {t: sum(v) for t, v in by_tag.items()}
    rows = [r for c in cases for r in c["rows"].values()]
    at_threshold = sum(bool(np.any(r[:, 4] == F32(0.3)) | np.any(r[:, 4] == F32(0.9))) for r in rows)
    tied_survivors = sum(len(set(s.tolist())) < len(s) for r in rows for s in [r[r[:, 4] > F32(0.3), 4]])
    assert at_threshold > 1000 and tied_survivors > 1000
    assert sum(len(r) > 16 for r in rows) > 1000
    assert sum("max_overlap" in c["options"] for c in cases) > 1000
    reasons = "\n".join(o["reason"] for o in official)
    assert reasons.count(" target, found ") > 300 and reasons.count("; and ") > 500
    assert reasons.count("no target for ") > 50 and reasons.count("<") > 100
    # positions on the float32 edge: the official relation code run on float64 copies decides otherwise
    reference, on_edge = load_official(), 0
    for case in (c for c in cases if c["metadata"]["tag"] == "position"):
        names = [clause["class"] for clause in case["metadata"]["include"][::-1]]  # A, then its target B
        raw = {n: ClassDetections(r[:, :4], r[:, 4]) for n, r in case["rows"].items() if n in names}
        detected = filter_detections(raw, "position", Options(**case["options"]))
        if all(n in detected for n in names):
            reference.configure(case["options"])
            pair = [(detected[n][0].box,) for n in names]
            wide = [(box.astype(np.float64),) for (box,) in pair]
            on_edge += reference.relative_position(*pair) != reference.relative_position(*wide)
    assert on_edge > 20, on_edge


# -- numpy's classic argsort ---------------------------------------------------------------------------------------
def numpy_argsorts(arrays: list[np.ndarray], tmp_path: Path) -> list[np.ndarray]:
    """``np.argsort`` of each array, by numpy's classic introsort (a child Python with the SIMD sorts disabled)."""
    (tmp_path / "arrays.pkl").write_bytes(pickle.dumps(arrays))
    code = ("import pickle, numpy as np; a = pickle.load(open('arrays.pkl', 'rb')); "
            "pickle.dump([np.argsort(x) for x in a], open('orders.pkl', 'wb'))")
    run_classic(["-c", code], tmp_path)
    return pickle.loads((tmp_path / "orders.pkl").read_bytes())


def test_classic_argsort_is_numpys_introsort(tmp_path):
    rng = np.random.default_rng(7)
    arrays = [rng.choice(rng.uniform(0, 1, int(rng.integers(1, 6))).astype(F32), int(rng.integers(0, 120)))
              for _ in range(3000)]
    arrays += [np.sort(a) for a in arrays[:200]] + [np.sort(a)[::-1].copy() for a in arrays[:200]]
    arrays += [np.full(n, F32(0.5)) for n in range(40)] + [rng.uniform(0, 1, 1000).astype(F32)]
    expected = numpy_argsorts(arrays, tmp_path)
    assert all(np.array_equal(classic_argsort(a), e) for a, e in zip(arrays, expected, strict=True))
    ties = [a for a in arrays if 1 < len(a) <= 16 and not np.array_equal(np.argsort(a, kind="stable"),
                                                                         np.argsort(a))]
    print(f"\n{len(ties)} of these arrays of 2-16 values are ordered differently by this numpy's np.argsort")


class Adversary:
    """McIlroy's "antiquicksort" gas: values decided only when compared, so as to make quicksort go deep."""

    def __init__(self, n: int):
        self.val = [None] * n
        self.solid, self.candidate = 0, None

    def item(self, i: int) -> Adversary.Item:
        return Adversary.Item(self, i)

    def compare(self, x: int, y: int) -> int:
        if self.val[x] is None and self.val[y] is None:
            self.freeze(x if x == self.candidate else y)
        if self.val[x] is None:
            self.candidate = x
        elif self.val[y] is None:
            self.candidate = y
        return (self.val[x] if self.val[x] is not None else len(self.val)) - (
            self.val[y] if self.val[y] is not None else len(self.val))

    def freeze(self, i: int) -> None:
        self.val[i], self.solid = self.solid, self.solid + 1

    class Item:
        def __init__(self, adversary: Adversary, i: int):
            self.adversary, self.i = adversary, i

        def __lt__(self, other: Adversary.Item) -> bool:
            return self.adversary.compare(self.i, other.i) < 0

        def __eq__(self, other: object) -> bool:  # numpy's NaN test compares a value with itself: no gas spent
            if not isinstance(other, Adversary.Item):
                return False
            return self.i == other.i or self.adversary.compare(self.i, other.i) == 0

        def __ne__(self, other: object) -> bool:
            return not self == other


def test_classic_argsort_heapsort_fallback(tmp_path, monkeypatch):
    """Inputs that drive numpy's quicksort past its depth limit go to heapsort, in both implementations."""
    arrays = []
    for n in (40, 100, 300):
        adversary = Adversary(n)
        rules._aquicksort([adversary.item(i) for i in range(n)])
        arrays.append(np.array([v if v is not None else n for v in adversary.val], F32))
    heapsorts = []
    original = rules._aheapsort
    monkeypatch.setattr(rules, "_aheapsort", lambda *a: heapsorts.append(a[3]) or original(*a))
    expected = numpy_argsorts(arrays, tmp_path)
    for a, e in zip(arrays, expected, strict=True):
        heapsorts.clear()
        assert np.array_equal(classic_argsort(a), e)
        assert heapsorts, "the adversarial input did not reach the heapsort fallback"
