"""The part of SOQL the sandbox answers: what integrations and simple-salesforce send.

::

    SELECT field, ... FROM Object
      [WHERE condition]          comparisons (= != <> < <= > >=), [NOT] IN (...), LIKE 'a%',
                                 joined by AND / OR / NOT and parentheses
      [ORDER BY field [ASC|DESC] [NULLS FIRST|LAST], ...]
      [LIMIT n] [OFFSET n]

Literals follow SOQL's typing, which is where hand-written queries usually break: text and ids in
single quotes (``\\'`` escapes a quote); numbers, ``true``/``false`` and ``null`` bare; dates
(``2024-01-31``) and datetimes (``2024-01-31T00:00:00Z``) bare too: a quoted datetime is refused,
as Salesforce refuses it. Text comparisons ignore case; ``!=`` matches nulls; ids match in either
form (15 or 18 characters) and keep their case when compared or sorted, so they sort in the order
they were made. Without ORDER BY, records come in creation order.

Not emulated: relationship paths (``Account.Name``), sub-queries, aggregates, date literals such as
``LAST_N_DAYS:7``, ``FIELDS(ALL)``, ``WITH``, ``GROUP BY``.
"""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from crossledger.plugins.salesforce import ids
from crossledger.plugins.salesforce.sandbox.schema import (
    NUMBER_KINDS,
    TEXT_KINDS,
    Field,
    SalesforceError,
    SObjectType,
    find_sobject,
)

Values = dict[str, Any]
Predicate = Callable[[Values], bool]
_ID_KINDS = ("id", "reference")

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
)""", re.VERBOSE)

_KINDS_IN_ERRORS = {"currency": "currency", "double": "double", "percent": "percent", "int": "int", "date": "date",
                    "datetime": "dateTime", "boolean": "boolean"}


def malformed(message: str) -> SalesforceError:
    return SalesforceError(400, "MALFORMED_QUERY", message)


@dataclass(frozen=True)
class Order:
    field: Field
    descending: bool
    nulls_last: bool

    def key(self, record: Values) -> tuple[int, Any]:
        """Sort key: nulls rank below or above every value, so they land where NULLS FIRST/LAST says."""
        value = record.get(self.field.name)
        if value is None:
            return (1 if self.nulls_last != self.descending else -1, 0)
        return 0, _comparable(self.field, value)


@dataclass(frozen=True)
class Query:
    sobject: SObjectType
    fields: tuple[Field, ...]
    where: Predicate | None
    order: tuple[Order, ...]
    limit: int | None
    offset: int

    def run(self, records: Iterable[Values]) -> list[Values]:
        """The matching records (given in creation order), sorted and sliced."""
        rows = [record for record in records if self.where is None or self.where(record)]
        for order in reversed(self.order):  # stable sorts, last key first
            rows.sort(key=order.key, reverse=order.descending)
        end = None if self.limit is None else self.offset + self.limit
        return rows[self.offset:end]


def parse(text: str) -> Query:
    """The query in ``text``; :class:`SalesforceError` (``MALFORMED_QUERY``, ``INVALID_TYPE``,
    ``INVALID_FIELD``) as Salesforce would answer it."""
    return _Parser(_tokens(text)).query()


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if not text[position:].strip():
                break
            raise malformed(f"unexpected token: '{text[position:].split()[0]}'")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _comparable(field: Field, value: Any) -> Any:
    """What a comparison or a sort sees: text without its case, but an id as it is (normalized to its
    18 characters), since an id's case is part of it and ids sort in the order they were made."""
    return value.casefold() if isinstance(value, str) and field.kind not in _ID_KINDS else value


