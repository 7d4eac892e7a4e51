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
"""

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

Value = str | Decimal | datetime | None
Row = Mapping[str, Value]
"""A table's row by column; a table may compute its columns only when a query reads them."""
Expression = Callable[[Row], Value]
Condition = Callable[[Row], bool | None]


class SuiteQLError(Exception):
    """A query NetSuite would refuse; the message reads like NetSuite's."""


@dataclass(frozen=True)
class Table:
    """One queryable record: its column names (lower case) and its rows, keyed by column."""

    name: str
    columns: tuple[str, ...]
    rows: Sequence[Row]


def execute(query: str, table: Callable[[str], Table | None]) -> list[dict[str, str]]:
    """Run ``query`` against the table ``table(name)`` returns; every row, rendered as NetSuite does."""
    return _Parser(_tokens(query), table).query()


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

    def query(self) -> list[dict[str, str]]:
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
        rows = [row for row in table.rows if where(row) is True]
        for sort in reversed(sorts):  # stable sorts, last key first
            sort.apply(rows)
        return [{name: render(value) for name, expression in columns
                 if (value := expression(row)) is not None} for row in rows]

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
            bare = self._tokens[start] if self._at == start + 1 else None  # a column, named after itself
            name = bare.text.strip('"').lower() if bare and bare.kind in ("word", "quoted") else ""
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
            if alias is not None and alias in aliases and alias not in table_columns:
                self._at += 1
                key = aliases[alias]
            else:
                key = self._expression()
            descending = self._accept_word("DESC")
            if not descending:
                self._accept_word("ASC")
            sorts.append(_Sort(key, descending))
            if not self._accept(","):
                return sorts

    # expressions and conditions

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
        parts = [self._negation()]
        while self._accept_word("AND"):
            parts.append(self._negation())
        return parts[0] if len(parts) == 1 else lambda row: _all([part(row) for part in parts])

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
        token = self._next()
        if token.kind != "op":
            raise SuiteQLError(f"Invalid search query. Expected a comparison near {token.text!r}.")
        holds = _COMPARISONS[token.text]
        right = self._expression()
        return lambda row: None if (order := _order(left(row), right(row))) is None else holds(order)


def _always(row: Row) -> bool:
    return True


def _column(name: str) -> Expression:
    return lambda row: row.get(name)


def _sort_key(value: Value) -> tuple[int, Value]:
    return (1, "") if value is None else (0, value)
