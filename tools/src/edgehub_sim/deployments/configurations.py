"""Configurations (IoT Hub's automatic device management, `api-version=2021-04-12`): validation of
layered edge deployments, their immutable content, etags, the per-hub quota, and their persistence.

Only layered edge deployments are simulated: `content.modulesContent` whose modules carry
`"properties.desired.<path>"` keys and which includes `"$edgeAgent"`. A full (base) deployment, or
device/module configurations (`deviceContent`, `moduleContent`), are refused with a 400 saying so.
"""

import base64
import copy
import re
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from edgehub_sim.deployments.conditions import parse_target_condition
from edgehub_sim.deployments.layers import Layer, split_path
from edgehub_sim.deployments.query import parse_query
from edgehub_sim.device_twins import check_if_match
from edgehub_sim.errors import HubRequestError
from edgehub_sim.store import Store

#: IoT Hub allows 100 configurations per hub (automatic device and module configurations count alike).
MAX_CONFIGURATIONS = 100
#: `GET /configurations?top=N`: IoT Hub's largest page.
MAX_TOP = 100
#: IoT Hub's id rule: up to 128 lower-case letters, digits and `-:+%_#*?!(),=@;$'`.
_ID = re.compile(r"[a-z0-9\-:+%_#*?!(),=@;$']{1,128}")
SYSTEM_MODULES = ("$edgeAgent", "$edgeHub")
TARGETED_QUERY = "targetedCount"
APPLIED_QUERY = "appliedCount"


class _Metrics(BaseModel):
    model_config = ConfigDict(extra="ignore")

    queries: dict[StrictStr, StrictStr] | None = None


class _Content(BaseModel):
    model_config = ConfigDict(extra="ignore")

    modulesContent: dict[StrictStr, dict[StrictStr, Any]] | None = None
    deviceContent: dict[StrictStr, Any] | None = None
    moduleContent: dict[StrictStr, Any] | None = None


class ConfigurationBody(BaseModel):
    """The fields of a `PUT /configurations/{id}` body the hub reads (read-only fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: StrictStr | None = None
    schemaVersion: StrictStr | None = None
    labels: dict[StrictStr, StrictStr] | None = None
    content: _Content | None = None
    targetCondition: StrictStr | None = None
    priority: StrictInt | None = Field(default=None, ge=0)
    metrics: _Metrics | None = None


def utc_now() -> str:
    """`createdTimeUtc` / `lastUpdatedTimeUtc` in IoT Hub's ISO 8601 form."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _etag(generation: int) -> str:
    return base64.b64encode(str(generation).encode("ascii")).decode("ascii")


def _validate_modules_content(content: _Content | None) -> dict[str, dict[str, Any]]:
    if content is None or (content.deviceContent or content.moduleContent) or not content.modulesContent:
        raise HubRequestError(
            400,
            "InvalidConfigurationContent",
            "the simulator supports layered edge deployments only: content.modulesContent is required "
            "(deviceContent and moduleContent are not simulated)",
        )
    modules = content.modulesContent
    if "$edgeAgent" not in modules:
        raise HubRequestError(
            400, "InvalidConfigurationContent", 'a layered deployment must include "$edgeAgent"'
        )
    for module, properties in modules.items():
        for key in properties:
            if key == "properties.desired":
                raise HubRequestError(
                    400,
                    "InvalidConfigurationContent",
                    f"{module!r} has a whole 'properties.desired' section: that is a base deployment, and "
                    "the simulator applies layered deployments only ('properties.desired.<path>' keys)",
                )
            try:
                split_path(key)
            except ValueError as exc:
                raise HubRequestError(
                    400, "InvalidConfigurationContent", f"module {module!r}: {exc}"
                ) from exc
    return copy.deepcopy(modules)


def _validate_metrics(metrics: _Metrics | None) -> dict[str, str]:
    queries = dict(metrics.queries or {}) if metrics is not None else {}
    for name, query in queries.items():
        if name in (TARGETED_QUERY, APPLIED_QUERY):
            raise HubRequestError(
                400, "InvalidConfigurationCustomMetricsQuery", f"{name!r} is a system metric"
            )
        parse_query(query, "InvalidConfigurationCustomMetricsQuery")
    return queries


def layer_of(document: Mapping[str, Any]) -> Layer:
    """The merge's view of a stored configuration."""
    return Layer(
        document["id"],
        document["priority"],
        document["createdTimeUtc"],
        document["content"]["modulesContent"],
    )


