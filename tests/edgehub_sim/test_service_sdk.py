"""Microsoft's own service SDK (azure-iot-hub) against the simulator over TLS: proof that configurations,
device twins and queries speak IoT Hub's REST dialect, not just what our own clients expect."""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

# azure-iot-hub ships no type information (a test-only dependency; its objects are used as Any).
from azure.iot.hub import IoTHubConfigurationManager, IoTHubRegistryManager  # type: ignore[import-untyped]
from azure.iot.hub.models import (  # type: ignore[import-untyped]
    Configuration,
    ConfigurationContent,
    ConfigurationMetrics,
    QuerySpecification,
    Twin,
)
from msrest.exceptions import HttpOperationError

from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import start_simulator

pytestmark = pytest.mark.integration

DEVICES = ["dev-001", "dev-002", "dev-003"]


@pytest.fixture
def fleet(manifest_path: Path, tmp_path: Path) -> Iterator[EdgeHubSimulator]:
    simulator = start_simulator(manifest_path, tmp_path / "state", devices=DEVICES, deployment_interval=1.0)
    yield simulator
    simulator.stop()


def trusting(client: Any, simulator: EdgeHubSimulator) -> Any:
    """The SDK's msrest pipeline (requests) verifies against the simulator's CA."""
    client.protocol.config.connection.verify = str(simulator.ca_path)
    return client


def status_of(call: Any) -> int:
    with pytest.raises(HttpOperationError) as refused:
        call()
    return int(refused.value.response.status_code)


def layered(config_id: str, priority: int) -> Configuration:
    return Configuration(
        id=config_id,
        schema_version="1.0",
        labels={"rollout": "sdk"},
        content=ConfigurationContent(
            modules_content={"$edgeAgent": {}, "sender": {"properties.desired.model": {"version": "7"}}}
        ),
        target_condition="tags.ring='canary'",
        priority=priority,
        metrics=ConfigurationMetrics(
            queries={"senders": "SELECT deviceId FROM devices.modules WHERE moduleId='sender'"}
        ),
    )


def test_configuration_manager_creates_reads_updates_and_deletes(fleet: EdgeHubSimulator) -> None:
    manager = trusting(
        IoTHubConfigurationManager.from_connection_string(fleet.service_connection_string), fleet
    )
    registry = trusting(IoTHubRegistryManager.from_connection_string(fleet.service_connection_string), fleet)
    registry.update_twin("dev-002", Twin(tags={"ring": "canary"}))
    created = manager.create_configuration(layered("sdk-layer", 10))
    assert (created.id, created.priority, created.target_condition) == ("sdk-layer", 10, "tags.ring='canary'")
    assert isinstance(created.created_time_utc, datetime) and created.etag
    assert created.content.modules_content["sender"] == {"properties.desired.model": {"version": "7"}}
    assert status_of(lambda: manager.create_configuration(layered("sdk-layer", 10))) == 409

    fleet.wait_for(lambda: fleet.control.desired("sender", "dev-002").get("model") == {"version": "7"})
    fleet.wait_for(
        lambda: fleet.control.configuration("sdk-layer")["metrics"]["results"].get("senders") == len(DEVICES)
    )
    read = manager.get_configuration("sdk-layer")
    assert read.system_metrics.results == {"targetedCount": 1, "appliedCount": 1}
    assert read.metrics.results == {"senders": 3} and read.labels == {"rollout": "sdk"}

    read.priority = 20
    read.target_condition = "tags.ring='canary' OR deviceId='dev-003'"
    updated = manager.update_configuration(read, read.etag)
    assert (updated.priority, updated.etag != read.etag) == (20, True)
    assert status_of(lambda: manager.update_configuration(read, read.etag)) == 412  # stale etag
    fleet.wait_for(lambda: fleet.control.desired("sender", "dev-003").get("model") == {"version": "7"})

    assert [c.id for c in manager.get_configurations(max_count=10)] == ["sdk-layer"]
    manager.delete_configuration("sdk-layer")
    assert status_of(lambda: manager.get_configuration("sdk-layer")) == 404
    fleet.wait_for(lambda: "model" not in fleet.control.desired("sender", "dev-002"))


def test_registry_manager_updates_device_twin_tags_and_queries(fleet: EdgeHubSimulator) -> None:
    registry = trusting(IoTHubRegistryManager.from_connection_string(fleet.service_connection_string), fleet)
    twin = registry.get_twin("dev-003")
    assert (twin.device_id, twin.tags) == ("dev-003", {})
    updated = registry.update_twin("dev-003", Twin(tags={"ring": "early", "site": "north"}), twin.etag)
    assert updated.tags == {"ring": "early", "site": "north"}
    assert status_of(lambda: registry.update_twin("dev-003", Twin(tags={"ring": "x"}), twin.etag)) == 412
    assert status_of(lambda: registry.get_twin("dev-404")) == 404

    result = registry.query_iot_hub(
        QuerySpecification(query="SELECT * FROM devices WHERE tags.ring = 'early'")
    )
    assert [t.device_id for t in result.items] == ["dev-003"] and result.items[0].tags["site"] == "north"
    assert result.continuation_token is None

    first = registry.query_iot_hub(QuerySpecification(query="SELECT * FROM devices"), None, 2)
    assert [t.device_id for t in first.items] == ["dev-001", "dev-002"] and first.continuation_token
    rest = registry.query_iot_hub(
        QuerySpecification(query="SELECT * FROM devices"), first.continuation_token, 2
    )
    assert [t.device_id for t in rest.items] == ["dev-003"] and rest.continuation_token is None

    modules = registry.query_iot_hub(
        QuerySpecification(query="SELECT deviceId FROM devices.modules WHERE moduleId='receiver'")
    )
    assert [t.device_id for t in modules.items] == DEVICES
    module_twin = registry.get_module_twin("dev-002", "sender")
    assert (module_twin.device_id, module_twin.module_id) == ("dev-002", "sender")
