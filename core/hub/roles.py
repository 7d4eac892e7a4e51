"""Roles: which configured connector plays each system kind (``crm``, ``billing``, ``erp``, ``support``).

Journeys and ownership rules speak of roles ("create the customer in billing", "the ERP owns the
dimensions"); the configuration decides which system fills each: the connector of that kind that
is configured, or, when several of a kind are (Stripe and Zuora both), the one ``[topology]``
names::

    [topology]
    billing = "zuora"
    erp = "business_central"

Without a ``[topology]`` entry the first configured connector of the kind plays it. A connector's
own name always stands for itself, so a journey or a rule may still name one system outright.
"""

from collections.abc import Mapping

from crossledger.core.settings import ConfigError
from crossledger.plugins.types import SystemKind


class Roles:
    """Resolves a role (a system kind) or a connector name to the configured connector that plays it."""

    def __init__(self, kinds: Mapping[str, str], chosen: Mapping[str, str] | None = None) -> None:
        """``kinds``: connector name -> its kind, in configuration order; ``chosen``: the ``[topology]`` table."""
        self._kinds = dict(kinds)
        self._players: dict[str, str] = {}
        for name, kind in self._kinds.items():
            self._players.setdefault(kind, name)
        for kind, name in (chosen or {}).items():
            if kind not in {str(known) for known in SystemKind}:
                raise ConfigError(f"[topology] {kind}: not a system kind ({', '.join(SystemKind)})")
            if self._kinds.get(name) != kind:
                configured = ", ".join(n for n, k in self._kinds.items() if k == kind) or "none"
                raise ConfigError(f"[topology] {kind} = {name!r}: not a configured {kind} connector "
                                  f"(configured: {configured})")
            self._players[kind] = name

    def system(self, role: str) -> str | None:
        """The connector ``role`` names (a connector's own name, or a kind); None when none is configured."""
        return role if role in self._kinds else self._players.get(role)

    def role_of(self, system: str) -> str | None:
        """The kind ``system`` plays; None when another connector of its kind plays it."""
        kind = self._kinds.get(system)
        return kind if kind is not None and self._players.get(kind) == system else None

    def kind_of(self, system: str) -> str | None:
        return self._kinds.get(system)
