"""Route statements, source matching, sinks, priorities/TTLs and one copy per sink."""

from collections.abc import Mapping
from typing import Any

import pytest

from edgehub_sim.routing import (
    DEFAULT_PRIORITY,
    UPSTREAM,
    Delivery,
    RoutableMessage,
    RouteError,
    RouteTable,
    Sink,
)
from edgehub_sim.routing.grammar import parse_route

INFERENCE_INPUT = Sink("module", "inference", "DLModelInput")
TO_INFERENCE = 'BrokeredEndpoint("/modules/inference/inputs/DLModelInput")'


def output_message(
    module: str = "loader",
    output: str | None = "DLModelOutput",
    app: Mapping[str, str] | None = None,
    twin_change: bool = False,
) -> RoutableMessage:
    system = {"$.on": output} if output is not None else {}
    return RoutableMessage(
        device_id="edgedev1",
        module_id=module,
        output=output,
        body=b"{}",
        system_properties={**system, "$.mid": "m-1"},
        app_properties=app or {},
        twin_change_notification=twin_change,
    )


def table(routes: Mapping[str, str | Mapping[str, Any]], ttl: int = 7200) -> RouteTable:
    return RouteTable.parse(routes, default_ttl_secs=ttl)


def sinks_for(source: str, message: RoutableMessage) -> list[Sink]:
    routes = table({"r": f"FROM {source} INTO $upstream"})
    return [delivery.sink for delivery in routes.deliveries(message)]


@pytest.mark.parametrize(
    ("source", "routed"),
    [
        ("/*", True),
        ("/messages/*", True),
        ("/messages/modules/*", True),
        ("/messages/modules/loader", True),
        ("/messages/modules/loader/*", True),
        ("/messages/modules/loader/outputs/*", True),
        ("/messages/modules/loader/outputs/DLModelOutput", True),
        ("/messages/modules/LOADER/outputs/dlmodeloutput", True),
        ("/Messages/Modules/loader/Outputs/DLModelOutput", True),
        ("/messages/modules/loader/outputs/DLModel", False),
        ("/messages/modules/loader/outputs/DLModelOutput2", False),
        ("/messages/modules/loader/outputs/ModelStatus", False),
        ("/messages/modules/load", False),
        ("/messages/modules/inference", False),
        ("/twinChangeNotifications", False),
    ],
)
def test_source_matching_for_a_loader_output(source: str, routed: bool) -> None:
    assert sinks_for(source, output_message()) == ([UPSTREAM] if routed else [])


@pytest.mark.parametrize(
    ("source", "routed"),
    [
        ("/messages/modules/loader", True),
        ("/messages/modules/loader/*", True),
        ("/messages/*", True),
        ("/messages/modules/loader/outputs/*", False),
    ],
)
def test_source_matching_for_output_less_telemetry(source: str, routed: bool) -> None:
    message = output_message(output=None)
    assert message.source == "/messages/modules/loader"
    assert sinks_for(source, message) == ([UPSTREAM] if routed else [])


@pytest.mark.parametrize(
    ("source", "routed"),
    [("/*", True), ("/twinChangeNotifications", True), ("/messages/*", False)],
)
def test_source_matching_for_twin_change_notifications(source: str, routed: bool) -> None:
    message = output_message(twin_change=True)
    assert message.source == "/twinChangeNotifications"
    assert sinks_for(source, message) == ([UPSTREAM] if routed else [])


