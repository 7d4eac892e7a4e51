"""Search in the Stripe sandbox: ``GET /v1/customers/search``, ``/v1/invoices/search`` and
``/v1/subscriptions/search``, with the subset of Stripe's search query language people use.

A query is clauses joined by spaces or ``AND``, or all by ``OR`` (the two cannot be mixed); each
clause is ``field`` ``operator`` ``value``, negated by a leading ``-``:

- ``email:"amy@example.com"``: exact match; every field has it;
- ``name~"acm"``: substring (case-insensitive, at least 3 characters) on the text fields that
  Stripe matches by substring (a customer's email, name and phone);
- ``total>1000``, ``created<=1700000000``: ``=``, ``<``, ``<=``, ``>``, ``>=`` on numeric fields;
- ``metadata["key"]:"value"`` (or ``metadata['key']``): a metadata value, on every resource.

Values are quoted with ``"`` or ``'`` (a backslash escapes the quote) or are bare words. The
fields are Stripe's query fields for each resource (:data:`CUSTOMER_FIELDS` and the others); any
other field, operator or malformed query is the 400 Stripe answers, naming ``query``. Answers are
``{"object": "search_result", "data", "has_more", "next_page", "url"}``, newest first, paged by
the opaque ``page`` token of ``next_page``. Unlike Stripe's, the index has no delay: a record is
found as soon as it is written.
"""

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crossledger.plugins.stripe.sandbox.account import Account
from crossledger.plugins.stripe.sandbox.wire import Call, Collection, Endpoint, Params, Record, invalid, limit_of

Predicate = Callable[[Record], bool]


@dataclass(frozen=True)
class Field:
    """A query field of one resource: the operators it takes and where its value is in a record."""

    operators: tuple[str, ...]
    read: Callable[[Record], Any]


TEXT = (":", "~")
EXACT = (":",)
NUMERIC = (":", "=", "<", "<=", ">", ">=")


def _top(name: str, operators: tuple[str, ...]) -> Field:
    return Field(operators, lambda record: record.get(name))


def _under(operators: tuple[str, ...], *path: str) -> Field:
    """A field nested in the record (``last_finalization_error.code``); absent when a level is null."""
    def read(record: Record) -> Any:
        value: Any = record
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return Field(operators, read)


CUSTOMER_FIELDS = {
    "created": _top("created", NUMERIC), "email": _top("email", TEXT), "name": _top("name", TEXT),
    "phone": _top("phone", TEXT),
}
INVOICE_FIELDS = {
    "created": _top("created", NUMERIC), "currency": _top("currency", EXACT), "customer": _top("customer", EXACT),
    "last_finalization_error_code": _under(EXACT, "last_finalization_error", "code"),
    "last_finalization_error_type": _under(EXACT, "last_finalization_error", "type"),
    "number": _top("number", EXACT), "receipt_number": _top("receipt_number", EXACT),
    "status": _top("status", EXACT), "subscription": _under(EXACT, "parent", "subscription_details", "subscription"),
    "total": _top("total", NUMERIC),
}
SUBSCRIPTION_FIELDS = {"created": _top("created", NUMERIC), "status": _top("status", EXACT)}
"""Stripe's query fields for each resource besides ``metadata``, which all of them have."""


class Search:
    """The search endpoints of the resources the sandbox searches (see the module doc)."""

    def __init__(self, account: Account) -> None:
        self._account = account

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/v1/customers/search", self.search_customers),
            Endpoint("GET", "/v1/invoices/search", self.search_invoices),
            Endpoint("GET", "/v1/subscriptions/search", self.search_subscriptions),
        ]

    def search_customers(self, call: Call) -> Record:
        return search(self._account.customers, call.params, CUSTOMER_FIELDS)

    def search_invoices(self, call: Call) -> Record:
        return search(self._account.invoices, call.params, INVOICE_FIELDS)

    def search_subscriptions(self, call: Call) -> Record:
        return search(self._account.subscriptions, call.params, SUBSCRIPTION_FIELDS)


