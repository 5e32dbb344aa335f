"""Thresholds, ordering, caps, clamping, label lookup and the two JSON shapes."""

from __future__ import annotations

import json

import numpy as np

from edge_shared.scoring import AvaScoreResponse, ScoreResponse
from inference_module.labels import Labels, parse_labels
from inference_module.postprocess import ava_body, native_body, select_detections, to_json_bytes
from inference_module.runtimes.base import RawDetections

LABELS = parse_labels("person\nbicycle\ncar\n")


def raw(rows: list[tuple[int, float, tuple[float, float, float, float]]]) -> RawDetections:
    return RawDetections(
        boxes=np.array([box for _, _, box in rows], np.float32).reshape(-1, 4),
        scores=np.array([score for _, score, _ in rows], np.float32),
        class_ids=np.array([cls for cls, _, _ in rows], np.int64),
    )


def test_threshold_sorting_and_cap() -> None:
    found = select_detections(
        raw([(0, 0.6, (0, 0, 0.1, 0.1)), (1, 0.9, (0, 0, 0.2, 0.2)), (2, 0.4, (0, 0, 0.3, 0.3))]),
        LABELS,
        threshold=0.5,
        max_detections=10,
    )
    assert [(item.label, item.score) for item in found] == [("bicycle", 0.9), ("person", 0.6)]
    capped = select_detections(
        raw([(0, 0.6, (0, 0, 0.1, 0.1)), (1, 0.9, (0, 0, 0.2, 0.2))]), LABELS, threshold=0, max_detections=1
    )
    assert [item.label for item in capped] == ["bicycle"]


def test_boxes_become_left_top_width_height_clamped_to_the_image() -> None:
    (item,) = select_detections(
        raw([(0, 0.8, (-0.1, 0.25, 0.5, 1.3))]), LABELS, threshold=0.5, max_detections=5
    )
    assert (item.left, item.top, item.width, item.height) == (0.25, 0.0, 0.75, 0.5)


def test_scores_above_one_are_clamped() -> None:
    (item,) = select_detections(raw([(0, 1.0000011, (0, 0, 1, 1))]), LABELS, threshold=0.5, max_detections=5)
    assert item.score == 1.0


def test_out_of_range_class_gets_a_made_up_label_instead_of_crashing() -> None:
    (item,) = select_detections(raw([(7, 0.9, (0, 0, 1, 1))]), LABELS, threshold=0.5, max_detections=5)
    assert (item.label, item.class_id) == ("class_7", 7)


def test_labelmap_starting_with_unknown_shifts_class_ids_by_one() -> None:
    labels = parse_labels("???\nperson\nbicycle\n")
    assert labels.offset == 1
    (item,) = select_detections(raw([(0, 0.9, (0, 0, 1, 1))]), labels, threshold=0.5, max_detections=5)
    assert (item.label, item.class_id) == ("person", 1)


def test_trailing_blank_lines_do_not_count_as_labels() -> None:
    assert len(parse_labels("a\nb\n\n\n")) == 2
    assert Labels().name(0) == "class_0"


def test_nothing_found_gives_an_empty_list() -> None:
    assert select_detections(RawDetections.empty(), LABELS, threshold=0.0, max_detections=5) == []


def test_native_and_ava_bodies_match_the_shared_contract() -> None:
    found = select_detections(raw([(2, 0.75, (0.1, 0.2, 0.3, 0.6))]), LABELS, threshold=0.5, max_detections=5)
    native = ScoreResponse.model_validate_json(
        to_json_bytes(native_body(found, version="1.1", runtime="onnx", size=(640, 480), inference_ms=3.2))
    )
    assert native.detections[0].label == "car"
    assert native.detections[0].box.width == 0.4
    assert native.image.width == 640
    ava = AvaScoreResponse.model_validate_json(to_json_bytes(ava_body(found)))
    entity = ava.inferences[0].entity
    assert (entity.tag.value, entity.tag.confidence) == ("car", 0.75)
    assert (entity.box.l, entity.box.t) == (0.2, 0.1)
    assert json.loads(to_json_bytes(ava_body(found)))["inferences"][0]["type"] == "entity"
