"""Routes: which targets receive each canonical event.

Plugins contribute default routes; ``[routes]`` in the configuration replaces the targets of an
event type. A route's source and targets are connector names or roles (system kinds: ``billing``
is whichever connector plays billing, :mod:`crossledger.core.hub.roles`), so one set of routes
serves any billing and ERP pair. An event never goes back to its own source, and only to
configured connectors that can deliver.
"""

from collections import defaultdict
from collections.abc import Mapping

from crossledger.core.hub.roles import Roles
from crossledger.plugins.types import Route


class Router:
    def __init__(self, routes: list[Route], overrides: dict[str, list[str]], deliverable: set[str],
                 roles: Roles | None = None, takes: Mapping[str, frozenset[str]] | None = None) -> None:
        """``takes``: for a connector that writes only some event types, those (``TakesSomeEvents``)."""
        self._routes: dict[str, list[Route]] = defaultdict(list)
        for route in routes:
            if route.event_type not in overrides:
                self._routes[route.event_type].append(route)
        for event_type, targets in overrides.items():
            self._routes[event_type] = [Route(event_type, tuple(targets))]
        self.deliverable = deliverable
        self._roles = roles or Roles({})
        self._takes = dict(takes or {})

    def _system(self, target: str) -> str:
        """The connector a target names (itself, or the one playing the role it names)."""
        return self._roles.system(target) or target

    def targets(self, event_type: str, source: str) -> list[str]:
        found: list[str] = []
        playing = self._roles.role_of(source)
        for route in self._routes.get(event_type, []):
            if route.source not in ("*", source, playing):
                continue
            found += [t for t in map(self._system, route.targets)
                      if t != source and t in self.deliverable and t not in found
                      and event_type in self._takes.get(t, (event_type,))]
        return found

    def table(self) -> dict[str, list[str]]:
        """Each event type's targets, a role shown as the connector playing it where one is configured."""
        return {
            event_type: sorted({self._system(t) for route in routes for t in route.targets})
            for event_type, routes in sorted(self._routes.items())
        }
