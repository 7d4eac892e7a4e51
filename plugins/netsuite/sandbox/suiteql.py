"""A small SuiteQL interpreter for the sandbox: the part of NetSuite's Oracle-flavoured SQL that an
incremental poller sends, run over rows the sandbox builds from its records.

Supported::

    SELECT * | expr [AS alias], ...
    FROM table
    [WHERE condition]
    [ORDER BY expr|alias [ASC|DESC], ...]

where an ``expr`` is a column, a literal (``'text'``, ``12``, ``1.5``) or one of ``TO_CHAR(x, fmt)``,
``TO_TIMESTAMP(text, fmt)`` and ``TO_DATE(text, fmt)`` with Oracle format models (``YYYY``, ``MM``,
``DD``, ``HH24``, ``MI``, ``SS``, quoted literals such as ``"T"``); a ``condition`` combines
comparisons (``= <> != < <= > >=``), ``[NOT] IN (...)`` and ``IS [NOT] NULL`` with ``AND``, ``OR``,
``NOT`` and parentheses, under SQL's three-valued logic (a comparison with NULL is neither true nor
false, so ``NOT`` does not make it true).

What NetSuite does and a client must cope with, so the sandbox does it too: names are
case-insensitive; every value leaves as a string (``"107"``, ``"105.5"``, ``"T"``); NULL columns are
left out of the row; and a datetime selected without ``TO_CHAR`` comes out in the user's date format,
``1/31/2024``, with its time of day dropped.

A keyset page (``WHERE ... AND id > 41000 ORDER BY id``: the rows after the last id a client read)
costs the page, not the table. The interpreter sees that shape in the parsed query (a ``column >
number`` conjunct of the WHERE, ordered by that column alone) and bisects the table's rows that the
rest of the WHERE holds for, kept in the column's order on the :class:`Table` for the next page's
query; rows are rendered only when a page reads them (:class:`Result`).
"""

import re
from bisect import bisect_right
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

Value = str | Decimal | datetime | None
Row = Mapping[str, Value]
"""A table's row by column; a table may compute its columns only when a query reads them."""
Expression = Callable[[Row], Value]
Condition = Callable[[Row], bool | None]


class SuiteQLError(Exception):
    """A query NetSuite would refuse; the message reads like NetSuite's."""


ORDERS_KEPT = 8
"""How many keyset orders (one per WHERE besides its bound) a table keeps; the oldest goes first."""


@dataclass(frozen=True)
class Table:
    """One queryable record: its column names (lower case) and its rows, keyed by column.

    A table is a snapshot: its rows and their values do not change (build a new one when they do),
    so what a query learns of it, the order a keyset page bisects, is kept for the next query."""

    name: str
    columns: tuple[str, ...]
    rows: Sequence[Row]
    _orders: dict[Hashable, "_Ordered | None"] = field(default_factory=dict, init=False, repr=False,
                                                       compare=False)

    def ordered(self, column: str, where: Hashable, condition: Condition) -> "_Ordered | None":
        """The rows ``condition`` holds for, in ``column``'s order, kept under ``where`` (what the
        condition was read from). None when the column holds something besides numbers and NULLs,
        whose comparison with a number may convert text or fail: such a query runs row by row."""
        key = (column, where)
        if key not in self._orders:
            if len(self._orders) >= ORDERS_KEPT:
                del self._orders[next(iter(self._orders))]
            self._orders[key] = _Ordered.of(self.rows, column, condition)
        return self._orders[key]


@dataclass(frozen=True)
class _Ordered:
    """Rows in one column's order (stable: ties keep the table's order), with that column's values."""

    keys: list[Decimal]
    rows: list[Row]

    @classmethod
    def of(cls, rows: Sequence[Row], column: str, condition: Condition) -> "_Ordered | None":
        chosen: list[tuple[Decimal, Row]] = []
        for row in rows:
            key = row.get(column)
            if key is not None and not isinstance(key, Decimal):
                return None
            # Evaluated for every row, as the whole WHERE is, so a condition that fails fails alike.
            if condition(row) is True and key is not None:  # a NULL is above no bound
                chosen.append((key, row))
        chosen.sort(key=lambda pair: pair[0])
        return cls([key for key, _ in chosen], [row for _, row in chosen])

    def above(self, bound: Decimal) -> list[Row]:
        return self.rows[bisect_right(self.keys, bound):]


