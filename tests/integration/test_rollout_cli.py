"""`edge-model rollout` and `edge-model fleet` against the simulator's configurations API, real loaders
and Azurite: a rollout driven to the end, bad plans refused before anything exists, an abort that
sends devices back to the layer below."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from edge_tools.fixtures import FixtureCatalog
from edge_tools.publish.cli import main
from edge_tools.rollout import runner
from edge_tools.stack.fleet import FleetStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetStack]:
    with FleetStack(tmp_path_factory.mktemp("fleet"), 3, deployment_interval=1.0) as stack:
        with stack.hub() as hub:
            for index, device in enumerate(stack.device_ids):
                hub.update_device_tags(
                    device, {"ring": "canary" if index == 0 else "late", "environment": "prod"}
                )
        yield stack


def _hub_args(fleet: FleetStack) -> list[str]:
    return ["--hub-connection-string", fleet.hub_connection_string, "--hub-ca-file", str(fleet.hub_ca_file)]


def _storage_args(fleet: FleetStack) -> list[str]:
    return [
        "--storage-connection-string",
        fleet.storage_connection_string,
        "--storage-ca-file",
        str(fleet.storage_ca_file),
    ]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    assert "sig=" not in captured.out + captured.err  # no SAS ever printed
    assert "SharedAccessKey" not in captured.out + captured.err
    return code, captured.out, captured.err


def _start(
    fleet: FleetStack, catalog: FixtureCatalog, rollout_id: str, version: str, model: str, *extra: str
) -> list[str]:
    return [
        "rollout",
        "start",
        str(catalog.path(catalog.model(model).zip_file)),
        "--version",
        version,
        "--file-name",
        f"{rollout_id}.zip",
        "--id",
        rollout_id,
        "--ring",
        "canary:tags.ring='canary'",
        "--ring",
        "all:tags.environment='prod'",
        *extra,
        *_storage_args(fleet),
        *_hub_args(fleet),
    ]


def _configuration_ids(fleet: FleetStack) -> list[str]:
    with fleet.hub() as hub:
        return sorted(str(config["id"]) for config in hub.list_configurations())


def _desired_versions(fleet: FleetStack) -> dict[str, Any]:
    with fleet.hub() as hub:
        rows = hub.query("SELECT * FROM devices.modules WHERE moduleId='loader'")
        return {
            row["deviceId"]: (((row.get("properties") or {}).get("desired") or {}).get("Model") or {}).get(
                "Version"
            )
            for row in rows
        }


def test_a_rollout_is_driven_to_the_end_and_shown_by_status_and_fleet(
    fleet: FleetStack, catalog: FixtureCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys,
        *_start(
            fleet,
            catalog,
            "cli-one",
            "cli-v1",
            "tiny-yolo-1",
            "--interval",
            "0.3",
            "--timeout",
            "120",
            "--json",
        ),
    )
    assert code == 0, out
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0] == {"event": "started", "rollout": "cli-one", "rings": ["canary", "all"]}
    assert [e["message"].split(":")[0] for e in events if e["event"] == "promote"] == [
        "ring canary",
        "ring all",
    ]
    assert events[-1]["state"] == "done"

    code, out, _ = _run(capsys, "rollout", "status", "--json", *_hub_args(fleet))
    listed = {item["id"]: item for item in json.loads(out)}
    assert code == 0 and {"version": "cli-v1", "state": "done"}.items() <= listed["cli-one"].items()
    code, out, _ = _run(capsys, "rollout", "status", "cli-one", "--json", *_hub_args(fleet))
    rings = json.loads(out)["rings"]
    assert [(r["name"], r["state"], r["counts"]["targeted"], r["counts"]["ready"]) for r in rings] == [
        ("canary", "promoted", 1, 1),
        ("all", "promoted", 3, 3),
    ]
    code, out, _ = _run(capsys, "fleet", "--json", "--devices", *_hub_args(fleet))
    view = json.loads(out)
    assert view["devices"] == 3 and view["states"] == {"ready": 3} and view["versions"] == {"cli-v1": 3}
    code, out, _ = _run(capsys, "fleet", *_hub_args(fleet))
    assert "rollout cli-one: version cli-v1, done" in out and "update versions: cli-v1 3" in out
    code, out, _ = _run(capsys, "fleet", "--watch", "0.1", "--count", "2", "--json", *_hub_args(fleet))
    assert code == 0 and [json.loads(line)["devices"] for line in out.splitlines()] == [3, 3]

    code, out, _ = _run(capsys, "rollout", "delete", "cli-one", *_hub_args(fleet))
    assert code == 0 and not any(c.startswith("edge-model-cli-one-") for c in _configuration_ids(fleet))


@pytest.mark.parametrize(
    ("rings", "message"),
    [
        (["a:tags.ring='canary'", "a:tags.environment='prod'"], "duplicate ring name(s): a"),
        (["a:tags.ring='nowhere'"], "ring(s) matching no device: a"),
        (["a:tags.ring IN ['canary']"], "IoT Hub refuses IN [...]"),
        (["a:tags.ring = = 'canary'"], "HTTP 400"),
        (["a:"], "empty"),
    ],
)
def test_bad_plans_are_refused_before_anything_is_created(
    fleet: FleetStack,
    catalog: FixtureCatalog,
    capsys: pytest.CaptureFixture[str],
    rings: list[str],
    message: str,
) -> None:
    before = _configuration_ids(fleet)
    argv = _start(fleet, catalog, "cli-bad", "cli-bad", "tiny-yolo-1", "--no-wait")
    cut = argv.index("--ring")
    argv[cut : cut + 4] = [item for ring in rings for item in ("--ring", ring)]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert message in err
    assert _configuration_ids(fleet) == before


def test_an_existing_rollout_id_is_refused(
    fleet: FleetStack, catalog: FixtureCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = _run(capsys, *_start(fleet, catalog, "cli-twice", "cli-v9", "tiny-yolo-1", "--no-wait"))
    assert code == 0
    code, _, err = _run(capsys, *_start(fleet, catalog, "cli-twice", "cli-v9", "tiny-yolo-1", "--no-wait"))
    assert code == 2 and "rollout 'cli-twice' exists already" in err
    code, _, err = _run(capsys, "rollout", "delete", "cli-twice", *_hub_args(fleet))
    assert code == 2 and "is running" in err
    assert _run(capsys, "rollout", "abort", "cli-twice", *_hub_args(fleet))[0] == 0
    assert _run(capsys, "rollout", "delete", "cli-twice", *_hub_args(fleet))[0] == 0


def test_an_aborted_rollout_sends_its_devices_back_to_the_layer_below(
    fleet: FleetStack, catalog: FixtureCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys,
        *_start(
            fleet, catalog, "cli-base", "cli-base", "tiny-yolo-1", "--interval", "0.3", "--timeout", "120"
        ),
    )
    assert code == 0, out
    code, out, _ = _run(capsys, *_start(fleet, catalog, "cli-next", "cli-next", "tiny-yolo-2", "--no-wait"))
    assert code == 0
    fleet.wait_for(
        "the canary asked for cli-next", lambda: "cli-next" in _desired_versions(fleet).values(), timeout=30
    )

    code, out, _ = _run(capsys, "rollout", "abort", "cli-next", "--reason", "bad model", *_hub_args(fleet))
    assert code == 0 and "bad model" in out
    fleet.wait_for(
        "every device asked for cli-base again",
        lambda: set(_desired_versions(fleet).values()) == {"cli-base"},
        timeout=30,
    )
    code, out, _ = _run(capsys, "rollout", "advance", "cli-next", "--json", *_hub_args(fleet))
    assert code == 1 and json.loads(out)["state"] == "halted"
    code, out, _ = _run(capsys, "rollout", "status", *_hub_args(fleet))
    assert any(line.split()[:3] == ["cli-next", "cli-next", "halted"] for line in out.splitlines())


def test_a_device_no_longer_targeted_falls_back_to_its_own_desired_properties(
    fleet: FleetStack, catalog: FixtureCatalog, capsys: pytest.CaptureFixture[str]
) -> None:
    # `edge-model publish` wrote top-level keys on one device while a layer's `Model` object names the
    # fleet's model: the layer wins whole. Once no layer targets the device, its own keys apply again.
    device = fleet.device_ids[1]
    code, out, _ = _run(
        capsys,
        *_start(
            fleet, catalog, "cli-cover", "cli-cover", "tiny-yolo-2", "--interval", "0.3", "--timeout", "120"
        ),
    )
    assert code == 0, out
    code, out, err = _run(
        capsys,
        "publish",
        str(catalog.path(catalog.model("ssd-lite-1").zip_file)),
        "--version",
        "cli-own",
        "--device-id",
        device,
        "--no-progress",
        *_storage_args(fleet),
        *_hub_args(fleet),
    )
    assert code == 0, err
    assert _desired_versions(fleet)[device] == "cli-cover"
    with fleet.hub() as hub:  # every layer goes (other tests' too: they may share this fleet)
        for record in runner.rollouts(hub).values():
            if record.state == "running":
                runner.abort(hub, record.rollout_id)
            runner.delete(hub, record.rollout_id)

    def own_model_ready() -> bool:
        with fleet.hub() as hub:
            for row in hub.query(
                f"SELECT * FROM devices.modules WHERE moduleId='loader' AND deviceId='{device}'"
            ):
                update = ((row.get("properties") or {}).get("reported") or {}).get("ModelUpdate") or {}
                return bool(update.get("version") == "cli-own" and update.get("state") == "ready")
        return False

    fleet.wait_for("the device's own model", own_model_ready, timeout=60)
    assert _desired_versions(fleet)[device] is None
