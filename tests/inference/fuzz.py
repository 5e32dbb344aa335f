"""Schemathesis over a live server's OpenAPI schema, shared by the inference and reliability suites.

Runs schemathesis's strategies with hypothesis inside the calling test (its lazy pytest loader does not
work with pytest 9), with a bounded number of examples per operation.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance


def fuzz_api(url: str, examples: int, *, model_loaded: bool) -> list[str]:
    """Run schemathesis's generated cases against every operation of a live server; returns the
    operations exercised. Fails on a 5xx (except the documented 503 while no model is loaded) or a
    response off the schema."""
    excluded: list[CheckFunction] = [positive_data_acceptance]
    if not model_loaded:
        excluded.append(not_a_server_error)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    seen: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case[Any]) -> None:
            # Schema-valid bytes are not always a decodable image; every other check applies (without a
            # model, schemathesis's own 5xx check is replaced by the 503 check below).
            response = case.call_and_validate(excluded_checks=excluded)
            if response.status_code >= 500:
                assert response.status_code == 503 and "retry-after" in response.headers, response.text
                assert response.json()["error"]["code"] == "no_model", response.text

        check()
        seen.append(f"{operation.method.upper()} {operation.path}")
    return seen
