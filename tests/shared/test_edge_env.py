"""The IoT Edge environment check both modules make before creating the SDK client."""

from __future__ import annotations

from edge_shared.edge_env import DEV_VARIABLES, EDGE_VARIABLES, missing_edge_environment

EDGE = dict.fromkeys(EDGE_VARIABLES, "x")


def test_a_deployed_module_has_everything() -> None:
    assert missing_edge_environment(EDGE) is None


def test_the_sdk_debugging_fallback_is_accepted_when_no_edge_variable_is_set() -> None:
    assert missing_edge_environment(dict.fromkeys(DEV_VARIABLES, "x")) is None


def test_a_partial_edge_environment_names_each_missing_variable() -> None:
    env = {**EDGE, "IOTEDGE_WORKLOADURI": "", "DEV": "1"}
    del env["IOTEDGE_APIVERSION"]
    problem = missing_edge_environment({**env, **dict.fromkeys(DEV_VARIABLES, "x")})
    assert problem is not None
    assert "IOTEDGE_WORKLOADURI, IOTEDGE_APIVERSION are not set" in problem


def test_nothing_set_names_all_seven() -> None:
    problem = missing_edge_environment({})
    assert problem is not None and all(name in problem for name in EDGE_VARIABLES)