def search(collection: Collection, params: Params, fields: dict[str, Field]) -> Record:
    """``GET .../search``: the records matching ``query``, newest first, paged by ``page`` tokens."""
    params.accept("query", "limit", "page")
    matches = parse_query(params.required("query"), fields, collection.url.rsplit("/", 1)[-1])
    found = [record for record in reversed(collection.records.values()) if matches(record)]
    limit, start = limit_of(params), _page_offset(params.text("page"))
    more = start + limit < len(found)
    return {"object": "search_result", "data": found[start:start + limit], "has_more": more,
            "next_page": _page_token(start + limit) if more else None, "url": f"{collection.url}/search"}


def _page_token(offset: int) -> str:
    """Search pages are opaque tokens to clients; here one holds the offset of the next page."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _page_offset(page: str | None) -> int:
    if page is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(page.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise invalid(f"Invalid page: {page}", param="page") from None
    if not isinstance(offset, int) or offset < 0:
        raise invalid(f"Invalid page: {page}", param="page")
    return offset


_CLAUSE = re.compile(
    r"""\s*(?P<negate>-?)(?P<field>[a-z_]+)(?:\[(?P<quote>['"])(?P<key>.*?)(?P=quote)\])?"""
    r"""(?P<op>[:~]|[<>]=?|=)(?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s'"]+)"""
)
_JOIN = re.compile(r"\s+(?:(AND|OR)\s+)?", re.IGNORECASE)
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    ":": int.__eq__, "=": int.__eq__, "<": int.__lt__, "<=": int.__le__, ">": int.__gt__, ">=": int.__ge__,
}


def _unquote(value: str) -> str:
    if value[:1] in ("'", '"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _field(match: re.Match[str], fields: dict[str, Field], resource: str) -> Field:
    """The field a clause names, checked to exist on the resource and to take the clause's operator."""
    name, key, op = match["field"], match["key"], match["op"]
    if name == "metadata" and key is not None:
        found = Field(EXACT, lambda record: (record.get("metadata") or {}).get(key))
    elif name in fields and key is None:
        found = fields[name]
    else:
        raise invalid(f"Field `{name}` is an unsupported search field for resource `{resource}`. See "
                      f"http://stripe.com/docs/search#query-fields-for-{resource} for a list of supported fields.",
                      param="query")
    if op not in found.operators:
        raise invalid(f"Field `{name}` does not support the `{op}` operator; it takes "
                      f"{', '.join(f'`{o}`' for o in found.operators)}.", param="query")
    return found


def _clause(match: re.Match[str], fields: dict[str, Field], resource: str) -> Predicate:
    field, op, value = _field(match, fields, resource), match["op"], _unquote(match["value"])
    if op == "~" and len(value) < 3:
        raise invalid("Substring matching (`~`) needs a value of at least 3 characters.", param="query")
    if field.operators == NUMERIC:
        if not re.fullmatch(r"-?\d+", value):
            raise invalid(f"Field `{match['field']}` is numeric: `{value}` is not a whole number.", param="query")
        number, compare = int(value), _COMPARE[op]

        def test(record: Record) -> bool:
            found = field.read(record)
            return isinstance(found, int) and not isinstance(found, bool) and compare(found, number)
    else:
        def test(record: Record) -> bool:
            found = field.read(record)
            if not isinstance(found, str):
                return False
            return found == value if op == ":" else value.lower() in found.lower()

    return (lambda record: not test(record)) if match["negate"] else test


def parse_query(query: str, fields: dict[str, Field], resource: str) -> Predicate:
    """A predicate for ``query``, or the 400 Stripe gives for a query it cannot run."""
    clauses: list[Predicate] = []
    joins: set[str] = set()
    position = 0
    while True:
        match = _CLAUSE.match(query, position)
        if match is None:
            raise invalid(f"The search query could not be parsed at character {position}: {query!r}.",
                          param="query")
        clauses.append(_clause(match, fields, resource))
        position = match.end()
        if position == len(query.rstrip()):
            break
        join = _JOIN.match(query, position)
        if join is None:
            raise invalid(f"The search query could not be parsed at character {position}: {query!r}.",
                          param="query")
        joins.add((join.group(1) or "AND").upper())
        position = join.end()
    if len(joins) > 1:
        raise invalid("AND and OR cannot be combined in one search query.", param="query")
    if joins == {"OR"}:
        return lambda record: any(clause(record) for clause in clauses)
    return lambda record: all(clause(record) for clause in clauses)
