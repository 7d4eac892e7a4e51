"""The hooks a crossledger plugin can implement. One class, one documented example per hook.

A plugin is any object (module, class instance) whose methods carry ``@hookimpl``; third-party
distributions expose it through the ``crossledger`` entry-point group::

    [project.entry-points.crossledger]
    acme = "crossledger_acme.plugin"

Built-in connectors register through these very hooks.
"""

from collections.abc import Iterable

import pluggy
from crossledger.canonical import Envelope
from crossledger.plugins.connector import Connector
from crossledger.plugins.journey_definition import Journey
from crossledger.plugins.types import Outcome, OwnershipRule, Route

PROJECT = "crossledger"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class CrossledgerSpecs:
    @hookspec
    def crossledger_connectors(self) -> Iterable[Connector]:  # type: ignore[empty-body]
        """Return the connectors this plugin provides.

        Example::

            @hookimpl
            def crossledger_connectors():
                return [AcmeCrmConnector()]

        Names must be unique across all plugins; a duplicate is reported and skipped.
        """

    @hookspec
    def crossledger_ownership_rules(self) -> Iterable[OwnershipRule]:  # type: ignore[empty-body]
        """Contribute system-of-record rules; configuration ``[ownership]`` still wins.

        Example::

            @hookimpl
            def crossledger_ownership_rules():
                return [OwnershipRule(entity="customer", field_group="financial", owners=("erp",))]
        """

    @hookspec
    def crossledger_routes(self) -> Iterable[Route]:  # type: ignore[empty-body]
        """Contribute default routes; configuration ``[routes]`` replaces them per event type.

        Example::

            @hookimpl
            def crossledger_routes():
                return [Route(event_type="customer.upserted", targets=("acme",))]
        """

    @hookspec
    def crossledger_journeys(self) -> Iterable[Journey]:  # type: ignore[empty-body]
        """Contribute journeys: named, versioned sequences of steps across systems
        (:mod:`crossledger.plugins.journey_definition`). ``[journeys.<name>]`` configures or disables them.

        Example::

            @hookimpl
            def crossledger_journeys():
                return [Journey(name="welcome", version=1, steps=(Step("ticket", open_welcome_ticket),),
                                triggers=(Trigger("customer.upserted", source="salesforce"),))]

        Names must be unique across all plugins; a duplicate is reported and skipped.
        """

    @hookspec
    def crossledger_event_delivered(self, event: Envelope, target: str, outcome: Outcome) -> None:
        """Observe a delivery that reached its target. Exceptions here are logged, never fatal.

        Example::

            @hookimpl
            def crossledger_event_delivered(event, target, outcome):
                statsd.incr(f"delivered.{target}.{event.type}")
        """

    @hookspec
    def crossledger_event_dead_lettered(self, event_id: str, target: str | None, category: str,
                                        reason: str) -> None:
        """Observe an event that was dead-lettered. Exceptions here are logged, never fatal.

        Example::

            @hookimpl
            def crossledger_event_dead_lettered(event_id, target, category, reason):
                pager.notify(f"{category}: {reason}")
        """
