"""System-of-record rules: which system owns each field group of each entity.

Ownership is data. Plugins contribute default :class:`OwnershipRule` records, configuration
``[ownership]`` overrides them per ``"<entity>.<field group>"``. Owners are system *kinds* in
order of precedence; the first kind with a configured connector is the owner. So "CRM owns the
customer profile" holds once a CRM is connected, and billing stands in while none is.

Two checks:

- **source**: a change from a system that does not own a field group is stripped (the fields keep
  the golden record's values, and the audit says so) or rejected (a policy error), per rule. A
  non-owner may *seed* a record the hub has never seen: there is nothing yet to protect. A field
  the entity declares settled once known (a customer's currency) keeps its value when a change,
  even the owner's, leaves it unset: that source does not know it yet.
- **target**: before a write, fields the target itself owns are reset to their defaults, so the
  connector leaves them out and never overwrites the system of record. A target that does not hold
  the record yet has nothing to overwrite: it is *seeded* with the groups whose values the record's
  system of birth was entitled to give (billing stands in for the CRM's profile, so a customer born
  in Stripe reaches Salesforce with its phone, email and address). Values a system had no right to
  give (terms typed into the CRM, for the ERP) are still left out.
"""

import functools
from dataclasses import dataclass

import msgspec
from crossledger.canonical.entities import ENTITY_TYPES, Entity
from crossledger.canonical.events import Envelope
from crossledger.core.hub.roles import Roles
from crossledger.plugins.types import OwnershipRule


def born_in_system(canonical_id: str) -> str:
    """The system a record was first seen in: ``customer/stripe/cus_1`` -> ``stripe``."""
    return canonical_id.split("/", 2)[1] if canonical_id.count("/") >= 2 else ""


class PolicyViolation(Exception):
    """A change rejected by a ``reject`` rule."""


@dataclass(frozen=True)
class Decision:
    envelope: Envelope
    stripped: tuple[str, ...]


@dataclass(frozen=True)
class EffectiveRule:
    entity: str
    field_group: str
    owners: tuple[str, ...]
    on_violation: str
    owner: str | None


class OwnershipPolicy:
    def __init__(self, rules: list[OwnershipRule], systems: dict[str, str] | Roles) -> None:
        """``rules`` in increasing precedence (later wins); ``systems`` maps connector name -> kind,
        or says which connector plays each kind (:class:`~crossledger.core.hub.roles.Roles`)."""
        self._rules: dict[tuple[str, str], OwnershipRule] = {}
        for rule in rules:
            self._rules[(rule.entity, rule.field_group)] = rule
        self._roles = systems if isinstance(systems, Roles) else Roles(systems)

    def _owner(self, rule: OwnershipRule) -> str | None:
        return next((found for role in rule.owners if (found := self._roles.system(role)) is not None), None)

    def effective(self) -> list[EffectiveRule]:
        """The whole policy as it applies to the configured systems (for ``crossledger policy``)."""
        return [
            EffectiveRule(rule.entity, rule.field_group, rule.owners, rule.on_violation, self._owner(rule))
            for rule in sorted(self._rules.values(), key=lambda r: (r.entity, r.field_group))
        ]

    def owned_fields(self, entity: str, system: str, *, seeding_from: str | None = None) -> set[str]:
        """The fields ``system`` owns; with ``seeding_from`` (the system a record was born in), only
        those of groups that system could not own: the others it may seed (see the module doc)."""
        groups = ENTITY_TYPES[entity].field_groups
        return {
            field
            for (rule_entity, group), rule in self._rules.items()
            if rule_entity == entity and self._owner(rule) == system
            and not (seeding_from is not None and self._may_own(rule, seeding_from))
            for field in groups.get(group, ())
        }

    def _may_own(self, rule: OwnershipRule, system: str) -> bool:
        """Whether ``system`` is among the rule's owners, by name or by kind (a stand-in owner)."""
        return system in rule.owners or self._roles.kind_of(system) in rule.owners

    def check_source(self, envelope: Envelope, golden: msgspec.Struct | None) -> Decision:
        """Apply the source check; raises :class:`PolicyViolation` for a rejected change."""
        entity = envelope.data
        kind = entity.kind()
        if golden is None:
            return Decision(envelope, ())
        unknown_yet = {name: getattr(golden, name) for name in type(entity).settled_once_known
                       if getattr(entity, name) is None and getattr(golden, name) is not None}
        entity = msgspec.structs.replace(entity, **unknown_yet) if unknown_yet else entity
        replacements: dict[str, object] = {}
        stripped: list[str] = []
        for group, fields in type(entity).field_groups.items():
            rule = self._rules.get((kind, group))
            owner = self._owner(rule) if rule else None
            if rule is None or owner is None or owner == envelope.source:
                continue
            changed = [f for f in fields if getattr(entity, f) != getattr(golden, f)]
            if not changed:
                continue
            if rule.on_violation == "reject":
                raise PolicyViolation(
                    f"{envelope.source} may not change {kind} {group} ({', '.join(changed)}): "
                    f"{owner} is the system of record"
                )
            replacements.update({f: getattr(golden, f) for f in changed})
            stripped.append(f"{group} ({', '.join(changed)}) owned by {owner}")
        if not replacements and not unknown_yet:
            return Decision(envelope, ())
        data = msgspec.structs.replace(entity, **replacements)
        return Decision(msgspec.structs.replace(envelope, data=data), tuple(stripped))

    def for_target(self, envelope: Envelope, target: str, *, held: bool = True) -> Envelope:
        """The envelope with the fields ``target`` owns reset to their defaults; when the target
        does not hold the record yet (``held`` false), only those its system of birth could not
        have given."""
        entity = envelope.data
        born_in = None if held else born_in_system(entity.id)
        owned = self.owned_fields(entity.kind(), target, seeding_from=born_in)
        defaults = {field.name: field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
                    for field in _optional_fields(type(entity)) if field.name in owned}
        if not defaults:
            return envelope
        return msgspec.structs.replace(envelope, data=msgspec.structs.replace(entity, **defaults))


@functools.cache
def _optional_fields(kind: type[Entity]) -> tuple[msgspec.structs.FieldInfo, ...]:
    """The fields of an entity type that have a default, read once per type (msgspec reads the
    annotations each time it is asked)."""
    return tuple(field for field in msgspec.structs.fields(kind) if not field.required)
