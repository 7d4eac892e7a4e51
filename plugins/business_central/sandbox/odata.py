"""The OData v4 conventions Business Central's API follows, as far as the sandbox speaks them.

- **Paths** are segments such as ``companies(8d5e…)``, ``salesInvoices(…)``, ``salesInvoiceLines``
  or ``Microsoft.NAV.post``: :func:`segments` splits a path into ``(name, key)`` pairs.
- **$filter**: comparisons ``field op literal`` (``eq ne gt ge lt le``) joined by ``and`` / ``or``,
  with ``not`` and parentheses. Literals are ``'text'`` (``''`` escapes a quote), numbers,
  ``true``/``false``/``null``, GUIDs and datetimes written bare (``2024-01-31T09:34:21.123Z``).
  Datetimes and GUIDs compare as text in their canonical form (GUIDs in lower case), which orders
  them correctly. Comparisons are typed as in Business Central: a property of :data:`GUID_PROPERTIES`
  (``Edm.Guid``) compares only with a bare GUID or ``null``; ``id gt ''`` or ``id eq '8d5e…'`` is
  400 ``BadRequest`` "A binary operator with incompatible types was detected" (OData v4 writes GUID
  literals unquoted).
  Functions (``startswith``, ``contains``) and arithmetic are not emulated: they answer 400.
- **ETags**: weak, opaque, and changed by every write (:func:`etag`).
"""

import base64
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Record = dict[str, Any]
Predicate = Callable[[Record], bool]

_SEGMENT = re.compile(r"^(?P<name>[A-Za-z][\w.]*)(?:\((?P<key>[^()]*)\))?$")
_TOKEN = re.compile(r"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<text>'(?:[^']|'')*')|(?P<word>[^\s()']+))""")
_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and b is not None and a > b,
    "ge": lambda a, b: a is not None and b is not None and a >= b,
    "lt": lambda a, b: a is not None and b is not None and a < b,
    "le": lambda a, b: a is not None and b is not None and a <= b,
}
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_DATETIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_OPERATOR_KINDS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
                   "lt": "LessThan", "le": "LessThanOrEqual"}
"""The names OData's error messages give the operators."""
GUID_PROPERTIES = frozenset({
    "id", "accountId", "appliesToInvoiceId", "balancingAccountId", "baseUnitOfMeasureId", "billToCustomerId",
    "currencyId", "customerId", "dimensionId", "dimensionValueId", "documentId", "employeeId", "invoiceId",
    "itemCategoryId", "itemId", "jobId", "journalId", "orderId", "parentId", "payToVendorId", "paymentMethodId",
    "paymentTermsId", "shipmentMethodId", "taxAreaId", "taxGroupId", "unitOfMeasureId", "valueId", "vendorId"})
"""The properties typed ``Edm.Guid``: those ``format: uuid`` in Business Central's OpenAPI description,
and v2.0's ``journalId``. (Not every ``...Id``: ``contactId`` is text.)"""


class ODataError(ValueError):
    """A request the OData layer cannot read (answered 400 ``BadRequest``)."""


def segments(path: str) -> list[tuple[str, str | None]]:
    """``companies(1)/salesInvoices(2)/salesInvoiceLines`` -> ``[("companies", "1"),
    ("salesInvoices", "2"), ("salesInvoiceLines", None)]``; a key in quotes loses them."""
    found: list[tuple[str, str | None]] = []
    for part in filter(None, path.split("/")):
        match = _SEGMENT.match(part)
        if match is None:
            raise ODataError(f"Cannot parse the path segment '{part}'")
        key = match["key"]
        found.append((match["name"], key.strip("'") if key is not None else None))
    return found


def etag(version: int, record_id: str) -> str:
    """A weak ETag in Business Central's form: ``W/"JzE7...Jw=="`` (an opaque base64 token)."""
    token = base64.b64encode(f"'{version};{record_id};'".encode()).decode()
    return f'W/"{token}"'


