"""Who exists on the simulated device: hub and device names, module keys, the service key.

Keys are generated once per state dir and kept in its store, so env files and connection strings
written before a restart stay valid after it.
"""

from dataclasses import dataclass

from edgehub_sim.errors import UnknownModule
from edgehub_sim.sas import new_key
from edgehub_sim.store import Store

SERVICE_KEY_NAME = "iothubowner"


@dataclass(frozen=True)
class Identity:
    """Names and keys of one simulated IoT Hub + Edge device."""

    hub_name: str
    device_id: str
    module_keys: dict[str, str]
    service_key: str

    def client_id(self, module: str) -> str:
        """The MQTT client id of a module: `{device}/{module}`."""
        return f"{self.device_id}/{module}"

    def module_resource(self, module: str) -> str:
        """The `sr` a module's SAS token must name."""
        return f"{self.hub_name}/devices/{self.device_id}/modules/{module}"

    def key(self, module: str) -> str:
        """A module's primary key."""
        try:
            return self.module_keys[module]
        except KeyError:
            raise UnknownModule(f"no module {module!r} in the manifest") from None


def load_identity(store: Store, hub_name: str, device_id: str, modules: list[str]) -> Identity:
    """Read keys from the store, creating any missing ones."""
    keys: dict[str, str] = {}
    for module in modules:
        stored = store.get_meta(f"module-key:{module}")
        if stored is None:
            stored = new_key()
            store.set_meta(f"module-key:{module}", stored)
        keys[module] = stored
    service_key = store.get_meta("service-key")
    if service_key is None:
        service_key = new_key()
        store.set_meta("service-key", service_key)
    return Identity(hub_name, device_id, keys, service_key)
