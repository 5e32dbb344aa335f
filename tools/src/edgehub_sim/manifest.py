"""The deployment manifest: which modules exist, their env and desired properties, and the routes.

Reads the same ``deployment.json`` IoT Edge deploys (``{"modulesContent": ...}``, or the
``{"content": {"modulesContent": ...}}`` shape of ``az iot edge deployment``). ``properties.desired``
is one literal key, not a path. Anything the simulator could not honour is refused with a
``ManifestError`` that says where.
"""

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from edgehub_sim.routing import RouteError, RouteTable

_log = logging.getLogger(__name__)

DEFAULT_STORE_AND_FORWARD_TTL_SECS = 7200
_SYSTEM_MODULES = frozenset({"edgeAgent", "edgeHub", "$edgeAgent", "$edgeHub"})


class ManifestError(ValueError):
    """The manifest cannot be read, is not a valid deployment manifest, or uses something unsupported."""


class ModuleSpec(BaseModel):
    """A custom module: its environment and its initial desired properties."""

    model_config = ConfigDict(frozen=True)

    name: str
    env: dict[str, str]
    desired: dict[str, Any]


class DeploymentManifest(BaseModel):
    """What the simulator needs from a deployment manifest."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    modules: dict[str, ModuleSpec]
    routes: RouteTable
    store_and_forward_ttl_secs: int
    schema_version: str = "1.1"


# --- the raw manifest as JSON: validated at the boundary, unknown keys tolerated ----------------------


class _EnvValue(BaseModel):
    value: StrictStr | StrictInt | StrictFloat


class _Module(BaseModel):
    env: dict[str, _EnvValue] = Field(default_factory=dict)


class _AgentDesired(BaseModel):
    modules: dict[str, _Module] = Field(default_factory=dict)


class _Agent(BaseModel):
    desired: _AgentDesired = Field(alias="properties.desired")


class _StoreAndForward(BaseModel):
    time_to_live_secs: StrictInt = Field(
        default=DEFAULT_STORE_AND_FORWARD_TTL_SECS, gt=0, alias="timeToLiveSecs"
    )


class _HubDesired(BaseModel):
    schema_version: StrictStr = Field(alias="schemaVersion")
    routes: dict[str, Any] = Field(default_factory=dict)  # entries checked by RouteTable
    store_and_forward: _StoreAndForward = Field(
        default_factory=_StoreAndForward, alias="storeAndForwardConfiguration"
    )


class _Hub(BaseModel):
    desired: _HubDesired = Field(alias="properties.desired")


class _Twin(BaseModel):
    desired: dict[str, Any] = Field(default_factory=dict, alias="properties.desired")


class _ModulesContent(BaseModel):
    agent: _Agent = Field(alias="$edgeAgent")
    hub: _Hub = Field(alias="$edgeHub")


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"modulesContent.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


def _modules_content(data: Mapping[str, Any]) -> Mapping[str, Any]:
    content = data.get("content", data)
    modules_content = content.get("modulesContent") if isinstance(content, Mapping) else None
    if not isinstance(modules_content, Mapping):
        raise ManifestError("not a deployment manifest: no 'modulesContent' object")
    return modules_content


def _module_twins(modules_content: Mapping[str, Any], names: set[str]) -> dict[str, dict[str, Any]]:
    twins: dict[str, dict[str, Any]] = {}
    for key, raw in modules_content.items():
        if key in ("$edgeAgent", "$edgeHub"):
            continue
        if key not in names:
            _log.warning("manifest has desired properties for %r, which is not a deployed module", key)
            continue
        try:
            twins[key] = _Twin.model_validate(raw).desired
        except ValidationError as exc:
            raise ManifestError(
                f"modulesContent.{key}: {exc.errors()[0]['msg']} (expected an object with "
                "'properties.desired')"
            ) from exc
    return twins


def _check_route_modules(routes: RouteTable, names: set[str]) -> None:
    for route in routes:
        module = route.sink.module
        if module is not None and module not in names:
            raise ManifestError(
                f"route {route.name!r} delivers to module {module!r}, which $edgeAgent does not deploy "
                f"(modules: {', '.join(sorted(names)) or 'none'})"
            )


def parse_manifest(data: Mapping[str, Any]) -> DeploymentManifest:
    """Build the simulator's view of a manifest already loaded from JSON."""
    modules_content = _modules_content(data)
    try:
        parsed = _ModulesContent.model_validate(modules_content)
    except ValidationError as exc:
        raise ManifestError(f"invalid deployment manifest: {_validation_message(exc)}") from exc
    hub = parsed.hub.desired
    raw_modules = parsed.agent.desired.modules
    names = set(raw_modules)
    if clash := names & _SYSTEM_MODULES:
        raise ManifestError(f"$edgeAgent modules must not redefine system modules: {sorted(clash)}")
    if hub.schema_version == "1.0" and any(not isinstance(r, str) for r in hub.routes.values()):
        raise ManifestError("$edgeHub schemaVersion 1.0 allows only string routes; use 1.1 for objects")
    ttl = hub.store_and_forward.time_to_live_secs
    try:
        routes = RouteTable.parse(hub.routes, default_ttl_secs=ttl)
    except RouteError as exc:
        raise ManifestError(f"$edgeHub routes: {exc}") from exc
    _check_route_modules(routes, names)
    twins = _module_twins(modules_content, names)
    modules = {
        name: ModuleSpec(
            name=name,
            env={key: str(env.value) for key, env in module.env.items()},
            desired=twins.get(name, {}),
        )
        for name, module in raw_modules.items()
    }
    return DeploymentManifest(
        modules=modules,
        routes=routes,
        store_and_forward_ttl_secs=ttl,
        schema_version=hub.schema_version,
    )


def load_manifest(path: Path) -> DeploymentManifest:
    """Read and parse a ``deployment.json``; every failure is a ``ManifestError`` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"manifest {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(data, Mapping):
        raise ManifestError(f"manifest {path} must be a JSON object, got {type(data).__name__}")
    try:
        return parse_manifest(data)
    except ManifestError as exc:
        raise ManifestError(f"manifest {path}: {exc}") from exc
