"""The configurations/query client's HTTP behaviour, on httpx's MockTransport (no hub needed)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
import stamina

import edge_tools.rollout.hub as hub_module
from edge_tools.publish.connstr import HubConnection
from edge_tools.rollout.hub import FleetHub, HubCallError, _retry_after

CONNECTION = HubConnection("hub.example", "iothubowner", "c2VjcmV0LWtleS1ieXRlcw==")


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


def _hub(handler: Callable[[httpx.Request], httpx.Response], attempts: int = 4) -> FleetHub:
    return FleetHub(CONNECTION, transport=httpx.MockTransport(handler), attempts=attempts)


def test_throttled_calls_are_retried_and_then_succeed() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        assert request.url.params["api-version"] == "2021-04-12"
        assert request.headers["Authorization"].startswith("SharedAccessSignature sr=hub.example")
        if len(calls) < 3:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(200, json={"id": "c1", "etag": "abc"})

    with _hub(handler) as hub:
        assert hub.create_configuration({"id": "c1"}) == {"id": "c1", "etag": "abc"}
    assert calls == ["/configurations/c1"] * 3


def test_throttling_that_never_ends_is_a_bounded_clear_error() -> None:
    calls = 0

    def handler(_: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    with (
        _hub(handler, attempts=3) as hub,
        pytest.raises(HubCallError, match="still throttled after 3") as caught,
    ):
        hub.list_configurations()
    assert calls == 3
    assert caught.value.status == 429


@pytest.mark.parametrize(
    ("header", "seconds"), [(None, 5.0), ("7", 7.0), ("0", 1.0), ("3600", 60.0), ("soon", 5.0)]
)
def test_retry_after_is_honoured_within_bounds(header: str | None, seconds: float) -> None:
    headers = {"Retry-After": header} if header is not None else {}
    assert _retry_after(httpx.Response(429, headers=headers)) == seconds


def test_the_hubs_error_code_is_parsed_and_no_token_is_shown() -> None:
    body = {
        "Message": "ErrorCode:InvalidConfigurationTargetCondition;Target condition is invalid.",
        "ExceptionMessage": "x",
    }

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json=body)

    with _hub(handler) as hub, pytest.raises(HubCallError) as caught:
        hub.create_configuration({"id": "c1"})
    assert caught.value.code == "InvalidConfigurationTargetCondition"
    assert "Target condition is invalid" in str(caught.value)
    assert "SharedAccessSignature" not in str(caught.value)
    assert "sig=" not in str(caught.value)


def test_updates_send_the_etag_and_deletes_tolerate_a_missing_configuration() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.headers.get("If-Match")))
        if request.method == "DELETE":
            return httpx.Response(404, json={"Message": "ErrorCode:ConfigurationNotFound;gone"})
        return httpx.Response(200, json=json.loads(request.content))

    with _hub(handler) as hub:
        hub.update_configuration({"id": "c1", "etag": "abc"})
        hub.delete_configuration("c1")
    assert seen == [("PUT", '"abc"'), ("DELETE", "*")]


def test_a_missing_configuration_reads_as_none() -> None:
    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"Message": "ErrorCode:ConfigurationNotFound;no such id"})

    with _hub(handler) as hub:
        assert hub.get_configuration("nope") is None


def test_queries_follow_continuation_tokens() -> None:
    pages = {None: ([{"deviceId": "d1"}, {"deviceId": "d2"}], "t1"), "t1": ([{"deviceId": "d3"}], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content) == {"query": "SELECT deviceId FROM devices WHERE tags.a='b'"}
        assert request.headers["x-ms-max-item-count"] == "1000"
        rows, following = pages[request.headers.get("x-ms-continuation")]
        return httpx.Response(200, json=rows, headers={"x-ms-continuation": following} if following else {})

    with _hub(handler) as hub:
        rows = list(hub.query("SELECT deviceId FROM devices WHERE tags.a='b'"))
    assert [row["deviceId"] for row in rows] == ["d1", "d2", "d3"]


def test_a_query_that_never_stops_paging_ends_in_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hub_module, "MAX_PAGES", 3)
    pages = 0

    def handler(_: httpx.Request) -> httpx.Response:
        nonlocal pages
        pages += 1
        return httpx.Response(200, json=[{"deviceId": f"d{pages}"}], headers={"x-ms-continuation": "more"})

    with _hub(handler) as hub, pytest.raises(HubCallError, match="more than 3 pages"):
        list(hub.query("SELECT deviceId FROM devices"))
    assert pages == 3
