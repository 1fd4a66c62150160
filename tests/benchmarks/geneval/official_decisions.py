"""TEST-ONLY: a transcription of the decision code of the official GenEval evaluator, for comparison.

Transcribed from ``evaluation/evaluate_images.py`` of djghosh13/geneval @ af4902f: ``compute_iou``,
``relative_position``, ``evaluate`` and the filtering part of ``evaluate_image`` (after ``inference_detector``),
with the same numpy calls on the same float32 arrays, reformatted only to pass the linter. It never runs in
production; ``test_official_agreement.py`` runs it as a script and compares its verdicts with ours.

The official code pins numpy 1.23.1, and two numpy behaviours changed since; where they matter:

* ``np.argsort``: numpy 1.23 runs its classic introsort on every CPU. Newer numpy sends it to SIMD sorts that
  order equal values differently, so run this script with those disabled (``NPY_DISABLE_CPU_FEATURES``, as the
  test does); :func:`check_classic_argsort` refuses to run otherwise.
* Scalar promotion: numpy 1.x turns ``float32 scalar + 1`` into float64, numpy 2 keeps float32. ``compute_iou``
  marks the one place this changes the arithmetic and does what numpy 1.23 does.

The CLIP colour classifier is replaced by a table of fake answers (the same for both implementations).

Usage: ``python official_decisions.py CASES.pkl RESULTS.pkl`` (cases as written by the test: rows as lists of
float32 values, so that any numpy reads them; results are plain Python).
"""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np

COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]

# the official --options, set per case by configure()
THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
NMS_THRESHOLD = 1.0
POSITION_THRESHOLD = 0.1

COLOR_TABLE: dict[tuple[str, int], str] = {}  # (class name, detector row) -> the fake CLIP answer


def configure(options: dict) -> None:
    """The official ``__main__``: each constant is ``float(...)``/``int(...)`` of an option (defaults above)."""
    global THRESHOLD, COUNTING_THRESHOLD, MAX_OBJECTS, NMS_THRESHOLD, POSITION_THRESHOLD
    THRESHOLD = float(options.get("threshold", 0.3))
    COUNTING_THRESHOLD = float(options.get("counting_threshold", 0.9))
    MAX_OBJECTS = int(options.get("max_objects", 16))
    NMS_THRESHOLD = float(options.get("max_overlap", 1.0))
    POSITION_THRESHOLD = float(options.get("position_threshold", 0.1))


def color_classification(image, bboxes, classname):
    """Stand-in for CLIP: the fake answer of each object (its "mask" is its detector row index here)."""
    return [COLOR_TABLE[(classname, mask)] for _, mask in bboxes]


def compute_iou(box_a, box_b):
    def area_fn(box):
        # official: max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0). Under numpy 1.23 the float32
        # scalar difference plus the Python int 1 gives float64; float() does that here on any numpy.
        return max(float(box[2] - box[0]) + 1, 0) * max(float(box[3] - box[1]) + 1, 0)

    i_area = area_fn([
        max(box_a[0], box_b[0]), max(box_a[1], box_b[1]),
        min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    ])
    u_area = area_fn(box_a) + area_fn(box_b) - i_area
    return i_area / u_area if u_area else 0


def relative_position(obj_a, obj_b):
    """Give position of A relative to B, factoring in object dimensions"""
    boxes = np.array([obj_a[0], obj_b[0]])[:, :4].reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    #
    revised_offset = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised_offset) < 1e-3):
        return set()
    #
    dx, dy = revised_offset / np.linalg.norm(offset)
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


