"""Who exists on the simulated hub: hub name, its Edge devices, their module keys, the service key.

Keys are generated once per state dir and kept in its store, so env files and connection strings
written before a restart stay valid after it. A fleet is many devices with the same modules; a single
simulated device is a fleet of one whose keys keep their historical names in the store.
"""

from dataclasses import dataclass, field

from edgehub_sim.errors import UnknownDevice, UnknownModule
from edgehub_sim.sas import new_key
from edgehub_sim.store import Store

SERVICE_KEY_NAME = "iothubowner"


@dataclass(frozen=True)
class Identity:
    """Names and keys of one simulated IoT Hub and its Edge devices (`devices[0]` is the default)."""

    hub_name: str
    devices: tuple[str, ...]
    modules: tuple[str, ...]
    #: client id (`{device}/{module}`) -> the module identity's primary key
    keys: dict[str, str]
    service_key: str
    _device_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_device_set", frozenset(self.devices))

    @property
    def device_id(self) -> str:
        """The default device: the one of a single-device simulator, the first of a fleet."""
        return self.devices[0]

    def require_device(self, device: str | None) -> str:
        """`device`, or the default device when None; UnknownDevice if the hub has no such device."""
        if device is None:
            return self.device_id
        if device not in self._device_set:
            raise UnknownDevice(f"no device {device!r} on this hub")
        return device

    def client_id(self, module: str, device: str | None = None) -> str:
        """The MQTT client id of a module: `{device}/{module}`."""
        return f"{self.require_device(device)}/{module}"

    def module_resource(self, module: str, device: str | None = None) -> str:
        """The `sr` a module's SAS token must name."""
        return f"{self.hub_name}/devices/{self.require_device(device)}/modules/{module}"

    def key(self, module: str, device: str | None = None) -> str:
        """A module's primary key."""
        try:
            return self.keys[self.client_id(module, device)]
        except KeyError:
            raise UnknownModule(f"no module {module!r} in the manifest") from None

    def split_client_id(self, client_id: str) -> tuple[str, str]:
        """`(device, module)` of a client id naming a known module; UnknownModule otherwise."""
        device, sep, module = client_id.partition("/")
        if not sep or client_id not in self.keys:
            raise UnknownModule(f"unknown client id {client_id!r}")
        return device, module


def load_identity(
    store: Store, hub_name: str, devices: list[str], modules: list[str], *, fleet: bool = False
) -> Identity:
    """Read keys from the store, creating any missing ones (one key per device and module)."""
    keys: dict[str, str] = {}
    for device in devices:
        for module in modules:
            # A single device keeps the store names it always had, so old state dirs stay valid.
            name = f"module-key:{device}/{module}" if fleet else f"module-key:{module}"
            stored = store.get_meta(name)
            if stored is None:
                stored = new_key()
                store.set_meta(name, stored)
            keys[f"{device}/{module}"] = stored
    service_key = store.get_meta("service-key")
    if service_key is None:
        service_key = new_key()
        store.set_meta("service-key", service_key)
    return Identity(hub_name, tuple(devices), tuple(modules), keys, service_key)
