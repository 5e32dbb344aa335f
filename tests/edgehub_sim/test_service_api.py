"""The HTTPS service API: authorisation, twins, recorded messages."""

import pytest

from edgehub_sim.sas import make_token, new_key
from edgehub_sim.server import EdgeHubSimulator
from tests.edgehub_sim.conftest import service_client

pytestmark = pytest.mark.integration


async def test_wrong_service_key_is_401(simulator: EdgeHubSimulator) -> None:
    forged = make_token(simulator.service_host, new_key(), key_name="iothubowner")
    async with service_client(simulator, token=forged) as http:
        response = await http.get(f"/twins/{simulator.device_id}/modules/sender")
    assert response.status_code == 401


@pytest.mark.parametrize("header", ["", "Bearer abc", "SharedAccessSignature sr=x"])
async def test_missing_or_malformed_authorization_is_401(simulator: EdgeHubSimulator, header: str) -> None:
    async with service_client(simulator, token=header or "none") as http:
        if not header:
            del http.headers["Authorization"]
        response = await http.get("/sim/messages")
    assert response.status_code == 401


async def test_expired_service_token_is_401(simulator: EdgeHubSimulator) -> None:
    async with service_client(simulator, token=simulator.service_token(ttl_secs=-5)) as http:
        response = await http.get("/sim/messages")
    assert response.status_code == 401


async def test_module_token_cannot_read_twins(simulator: EdgeHubSimulator) -> None:
    resource = f"{simulator.hub_name}/devices/{simulator.device_id}/modules/sender"
    token = make_token(resource, simulator.module_key("sender"))
    async with service_client(simulator, token=token) as http:
        http.headers["x-ms-edge-moduleId"] = f"{simulator.device_id}/sender"
        response = await http.get(f"/twins/{simulator.device_id}/modules/sender")
    assert response.status_code == 401


async def test_unknown_device_or_module_is_404(simulator: EdgeHubSimulator) -> None:
    async with service_client(simulator) as http:
        assert (await http.get("/twins/other-device/modules/sender")).status_code == 404
        assert (await http.get(f"/twins/{simulator.device_id}/modules/ghost")).status_code == 404


async def test_twin_patch_validates_body(simulator: EdgeHubSimulator) -> None:
    path = f"/twins/{simulator.device_id}/modules/sender"
    async with service_client(simulator) as http:
        bad = await http.patch(path, content=b"{nope")
        assert bad.status_code == 400
        wrong_shape = await http.patch(path, json={"properties": {"desired": [1]}})
        assert wrong_shape.status_code == 400
        fine = await http.patch(path, json={"properties": {"desired": {"level": None}}})
        assert fine.status_code == 200
        assert fine.json()["properties"]["desired"] == {
            "modelUrl": "https://example.invalid/m.zip",
            "$version": 2,
        }


async def test_sim_messages_lists_recorded_messages(simulator: EdgeHubSimulator) -> None:
    async with service_client(simulator) as http:
        assert (await http.get("/sim/messages")).json() == []
        assert (await http.get("/sim/messages?sink=bogus")).status_code == 400


async def test_module_token_must_match_the_calling_module_header(simulator: EdgeHubSimulator) -> None:
    resource = f"{simulator.hub_name}/devices/{simulator.device_id}/modules/sender"
    token = make_token(resource, simulator.module_key("sender"))
    path = f"/twins/{simulator.device_id}/modules/receiver/methods"
    body = {"methodName": "ping", "responseTimeoutInSeconds": 5}
    async with service_client(simulator, token=token) as http:
        http.headers["x-ms-edge-moduleId"] = f"{simulator.device_id}/receiver"
        assert (await http.post(path, json=body)).status_code == 401
        http.headers["x-ms-edge-moduleId"] = f"{simulator.device_id}/sender"
        assert (await http.post(path, json=body)).status_code == 404  # authorised; receiver is offline
