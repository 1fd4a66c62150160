"""GenEval decision rules as a pure functional core: detections in, verdicts out.

No torch and no I/O: float32 numpy arrays and plain data in, plain data out, so every rule is unit-tested case
by case. The official code lives in ``evaluation/evaluate_images.py`` of djghosh13/geneval @ af4902f; its
decisions are reproduced exactly, on the same float32 arithmetic as under its pinned numpy 1.23.1:

* scores are compared with the threshold in float32 (a score of exactly ``float32(0.3)`` is dropped);
* detections are ordered by numpy 1.23's ``np.argsort(scores)[::-1]`` (:func:`classic_argsort`), so ties end
  up in reverse detector order for up to 16 rows, and in introsort order beyond;
* ``relative_position`` computes on float32 arrays, IoU with numpy 1.x scalar promotion (:func:`box_iou`).

The one difference left: position failure reasons list the relations sorted (the official code joins a set).

Colour classification needs CLIP, so evaluation is split in two pure steps around it:
:func:`color_requests` says which objects need a colour (only clauses whose count check passed, as the
official code classifies only then), and :func:`evaluate` takes the colours found for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")
SMALL_QUICKSORT = 15  # numpy's quicksort leaves slices of at most 16 elements to insertion sort


@dataclass(frozen=True)
class Options:
    """The evaluator's constants (official defaults); overridable like the official ``--options``."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0  # 1.0 disables NMS, the official default
    position_threshold: float = 0.1

    @property
    def min_score(self) -> float:
        """Detections at or below this score can never survive filtering for any tag."""
        return min(self.threshold, self.counting_threshold)


@dataclass(frozen=True, eq=False)
class Detection:
    """One detection of one class: float32 box ``[x1, y1, x2, y2]`` in image pixels, float32 score, opaque mask.

    Boxes and scores given in another type are rounded to float32, the detector output the official code reads.
    """

    box: Any
    score: Any
    mask: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", np.asarray(self.box, dtype=np.float32).reshape(4))
        object.__setattr__(self, "score", np.float32(self.score))

    def box5(self) -> list[float]:
        """``[x1, y1, x2, y2, score]`` as the official ``details`` field writes it (float32 values as floats)."""
        return [*self.box.tolist(), self.score.item()]


@dataclass(frozen=True, eq=False)
class ClassDetections:
    """One class's raw detections in detector order: float32 ``boxes`` (N, 4), float32 ``scores`` (N,), and
    ``masks`` aligned with them (or None); what mmdet hands the official code as ``bbox[c]``/``segm[c]``.

    Iterating or indexing gives :class:`Detection` views of the rows.
    """

    boxes: Any
    scores: Any
    masks: Sequence[Any] | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(boxes) != len(scores) or (self.masks is not None and len(self.masks) != len(scores)):
            raise ValueError(f"ClassDetections: {len(boxes)} boxes, {len(scores)} scores and "
                             f"{'no' if self.masks is None else len(self.masks)} masks; they must be aligned")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    @classmethod
    def of(cls, dets: ClassDetections | Iterable[Detection]) -> ClassDetections:
        """``dets`` itself, or a list of :class:`Detection` stacked into arrays (same order)."""
        if isinstance(dets, ClassDetections):
            return dets
        dets = list(dets)
        masks = [d.mask for d in dets]
        return cls(np.array([d.box for d in dets], np.float32).reshape(-1, 4),
                   np.array([d.score for d in dets], np.float32),
                   None if all(m is None for m in masks) else masks)

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, i: int) -> Detection:
        return Detection(self.boxes[i], self.scores[i], None if self.masks is None else self.masks[i])

    def __iter__(self) -> Iterator[Detection]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True)
class Verdict:
    """The image-level result: correct iff every include holds and no exclude triggers."""

    correct: bool
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """Newline-joined reasons, as in the official ``results.jsonl``."""
        return "\n".join(self.reasons)


