"""deployment.json is a well-formed IoT Edge manifest, and docker-compose.test.yml and the Dockerfiles agree
with it (module names, images, env, volume, ports, routes, start order). No Docker needed: files as data.
"""

from __future__ import annotations

import copy
import ipaddress
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edge_shared.errors import InvalidDesiredError
from tests.tools.topology import (
    DEPLOYMENT,
    IMAGE_PACKAGES,
    REPO_ROOT,
    SCHEMA,
    agent_desired,
    arm64_gaps,
    arm64_wheels,
    check_loader_desired,
    create_options,
    dockerfile,
    dockerfile_env,
    hub_desired,
    load_compose,
    load_json,
    lock_packages,
    port_bindings,
    runtime_closure,
)

MODULES = ("loader", "inference")
#: Compose env a module may have beyond the manifest's `env`: what edgeAgent injects, and test-only knobs.
INJECTED_PREFIXES = ("IOTEDGE_",)
INJECTED = {"EdgeModuleCACertificateFile"}
TEST_ONLY_ENV = {"loader": {"LOADER_ALLOW_INSECURE_HTTP"}, "inference": set()}
RESTART = {"always": "always", "on-failure": "on-failure", "on-unhealthy": "always", "never": "no"}
ROUTES = {
    "FROM /messages/modules/loader/outputs/DLModelOutput "
    'INTO BrokeredEndpoint("/modules/inference/inputs/DLModelInput")',
    "FROM /messages/modules/loader/outputs/ModelStatus INTO $upstream",
    "FROM /messages/modules/inference/outputs/InferenceStatus "
    'INTO BrokeredEndpoint("/modules/loader/inputs/InferenceStatusInput")',
}


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return load_json(DEPLOYMENT)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = load_json(SCHEMA)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def services(compose: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = compose["services"]
    return result


def simulator_args(compose: dict[str, Any]) -> dict[str, str]:
    command = services(compose)["edgehub"]["command"]
    assert command[:4] == ["python", "-m", "edgehub_sim", "serve"]
    options = command[4:]
    return dict(zip(options[::2], options[1::2], strict=True))


def mounts(service: dict[str, Any]) -> list[str]:
    return [str(volume) for volume in service.get("volumes", [])]


# --- deployment.json as an IoT Edge manifest ----------------------------------------------------------


def test_deployment_manifest_validates_against_the_edge_deployment_schema(
    manifest: dict[str, Any], validator: jsonschema.Draft202012Validator
) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]
    assert errors == []
    assert set(agent_desired(manifest)["modules"]) == set(MODULES)


def _drop_edge_hub(m: dict[str, Any]) -> None:
    del m["modulesContent"]["$edgeHub"]


def _create_options_as_object(m: dict[str, Any]) -> None:
    agent_desired(m)["modules"]["loader"]["settings"]["createOptions"] = {"HostConfig": {}}


def _bad_restart_policy(m: dict[str, Any]) -> None:
    agent_desired(m)["modules"]["inference"]["restartPolicy"] = "sometimes"


def _no_schema_version(m: dict[str, Any]) -> None:
    del agent_desired(m)["schemaVersion"]


def _env_without_value(m: dict[str, Any]) -> None:
    agent_desired(m)["modules"]["loader"]["env"]["LOADER_MODEL_ROOT"] = "/models"


def _route_without_into(m: dict[str, Any]) -> None:
    hub_desired(m)["routes"]["broken"] = "FROM /messages/modules/loader/outputs/*"


def _no_store_and_forward_ttl(m: dict[str, Any]) -> None:
    hub_desired(m)["storeAndForwardConfiguration"] = {}


def _object_route_in_schema_1_0(m: dict[str, Any]) -> None:
    hub_desired(m)["schemaVersion"] = "1.0"


def _module_without_image(m: dict[str, Any]) -> None:
    del agent_desired(m)["modules"]["inference"]["settings"]["image"]


def _edge_hub_stopped(m: dict[str, Any]) -> None:
    agent_desired(m)["systemModules"]["edgeHub"]["status"] = "stopped"


def _twin_without_desired(m: dict[str, Any]) -> None:
    m["modulesContent"]["loader"] = {"properties.reported": {}}