@dataclass(frozen=True)
class Result:
    """A query's rows, chosen and ordered; each is rendered as NetSuite answers it (text, NULL
    columns left out) only when read, so a page costs its own rows."""

    rows: Sequence[Row]
    columns: Sequence[tuple[str, Expression]]

    def __len__(self) -> int:
        return len(self.rows)

    def page(self, offset: int, limit: int) -> list[dict[str, str]]:
        """The rendered rows from ``offset``, at most ``limit`` of them."""
        return [self._render(row) for row in self.rows[offset: offset + limit]]

    def _render(self, row: Row) -> dict[str, str]:
        return {name: render(value) for name, expression in self.columns if (value := expression(row)) is not None}


def select(query: str, table: Callable[[str], Table | None]) -> Result:
    """Run ``query`` against the table ``table(name)`` returns: its rows, rendered as they are read."""
    return _Parser(_tokens(query), table).query()


def execute(query: str, table: Callable[[str], Table | None]) -> list[dict[str, str]]:
    """Run ``query`` against the table ``table(name)`` returns; every row, rendered as NetSuite does."""
    result = select(query, table)
    return result.page(0, len(result))


# --- values ---------------------------------------------------------------------------------


def render(value: Value) -> str:
    """A value as SuiteQL returns it: text. Datetimes follow the date preference (``M/D/YYYY``)."""
    if isinstance(value, datetime):
        return f"{value.month}/{value.day}/{value.year}"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return str(value)


_FORMAT_ELEMENTS = {"YYYY": "%Y", "MM": "%m", "DD": "%d", "HH24": "%H", "MI": "%M", "SS": "%S"}
_FORMAT_TOKEN = re.compile(r'YYYY|MM|DD|HH24|MI|SS|"[^"]*"|[-/:.,; ]|.', re.IGNORECASE)


def _strftime_format(model: str) -> str:
    """An Oracle datetime format model as a ``strftime`` format."""
    parts = []
    for token in _FORMAT_TOKEN.findall(model):
        if token.upper() in _FORMAT_ELEMENTS:
            parts.append(_FORMAT_ELEMENTS[token.upper()])
        elif token.startswith('"'):
            parts.append(token[1:-1].replace("%", "%%"))
        elif not token.isalnum():
            parts.append(token)
        else:
            raise SuiteQLError(f"Invalid search query. The date format {model!r} is not valid.")
    return "".join(parts)


def _to_char(value: Value, model: Value) -> Value:
    if value is None or not isinstance(value, datetime):
        return value if value is None else render(value)
    return value.strftime(_strftime_format(str(model)))


def _to_timestamp(text: Value, model: Value) -> Value:
    if text is None:
        return None
    try:
        return datetime.strptime(str(text), _strftime_format(str(model)))
    except ValueError as error:
        raise SuiteQLError(f"Invalid search query. {text!r} does not match the format {model!r}.") from error


FUNCTIONS: dict[str, Callable[[Value, Value], Value]] = {
    "TO_CHAR": _to_char,
    "TO_TIMESTAMP": _to_timestamp,
    "TO_DATE": _to_timestamp,
}


def _comparable(left: Value, right: Value) -> tuple[Value, Value]:
    """Both sides of a comparison in one type: numbers written as text are numbers."""
    if type(left) is type(right):
        return left, right
    try:
        if isinstance(left, Decimal) and isinstance(right, str):
            return left, Decimal(right)
        if isinstance(left, str) and isinstance(right, Decimal):
            return Decimal(left), right
    except InvalidOperation:
        pass
    raise SuiteQLError(f"Invalid search query. Cannot compare {render(left)!r} with {render(right)!r}.")


