"""Is this process running where an IoT Edge module client can be created?

`create_from_edge_environment()` needs the variables edgeAgent gives every module (or the two that VS Code's
local debugging sets instead) and otherwise fails deep inside the SDK. A module checks first, so a
container started by hand says in one line what is missing instead of printing a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping

EDGE_VARIABLES = (
    "IOTEDGE_IOTHUBHOSTNAME",
    "IOTEDGE_DEVICEID",
    "IOTEDGE_MODULEID",
    "IOTEDGE_GATEWAYHOSTNAME",
    "IOTEDGE_MODULEGENERATIONID",
    "IOTEDGE_WORKLOADURI",
    "IOTEDGE_APIVERSION",
)
"""What edgeAgent sets in every module container (the SDK reads all seven)."""
DEV_VARIABLES = ("EdgeHubConnectionString", "EdgeModuleCACertificateFile")
"""The SDK's fallback for local debugging, used only when no `IOTEDGE_*` variable is set."""


def missing_edge_environment(environ: Mapping[str, str]) -> str | None:
    """None when a module client can be created from `environ`, else a one-line reason naming the gaps."""
    missing = [name for name in EDGE_VARIABLES if not environ.get(name)]
    if not missing:
        return None
    if len(missing) == len(EDGE_VARIABLES) and all(environ.get(name) for name in DEV_VARIABLES):
        return None
    return (
        f"not running as an IoT Edge module: {', '.join(missing)} "
        f"{'is' if len(missing) == 1 else 'are'} not set (edgeAgent sets them in a deployed module; "
        "outside IoT Edge, start it with the environment the edgeHub simulator writes, as `make up` does)"
    )