@pytest.mark.parametrize(
    "text",
    [
        f"FROM /messages/modules/loader/outputs/DLModelOutput INTO {TO_INFERENCE}",
        f"SELECT * FROM /messages/modules/loader/outputs/DLModelOutput INTO {TO_INFERENCE}",
        f"select *from /messages/modules/loader/outputs/DLModelOutput into {TO_INFERENCE}",
        f"  from\n/messages/modules/loader/outputs/DLModelOutput\n\tInto   {TO_INFERENCE}  ",
        "FROM /messages/modules/loader/outputs/DLModelOutput "
        "INTO BrokeredEndpoint('/modules/inference/inputs/DLModelInput')",
        "FROM /messages/modules/loader/outputs/DLModelOutput "
        'INTO brokeredendpoint ( "/modules/inference/inputs/DLModelInput" )',
    ],
)
def test_statement_forms_parse_to_the_same_route(text: str) -> None:
    statement = parse_route(text)
    assert statement.source == "/messages/modules/loader/outputs/DLModelOutput"
    assert statement.condition is None
    assert statement.sink == INFERENCE_INPUT


@pytest.mark.parametrize("sink", ["$upstream", "$UPSTREAM", "  $upstream  "])
def test_upstream_sink(sink: str) -> None:
    assert parse_route(f"FROM /messages/* INTO{' ' if sink[0] != ' ' else ''}{sink}").sink == UPSTREAM


def test_where_clause_is_applied_and_may_contain_into_in_a_string() -> None:
    routes = table(
        {
            "r": "FROM /messages/* WHERE kind = 'goes INTO $upstream' AND NOT IS_DEFINED(skip) "
            f"INTO {TO_INFERENCE}"
        }
    )
    assert [d.sink for d in routes.deliveries(output_message(app={"kind": "goes INTO $upstream"}))] == [
        INFERENCE_INPUT
    ]
    assert routes.deliveries(output_message(app={"kind": "other"})) == []
    assert routes.deliveries(output_message(app={"kind": "goes INTO $upstream", "skip": ""})) == []


def test_where_on_system_properties_uses_the_senders_identity() -> None:
    routes = table({"r": "FROM /messages/* WHERE $connectionModuleId = 'loader' INTO $upstream"})
    assert len(routes.deliveries(output_message())) == 1
    assert routes.deliveries(output_message(module="inference")) == []


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("FROM /messages INTO $upstream", "source '/messages' is not supported"),
        ("FROM /messages/modules INTO $upstream", "is not supported"),
        ("FROM /messages/modules/*/outputs/x INTO $upstream", "is not supported"),
        ("FROM /messages/modules/loader/outputs INTO $upstream", "is not supported"),
        ("FROM /messages/modules/loader/inputs/x INTO $upstream", "is not supported"),
        ("FROM /messages/modules/loader/outputs/x/y INTO $upstream", "is not supported"),
        ("FROM /messages/modules/loader/x INTO $upstream", "is not supported"),
        ("FROM /devices/* INTO $upstream", "is not supported"),
        ("FROM /messages/ INTO $upstream", "empty or invalid path segment"),
        ("FROM /messages//modules INTO $upstream", "empty or invalid path segment"),
        ("FROM /messages/modules/lo#der INTO $upstream", "empty or invalid path segment"),
        ("FROM messages/* INTO $upstream", "must start with '/'"),
    ],
)
def test_unsupported_sources_are_refused(route: str, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        parse_route(route)


@pytest.mark.parametrize(
    ("sink", "message"),
    [
        ("$downstream", "sink '\\$downstream' is not supported"),
        ("", "sink '' is not supported"),
        ("$upstream extra", "is not supported"),
        ('BrokeredEndpoint("/modules/inference/outputs/x")', "is not of the form"),
        ('BrokeredEndpoint("/modules/inference/inputs")', "is not of the form"),
        ('BrokeredEndpoint("/modules/inference/inputs/a/b")', "is not of the form"),
        ('BrokeredEndpoint("/modules/*/inputs/x")', "contains a wildcard"),
        ('BrokeredEndpoint("/modules/inference/inputs/*")', "contains a wildcard"),
        ("BrokeredEndpoint(/modules/inference/inputs/x)", "is not supported"),
        ("BrokeredEndpoint(\"/modules/inference/inputs/x')", "is not supported"),
        ('BrokeredEndpoint("/modules/inference/inputs/x"', "is not supported"),
        ('Endpoint("/modules/inference/inputs/x")', "is not supported"),
    ],
)
def test_unsupported_sinks_are_refused(sink: str, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        parse_route(f"FROM /messages/* INTO {sink}")


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("", "expected '\\[SELECT \\*\\] FROM"),
        ("INTO $upstream", "expected '\\[SELECT \\*\\] FROM"),
        ("SELECT a FROM /messages/* INTO $upstream", "expected '\\[SELECT \\*\\] FROM"),
        ("FROM /messages/*", "expected WHERE or INTO after the source, found ''"),
        ("FROM /messages/* TO $upstream", "expected WHERE or INTO after the source, found 'TO"),
        ("FROM /messages/* WHERE a = 'b'", "missing INTO <sink>"),
        ("FROM /messages/* WHERE INTO $upstream", "unexpected keyword 'INTO'"),
        ("FROM /messages/* WHERE a < 1 INTO $upstream", "operator '<' is not supported"),
    ],
)
def test_malformed_statements_are_refused(route: str, message: str) -> None:
    with pytest.raises(RouteError, match=message):
        parse_route(route)