def _less(a: Any, b: Any) -> bool:
    """numpy's float ordering: NaN after everything."""
    return a < b or (b != b and a == a)


def classic_argsort(values: Any) -> np.ndarray:
    """``np.argsort(values)`` as numpy 1.23.1 (the official code's pin) computes it on every CPU.

    That is numpy's introsort: median-of-3 quicksort, insertion sort on slices of up to 16 elements (so up to
    16 values it is stable), heapsort past a depth of 2·log2(n). Newer numpy builds send ``np.argsort`` to SIMD
    sorts (x86-simd-sort, Highway) that order equal values differently, even among 4, so the call itself
    cannot be reused; this is numpy's algorithm, step for step, on the exact (float32) values.
    """
    return np.array(_aquicksort(np.asarray(values).tolist()), dtype=np.intp)


def _aquicksort(v: list[Any]) -> list[int]:
    """numpy's ``aquicksort_`` on a list of comparable values; returns the sorting indices."""
    num = len(v)
    order = list(range(num))
    if num < 2:
        return order
    lo, hi = 0, num - 1
    depth = (num.bit_length() - 1) * 2  # npy_get_msb(num) * 2
    stack: list[tuple[int, int, int]] = []

    def swap(i: int, j: int) -> None:
        order[i], order[j] = order[j], order[i]

    while True:
        if depth < 0:
            _aheapsort(v, order, lo, hi - lo + 1)
        else:
            while hi - lo > SMALL_QUICKSORT:
                mid = lo + ((hi - lo) >> 1)
                if _less(v[order[mid]], v[order[lo]]):
                    swap(mid, lo)
                if _less(v[order[hi]], v[order[mid]]):
                    swap(hi, mid)
                if _less(v[order[mid]], v[order[lo]]):
                    swap(mid, lo)
                pivot = v[order[mid]]
                i, j = lo, hi - 1
                swap(mid, j)
                while True:
                    i += 1
                    while _less(v[order[i]], pivot):
                        i += 1
                    j -= 1
                    while _less(pivot, v[order[j]]):
                        j -= 1
                    if i >= j:
                        break
                    swap(i, j)
                swap(i, hi - 1)
                depth -= 1
                if i - lo < hi - i:  # the larger side waits on the stack
                    stack.append((i + 1, hi, depth))
                    hi = i - 1
                else:
                    stack.append((lo, i - 1, depth))
                    lo = i + 1
            for i in range(lo + 1, hi + 1):  # insertion sort
                item = order[i]
                j = i
                while j > lo and _less(v[item], v[order[j - 1]]):
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = item
        if not stack:
            return order
        lo, hi, depth = stack.pop()


def _aheapsort(v: list[Any], order: list[int], start: int, n: int) -> None:
    """numpy's ``aheapsort_`` on ``order[start:start + n]`` (1-based heap indices, as in the C code)."""
    base = start - 1

    def sift(i: int, n: int, item: int) -> None:
        j = i << 1
        while j <= n:
            if j < n and _less(v[order[base + j]], v[order[base + j + 1]]):
                j += 1
            if not _less(v[item], v[order[base + j]]):
                break
            order[base + i] = order[base + j]
            i, j = j, j << 1
        order[base + i] = item

    for top in range(n >> 1, 0, -1):
        sift(top, n, order[base + top])
    while n > 1:
        item = order[base + n]
        order[base + n] = order[base + 1]
        n -= 1
        sift(1, n, item)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU with the official "+1 pixel" area convention; 0 when the union is 0.

    As the official ``compute_iou`` runs on float32 rows under numpy 1.23: each coordinate difference is a
    float32 subtraction, and ``+ 1`` promotes that float32 scalar to float64 (numpy 1.x scalar promotion), so
    areas, union and ratio are float64.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)

    def area(x1: np.float32, y1: np.float32, x2: np.float32, y2: np.float32) -> float:
        return max(float(x2 - x1) + 1, 0) * max(float(y2 - y1) + 1, 0)

    inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(*a[:4]) + area(*b[:4]) - inter
    return inter / union if union else 0.0


