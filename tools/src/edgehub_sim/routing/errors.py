"""The routing error: a route the simulator cannot honour is refused when the manifest loads."""


class RouteError(ValueError):
    """A route is unparsable or uses something the simulator does not support; the message names it."""