def timestamp_text(seconds: str, fraction: str | None) -> str:
    """A datetime in the one form the sandbox stores and compares: milliseconds, ``Z``."""
    return f"{seconds}.{(fraction or '').ljust(3, '0')[:3]}Z"


def parse_filter(text: str) -> Predicate:
    """The predicate a ``$filter`` expression states (see the module doc for the subset)."""
    tokens = [match.group().strip() for match in _TOKEN.finditer(text)]
    if "".join(tokens).replace(" ", "") != re.sub(r"\s+", "", text):
        raise ODataError(f"Invalid filter expression '{text}'")
    parser = _Parser(tokens)
    predicate = parser.disjunction()
    if parser.position != len(tokens):
        raise ODataError(f"Invalid filter expression '{text}'")
    return predicate


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ODataError("Unexpected end of the filter expression")
        self.position += 1
        return token

    def disjunction(self) -> Predicate:
        left = self.conjunction()
        while self.peek() == "or":
            self.take()
            left = _either(left, self.conjunction())
        return left

    def conjunction(self) -> Predicate:
        left = self.unary()
        while self.peek() == "and":
            self.take()
            left = _both(left, self.unary())
        return left

    def unary(self) -> Predicate:
        if self.peek() == "not":
            self.take()
            inner = self.unary()
            return lambda record: not inner(record)
        if self.peek() == "(":
            self.take()
            inner = self.disjunction()
            if self.take() != ")":
                raise ODataError("Unbalanced parentheses in the filter expression")
            return inner
        return self.comparison()

    def comparison(self) -> Predicate:
        field, operator, literal = self.take(), self.take(), self.take()
        compare = _OPERATORS.get(operator)
        if compare is None or not re.fullmatch(r"[A-Za-z]\w*", field):
            raise ODataError(f"The filter operator '{operator}' is not supported")
        if field in GUID_PROPERTIES:
            return _guid_comparison(field, operator, compare, literal)
        value = _literal(literal)
        return lambda record: bool(compare(_comparable(record.get(field)), value))


def _guid_comparison(field: str, operator: str, compare: Callable[[Any, Any], bool], literal: str) -> Predicate:
    """A comparison of an ``Edm.Guid`` property: with a bare GUID (compared in lower case) or ``null``."""
    if literal == "null":
        return lambda record: bool(compare(record.get(field), None))
    if _GUID.match(literal) is None:
        raise ODataError("A binary operator with incompatible types was detected. Found operand types "
                         f"'Edm.Guid' and '{_edm_type(literal)}' for operator kind '{_OPERATOR_KINDS[operator]}'.")
    value = literal.lower()
    return lambda record: bool(compare(_lower(record.get(field)), value))


def _edm_type(literal: str) -> str:
    """The type OData reads a literal as, for an error message."""
    if literal.startswith("'"):
        return "Edm.String"
    if literal in ("true", "false"):
        return "Edm.Boolean"
    if _DATETIME.match(literal):
        return "Edm.DateTimeOffset"
    return "Edm.Decimal" if _NUMBER.match(literal) else "Edm.Untyped"


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _either(first: Predicate, second: Predicate) -> Predicate:
    return lambda record: first(record) or second(record)


def _both(first: Predicate, second: Predicate) -> Predicate:
    return lambda record: first(record) and second(record)


def _literal(token: str) -> Any:
    if token.startswith("'"):
        return token[1:-1].replace("''", "'")
    if token in ("true", "false"):
        return token == "true"
    if token == "null":
        return None
    if (moment := _DATETIME.match(token)) is not None:
        return timestamp_text(moment[1], moment[2])
    if _NUMBER.match(token):
        return Decimal(token)
    if token.startswith(("(", ")")):
        raise ODataError(f"Unexpected '{token}' in the filter expression")
    return token  # a GUID, date or datetime, written bare


def _comparable(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    return value
