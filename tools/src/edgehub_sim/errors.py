"""Errors of the edgeHub simulator.

SimulatorError
├── MalformedPacket    a client sent bytes that are not valid MQTT 3.1.1 (its connection is dropped)
├── AuthError          a SAS token is missing, malformed, expired, for another resource or badly signed
├── UnknownModule      a module or device that the manifest does not define
├── MethodError        a direct method could not be delivered or answered (carries an HTTP status)
└── TwinPatchError     a twin patch is not a JSON object
"""


class SimulatorError(Exception):
    """Base of every error the simulator raises on purpose."""


class MalformedPacket(SimulatorError):
    """The bytes on a connection are not a packet of the supported MQTT subset."""


class AuthError(SimulatorError):
    """A SAS token failed verification."""


class UnknownModule(SimulatorError):
    """The manifest defines no such module (or the device id is not the simulator's)."""


class MethodError(SimulatorError):
    """A direct method failed: `status` is the HTTP status the service API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TwinPatchError(SimulatorError):
    """A twin patch is not a JSON object."""