def filter_detections(
    raw: Mapping[str, ClassDetections | Sequence[Detection]], tag: str, options: Options = Options()
) -> dict[str, list[Detection]]:
    """Per class: keep score > threshold (0.9 for every class of a counting image), best first,
    at most ``max_objects``, then greedy de-duplication by IoU (disabled when ``max_overlap == 1``).
    Classes with no survivors are absent from the result; the others keep the order of ``raw``.

    Step for step the official code: order by :func:`classic_argsort` of the float32 scores, reversed (equal
    scores in reverse detector order up to 16 rows), compare with the threshold in float32.
    """
    threshold = float(options.counting_threshold if tag == "counting" else options.threshold)
    detected: dict[str, list[Detection]] = {}
    for classname, class_dets in raw.items():
        dets = ClassDetections.of(class_dets)
        ordering = classic_argsort(dets.scores)[::-1]
        ordering = ordering[dets.scores[ordering] > threshold]  # a float32 array against a Python float: float32
        remaining = ordering[: options.max_objects].tolist()
        kept: list[int] = []
        while remaining:
            best = remaining.pop(0)
            kept.append(best)
            if options.max_overlap != 1:
                remaining = [i for i in remaining if box_iou(dets.boxes[best], dets.boxes[i]) < options.max_overlap]
        if kept:
            detected[classname] = [dets[i] for i in kept]
    return detected


def relative_position(a: Sequence[float], b: Sequence[float], position_threshold: float = 0.1) -> set[str]:
    """Relations of box A relative to box B (y grows downward), computed on float32 as the official code does.

    The centre offset is shrunk per axis by ``threshold * (dim_a + dim_b)`` and divided by the length
    of the *unshrunk* offset; a relation holds where that component exceeds 0.5 in magnitude.
    """
    boxes = np.array([np.asarray(a, dtype=np.float32)[:4], np.asarray(b, dtype=np.float32)[:4]]).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - float(position_threshold) * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def detection_details(detected: Mapping[str, Sequence[Detection]]) -> dict[str, list[list[float]]]:
    """The official ``details`` value: per class, the kept ``[x1, y1, x2, y2, score]`` rows as float32 values."""
    return {name: [d.box5() for d in dets] for name, dets in detected.items()}


def color_requests(
    metadata: Mapping[str, Any], detected: Mapping[str, Sequence[Detection]]
) -> list[tuple[int, str, list[Detection]]]:
    """``(include index, class name, objects)`` for each colour clause whose count check passes.

    These are exactly the objects the official evaluator sends to CLIP (the top-``count`` of the
    class, only after the presence check), so a caller can classify them all in one batch.
    """
    requests = []
    for index, req in enumerate(metadata.get("include", [])):
        if "color" not in req:
            continue
        objs = list(detected.get(req["class"], []))[: req["count"]]
        if len(objs) >= req["count"]:
            requests.append((index, req["class"], objs))
    return requests


