"""`/score` query parameters, parsed by hand on the hot path and documented in OpenAPI by hand.

FastAPI's per-parameter validation costs about a tenth of a millisecond per request; these three
values need a few comparisons. Errors are raised as `RequestValidationError`, so they leave through
the same 422 mapping as every other validation error.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.datastructures import QueryParams

from inference_module.pipeline import ScoreQuery
from inference_module.postprocess import ResponseFormat
from inference_module.settings import InferenceSettings

FORMATS = ("native", "ava")


def _error(name: str, message: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("query", name), "msg": message, "type": kind}])


def parse_score_query(params: QueryParams, settings: InferenceSettings, *, annotated: bool) -> ScoreQuery:
    """`threshold` in [0, 1], `max_detections` in [1, INFERENCE_MAX_DETECTIONS], `format` native|ava."""
    threshold = settings.score_threshold
    raw = params.get("threshold")
    if raw is not None:
        try:
            threshold = float(raw)
        except ValueError:
            raise _error("threshold", "must be a number between 0 and 1", "float_parsing") from None
        if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
            raise _error("threshold", "must be a number between 0 and 1", "range")
    max_detections = settings.max_detections
    raw = params.get("max_detections")
    if raw is not None:
        try:
            max_detections = int(raw)
        except ValueError:
            raise _error("max_detections", "must be an integer", "int_parsing") from None
        if not 1 <= max_detections <= settings.max_detections:
            raise _error("max_detections", f"must be between 1 and {settings.max_detections}", "range")
    response_format: ResponseFormat = "native"
    if not annotated:
        raw = params.get("format")
        if raw is not None and raw not in FORMATS:
            raise _error("format", "must be 'native' or 'ava'", "literal_error")
        response_format = "ava" if raw == "ava" else "native"
    return ScoreQuery(
        threshold=threshold,
        max_detections=max_detections,
        response_format=response_format,
        annotated=annotated,
    )


def score_parameters(settings: InferenceSettings, *, annotated: bool) -> list[dict[str, Any]]:
    """The OpenAPI description of what `parse_score_query` accepts."""
    parameters: list[dict[str, Any]] = [
        {
            "name": "threshold",
            "in": "query",
            "required": False,
            "description": f"Minimum score of a detection (default {settings.score_threshold}).",
            "schema": {"type": "number", "minimum": 0, "maximum": 1},
        },
        {
            "name": "max_detections",
            "in": "query",
            "required": False,
            "description": f"Most detections, best first (default and limit {settings.max_detections}).",
            "schema": {"type": "integer", "minimum": 1, "maximum": settings.max_detections},
        },
    ]
    if not annotated:
        parameters.append(
            {
                "name": "format",
                "in": "query",
                "required": False,
                "description": "`native` (default) or `ava` (Azure Video Analyzer HTTP-extension shape).",
                "schema": {"type": "string", "enum": list(FORMATS), "default": "native"},
            }
        )
    return parameters