@pytest.mark.parametrize(
    "break_it",
    [
        _drop_edge_hub,
        _create_options_as_object,
        _bad_restart_policy,
        _no_schema_version,
        _env_without_value,
        _route_without_into,
        _no_store_and_forward_ttl,
        _object_route_in_schema_1_0,
        _module_without_image,
        _edge_hub_stopped,
        _twin_without_desired,
    ],
)
def test_the_schema_refuses_a_broken_manifest(
    manifest: dict[str, Any],
    validator: jsonschema.Draft202012Validator,
    break_it: Callable[[dict[str, Any]], None],
) -> None:
    broken = copy.deepcopy(manifest)
    break_it(broken)
    assert not validator.is_valid(broken)


def test_every_create_options_is_a_json_string_that_parses(manifest: dict[str, Any]) -> None:
    agent = agent_desired(manifest)
    for name, module in {**agent["systemModules"], **agent["modules"]}.items():
        assert isinstance(module["settings"]["createOptions"], str), name
        assert isinstance(create_options(module["settings"]), dict), name


def test_create_options_that_do_not_parse_are_refused() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        create_options({"createOptions": '{"HostConfig": '})
    with pytest.raises(ValueError, match="JSON object"):
        create_options({"createOptions": "[1]"})
    split = {"createOptions": '{"HostConfig": {"Binds": ', "createOptions01": '["v:/m"]}}'}
    assert create_options(split) == {"HostConfig": {"Binds": ["v:/m"]}}


def test_edge_hub_routes_are_the_design_routes_and_store_and_forward_is_set(manifest: dict[str, Any]) -> None:
    hub = hub_desired(manifest)
    routes = {r if isinstance(r, str) else r["route"] for r in hub["routes"].values()}
    assert routes == ROUTES
    assert hub["storeAndForwardConfiguration"]["timeToLiveSecs"] > 0


def test_loader_desired_properties_satisfy_the_contract(manifest: dict[str, Any]) -> None:
    # `{}` asks for no model: the publish CLI names one later (a SAS URL in a manifest would expire).
    desired = manifest["modulesContent"]["loader"]["properties.desired"]
    check_loader_desired(desired)
    with pytest.raises(InvalidDesiredError):
        check_loader_desired({**desired, "FileName": "tiny-yolov3-1.1.zip"})  # no URL, no checksum
    check_loader_desired(
        {
            "FileName": "tiny-yolov3-1.1.zip",
            "DownloadUrl": "https://account.blob.core.windows.net/models/tiny-yolov3-1.1.zip",
            "ContentMD5": "0" * 32,
        }
    )


# --- docker-compose.test.yml against deployment.json ---------------------------------------------------


