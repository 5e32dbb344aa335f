"""Loading deployment manifests: the repo's own, the accepted shapes, and every refusal."""

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edgehub_sim.manifest import ManifestError, load_manifest, parse_manifest
from edgehub_sim.routing import DEFAULT_PRIORITY, UPSTREAM, Delivery, RoutableMessage, Sink

REPO_MANIFEST = Path(__file__).resolve().parents[2] / "deployment.json"


def loader_output(output: str, module: str = "loader") -> RoutableMessage:
    return RoutableMessage(
        device_id="edgedev1",
        module_id=module,
        output=output,
        body=b'{"version": "1.1"}',
        system_properties={"$.on": output, "$.ct": "application/json", "$.ce": "utf-8"},
        app_properties={},
    )


def minimal_manifest(
    routes: dict[str, Any] | None = None, hub_extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A small valid manifest with modules `loader` and `inference`."""
    return {
        "modulesContent": {
            "$edgeAgent": {
                "properties.desired": {
                    "schemaVersion": "1.1",
                    "modules": {
                        "loader": {"env": {"LOADER_KEEP_VERSIONS": {"value": 3}}},
                        "inference": {"type": "docker"},
                    },
                }
            },
            "$edgeHub": {
                "properties.desired": {
                    "schemaVersion": "1.1",
                    "routes": routes if routes is not None else {"up": "FROM /messages/* INTO $upstream"},
                    **(hub_extra or {}),
                }
            },
            "loader": {"properties.desired": {"FileName": "m-1.zip", "Nested": {"a": [1, 2]}}},
        }
    }


def test_the_repository_manifest_loads() -> None:
    manifest = load_manifest(REPO_MANIFEST)
    assert set(manifest.modules) == {"loader", "inference"}
    assert manifest.modules["loader"].env["LOADER_MODEL_ROOT"] == "/models"
    assert manifest.modules["inference"].env["INFERENCE_PORT"] == "8080"
    assert manifest.modules["loader"].desired == {}
    assert manifest.store_and_forward_ttl_secs == 7200
    assert [route.name for route in manifest.routes] == [
        "loaderToInference",
        "loaderStatusToUpstream",
        "inferenceStatusToLoader",
    ]


def test_the_repository_manifest_routes_model_outputs_to_inference() -> None:
    routes = load_manifest(REPO_MANIFEST).routes
    assert routes.deliveries(loader_output("DLModelOutput")) == [
        Delivery(Sink("module", "inference", "DLModelInput"), 0, 86400, "loaderToInference")
    ]


def test_the_repository_manifest_routes_status_upstream() -> None:
    routes = load_manifest(REPO_MANIFEST).routes
    assert routes.deliveries(loader_output("ModelStatus")) == [
        Delivery(UPSTREAM, DEFAULT_PRIORITY, 7200, "loaderStatusToUpstream")
    ]


def test_the_repository_manifest_routes_inference_status_to_the_loader() -> None:
    routes = load_manifest(REPO_MANIFEST).routes
    assert routes.deliveries(loader_output("InferenceStatus", module="inference")) == [
        Delivery(Sink("module", "loader", "InferenceStatusInput"), 0, 86400, "inferenceStatusToLoader")
    ]


@pytest.mark.parametrize(
    "message",
    [
        loader_output("Other"),
        loader_output("DLModelOutput", module="inference"),
        loader_output("DLModel"),
        loader_output("InferenceStatus"),  # only the inference module's output goes to the loader
    ],
)
def test_the_repository_manifest_routes_nothing_else(message: RoutableMessage) -> None:
    assert load_manifest(REPO_MANIFEST).routes.deliveries(message) == []


def test_modules_env_and_desired_properties() -> None:
    manifest = parse_manifest(minimal_manifest())
    loader = manifest.modules["loader"]
    assert loader.name == "loader"
    assert loader.env == {"LOADER_KEEP_VERSIONS": "3"}  # numbers become strings, as in a container env
    assert loader.desired == {"FileName": "m-1.zip", "Nested": {"a": [1, 2]}}
    assert manifest.modules["inference"].env == {}
    assert manifest.modules["inference"].desired == {}
    assert manifest.schema_version == "1.1"


def test_store_and_forward_ttl_defaults_to_7200_and_is_read_when_given() -> None:
    assert parse_manifest(minimal_manifest()).store_and_forward_ttl_secs == 7200
    configured = parse_manifest(
        minimal_manifest(hub_extra={"storeAndForwardConfiguration": {"timeToLiveSecs": 60}})
    )
    assert configured.store_and_forward_ttl_secs == 60
    assert [route.ttl_secs for route in configured.routes] == [60]


def test_the_az_cli_content_wrapper_is_accepted() -> None:
    manifest = parse_manifest({"content": minimal_manifest()})
    assert set(manifest.modules) == {"loader", "inference"}


def test_desired_properties_of_an_undeployed_module_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = minimal_manifest()
    data["modulesContent"]["ghost"] = {"properties.desired": {"a": 1}}
    with caplog.at_level(logging.WARNING, logger="edgehub_sim.manifest"):
        manifest = parse_manifest(data)
    assert "ghost" not in manifest.modules
    assert "'ghost', which is not a deployed module" in caplog.text


def test_loading_writes_nothing_and_reads_a_copy(tmp_path: Path) -> None:
    data = minimal_manifest()
    original = copy.deepcopy(data)
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    manifest = load_manifest(path)
    assert data == original
    assert manifest.modules["loader"].desired["FileName"] == "m-1.zip"


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = minimal_manifest()
    node = data["modulesContent"]
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


_DELETE = object()
_HUB = ("$edgeHub", "properties.desired")
_AGENT = ("$edgeAgent", "properties.desired")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "no 'modulesContent' object"),
        ({"modulesContent": []}, "no 'modulesContent' object"),
        ({"content": 5}, "no 'modulesContent' object"),
        (_with(("$edgeHub",), _DELETE), r"modulesContent\.\$edgeHub: Field required"),
        (_with(("$edgeAgent",), _DELETE), r"modulesContent\.\$edgeAgent: Field required"),
        (
            _with(("$edgeHub", "properties.desired"), _DELETE),
            r"modulesContent\.\$edgeHub\.properties\.desired: Field required",
        ),
        (_with((*_HUB, "schemaVersion"), _DELETE), "schemaVersion: Field required"),
        (
            _with((*_HUB, "routes"), ["FROM /messages/* INTO $upstream"]),
            "routes: Input should be a valid dictionary",
        ),
        (
            _with((*_HUB, "storeAndForwardConfiguration"), {"timeToLiveSecs": 0}),
            "timeToLiveSecs: Input should be greater than 0",
        ),
        (
            _with((*_HUB, "storeAndForwardConfiguration"), {"timeToLiveSecs": "7200"}),
            "timeToLiveSecs: Input should be a valid integer",
        ),
        (
            _with((*_AGENT, "modules", "loader", "env"), {"A": {"value": {"nested": 1}}}),
            r"env\.A\.value",
        ),
        (_with((*_AGENT, "modules", "loader", "env"), {"A": "bare"}), r"env\.A: Input should be"),
        (_with((*_AGENT, "modules", "edgeHub"), {}), "must not redefine system modules: \\['edgeHub'\\]"),
        (
            _with(("loader",), {"properties.desired": []}),
            "modulesContent.loader: Input should be a valid dictionary",
        ),
        (_with(("loader",), "nope"), "modulesContent.loader: Input should be"),
        (
            _with((*_HUB, "routes"), {"bad": "FROM /messages/* INTO $nowhere"}),
            r"\$edgeHub routes: route 'bad' \('FROM /messages/\* INTO \$nowhere'\): sink '\$nowhere'",
        ),
        (
            _with(
                (*_HUB, "routes"), {"r": 'FROM /messages/* INTO BrokeredEndpoint("/modules/ghost/inputs/x")'}
            ),
            "route 'r' delivers to module 'ghost', which \\$edgeAgent does not deploy "
            "\\(modules: inference, loader\\)",
        ),
        (
            minimal_manifest(
                routes={"r": {"route": "FROM /messages/* INTO $upstream", "priority": 1}},
                hub_extra={"schemaVersion": "1.0"},
            ),
            "schemaVersion 1.0 allows only string routes",
        ),
    ],
)
def test_invalid_manifests_are_refused_with_a_clear_message(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(data)


def test_a_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(ManifestError, match=f"cannot read manifest {missing}"):
        load_manifest(missing)


def test_invalid_json_reports_the_position(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text('{\n  "modulesContent": {,\n}', encoding="utf-8")
    with pytest.raises(ManifestError, match="is not valid JSON: .* at line 2 column 22"):
        load_manifest(path)


def test_non_utf8_file_is_a_manifest_error(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ManifestError, match="cannot read manifest"):
        load_manifest(path)


def test_a_json_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(ManifestError, match="must be a JSON object, got list"):
        load_manifest(path)


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "deployment.json"
    path.write_text(
        json.dumps(_with((*_HUB, "routes"), {"bad": "FROM /nowhere INTO $upstream"})), encoding="utf-8"
    )
    with pytest.raises(ManifestError, match=f"manifest {path}: \\$edgeHub routes: route 'bad'"):
        load_manifest(path)
