"""edgeHub routing: route statements, the supported WHERE subset, and the route table.

Public surface: ``RouteTable.parse(...)`` at manifest load, ``RouteTable.deliveries(message)`` per
message. Everything the simulator cannot honour faithfully raises ``RouteError`` at load.
"""

from edgehub_sim.routing.errors import RouteError
from edgehub_sim.routing.message import TWIN_CHANGE_SOURCE, UPSTREAM, Delivery, RoutableMessage, Sink
from edgehub_sim.routing.table import DEFAULT_PRIORITY, Route, RouteTable

__all__ = [
    "DEFAULT_PRIORITY",
    "TWIN_CHANGE_SOURCE",
    "UPSTREAM",
    "Delivery",
    "RoutableMessage",
    "Route",
    "RouteError",
    "RouteTable",
    "Sink",
]