def evaluate(
    metadata: Mapping[str, Any],
    detected: Mapping[str, Sequence[Detection]],
    colors: Mapping[int, Sequence[str]] | None = None,
    options: Options = Options(),
) -> Verdict:
    """Apply the include (AND) / exclude (OR) clauses of one prompt to one image's filtered detections.

    ``colors[i]`` holds the CLIP colour of each object returned by :func:`color_requests` for include
    clause ``i``. Reason strings follow the official wording; relation lists are sorted so that they
    do not depend on set order.
    """
    colors = colors or {}
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []
    for index, req in enumerate(metadata.get("include", [])):
        classname, count = req["class"], req["count"]
        objs = list(detected.get(classname, []))[:count]
        matched = True
        if len(objs) < count:
            matched = False
            reasons.append(f"expected {classname}>={count}, found {len(objs)}")
        else:
            if "color" in req:
                if index not in colors:
                    raise ValueError(f"include[{index}] ({classname}) needs colours; see color_requests()")
                found = list(colors[index])
                if found.count(req["color"]) < count:
                    matched = False
                    others = ", ".join(f"{found.count(c)} {c}" for c in COLORS if c in found)
                    reasons.append(
                        f"expected {req['color']} {classname}>={count}, found "
                        f"{found.count(req['color'])} {req['color']}; and {others}"
                    )
            if "position" in req and matched:
                relation, target = req["position"]
                if target >= len(groups) or groups[target] is None:
                    matched = False
                    reasons.append(f"no target for {classname} to be {relation}")
                else:
                    matched = _check_relation(objs, groups[target], relation, classname, options, reasons)
        correct = correct and matched
        groups.append(objs if matched else None)
    for req in metadata.get("exclude", []):
        found_n = len(detected.get(req["class"], []))
        if found_n >= req["count"]:
            correct = False
            reasons.append(f"expected {req['class']}<{req['count']}, found {found_n}")
    return Verdict(correct, tuple(reasons))


def _check_relation(
    objs: Sequence[Detection],
    targets: Sequence[Detection],
    relation: str,
    classname: str,
    options: Options,
    reasons: list[str],
) -> bool:
    for obj in objs:
        for target in targets:
            rels = relative_position(obj.box, target.box, options.position_threshold)
            if relation not in rels:
                reasons.append(
                    f"expected {classname} {relation} target, found {' and '.join(sorted(rels))} target"
                )
                return False
    return True


def validate_metadata(meta: Any, class_names: Sequence[str], where: str) -> dict[str, Any]:
    """Check one prompt's metadata against the official schema; raise ``ValueError`` naming the field.

    ``where`` names the file and line (e.g. ``"metadata.jsonl line 12"``) for the message.
    """
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    for key in ("tag", "include", "prompt"):
        if key not in meta:
            raise ValueError(f"{where}: missing field {key!r} (each line needs tag, include, prompt)")
    if meta["tag"] not in TAGS:
        raise ValueError(f"{where}: field 'tag' is {meta['tag']!r}; expected one of {', '.join(TAGS)}")
    if not isinstance(meta["prompt"], str) or not meta["prompt"].strip():
        raise ValueError(f"{where}: field 'prompt' must be a non-empty string")
    known = set(class_names)
    for part in ("include", "exclude"):
        clauses = meta.get(part, [])
        if not isinstance(clauses, list) or (part == "include" and not clauses):
            raise ValueError(f"{where}: field {part!r} must be a {'non-empty ' if part == 'include' else ''}list")
        for i, clause in enumerate(clauses):
            field_name = f"{part}[{i}]"
            if not isinstance(clause, dict):
                raise ValueError(f"{where}: {field_name} must be an object with 'class' and 'count'")
            for key in ("class", "count"):
                if key not in clause:
                    raise ValueError(f"{where}: {field_name} is missing {key!r}")
            if clause["class"] not in known:
                raise ValueError(
                    f"{where}: {field_name}.class {clause['class']!r} is not one of the 80 detector classes "
                    "(see object_names.txt; e.g. 'computer mouse', not 'mouse')"
                )
            if not isinstance(clause["count"], int) or isinstance(clause["count"], bool) or clause["count"] < 1:
                raise ValueError(f"{where}: {field_name}.count must be a positive integer")
            if "color" in clause and clause["color"] not in COLORS:
                raise ValueError(
                    f"{where}: {field_name}.color {clause['color']!r} is not one of {', '.join(COLORS)}"
                )
            if "position" in clause:
                pos = clause["position"]
                if (
                    not isinstance(pos, list) or len(pos) != 2 or pos[0] not in RELATIONS
                    or not isinstance(pos[1], int) or not 0 <= pos[1] < i
                ):
                    raise ValueError(
                        f"{where}: {field_name}.position must be [relation, index of an earlier include], "
                        f"relation one of {', '.join(RELATIONS)}; got {pos!r}"
                    )
    return meta
