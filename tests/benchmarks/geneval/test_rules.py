"""The pure GenEval rules, case by case: filtering, evaluation, the position rule."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from harness.benchmarks.geneval.classes import CLASS_NAMES
from harness.benchmarks.geneval.rules import (
    ClassDetections,
    Detection,
    Options,
    box_iou,
    color_requests,
    detection_details,
    evaluate,
    filter_detections,
    relative_position,
    validate_metadata,
)

F32 = np.float32


def det(score: float, box=(0, 0, 10, 10)) -> Detection:
    return Detection(tuple(float(v) for v in box), score)


# -- position ---------------------------------------------------------------------------------------
def test_position_worked_example_left_of():
    # off=(-150,0); margin=(20,20); rev=(-130,0)/150 = (-0.867, 0) => {"left of"}
    assert relative_position([0, 0, 100, 100], [150, 0, 250, 100]) == {"left of"}


def test_position_worked_example_diagonal_satisfies_both():
    a, b = [100, 100, 150, 150], [0, 0, 50, 50]  # off=(100,100), 50x50 boxes
    assert relative_position(a, b) == {"right of", "below"}


def test_position_divides_by_unshrunk_norm():
    # off=(60, 0), both 100 wide: margin 20 -> rev 40 -> 40/60 = 0.667 > 0.5 (with shrunk norm it'd be 1.0 anyway);
    # off=(45, 0): rev 25/45 = 0.556 -> right of; off=(35,0): rev 15/35 = 0.43 -> nothing
    assert relative_position([45, 0, 145, 100], [0, 0, 100, 100]) == {"right of"}
    assert relative_position([35, 0, 135, 100], [0, 0, 100, 100]) == set()


def test_position_overlapping_boxes_have_no_relation():
    assert relative_position([0, 0, 100, 100], [5, 5, 105, 105]) == set()
    assert relative_position([0, 0, 100, 100], [0, 0, 100, 100]) == set()


def test_position_above_below_with_y_down():
    assert relative_position([0, 0, 10, 10], [0, 100, 10, 110]) == {"above"}
    assert relative_position([0, 100, 10, 110], [0, 0, 10, 10]) == {"below"}


def test_position_computes_in_float32():
    # A is a hair wide (3 float32 steps), its centre 0.4 right of B's, and the margin is 0.1 * (2 + hair): the
    # shrunk offset is half the offset, right on the 0.5 edge. The official code's float32 arithmetic lands on
    # 0.5 (no relation); float64 arithmetic on the same float32 box lands above it ("right of").
    a = [F32(1.4), 0, np.nextafter(F32(1.4), F32(2)) + 2 * np.spacing(F32(1.4)), 1]
    assert relative_position(a, [0, 0, 2, 1]) == set()


def test_position_threshold_option():
    a, b = [45, 0, 145, 100], [0, 0, 100, 100]
    assert relative_position(a, b, position_threshold=0.0) == {"right of"}
    assert relative_position(a, b, position_threshold=0.3) == set()


# -- filtering ----------------------------------------------------------------------------------------
def test_threshold_is_strict():
    out = filter_detections({"dog": [det(0.3), det(0.30001)]}, "single_object")
    assert [d.score for d in out["dog"]] == [0.30001]


def test_threshold_is_compared_in_float32():
    # float32(0.3) = 0.30000001192...: above 0.3 in float64, but not above the threshold cast to float32, which is
    # what the official code compares (a float32 score column against a Python float)
    just_above = np.nextafter(F32(0.3), F32(1))
    out = filter_detections({"dog": ClassDetections([[0, 0, 9, 9]] * 2, [F32(0.3), just_above])}, "single_object")
    assert [d.score for d in out["dog"]] == [just_above]
    out = filter_detections({"clock": ClassDetections([[0, 0, 9, 9]] * 2, [F32(0.9), F32(0.95)])}, "counting")
    assert [d.score for d in out["clock"]] == [F32(0.95)]


def test_equal_scores_come_out_in_reverse_detector_order():
    # np.argsort(scores)[::-1] with numpy 1.23's sort, stable up to 16 rows: ties end up last-row-first
    raw = {"cat": ClassDetections([[i, 0, i + 9, 9] for i in range(5)], [0.5, 0.7, 0.5, 0.7, 0.5], list("abcde"))}
    assert [d.mask for d in filter_detections(raw, "two_object")["cat"]] == ["d", "b", "e", "c", "a"]


def test_counting_threshold_applies_to_every_class():
    raw = {"clock": [det(0.95), det(0.9), det(0.5)], "cat": [det(0.85)]}
    out = filter_detections(raw, "counting")
    assert [d.score for d in out["clock"]] == [0.95]
    assert "cat" not in out  # classes without survivors are absent


def test_sorted_descending_and_capped_at_16():
    raw = {"bird": [det(0.31 + i / 100) for i in range(20)]}
    out = filter_detections(raw, "single_object")["bird"]
    assert len(out) == 16
    assert [d.score for d in out] == sorted((d.score for d in out), reverse=True)
    assert out[0].score == pytest.approx(0.5)


def test_no_nms_by_default_and_nms_when_enabled():
    same = [det(0.8, (0, 0, 10, 10)), det(0.7, (0, 0, 10, 10)), det(0.6, (50, 50, 60, 60))]
    assert len(filter_detections({"dog": same}, "counting" if False else "two_object")["dog"]) == 3
    out = filter_detections({"dog": same}, "two_object", Options(max_overlap=0.5))["dog"]
    assert [d.score for d in out] == [0.8, 0.6]


def test_iou_subtracts_in_float32_then_widens():
    # official compute_iou on float32 rows under numpy 1.23: float32(2.3) - float32(0.3) rounds to 2.0 in float32
    # (1.99999994 in float64), then "+ 1" is float64: heights 3 and 6, IoU exactly 0.5, not below max_overlap 0.5
    a, b = [0, F32(0.3), 9, F32(2.3)], [0, F32(0.3), 9, F32(5.3)]
    assert box_iou(a, b) == 0.5
    out = filter_detections({"dog": ClassDetections([a, b], [0.9, 0.8])}, "two_object", Options(max_overlap=0.5))
    assert len(out["dog"]) == 1


def test_iou_plus_one_convention():
    assert box_iou([0, 0, 9, 9], [0, 0, 9, 9]) == 1.0
    # areas 100 each (10x10 with +1), intersection 5x10=50 -> 50/150
    assert box_iou([0, 0, 9, 9], [5, 0, 14, 9]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 9, 9], [20, 20, 29, 29]) == 0.0


# -- evaluation -----------------------------------------------------------------------------------------
SINGLE = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
TWO = {"tag": "two_object", "include": [{"class": "bench", "count": 1}, {"class": "sports ball", "count": 1}],
       "prompt": "a photo of a bench and a sports ball"}
COUNT = {"tag": "counting", "include": [{"class": "clock", "count": 2}], "exclude": [{"class": "clock", "count": 3}],
         "prompt": "a photo of two clocks"}
COLOR = {"tag": "colors", "include": [{"class": "fire hydrant", "count": 1, "color": "blue"}],
         "prompt": "a photo of a blue fire hydrant"}
POS = {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
                                      {"class": "dog", "count": 1, "position": ["right of", 0]}],
       "prompt": "a photo of a dog right of a teddy bear"}
ATTR = {"tag": "color_attr", "include": [{"class": "wine glass", "count": 1, "color": "purple"},
                                         {"class": "apple", "count": 1, "color": "black"}],
        "prompt": "a photo of a purple wine glass and a black apple"}


def run(meta, raw, colors=None):
    return evaluate(meta, filter_detections(raw, meta["tag"]), colors)


def test_single_object():
    assert run(SINGLE, {"bench": [det(0.31)]}).correct
    v = run(SINGLE, {"bench": [det(0.29)], "cat": [det(0.9)]})
    assert not v.correct and v.reason == "expected bench>=1, found 0"


def test_two_object_needs_both():
    assert run(TWO, {"bench": [det(0.5)], "sports ball": [det(0.4)]}).correct
    v = run(TWO, {"bench": [det(0.5)]})
    assert not v.correct and v.reasons == ("expected sports ball>=1, found 0",)


def test_counting_exactly_n_above_09():
    assert run(COUNT, {"clock": [det(0.95), det(0.91)]}).correct
    assert run(COUNT, {"clock": [det(0.95), det(0.91), det(0.89)]}).correct  # 3rd below 0.9 does not count
    v = run(COUNT, {"clock": [det(0.95), det(0.91), det(0.92)]})
    assert not v.correct and v.reasons == ("expected clock<3, found 3",)
    v = run(COUNT, {"clock": [det(0.95)]})
    assert v.reasons == ("expected clock>=2, found 1",)


def test_colors_uses_classifier_output_for_top_object():
    raw = {"fire hydrant": [det(0.8), det(0.6)]}
    detected = filter_detections(raw, "colors")
    reqs = color_requests(COLOR, detected)
    assert [(i, c, [o.score for o in objs]) for i, c, objs in reqs] == [(0, "fire hydrant", [0.8])]
    assert evaluate(COLOR, detected, {0: ["blue"]}).correct
    v = evaluate(COLOR, detected, {0: ["red"]})
    assert not v.correct
    assert v.reason == "expected blue fire hydrant>=1, found 0 blue; and 1 red"


def test_color_not_requested_when_count_fails():
    assert color_requests(COLOR, filter_detections({"fire hydrant": [det(0.2)]}, "colors")) == []
    v = evaluate(COLOR, {}, {})
    assert v.reasons == ("expected fire hydrant>=1, found 0",)


def test_color_missing_from_classifier_is_an_error():
    with pytest.raises(ValueError, match="color_requests"):
        evaluate(COLOR, filter_detections({"fire hydrant": [det(0.8)]}, "colors"), {})


def test_position_clause_uses_top1_of_each():
    raw = {"teddy bear": [det(0.9, (0, 0, 100, 100))], "dog": [det(0.8, (200, 0, 300, 100))]}
    assert run(POS, raw).correct
    raw["dog"] = [det(0.8, (200, 0, 300, 100)), det(0.9, (-300, 0, -200, 100))]  # top-1 dog is now left
    v = run(POS, raw)
    assert not v.correct and v.reasons == ("expected dog right of target, found left of target",)


def test_position_without_target():
    v = run(POS, {"dog": [det(0.8)]})
    assert v.reasons == ("expected teddy bear>=1, found 0", "no target for dog to be right of")


def test_color_attr_both_colours():
    detected = filter_detections({"wine glass": [det(0.5)], "apple": [det(0.5)]}, "color_attr")
    assert [r[0] for r in color_requests(ATTR, detected)] == [0, 1]
    assert evaluate(ATTR, detected, {0: ["purple"], 1: ["black"]}).correct
    v = evaluate(ATTR, detected, {0: ["purple"], 1: ["red"]})
    assert v.reasons == ("expected black apple>=1, found 0 black; and 1 red",)


def test_exclude_counts_whole_filtered_list():
    meta = {**COUNT, "include": [{"class": "clock", "count": 1}], "exclude": [{"class": "clock", "count": 2}]}
    assert not run(meta, {"clock": [det(0.95), det(0.93)]}).correct


# -- metadata validation --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"include": [], "prompt": "x"}, "missing field 'tag'"),
        ({"tag": "weird", "include": [{"class": "dog", "count": 1}], "prompt": "x"}, "field 'tag'"),
        ({"tag": "single_object", "include": [{"class": "mouse", "count": 1}], "prompt": "x"}, "include[0].class"),
        ({"tag": "single_object", "include": [{"class": "dog"}], "prompt": "x"}, "include[0] is missing 'count'"),
        ({"tag": "colors", "include": [{"class": "dog", "count": 1, "color": "teal"}], "prompt": "x"}, "color"),
        ({"tag": "position", "include": [{"class": "dog", "count": 1, "position": ["near", 0]}], "prompt": "x"},
         "position"),
    ],
)
def test_validate_metadata_names_the_field(meta, message):
    with pytest.raises(ValueError, match=r"f\.jsonl line 3") as info:
        validate_metadata(meta, CLASS_NAMES, "f.jsonl line 3")
    assert message in str(info.value)


def test_details_are_the_float32_values_the_official_code_writes():
    rows = np.array([[0.1, 0.2, 10.3, 20.7, 0.31]], F32)
    detected = filter_detections({"dog": ClassDetections(rows[:, :4], rows[:, 4])}, "single_object")
    assert json.dumps(detection_details(detected)) == json.dumps({"dog": [rows[0].tolist()]})
    assert detection_details(detected)["dog"][0][0] == float(F32(0.1)) != 0.1


def test_detections_given_as_lists_or_arrays_decide_alike():
    rows = [Detection((i, 0, i + 9, 9), s, mask=i) for i, s in enumerate([0.5, 0.7, 0.5, 0.2])]
    stacked = ClassDetections.of(rows)
    assert stacked.boxes.dtype == stacked.scores.dtype == np.float32 and stacked.masks == [0, 1, 2, 3]
    assert [d.mask for d in filter_detections({"cat": rows}, "colors")["cat"]] == [1, 2, 0]
    with pytest.raises(ValueError, match="aligned"):
        ClassDetections([[0, 0, 1, 1]], [0.5, 0.6])


def test_rules_module_imports_no_torch():
    code = "import sys, harness.benchmarks.geneval.rules; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