def evaluate(image, objects, metadata):
    correct = True
    reason = []
    matched_groups = []
    # Check for expected objects
    for req in metadata.get('include', []):
        classname = req['class']
        matched = True
        found_objects = objects.get(classname, [])[:req['count']]
        if len(found_objects) < req['count']:
            correct = matched = False
            reason.append(f"expected {classname}>={req['count']}, found {len(found_objects)}")
        else:
            if 'color' in req:
                # Color check
                colors = color_classification(image, found_objects, classname)
                if colors.count(req['color']) < req['count']:
                    correct = matched = False
                    reason.append(
                        f"expected {req['color']} {classname}>={req['count']}, found " +
                        f"{colors.count(req['color'])} {req['color']}; and " +
                        ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    )
            if 'position' in req and matched:
                # Relative position check
                expected_rel, target_group = req['position']
                if matched_groups[target_group] is None:
                    correct = matched = False
                    reason.append(f"no target for {classname} to be {expected_rel}")
                else:
                    for obj in found_objects:
                        for target_obj in matched_groups[target_group]:
                            true_rels = relative_position(obj, target_obj)
                            if expected_rel not in true_rels:
                                correct = matched = False
                                reason.append(
                                    f"expected {classname} {expected_rel} target, found " +
                                    f"{' and '.join(true_rels)} target"
                                )
                                break
                        if not matched:
                            break
        if matched:
            matched_groups.append(found_objects)
        else:
            matched_groups.append(None)
    # Check for non-expected objects
    for req in metadata.get('exclude', []):
        classname = req['class']
        if len(objects.get(classname, [])) >= req['count']:
            correct = False
            reason.append(f"expected {classname}<{req['count']}, found {len(objects[classname])}")
    return correct, "\n".join(reason)


def evaluate_image(bbox, segm, classnames, metadata):
    """``evaluate_image`` after ``inference_detector``: ``bbox[c]`` is class c's float32 ``(n, 5)`` array."""
    image = None
    detected = {}
    # Determine bounding boxes to keep
    confidence_threshold = THRESHOLD if metadata['tag'] != "counting" else COUNTING_THRESHOLD
    for index, classname in enumerate(classnames):
        ordering = np.argsort(bbox[index][:, 4])[::-1]
        ordering = ordering[bbox[index][ordering, 4] > confidence_threshold]  # Threshold
        ordering = ordering[:MAX_OBJECTS].tolist()  # Limit number of detected objects per class
        detected[classname] = []
        while ordering:
            max_obj = ordering.pop(0)
            detected[classname].append((bbox[index][max_obj], None if segm is None else segm[index][max_obj]))
            ordering = [
                obj for obj in ordering
                if NMS_THRESHOLD == 1 or compute_iou(bbox[index][max_obj], bbox[index][obj]) < NMS_THRESHOLD
            ]
        if not detected[classname]:
            del detected[classname]
    # Evaluate
    is_correct, reason = evaluate(image, detected, metadata)
    return {
        'correct': is_correct,
        'reason': reason,
        'details': json.dumps({
            key: [box.tolist() for box, _ in value]
            for key, value in detected.items()
        })
    }


def check_classic_argsort() -> None:
    """Refuse to run where ``np.argsort`` is not numpy 1.23's introsort (stable up to 16 values)."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.choice(np.float32([0.3, 0.5, 0.9]), 12)
        if not np.array_equal(np.argsort(values), np.argsort(values, kind="stable")):
            sys.exit("np.argsort here is not numpy's classic introsort (a SIMD sort is active); "
                     "run with NPY_DISABLE_CPU_FEATURES naming the dispatched CPU features")


def main(cases_path: str, results_path: str) -> None:
    check_classic_argsort()
    with open(cases_path, "rb") as f:
        cases = pickle.load(f)
    results = []
    for case in cases:
        configure(case["options"])
        COLOR_TABLE.clear()
        COLOR_TABLE.update(case["colors"])
        classnames = list(case["rows"])
        bbox = [np.asarray(case["rows"][name], dtype=np.float32).reshape(-1, 5) for name in classnames]
        segm = [list(range(len(rows))) for rows in bbox]
        results.append(evaluate_image(bbox, segm, classnames, case["metadata"]))
    with open(results_path, "wb") as f:
        pickle.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
