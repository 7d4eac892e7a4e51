"""Routes: which targets receive each canonical event.

Plugins contribute default routes; ``[routes]`` in the configuration replaces the targets of an
event type. An event never goes back to its own source, and only to configured connectors that
can deliver.
"""

from collections import defaultdict

from crossledger.plugins.types import Route


class Router:
    def __init__(self, routes: list[Route], overrides: dict[str, list[str]], deliverable: set[str]) -> None:
        self._routes: dict[str, list[Route]] = defaultdict(list)
        for route in routes:
            if route.event_type not in overrides:
                self._routes[route.event_type].append(route)
        for event_type, targets in overrides.items():
            self._routes[event_type] = [Route(event_type, tuple(targets))]
        self.deliverable = deliverable

    def targets(self, event_type: str, source: str) -> list[str]:
        found: list[str] = []
        for route in self._routes.get(event_type, []):
            if route.source not in ("*", source):
                continue
            found += [t for t in route.targets if t != source and t in self.deliverable and t not in found]
        return found

    def table(self) -> dict[str, list[str]]:
        return {
            event_type: sorted({t for route in routes for t in route.targets})
            for event_type, routes in sorted(self._routes.items())
        }