def test_errors_name_the_route_and_its_text() -> None:
    with pytest.raises(RouteError) as caught:
        table(
            {
                "good": "FROM /messages/* INTO $upstream",
                "badSink": "FROM /messages/* INTO $nowhere",
            }
        )
    assert str(caught.value).startswith("route 'badSink' ('FROM /messages/* INTO $nowhere'): sink")


def test_string_and_object_forms_load_with_priority_and_ttl() -> None:
    routes = table(
        {
            "plain": "FROM /messages/modules/loader/outputs/ModelStatus INTO $upstream",
            "object": {
                "route": f"FROM /messages/modules/loader/outputs/DLModelOutput INTO {TO_INFERENCE}",
                "priority": 0,
                "timeToLiveSecs": 86400,
            },
            "objectDefaults": {"route": "FROM /messages/modules/loader/outputs/Other INTO $upstream"},
            "zeroTtl": {
                "route": "FROM /messages/modules/loader/outputs/Zero INTO $upstream",
                "priority": 9,
                "timeToLiveSecs": 0,
            },
        },
        ttl=3600,
    )
    by_name = {route.name: route for route in routes}
    assert len(routes) == 4
    assert (by_name["plain"].priority, by_name["plain"].ttl_secs) == (DEFAULT_PRIORITY, 3600)
    assert (by_name["object"].priority, by_name["object"].ttl_secs) == (0, 86400)
    assert (by_name["objectDefaults"].priority, by_name["objectDefaults"].ttl_secs) == (
        DEFAULT_PRIORITY,
        3600,
    )
    # edgeHub reads a TTL of 0 as "not given".
    assert (by_name["zeroTtl"].priority, by_name["zeroTtl"].ttl_secs) == (9, 3600)
    assert routes.deliveries(output_message()) == [Delivery(INFERENCE_INPUT, 0, 86400, "object")]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"route": "FROM /messages/* INTO $upstream", "priority": 10}, "priority: Input should be less"),
        ({"route": "FROM /messages/* INTO $upstream", "priority": -1}, "priority: Input should be greater"),
        (
            {"route": "FROM /messages/* INTO $upstream", "priority": "1"},
            "priority: Input should be a valid integer",
        ),
        (
            {"route": "FROM /messages/* INTO $upstream", "priority": True},
            "priority: Input should be a valid integer",
        ),
        (
            {"route": "FROM /messages/* INTO $upstream", "timeToLiveSecs": -5},
            "timeToLiveSecs: Input should be greater",
        ),
        ({"route": "FROM /messages/* INTO $upstream", "ttl": 5}, "ttl: Extra inputs are not permitted"),
        ({"priority": 1}, "route: Field required"),
        ({"route": 5}, "route: Input should be a valid string"),
    ],
)
def test_invalid_route_objects_are_refused(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(RouteError, match=f"route 'r': invalid route object \\(.*{message}"):
        table({"r": entry})


@pytest.mark.parametrize("entry", [5, None, ["FROM /messages/* INTO $upstream"]])
def test_entries_that_are_neither_string_nor_object_are_refused(entry: Any) -> None:
    with pytest.raises(RouteError, match="route 'r': expected a route string or an object"):
        table({"r": entry})


@pytest.mark.parametrize("ttl", [0, -1])
def test_default_ttl_must_be_positive(ttl: int) -> None:
    with pytest.raises(RouteError, match="default time-to-live must be positive"):
        table({}, ttl=ttl)


def test_overlapping_routes_into_one_sink_deliver_one_copy() -> None:
    routes = table(
        {
            "all": "FROM /messages/* INTO $upstream",
            "loader": "FROM /messages/modules/loader INTO $upstream",
            "output": "FROM /messages/modules/loader/outputs/DLModelOutput INTO $upstream",
        }
    )
    assert routes.deliveries(output_message()) == [Delivery(UPSTREAM, DEFAULT_PRIORITY, 7200, "all")]


def test_the_highest_priority_route_into_a_sink_wins() -> None:
    routes = table(
        {
            "low": {"route": "FROM /messages/* INTO $upstream", "priority": 5, "timeToLiveSecs": 10},
            "high": {
                "route": "FROM /messages/modules/loader INTO $upstream",
                "priority": 1,
                "timeToLiveSecs": 20,
            },
            "default": "FROM /messages/modules/* INTO $upstream",
        }
    )
    assert routes.deliveries(output_message()) == [Delivery(UPSTREAM, 1, 20, "high")]


def test_equal_priorities_keep_the_longest_ttl() -> None:
    routes = table(
        {
            "short": {"route": "FROM /messages/* INTO $upstream", "priority": 2, "timeToLiveSecs": 10},
            "long": {"route": "FROM /messages/* INTO $upstream", "priority": 2, "timeToLiveSecs": 99},
            "same": {"route": "FROM /messages/* INTO $upstream", "priority": 2, "timeToLiveSecs": 99},
        }
    )
    assert routes.deliveries(output_message()) == [Delivery(UPSTREAM, 2, 99, "long")]


def test_each_sink_gets_its_own_copy_ordered_by_priority() -> None:
    routes = table(
        {
            "up": "FROM /messages/* INTO $upstream",
            "status": {"route": f"FROM /messages/* INTO {TO_INFERENCE}", "priority": 3},
            "other": 'FROM /messages/* INTO BrokeredEndpoint("/modules/inference/inputs/Other")',
        }
    )
    assert [(d.route_name, d.sink) for d in routes.deliveries(output_message())] == [
        ("status", INFERENCE_INPUT),
        ("up", UPSTREAM),
        ("other", Sink("module", "inference", "Other")),
    ]


def test_a_route_whose_condition_fails_does_not_claim_the_sink() -> None:
    routes = table(
        {
            "filtered": {
                "route": "FROM /messages/* WHERE urgent = 'yes' INTO $upstream",
                "priority": 0,
                "timeToLiveSecs": 5,
            },
            "fallback": "FROM /messages/* INTO $upstream",
        }
    )
    assert routes.deliveries(output_message(app={"urgent": "yes"})) == [Delivery(UPSTREAM, 0, 5, "filtered")]
    assert routes.deliveries(output_message()) == [Delivery(UPSTREAM, DEFAULT_PRIORITY, 7200, "fallback")]


def test_forwarded_properties_drop_the_output_and_add_the_sender() -> None:
    forwarded = output_message().forwarded_system_properties()
    assert forwarded == {"$.mid": "m-1", "$.cdid": "edgedev1", "$.cmid": "loader"}


def test_sinks_print_as_route_syntax() -> None:
    assert str(UPSTREAM) == "$upstream"
    assert str(INFERENCE_INPUT) == TO_INFERENCE
    assert parse_route(f"FROM /* INTO {INFERENCE_INPUT}").sink == INFERENCE_INPUT