class Configurations:
    """The hub's configurations (loop thread writes; reads from any thread take the lock)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._documents = store.load_configurations()

    def get(self, config_id: str) -> dict[str, Any]:
        """A configuration document; 404 ConfigurationNotFound."""
        with self._lock:
            return copy.deepcopy(self._require(config_id))

    def listing(self, top: int | None = None) -> list[dict[str, Any]]:
        """Configurations in creation order, at most `top`."""
        if top is not None and not 1 <= top <= MAX_TOP:
            raise HubRequestError(400, "ArgumentInvalid", f"top must be between 1 and {MAX_TOP}")
        with self._lock:
            documents = sorted(self._documents.values(), key=lambda d: (d["createdTimeUtc"], d["id"]))
            return copy.deepcopy(documents[: top or MAX_TOP])

    def put(self, config_id: str, raw: bytes, if_match: str | None) -> tuple[dict[str, Any], bool]:
        """Create (no such id yet) or update a configuration: (document, created)."""
        if _ID.fullmatch(config_id) is None:
            raise HubRequestError(
                400,
                "ArgumentInvalid",
                "a configuration id is 1-128 lower-case letters, digits or -:+%_#*?!(),=@;$'",
            )
        try:
            body = ConfigurationBody.model_validate_json(raw)
        except ValidationError as exc:
            raise HubRequestError(400, "ArgumentInvalid", f"malformed configuration: {exc}") from exc
        if body.id is not None and body.id != config_id:
            raise HubRequestError(400, "ArgumentInvalid", "the body's id differs from the id in the URL")
        with self._lock:
            old = self._documents.get(config_id)
            document = self._created(config_id, body) if old is None else self._updated(old, body, if_match)
            self._store.save_configuration(config_id, document)
            self._documents[config_id] = document
            return copy.deepcopy(document), old is None

    def _created(self, config_id: str, body: ConfigurationBody) -> dict[str, Any]:
        if len(self._documents) >= MAX_CONFIGURATIONS:
            raise HubRequestError(
                403, "IotHubQuotaExceeded", f"a hub holds at most {MAX_CONFIGURATIONS} configurations"
            )
        modules = _validate_modules_content(body.content)
        condition = body.targetCondition or ""
        parse_target_condition(condition)
        queries = _validate_metrics(body.metrics)
        now = utc_now()
        return {
            "id": config_id,
            "schemaVersion": body.schemaVersion or "1.0",
            "labels": dict(body.labels or {}),
            "content": {"modulesContent": modules, "deviceContent": {}, "moduleContent": {}},
            "targetCondition": condition,
            "createdTimeUtc": now,
            "lastUpdatedTimeUtc": now,
            "priority": body.priority or 0,
            "systemMetrics": {
                "results": {TARGETED_QUERY: 0, APPLIED_QUERY: 0},
                "queries": {TARGETED_QUERY: "", APPLIED_QUERY: ""},
            },
            "metrics": {"results": {}, "queries": queries},
            "etag": _etag(1),
            "_generation": 1,
        }

    def _updated(self, old: dict[str, Any], body: ConfigurationBody, if_match: str | None) -> dict[str, Any]:
        if if_match is None:
            raise HubRequestError(
                409,
                "ConfigurationAlreadyExists",
                f"configuration {old['id']!r} already exists "
                "(send If-Match with its etag, or *, to update it)",
            )
        check_if_match(if_match, old["etag"])
        if body.content is not None and body.content.modulesContent != old["content"]["modulesContent"]:
            raise HubRequestError(
                400,
                "ConfigurationContentUpdateNotAllowed",
                "a configuration's content cannot change after creation: create a new configuration",
            )
        document = copy.deepcopy(old)
        if body.targetCondition is not None:
            parse_target_condition(body.targetCondition)
            document["targetCondition"] = body.targetCondition
        if body.priority is not None:
            document["priority"] = body.priority
        if body.labels is not None:
            document["labels"] = dict(body.labels)
        if body.metrics is not None and body.metrics.queries is not None:
            queries = _validate_metrics(body.metrics)
            if queries != document["metrics"]["queries"]:
                document["metrics"] = {"results": {}, "queries": queries}
        generation = int(old["_generation"]) + 1
        document.update(lastUpdatedTimeUtc=utc_now(), etag=_etag(generation), _generation=generation)
        return document

    def delete(self, config_id: str, if_match: str | None) -> None:
        """Remove a configuration (`If-Match` checked when given)."""
        with self._lock:
            check_if_match(if_match, self._require(config_id)["etag"])
            self._store.delete_configuration(config_id)
            del self._documents[config_id]

    def set_results(
        self, config_id: str, system: Mapping[str, int], custom: Mapping[str, int], queries: Mapping[str, str]
    ) -> None:
        """Store the metrics an apply cycle computed (not a user update: the etag stays)."""
        with self._lock:
            document = self._documents.get(config_id)
            if document is None:  # deleted during the cycle
                return
            system_metrics = {"results": dict(system), "queries": dict(queries)}
            metrics = {**document["metrics"], "results": dict(custom)}
            if (system_metrics, metrics) == (document["systemMetrics"], document["metrics"]):
                return  # a steady fleet writes nothing each cycle
            document.update(systemMetrics=system_metrics, metrics=metrics)
            self._store.save_configuration(config_id, document)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every configuration document (for an apply cycle)."""
        with self._lock:
            return copy.deepcopy(list(self._documents.values()))

    def _require(self, config_id: str) -> dict[str, Any]:
        document = self._documents.get(config_id)
        if document is None:
            raise HubRequestError(404, "ConfigurationNotFound", f"configuration {config_id!r} not found")
        return document


def public(document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as the REST API returns it (without the simulator's bookkeeping)."""
    return {key: value for key, value in document.items() if not key.startswith("_")}