_COMPARISONS: dict[str, Callable[[int], bool]] = {
    "=": lambda order: order == 0,
    "<>": lambda order: order != 0,
    "!=": lambda order: order != 0,
    "<": lambda order: order < 0,
    "<=": lambda order: order <= 0,
    ">": lambda order: order > 0,
    ">=": lambda order: order >= 0,
}


def _order(left: Value, right: Value) -> int | None:
    """-1, 0 or 1; None when either side is NULL."""
    if left is None or right is None:
        return None
    a, b = _comparable(left, right)
    return (a > b) - (a < b)  # type: ignore[operator]


def _all(parts: Sequence[bool | None]) -> bool | None:
    if False in parts:
        return False
    return None if None in parts else True


def _any(parts: Sequence[bool | None]) -> bool | None:
    if True in parts:
        return True
    return None if None in parts else False


# --- parsing --------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:(?P<string>'(?:[^']|'')*')|(?P<quoted>"[^"]+")|(?P<number>\d+(?:\.\d+)?)
                     |(?P<op><=|>=|<>|!=|=|<|>)|(?P<punct>[(),*])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))""", re.VERBOSE)


@dataclass(frozen=True)
class _Token:
    kind: str  # string, quoted, number, op, punct, word
    text: str

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text.upper() in words


def _tokens(query: str) -> list[_Token]:
    tokens, at = [], 0
    while at < len(query.rstrip()):
        match = _TOKEN.match(query, at)
        if match is None or match.end() == at:
            raise SuiteQLError(f"Invalid search query. Syntax error near {query[at:at + 20]!r}.")
        kind = match.lastgroup or ""
        tokens.append(_Token(kind, match.group(kind)))
        at = match.end()
    return tokens


@dataclass(frozen=True)
class _Sort:
    key: Expression
    descending: bool
    column: str | None
    """The column sorted by, when the key is one."""

    def apply(self, rows: list[Row]) -> None:
        """Sort ``rows`` in place (stably) by this key; NULLs last ascending, first descending, as in Oracle."""
        rows.sort(key=lambda row: _sort_key(self.key(row)), reverse=self.descending)


class _Parser:
    """Recursive descent over the tokens, compiling straight to functions of a row."""

    def __init__(self, tokens: list[_Token], table: Callable[[str], Table | None]) -> None:
        self._tokens = tokens
        self._at = 0
        self._table_of = table
        self._table: Table | None = None

    # token handling

    def _peek(self) -> _Token | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _next(self) -> _Token:
        token = self._peek()
        if token is None:
            raise SuiteQLError("Invalid search query. The query ends too early.")
        self._at += 1
        return token

    def _accept_word(self, *words: str) -> bool:
        token = self._peek()
        if token is not None and token.is_word(*words):
            self._at += 1
            return True
        return False

    def _expect_word(self, word: str) -> None:
        if not self._accept_word(word):
            raise SuiteQLError(f"Invalid search query. Expected {word} near {self._near()}.")

    def _accept(self, text: str) -> bool:
        token = self._peek()
        if token is not None and token.kind in ("punct", "op") and token.text == text:
            self._at += 1
            return True
        return False

    def _expect(self, text: str) -> None:
        if not self._accept(text):
            raise SuiteQLError(f"Invalid search query. Expected '{text}' near {self._near()}.")

    def _near(self) -> str:
        token = self._peek()
        return repr(token.text) if token else "the end"

    # the query

    def query(self) -> Result:
        self._expect_word("SELECT")
        start = self._at
        self._skip_to("FROM")
        table = self._from()
        where = self._condition() if self._accept_word("WHERE") else _always
        after_where = self._at
        self._at = start
        columns = self._select_list(table)
        self._expect_word("FROM")
        self._at = after_where
        sorts = self._order_by(columns) if self._accept_word("ORDER") else []
        if self._peek() is not None:
            raise SuiteQLError(f"Invalid search query. Unexpected {self._near()}.")
        keyset = _keyset_rows(table, where, sorts)
        return Result(_rows(table, where, sorts) if keyset is None else keyset, columns)

    def _skip_to(self, word: str) -> None:
        """Move to the ``word`` that ends the select list (parsed later, once the table is known)."""
        depth = 0
        while (token := self._peek()) is not None and not (depth == 0 and token.is_word(word)):
            depth += {"(": 1, ")": -1}.get(token.text, 0) if token.kind == "punct" else 0
            self._at += 1

    def _from(self) -> Table:
        self._expect_word("FROM")
        token = self._next()
        name = token.text.strip('"').lower()
        table = self._table_of(name) if token.kind in ("word", "quoted") else None
        if table is None:
            raise SuiteQLError(f"Invalid search query. Detailed unprocessed description follows. "
                               f"Search error occurred: Record '{token.text}' was not found.")
        self._table = table
        return table

    def _select_list(self, table: Table) -> list[tuple[str, Expression]]:
        if self._accept("*"):
            return [(name, _column(name)) for name in table.columns]
        columns: list[tuple[str, Expression]] = []
        while True:
            start = self._at
            expression = self._expression()
            name = self._column_from(start) or ""  # a column, named after itself
            if self._accept_word("AS") or ((alias := self._peek()) is not None and alias.kind == "word"
                                           and not alias.is_word("FROM")):
                name = self._next().text.strip('"').lower()
            columns.append((name or f"expr{len(columns) + 1}", expression))
            if not self._accept(","):
                return columns

    def _order_by(self, columns: list[tuple[str, Expression]]) -> list[_Sort]:
        self._expect_word("BY")
        aliases = dict(columns)
        sorts = []
        while True:
            token = self._peek()
            alias = token.text.lower() if token is not None and token.kind == "word" else None
            table_columns = self._table.columns if self._table else ()
            start = self._at
            if alias is not None and alias in aliases and alias not in table_columns:
                self._at += 1
                key, column = aliases[alias], None
            else:
                key = self._expression()
                column = self._column_from(start)
            descending = self._accept_word("DESC")
            if not descending:
                self._accept_word("ASC")
            sorts.append(_Sort(key, descending, column))
            if not self._accept(","):
                return sorts

    # expressions and conditions

    def _column_from(self, start: int) -> str | None:
        """The column the expression read from ``start`` is, if it is a bare one."""
        token = self._tokens[start]
        bare = self._at == start + 1 and token.kind in ("word", "quoted")
        return token.text.strip('"').lower() if bare else None

    def _expression(self) -> Expression:
        token = self._next()
        if token.kind == "string":
            text = token.text[1:-1].replace("''", "'")
            return lambda row: text
        if token.kind == "number":
            number = Decimal(token.text)
            return lambda row: number
        if token.kind == "word" and token.text.upper() in FUNCTIONS and self._accept("("):
            function = FUNCTIONS[token.text.upper()]
            first = self._expression()
            self._expect(",")
            second = self._expression()
            self._expect(")")
            return lambda row: function(first(row), second(row))
        if token.kind in ("word", "quoted"):
            name = token.text.strip('"').lower()
            if self._table is None or name not in self._table.columns:
                table = self._table.name if self._table else "?"
                raise SuiteQLError(f"Invalid search query. Detailed unprocessed description follows. Search error "
                                   f"occurred: Field '{name}' for record '{table}' was not found. Reason: "
                                   f"NOT_EXPOSED - Not available for channel SEARCH")
            return _column(name)
        raise SuiteQLError(f"Invalid search query. Unexpected {token.text!r}.")

    def _condition(self) -> Condition:
        parts = [self._conjunction()]
        while self._accept_word("OR"):
            parts.append(self._conjunction())
        return parts[0] if len(parts) == 1 else lambda row: _any([part(row) for part in parts])

    def _conjunction(self) -> Condition:
        parts, sources = [], []
        while True:
            start = self._at
            parts.append(self._negation())
            sources.append(tuple(self._tokens[start: self._at]))
            if not self._accept_word("AND"):
                break
        return parts[0] if len(parts) == 1 else _Conjunction(tuple(parts), tuple(sources))

    def _negation(self) -> Condition:
        if self._accept_word("NOT"):
            inner = self._negation()
            return lambda row: None if (value := inner(row)) is None else not value
        if self._accept("("):
            inner = self._condition()
            self._expect(")")
            return inner
        return self._predicate()

    def _predicate(self) -> Condition:
        start = self._at
        left = self._expression()
        if self._accept_word("IS"):
            negated = self._accept_word("NOT")
            self._expect_word("NULL")
            return lambda row: (left(row) is None) != negated
        negated = self._accept_word("NOT")
        if self._accept_word("IN"):
            self._expect("(")
            options = [self._expression()]
            while self._accept(","):
                options.append(self._expression())
            self._expect(")")

            def member(row: Row) -> bool | None:
                found = _any([None if (order := _order(left(row), option(row))) is None else order == 0
                              for option in options])
                return None if found is None else found != negated

            return member
        if negated:
            raise SuiteQLError(f"Invalid search query. Expected IN near {self._near()}.")
        column = self._column_from(start)
        token = self._next()
        if token.kind != "op":
            raise SuiteQLError(f"Invalid search query. Expected a comparison near {token.text!r}.")
        holds = _COMPARISONS[token.text]
        bound = self._peek()
        right = self._expression()
        if column is not None and token.text == ">" and bound is not None and bound.kind == "number":
            return _Above(column, Decimal(bound.text))
        return lambda row: None if (order := _order(left(row), right(row))) is None else holds(order)


@dataclass(frozen=True)
class _Conjunction:
    """``part AND part ...``, each part with the tokens it was read from (which name it, for
    :meth:`Table.ordered`)."""

    parts: tuple[Condition, ...]
    sources: tuple[tuple[_Token, ...], ...]

    def __call__(self, row: Row) -> bool | None:
        return _all([part(row) for part in self.parts])


@dataclass(frozen=True)
class _Above:
    """``column > number``: a keyset page's bound, which a bisection of the column's order answers."""

    column: str
    bound: Decimal

    def __call__(self, row: Row) -> bool | None:
        order = _order(row.get(self.column), self.bound)
        return None if order is None else order > 0


def _rows(table: Table, where: Condition, sorts: Sequence[_Sort]) -> list[Row]:
    """The rows ``where`` holds for, sorted: every row of the table tried."""
    rows = [row for row in table.rows if where(row) is True]
    for sort in reversed(sorts):  # stable sorts, last key first
        sort.apply(rows)
    return rows


def _keyset_rows(table: Table, where: Condition, sorts: Sequence[_Sort]) -> list[Row] | None:
    """The rows of a keyset page (``WHERE ... AND column > number ORDER BY column``), bisected from
    the rows the rest of the WHERE holds for in the column's order; None for a query of another shape.

    The same rows in the same order as :func:`_rows`: a row is chosen when every conjunct is true,
    the bound's among them; the order is stable, as the sort is; a NULL is above no bound."""
    if len(sorts) != 1 or sorts[0].descending or sorts[0].column is None:
        return None
    column = sorts[0].column
    parts = where.parts if isinstance(where, _Conjunction) else (where,)
    sources = where.sources if isinstance(where, _Conjunction) else ((),)
    at = next((index for index, part in enumerate(parts) if isinstance(part, _Above) and part.column == column), None)
    if at is None:
        return None
    bound = parts[at]
    assert isinstance(bound, _Above)
    rest = (*parts[:at], *parts[at + 1:])
    condition = _always if not rest else rest[0] if len(rest) == 1 else _Conjunction(rest, ())
    ordered = table.ordered(column, (*sources[:at], *sources[at + 1:]), condition)
    return None if ordered is None else ordered.above(bound.bound)


def _always(row: Row) -> bool:
    return True


def _column(name: str) -> Expression:
    return lambda row: row.get(name)


def _sort_key(value: Value) -> tuple[int, Value]:
    return (1, "") if value is None else (0, value)
