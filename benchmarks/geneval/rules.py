"""GenEval decision rules as a pure functional core: detections in, verdicts out.

No torch, no numpy, no I/O: plain data in, plain data out, so every rule is unit-tested case by case
against ``shared/specs/geneval.md`` (§2.4 filtering, §3 evaluation, §3.2 position). The official code
lives in ``evaluation/evaluate_images.py`` of djghosh13/geneval @ af4902f.

Colour classification needs CLIP, so evaluation is split in two pure steps around it:
:func:`color_requests` says which objects need a colour (only clauses whose count check passed, as the
official code classifies only then), and :func:`evaluate` takes the colours found for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS = ("left of", "right of", "above", "below")

Box = tuple[float, float, float, float]


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


@dataclass(frozen=True)
class Detection:
    """One detection of one class: box ``[x1, y1, x2, y2]`` in image pixels, score, opaque mask."""

    box: Box
    score: float
    mask: Any = field(default=None, compare=False, repr=False)

    def box5(self) -> list[float]:
        """``[x1, y1, x2, y2, score]`` as written in the official ``details`` field."""
        return [float(v) for v in self.box] + [float(self.score)]


@dataclass(frozen=True)
class Verdict:
    """The image-level result: correct iff every include holds and no exclude triggers."""

    correct: bool
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        """Newline-joined reasons, as in the official ``results.jsonl``."""
        return "\n".join(self.reasons)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU with the official "+1 pixel" area convention; 0 when the union is empty."""
    ix = max(min(a[2], b[2]) - max(a[0], b[0]) + 1, 0)
    iy = max(min(a[3], b[3]) - max(a[1], b[1]) + 1, 0)
    inter = ix * iy
    area_a = max(a[2] - a[0] + 1, 0) * max(a[3] - a[1] + 1, 0)
    area_b = max(b[2] - b[0] + 1, 0) * max(b[3] - b[1] + 1, 0)
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def filter_detections(
    raw: Mapping[str, Sequence[Detection]], tag: str, options: Options = Options()
) -> dict[str, list[Detection]]:
    """Per class: keep score > threshold (0.9 for every class of a counting image), best first,
    at most ``max_objects``, then greedy de-duplication by IoU (disabled when ``max_overlap == 1``).
    Classes with no survivors are absent from the result."""
    threshold = options.counting_threshold if tag == "counting" else options.threshold
    detected: dict[str, list[Detection]] = {}
    for classname, dets in raw.items():
        ordering = sorted(dets, key=lambda d: d.score, reverse=True)
        ordering = [d for d in ordering if d.score > threshold][: options.max_objects]
        kept: list[Detection] = []
        while ordering:
            best = ordering.pop(0)
            kept.append(best)
            if options.max_overlap != 1:
                ordering = [d for d in ordering if box_iou(best.box, d.box) < options.max_overlap]
        if kept:
            detected[classname] = kept
    return detected


def relative_position(a: Sequence[float], b: Sequence[float], position_threshold: float = 0.1) -> set[str]:
    """Relations of box A relative to box B (y grows downward).

    The centre offset is shrunk per axis by ``threshold * (dim_a + dim_b)`` and divided by the length
    of the *unshrunk* offset; a relation holds where that component exceeds 0.5 in magnitude.
    """
    ca = ((a[0] + a[2]) / 2, (a[1] + a[3]) / 2)
    cb = ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
    dim_a = (abs(a[2] - a[0]), abs(a[3] - a[1]))
    dim_b = (abs(b[2] - b[0]), abs(b[3] - b[1]))
    off = (ca[0] - cb[0], ca[1] - cb[1])
    rev = [
        math.copysign(max(abs(o) - position_threshold * (da + db), 0.0), o) if o else 0.0
        for o, da, db in zip(off, dim_a, dim_b, strict=True)
    ]
    if all(abs(r) < 1e-3 for r in rev):
        return set()
    norm = math.hypot(*off)
    dx, dy = rev[0] / norm, rev[1] / norm
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
