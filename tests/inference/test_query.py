"""`/score` query parsing: defaults from the settings, every bad value a 422-mapped validation error."""

from __future__ import annotations

import pytest
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import QueryParams

from inference_module.api.query import parse_score_query
from inference_module.settings import InferenceSettings

SETTINGS = InferenceSettings(edgehub=False, score_threshold=0.4, max_detections=20)


def test_defaults_come_from_the_settings() -> None:
    query = parse_score_query(QueryParams(""), SETTINGS, annotated=False)
    assert (query.threshold, query.max_detections, query.response_format) == (0.4, 20, "native")


def test_values_are_parsed_and_unknown_parameters_ignored() -> None:
    query = parse_score_query(
        QueryParams("threshold=0.75&max_detections=3&format=ava&other=1"), SETTINGS, annotated=False
    )
    assert (query.threshold, query.max_detections, query.response_format) == (0.75, 3, "ava")


@pytest.mark.parametrize(
    "text",
    [
        "threshold=nan",
        "threshold=inf",
        "threshold=-0.1",
        "threshold=",
        "max_detections=21",
        "max_detections=1.5",
        "max_detections=0",
        "format=AVA",
    ],
)
def test_bad_values_are_validation_errors_naming_the_parameter(text: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_score_query(QueryParams(text), SETTINGS, annotated=False)
    assert caught.value.errors()[0]["loc"] == ("query", text.split("=")[0])


def test_format_does_not_apply_to_annotated_images() -> None:
    query = parse_score_query(QueryParams("format=xml"), SETTINGS, annotated=True)
    assert query.annotated and query.response_format == "native"