class _Parser:
    """Recursive descent over the tokens; keywords are case-insensitive, as in SOQL."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.position = 0
        self.sobject: SObjectType | None = None

    # token handling

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def next(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise malformed("unexpected token: <EOF>")
        self.position += 1
        return token

    def at(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token[1].upper() in words and token[0] in ("word", "punct", "op")

    def expect(self, word: str) -> None:
        token = self.next()
        if token[1].upper() != word:
            raise malformed(f"unexpected token: '{token[1]}' (expecting {word})")

    def integer(self) -> int:
        kind, text = self.next()
        if kind != "number" or not (text.isascii() and text.isdigit()):
            raise malformed(f"unexpected token: '{text}' (expecting a non-negative integer)")
        return int(text)

    # grammar

    def query(self) -> Query:
        self.expect("SELECT")
        names = [self.next()[1]]
        while self.at(","):
            self.next()
            names.append(self.next()[1])
        self.expect("FROM")
        self.sobject = _sobject(self.next()[1])
        fields = tuple(self.field(name) for name in names)
        where = None
        if self.at("WHERE"):
            self.next()
            where = self.disjunction()
        order: list[Order] = []
        if self.at("ORDER"):
            self.next()
            self.expect("BY")
            order.append(self.ordering())
            while self.at(","):
                self.next()
                order.append(self.ordering())
        limit = offset = None
        if self.at("LIMIT"):
            self.next()
            limit = self.integer()
        if self.at("OFFSET"):
            self.next()
            offset = self.integer()
        if self.peek() is not None:
            raise malformed(f"unexpected token: '{self.next()[1]}'")
        return Query(self.sobject, fields, where, tuple(order), limit, offset or 0)

    def field(self, name: str) -> Field:
        assert self.sobject is not None
        found = self.sobject.find(name)
        if found is None:
            raise SalesforceError(400, "INVALID_FIELD", f"No such column '{name}' on entity '{self.sobject.name}'. "
                                                        "If you are attempting to use a custom field, be sure to "
                                                        "append the '__c' after the custom field name.")
        return found

    def ordering(self) -> Order:
        field = self.field(self.next()[1])
        descending = False
        if self.at("ASC", "DESC"):
            descending = self.next()[1].upper() == "DESC"
        nulls_last = descending
        if self.at("NULLS"):
            self.next()
            nulls_last = self.next()[1].upper() == "LAST"
        return Order(field, descending, nulls_last)

    def disjunction(self) -> Predicate:
        terms = [self.conjunction()]
        while self.at("OR"):
            self.next()
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else (lambda record: any(term(record) for term in terms))

    def conjunction(self) -> Predicate:
        factors = [self.negation()]
        while self.at("AND"):
            self.next()
            factors.append(self.negation())
        return factors[0] if len(factors) == 1 else (lambda record: all(factor(record) for factor in factors))

    def negation(self) -> Predicate:
        if self.at("NOT"):
            self.next()
            inner = self.negation()
            return lambda record: not inner(record)
        if self.at("("):
            self.next()
            inner = self.disjunction()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        field = self.field(self.next()[1])
        if not field.filterable:
            raise SalesforceError(400, "INVALID_FIELD", f"field '{field.name}' can not be filtered in a query call")
        if self.at("NOT", "IN"):
            negated = self.next()[1].upper() == "NOT"
            if negated:
                self.expect("IN")
            self.expect("(")
            values = [self.literal(field)]
            while self.at(","):
                self.next()
                values.append(self.literal(field))
            self.expect(")")
            wanted = {_comparable(field, value) for value in values}
            return lambda record: (_comparable(field, record.get(field.name)) in wanted) != negated
        if self.at("LIKE"):
            self.next()
            pattern = _like(field, self.literal(field))
            return lambda record: bool(pattern.fullmatch(record.get(field.name) or ""))
        kind, operator = self.next()
        if kind != "op":
            raise malformed(f"unexpected token: '{operator}' (expecting a comparison operator)")
        expected = _comparable(field, self.literal(field))
        return lambda record: _compare(operator, _comparable(field, record.get(field.name)), expected)

    def literal(self, field: Field) -> Any:
        kind, text = self.next()
        if kind == "word" and text.lower() == "null":
            return None
        if field.kind in TEXT_KINDS and kind == "string":
            value = re.sub(r"\\(.)", r"\1", text[1:-1])
            if field.kind in _ID_KINDS:
                normalized = ids.normalize(value)
                if normalized is None:
                    raise SalesforceError(400, "INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {value}")
                return normalized
            return value
        if field.kind in NUMBER_KINDS and kind == "number":
            return Decimal(text)
        if field.kind == "date" and kind == "date":
            return date.fromisoformat(text)
        if field.kind == "datetime" and kind == "datetime":
            return datetime.fromisoformat(text)
        if field.kind == "boolean" and kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        expected = _KINDS_IN_ERRORS.get(field.kind, "string")
        quoting = "be enclosed in quotes" if expected == "string" else "not be enclosed in quotes"
        raise SalesforceError(400, "INVALID_FIELD", f"value of filter criterion for field '{field.name}' must be of "
                                                    f"type {expected} and should {quoting}")


def _sobject(name: str) -> SObjectType:
    found = find_sobject(name)
    if found is None:
        raise SalesforceError(400, "INVALID_TYPE", f"sObject type '{name}' is not supported. If you are attempting "
                                                   "to use a custom object, be sure to append the '__c' after the "
                                                   "entity name.")
    return found


def _like(field: Field, pattern: Any) -> re.Pattern[str]:
    if field.kind not in TEXT_KINDS or not isinstance(pattern, str):
        raise SalesforceError(400, "INVALID_FIELD", f"invalid operator on field '{field.name}': LIKE applies to text")
    translated = "".join(".*" if char == "%" else "." if char == "_" else re.escape(char) for char in pattern)
    return re.compile(translated, re.IGNORECASE | re.DOTALL)


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    """One comparison with SOQL's null rules: ``= null`` finds nulls, ``!=`` matches them, ordering never does."""
    if expected is None or actual is None:
        same = actual is expected
        return same if operator == "=" else (not same) if operator in ("!=", "<>") else False
    match operator:
        case "=":
            return bool(actual == expected)
        case "!=" | "<>":
            return bool(actual != expected)
        case "<":
            return bool(actual < expected)
        case "<=":
            return bool(actual <= expected)
        case ">":
            return bool(actual > expected)
        case _:
            return bool(actual >= expected)
