"""Errors of the edgeHub simulator.

SimulatorError
├── MalformedPacket    a client sent bytes that are not valid MQTT 3.1.1 (its connection is dropped)
├── AuthError          a SAS token is missing, malformed, expired, for another resource or badly signed
├── UnknownModule      a module that the manifest does not define
│   └── UnknownDevice  a device id the simulated hub does not host
├── MethodError        a direct method could not be delivered or answered (carries an HTTP status)
├── TwinPatchError     a twin patch is not a JSON object
└── HubRequestError    a service API request IoT Hub would refuse: HTTP status + IoT Hub error code
                       (bad configuration, target condition or query, etag mismatch, quota, throttling)
"""


class SimulatorError(Exception):
    """Base of every error the simulator raises on purpose."""


class MalformedPacket(SimulatorError):
    """The bytes on a connection are not a packet of the supported MQTT subset."""


class AuthError(SimulatorError):
    """A SAS token failed verification."""


class UnknownModule(SimulatorError):
    """The manifest defines no such module (or the device id is not the simulator's)."""


class UnknownDevice(UnknownModule):
    """The simulated hub hosts no device with this id."""


class MethodError(SimulatorError):
    """A direct method failed: `status` is the HTTP status the service API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TwinPatchError(SimulatorError):
    """A twin patch is not a JSON object."""


class HubRequestError(SimulatorError):
    """A request IoT Hub refuses: `status` is the HTTP status, `code` IoT Hub's error code name
    (`iothub-errorcode` header, and `ErrorCode:<code>;` in the body's `Message`)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        #: Seconds for a `Retry-After` header (429 answers).
        self.retry_after = retry_after