def test_compose_runs_the_manifest_modules_with_its_images(
    manifest: dict[str, Any], compose: dict[str, Any]
) -> None:
    modules = agent_desired(manifest)["modules"]
    assert set(services(compose)) == {*modules, "edgehub", "azurite"}
    for name, module in modules.items():
        service = services(compose)[name]
        assert service["image"] == module["settings"]["image"]
        assert service["restart"] == RESTART[module["restartPolicy"]]
        assert (REPO_ROOT / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    # Docker's default when AZURITE_IMAGE is unset; `make compose-test` sets our own build of it.
    azurite = "mcr.microsoft.com/azure-storage/azurite:3.35.0"
    assert services(compose)["azurite"]["image"] == f"${{AZURITE_IMAGE:-{azurite}}}"


def test_compose_env_mirrors_the_manifest_env(manifest: dict[str, Any], compose: dict[str, Any]) -> None:
    for name, module in agent_desired(manifest)["modules"].items():
        wanted = {key: str(item["value"]) for key, item in module.get("env", {}).items()}
        env = {key: str(value) for key, value in services(compose)[name]["environment"].items()}
        assert {key: env.get(key) for key in wanted} == wanted, name
        extra = {
            k for k in set(env) - set(wanted) if not k.startswith(INJECTED_PREFIXES) and k not in INJECTED
        }
        assert extra == TEST_ONLY_ENV[name], name


def test_compose_volumes_ports_and_logging_mirror_create_options(
    manifest: dict[str, Any], compose: dict[str, Any]
) -> None:
    for name, module in agent_desired(manifest)["modules"].items():
        options = create_options(module["settings"])
        service = services(compose)[name]
        binds = options["HostConfig"]["Binds"]
        assert binds and set(binds) <= set(mounts(service)), name
        for bind in binds:
            assert bind.split(":")[0] in compose["volumes"]
        if name == "inference":  # the test stack publishes it for the demo; a deployment does not
            assert port_bindings(options) == [], "siblings reach inference on the IoT Edge network by name"
        else:
            assert sorted(service.get("ports", [])) == port_bindings(options), name
        exposed = {port.partition("/")[0] for port in options.get("ExposedPorts", {})}
        assert exposed <= set(service.get("expose", [])), name
        log = options["HostConfig"]["LogConfig"]
        assert service["logging"] == {"driver": log["Type"], "options": log["Config"]}, name
    inference_port = agent_desired(manifest)["modules"]["inference"]["env"]["INFERENCE_PORT"]["value"]
    assert services(compose)["inference"]["ports"] == [f"{inference_port}:{inference_port}"]


def test_compose_start_order_follows_startup_order(manifest: dict[str, Any], compose: dict[str, Any]) -> None:
    modules = agent_desired(manifest)["modules"]
    for name, module in modules.items():
        earlier = {other for other, spec in modules.items() if spec["startupOrder"] < module["startupOrder"]}
        depends = set(services(compose)[name]["depends_on"])
        assert earlier <= depends, name
        assert {"edgehub"} <= depends  # edgeHub starts before every module, as edgeAgent does


def test_simulator_serves_this_manifest_on_the_edge_hub_ports(
    manifest: dict[str, Any], compose: dict[str, Any]
) -> None:
    args = simulator_args(compose)
    sim = services(compose)["edgehub"]
    assert f"./deployment.json:{args['--manifest']}:ro" in mounts(sim)  # routes come from this very file
    hub_ports = _container_ports(agent_desired(manifest)["systemModules"]["edgeHub"])
    # 5671 is AMQP, which neither the modules (MQTT) nor the simulator use.
    assert hub_ports - {"5671"} == {args["--service-port"], "8883"} == set(sim["expose"])


def _container_ports(module: dict[str, Any]) -> set[str]:
    return {binding.split(":")[1] for binding in port_bindings(create_options(module["settings"]))}


def test_modules_reach_the_simulator_by_its_certificate_address_and_workload_socket(
    compose: dict[str, Any],
) -> None:
    args = simulator_args(compose)
    sim = services(compose)["edgehub"]
    address = args["--bind"]
    subnet = compose["networks"]["edge"]["ipam"]["config"][0]["subnet"]
    assert sim["networks"]["edge"]["ipv4_address"] == address
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
    state_dir = args["--state-dir"]
    # Each module runs as its own user: the per-module sockets must be connectable by others (each still
    # signs for its own module only).
    assert args["--workload-socket-mode"] == "666"
    [state_volume] = [m.split(":")[0] for m in mounts(sim) if m.split(":")[1] == state_dir]
    for name in MODULES:
        service = services(compose)[name]
        env = service["environment"]
        assert env["IOTEDGE_MODULEID"] == name
        assert env["IOTEDGE_GATEWAYHOSTNAME"] == address  # the TLS certificate's IP SAN
        assert env["IOTEDGE_WORKLOADURI"] == f"unix://{state_dir}/workload/{name}.sock"  # its own socket
        assert f"{state_volume}:{state_dir}:ro" in mounts(service)
        assert service["depends_on"]["edgehub"] == {"condition": "service_healthy"}


def test_every_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        build = service.get("build")
        in_image = build is not None and any(
            i.keyword == "HEALTHCHECK" for i in dockerfile(REPO_ROOT / build["context"] / build["dockerfile"])
        )
        assert "healthcheck" in service or in_image, name


# --- Dockerfiles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", sorted(IMAGE_PACKAGES))
def test_dockerfile_is_slim_non_root_and_installs_only_its_package(
    service: str, compose: dict[str, Any]
) -> None:
    build = services(compose)[service]["build"]
    instructions = dockerfile(REPO_ROOT / build["context"] / build["dockerfile"])
    bases = {
        i.argument for i in instructions if i.keyword == "ARG" and i.argument.startswith("PYTHON_IMAGE=")
    }
    assert bases == {"PYTHON_IMAGE=python:3.11-slim-bookworm"}
    syncs = [shlex.split(i.argument) for i in instructions if i.keyword == "RUN" and "uv sync" in i.argument]
    assert syncs and all(
        ["--package", IMAGE_PACKAGES[service]] == s[s.index("--package") :][:2] for s in syncs
    )
    assert all("--no-dev" in s and "--frozen" in s for s in syncs)
    users = [i.argument for i in instructions if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    cmd = [i.argument for i in instructions if i.keyword == "CMD"][-1]
    assert cmd.startswith('["python", "-m",')


def test_dockerfile_defaults_agree_with_the_manifest(
    manifest: dict[str, Any], compose: dict[str, Any]
) -> None:
    for name, module in agent_desired(manifest)["modules"].items():
        build = services(compose)[name]["build"]
        instructions = dockerfile(REPO_ROOT / build["context"] / build["dockerfile"])
        defaults = dockerfile_env(instructions)
        for key, item in module.get("env", {}).items():
            if key in defaults:
                assert defaults[key] == str(item["value"]), (name, key)
        exposed = {
            port.partition("/")[0] for port in create_options(module["settings"]).get("ExposedPorts", {})
        }
        declared = {p for i in instructions if i.keyword == "EXPOSE" for p in i.argument.split()}
        assert exposed <= declared, name
    sim = dockerfile(REPO_ROOT / "tools" / "Dockerfile")
    assert any(i.keyword == "COPY" and i.argument == "deployment.json /app/deployment.json" for i in sim)


# --- multi-arch: every runtime dependency installs on linux/arm64 --------------------------------------


@pytest.mark.parametrize("package", sorted(set(IMAGE_PACKAGES.values())))
def test_every_runtime_dependency_has_an_arm64_wheel_or_is_pure_python(package: str) -> None:
    packages = lock_packages()
    closure = {p["name"] for p in runtime_closure(packages, package)}
    assert {"edge-shared", "pydantic-core"} <= closure  # the walk reaches compiled transitive deps
    assert list(arm64_gaps(packages, package)) == []


def test_the_arm64_check_finds_a_platform_only_package() -> None:
    x86_only = {
        "name": "fastthing",
        "version": "1.0",
        "source": {"registry": "https://pypi.org/simple"},
        "wheels": [{"url": "https://files.example/fastthing-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"}],
    }
    arm = {
        **x86_only,
        "wheels": [{"url": "https://f.example/fastthing-1.0-cp311-cp311-manylinux_2_28_aarch64.whl"}],
    }
    musl = {
        **x86_only,
        "wheels": [{"url": "https://f.example/fastthing-1.0-cp311-cp311-musllinux_1_2_aarch64.whl"}],
    }
    root = {
        "name": "app",
        "version": "0.1.0",
        "source": {"editable": "app"},
        "dependencies": [{"name": "fastthing"}],
    }
    assert list(arm64_gaps({"app": [root], "fastthing": [x86_only]}, "app")) == ["fastthing==1.0"]
    assert list(arm64_gaps({"app": [root], "fastthing": [musl]}, "app")) == ["fastthing==1.0"]
    assert list(arm64_gaps({"app": [root], "fastthing": [arm]}, "app")) == []
    assert arm64_wheels(arm) == ["fastthing-1.0-cp311-cp311-manylinux_2_28_aarch64.whl"]
    windows_only = {**root, "dependencies": [{"name": "fastthing", "marker": "sys_platform == 'win32'"}]}
    assert list(arm64_gaps({"app": [windows_only], "fastthing": [x86_only]}, "app")) == []


# --- the simulator's own env files agree with the compose env ------------------------------------------


@pytest.mark.integration
def test_compose_module_env_is_what_the_simulator_writes(compose: dict[str, Any], tmp_path: Path) -> None:
    from edgehub_sim.server import EdgeHubSimulator
    from tests.integration.conftest_loader import start_simulator

    simulator: EdgeHubSimulator = start_simulator(tmp_path / "state")
    try:
        written = {module: simulator.env_for(module) for module in MODULES}
        state_dir, bind = str(simulator.state_dir), simulator.bind
    finally:
        simulator.stop()
    args = simulator_args(compose)
    for module in MODULES:
        # A long state dir gets its sockets in a short temp dir (sun_path limit); compose's is short.
        socket_dir = str(Path(written[module]["IOTEDGE_WORKLOADURI"].removeprefix("unix://")).parent)
        expected = {
            key: value.replace(socket_dir, f"{state_dir}/workload")
            .replace(state_dir, args["--state-dir"])
            .replace(bind, args["--bind"])
            for key, value in written[module].items()
        }
        env = {k: str(v) for k, v in services(compose)[module]["environment"].items()}
        assert {k: v for k, v in env.items() if k.startswith("IOTEDGE_") or k in INJECTED} == expected, module
