"""A start the hub refuses half-way says what exists, and the rollout reads back as incomplete.

The hub is an in-memory stand-in on httpx's MockTransport that refuses the second ring's PUT: the
simulator and a real hub refuse only what this CLI checks first, so the path needs a seam to provoke."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import stamina

from edge_tools.publish.connstr import HubConnection
from edge_tools.rollout import runner
from edge_tools.rollout.configurations import ring_configuration
from edge_tools.rollout.hub import FleetHub
from edge_tools.rollout.plan import Ring, RolloutPlan

CONNECTION = HubConnection("hub.example", "iothubowner", "c2VjcmV0LWtleS1ieXRlcw==")


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


def test_a_start_refused_half_way_names_what_exists_and_reads_back_incomplete() -> None:
    stored: dict[str, dict[str, object]] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/configurations" and request.method == "GET":
            return httpx.Response(200, json=list(stored.values()))
        if path == "/devices/query":
            return httpx.Response(200, json=[{"deviceId": "d1"}])
        if path.startswith("/configurations/") and request.method == "PUT":
            if len(stored) == 1:
                return httpx.Response(400, json={"Message": "ErrorCode:ArgumentInvalid;refused for the test"})
            document = json.loads(request.content)
            stored[document["id"]] = {**document, "etag": "e1"}
            return httpx.Response(200, json=stored[document["id"]])
        return httpx.Response(404, json={"Message": "ErrorCode:NotFound;no"})

    plan = RolloutPlan(
        rollout_id="half",
        version="v2",
        rings=(Ring(name="canary", condition="tags.a='b'"), Ring(name="all", condition="tags.c='d'")),
        priority=11,
    )
    with FleetHub(CONNECTION, transport=httpx.MockTransport(handler)) as hub:
        with pytest.raises(
            runner.RolloutError, match=r"created only in part \(1 of 2 rings\).*rollout abort half"
        ):
            runner.start(hub, plan, {"FileName": "m.zip"})
        record = runner.get_rollout(hub, "half")
    assert record.state == "incomplete"
    assert [ring.ring.name for ring in record.rings] == ["canary"]


def _ring_hub(put_answers: list[int]) -> tuple[FleetHub, list[dict[str, object]]]:
    """A hub holding one active ring whose PUTs answer `put_answers` in turn (then 200)."""
    plan = RolloutPlan(
        rollout_id="r", version="v2", rings=(Ring(name="all", condition="tags.a='b'"),), priority=11
    )
    document: dict[str, object] = {**ring_configuration(plan, 0, {"FileName": "m.zip"}), "etag": "e1"}
    written: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal document
        if request.method == "GET" and request.url.path == "/configurations":
            return httpx.Response(200, json=[document])
        if request.method == "GET":
            return httpx.Response(200, json=document)
        if request.method == "PUT":
            status = put_answers.pop(0) if put_answers else 200
            if status != 200:
                return httpx.Response(status, json={"Message": "ErrorCode:PreconditionFailed;etag"})
            document = {**json.loads(request.content), "etag": "e2"}
            written.append(document)
            return httpx.Response(200, json=document)
        return httpx.Response(404)

    return FleetHub(CONNECTION, transport=httpx.MockTransport(handler)), written


def test_an_etag_conflict_is_reread_and_written_again() -> None:
    hub, written = _ring_hub([412])
    with hub:
        record = runner.abort(hub, "r", "stop")
    assert record.state == "halted" and record.note == "stop"
    assert len(written) == 1 and str(written[0]["targetCondition"]).startswith("tags.edgeModelGate=")


def test_endless_etag_conflicts_end_in_a_clear_error() -> None:
    hub, written = _ring_hub([412] * 10)
    with hub, pytest.raises(runner.RolloutError, match="kept changing under us"):
        runner.abort(hub, "r")
    assert written == []


def test_a_configuration_with_a_rings_id_that_someone_else_made_is_refused_before_anything_is_written() -> (
    None
):
    puts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/configurations":
            return httpx.Response(200, json=[{"id": "edge-model-r-1-all", "labels": {}, "priority": 1}])
        if request.url.path == "/devices/query":
            return httpx.Response(200, json=[{"deviceId": "d1"}])
        puts.append(request.url.path)
        return httpx.Response(200, json={})

    plan = RolloutPlan(
        rollout_id="r",
        version="v2",
        rings=(Ring(name="canary", condition="tags.a='b'"), Ring(name="all", condition="tags.c='d'")),
        priority=11,
    )
    with FleetHub(CONNECTION, transport=httpx.MockTransport(handler)) as hub:
        with pytest.raises(runner.RolloutError, match="configuration 'edge-model-r-1-all' exists"):
            runner.start(hub, plan, {"FileName": "m.zip"})
    assert puts == []


def test_a_ring_whose_configuration_was_deleted_meanwhile_is_a_clear_error() -> None:
    plan = RolloutPlan(
        rollout_id="r", version="v2", rings=(Ring(name="all", condition="tags.a='b'"),), priority=11
    )
    listed = {**ring_configuration(plan, 0, {"FileName": "m.zip"}), "etag": "e1"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/configurations":
            return httpx.Response(200, json=[listed])  # listed, then gone when read on its own
        return httpx.Response(404, json={"Message": "ErrorCode:ConfigurationNotFound;gone"})

    with FleetHub(CONNECTION, transport=httpx.MockTransport(handler)) as hub:
        with pytest.raises(runner.RolloutError, match="'edge-model-r-0-all' disappeared from the hub"):
            runner.abort(hub, "r")
