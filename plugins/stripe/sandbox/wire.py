"""The wire layer of the Stripe sandbox: ids, errors, request parameters, lists and endpoints.

Everything here is about how Stripe *speaks*, not about what it does: the bracket notation of its
form-encoded parameters, the shape of its errors, its list envelope and cursor pagination (search
is :mod:`.search`), and the :class:`Endpoint` an area of the API declares for each route it
answers. The account and its areas (:mod:`.account` and the modules beside it) use these pieces
to answer like Stripe.
"""

import json
import re
import secrets
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any, NamedTuple

Record = dict[str, Any]
"""A Stripe object in its JSON form. Records are stored, mutated and served as such."""

DAY = 86_400
ACCOUNT = "acct_crossledgersandbox"
"""The account's id, as it shows in the links Stripe gives to the documents it hosts (invoice and
credit note PDFs, hosted invoice pages); the sandbox serves no such document."""
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
DEFAULT_LIMIT = 10


def now() -> int:
    """Wall-clock time in Stripe's unit, epoch seconds."""
    return int(time.time())


def token(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_id(prefix: str) -> str:
    """A fresh Stripe-style id: ``cus_``, ``in_``, ``evt_``... followed by 24 random characters."""
    return f"{prefix}_{token(24)}"


def encode(payload: Any, *, indent: int | None = None) -> bytes:
    return json.dumps(payload, indent=indent).encode("utf-8")


def deleted(record: Record) -> Record:
    """What Stripe answers to a DELETE, and to a GET of a deleted customer."""
    return {"id": record["id"], "object": record["object"], "deleted": True}


# -- Errors ---------------------------------------------------------------------------------------------


class StripeError(Exception):
    """An API failure, rendered as Stripe renders it.

    Handlers raise it; the HTTP layer turns it into the response (and, under an idempotency key,
    stores that response like any other).
    """

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        """``{"error": {...}}`` with ``type`` and ``message`` always, and ``code`` (with its
        ``doc_url``), ``decline_code`` and ``param`` only when the error has them: Stripe leaves
        out what does not apply rather than sending null."""
        error: Record = {"type": self.type, "message": self.message}
        if self.code:
            error.update(code=self.code, doc_url=f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}")
        if self.decline_code:
            error["decline_code"] = self.decline_code
        if self.param:
            error["param"] = self.param
        return encode({"error": error})


def invalid(message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> StripeError:
    """An ``invalid_request_error``: the request itself is wrong."""
    return StripeError(status, "invalid_request_error", message, code=code, param=param)


def card_declined() -> StripeError:
    """What a declined card answers (HTTP 402)."""
    return StripeError(402, "card_error", "Your card was declined.", code="card_declined",
                       decline_code="generic_decline")


def exclusive(params: "Params", *names: str) -> None:
    """Refuse a request that gives more than one of ``names``."""
    given = [name for name in names if name in params]
    if len(given) > 1:
        raise invalid(
            f"You may only specify one of these parameters: {', '.join(given)}.",
            param=params.name(given[-1]),
            code="parameters_exclusive",
        )


# -- Parameters -----------------------------------------------------------------------------------------

_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")


def decode_params(pairs: Iterable[tuple[str, str]]) -> Record:
    """Stripe's bracket notation as nested dicts: ``a[b][]=1`` becomes ``{"a": {"b": {"0": "1"}}}``.

    Arrays stay dicts with index keys here (``[]`` appends the next index), because only the
    endpoint knows whether ``metadata[0]`` is a list entry or a metadata key named "0":
    :meth:`Params.strings` and :meth:`Params.hashes` read them as lists.
    """
    root: Record = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        if match is None:
            raise invalid(f"Invalid parameter name: {key}", param=key)
        node = root
        *parents, last = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        for part in parents:
            node = node.setdefault(part or str(len(node)), {})
            if not isinstance(node, dict):
                raise invalid(f"Invalid parameter: {key} is both a value and a hash", param=key)
        if isinstance(node.get(last), dict):
            raise invalid(f"Invalid parameter: {key} is both a value and a hash", param=key)
        node[last or str(len(node))] = value
    return root


def _indexed(value: Any) -> bool:
    return isinstance(value, dict) and all(key.isdigit() for key in value)


class Params:
    """One request's decoded parameters, read with the type an endpoint expects.

    Every reader raises the error Stripe gives for a value of the wrong type; ``accept`` refuses
    names the endpoint does not know (``expand`` is accepted at the top level). A nested hash
    (``items[0]``, ``recurring``) is a ``Params`` of its own whose errors name the full
    parameter (``items[0][quantity]``).
    """

    def __init__(self, values: Record, prefix: str = "") -> None:
        self._values = values
        self._prefix = prefix

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def name(self, key: str) -> str:
        """The parameter's full name, as Stripe's errors give it."""
        return f"{self._prefix}[{key}]" if self._prefix else key

    def accept(self, *names: str) -> "Params":
        known = {*names, *(() if self._prefix else ("expand",))}
        unknown = [name for name in self._values if name not in known]
        if unknown:
            param = self.name(unknown[0])
            raise invalid(f"Received unknown parameter: {param}", param=param, code="parameter_unknown")
        return self

    def raw(self, name: str) -> Any:
        """The value as decoded: a string, or a dict for a hash."""
        return self._values.get(name)

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None or isinstance(value, str):
            return value
        raise invalid(f"Invalid string: {self.name(name)} must be a string, not a hash or an array",
                      param=self.name(name))

    def required(self, name: str) -> str:
        value = self.text(name)
        if not value:
            raise invalid(f"Missing required param: {self.name(name)}.", param=self.name(name),
                          code="parameter_missing")
        return value

    def integer(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise invalid(f"Invalid integer: {value}", param=self.name(name),
                          code="parameter_invalid_integer") from None

    def positive(self, name: str) -> int | None:
        """An integer that must be above zero (amounts, quantities of a new line, counts)."""
        value = self.integer(name)
        if value is not None and value <= 0:
            raise invalid(f"Invalid positive integer: {self.name(name)} must be greater than 0",
                          param=self.name(name))
        return value

    def decimal(self, name: str) -> Decimal | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return Decimal(value)
        except InvalidOperation:
            raise invalid(f"Invalid decimal: {value}", param=self.name(name)) from None

    def flag(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise invalid(f"Invalid boolean: {value}", param=self.name(name))
        return value == "true"

    def choice(self, name: str, options: tuple[str, ...]) -> str | None:
        value = self.text(name)
        if value is not None and value not in options:
            raise invalid(f"Invalid {self.name(name)}: must be one of {', '.join(options)}", param=self.name(name))
        return value

    def currency(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and not re.fullmatch("[A-Za-z]{3}", value):
            raise invalid(f"Invalid currency: {value}. Use a three-letter ISO code.", param=self.name(name))
        return None if value is None else value.lower()

    def strings(self, name: str) -> list[str]:
        """An array of strings (``name[]=a&name[]=b`` or ``name[0]=a``); empty when absent."""
        value = self._values.get(name, {})
        if _indexed(value) and all(isinstance(v, str) for v in value.values()):
            return [value[key] for key in sorted(value, key=int)]
        raise invalid(f"Invalid array: {self.name(name)}", param=self.name(name))

    def mapping(self, name: str) -> dict[str, str]:
        """A hash of strings (``metadata``, ``address``); ``name=`` (unset) reads as empty."""
        value = self._values.get(name, "")
        if value == "":
            return {}
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return value
        raise invalid(f"Invalid hash: {self.name(name)}", param=self.name(name))

    def hash(self, name: str) -> "Params | None":
        """A nested hash (``recurring[interval]=month``) as its own ``Params``; None when absent."""
        value = self._values.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid(f"Invalid hash: {self.name(name)}", param=self.name(name))
        return Params(value, self.name(name))

    def hashes(self, name: str) -> "list[Params]":
        """An array of hashes (``items[0][price]=...&items[1][price]=...``); empty when absent."""
        value = self._values.get(name, {})
        if not (_indexed(value) and all(isinstance(v, dict) for v in value.values())):
            raise invalid(f"Invalid array: {self.name(name)}", param=self.name(name))
        return [Params(value[key], f"{self.name(name)}[{key}]") for key in sorted(value, key=int)]


@dataclass(frozen=True)
class Call:
    """What an API handler gets: parameters, path ids, and the request identity events record.

    Work Stripe does on its own (a renewal when a test clock advances) runs as a ``Call`` with no
    request id, which is how Stripe's events mark automatic changes.
    """

    params: Params
    path: Mapping[str, str] = field(default_factory=dict)
    request: Record = field(default_factory=lambda: {"id": None, "idempotency_key": None})

    @property
    def id(self) -> str:
        return self.path["id"]


AUTOMATIC = Call(Params({}))
"""The call behind changes Stripe makes by itself (test clock advances)."""

Handler = Callable[[Call], Record]


# -- Plain fields -------------------------------------------------------------------------------------------


def _merged_metadata(current: dict[str, str], update: dict[str, str]) -> dict[str, str]:
    """Stripe's metadata update: keys are merged, an empty value deletes its key, ``metadata=`` all."""
    if not update:
        return {}
    merged = {**current, **update}
    return {key: value for key, value in merged.items() if value != ""}


def _read_address(params: Params, name: str) -> Record | None:
    """An address hash; the one given replaces the stored one whole (``address=`` removes it)."""
    values = params.mapping(name)
    unknown = sorted(set(values) - set(ADDRESS_FIELDS))
    if unknown:
        param = f"{params.name(name)}[{unknown[0]}]"
        raise invalid(f"Received unknown parameter: {param}", param=param, code="parameter_unknown")
    return {key: values.get(key) or None for key in ADDRESS_FIELDS} if values else None


def _optional_text(params: Params, name: str) -> str | None:
    """A text field as Stripe stores it: an empty string unsets it."""
    return params.text(name) or None


READERS: dict[str, Callable[[Params, str], Any]] = {
    "active": Params.flag,
    "address": _read_address,
    "auto_advance": Params.flag,
    "description": _optional_text,
    "email": _optional_text,
    "name": _optional_text,
    "nickname": _optional_text,
    "phone": _optional_text,
    "preferred_locales": Params.strings,
    "tax_exempt": lambda params, name: params.choice(name, ("none", "exempt", "reverse")),
}
"""How each plain updatable field is read from the request."""


def assign(record: Record, params: Params, names: Iterable[str]) -> None:
    """Copy the given ``names`` from ``params`` onto ``record`` (metadata is merged, not replaced)."""
    for name in names:
        if name == "metadata" and name in params:
            record[name] = _merged_metadata(record[name], params.mapping(name))
        elif name in params:
            record[name] = READERS[name](params, name)


# -- Collections and lists -------------------------------------------------------------------------


def _matches(value: Any, wanted: Any) -> bool:
    """Whether a record's field equals a list filter: strings as given, booleans as ``true``/``false``,
    hashes (``payment[payment_intent]=pi_...``) key by key."""
    if isinstance(wanted, dict):
        return isinstance(value, dict) and all(_matches(value.get(key), sub) for key, sub in wanted.items())
    if isinstance(value, bool):
        return bool(wanted == ("true" if value else "false"))
    return bool(value == wanted)


def limit_of(params: Params) -> int:
    """``limit``: how many records a page holds (1 to 100, 10 when not given)."""
    limit = params.integer("limit")
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= 100:
        raise invalid(f"Invalid integer: limit must be between 1 and 100, not {limit}", param="limit")
    return limit


def everything(record: Record) -> bool:
    """The filter of an endpoint with no filters of its own."""
    return True


@dataclass
class Collection:
    """One kind of record: its name in Stripe's messages, its list URL and its list filters.

    Records come and go through :meth:`add` and :meth:`remove`, which keep the list order of an
    unfiltered list (newest first, with each record's place) between pages: paging through N
    records then costs N, not N² (the reconciliation bench lists 100,000 invoices)."""

    noun: str
    url: str
    filters: tuple[str, ...] = ()
    records: dict[str, Record] = field(default_factory=dict)
    _changes: int = 0
    _order: tuple[int, list[Record], dict[str, int]] | None = None

    def add(self, record: Record) -> Record:
        self.records[record["id"]] = record
        self._changes += 1
        return record

    def remove(self, record_id: str) -> None:
        del self.records[record_id]
        self._changes += 1

    def get(self, record_id: str, param: str = "id") -> Record:
        """The record, or Stripe's ``resource_missing``: 404 for a path id, 400 for a parameter."""
        record = self.records.get(record_id)
        if record is None:
            raise invalid(
                f"No such {self.noun}: '{record_id}'",
                param=param,
                code="resource_missing",
                status=404 if param == "id" else 400,
            )
        return record

    def where(self, **fields: Any) -> list[Record]:
        """The records whose fields have these values, oldest first."""
        return [r for r in self.records.values() if all(r.get(k) == v for k, v in fields.items())]

    def page(self, params: Params, *extra: str, keep: Callable[[Record], bool] = everything) -> Record:
        """A list response over the records matching the ``filters`` given in ``params``; an endpoint
        with filters of its own names them in ``extra`` and applies them with ``keep``."""
        params.accept("limit", "starting_after", "ending_before", *self.filters, *extra)
        wanted = {name: params.raw(name) for name in self.filters if name in params}
        if not wanted and keep is everything:
            return _paginate(*self._newest_first(), params, self)
        matching = [r for r in self.records.values()
                    if keep(r) and all(_matches(r.get(k), v) for k, v in wanted.items())]
        newest_first = matching[::-1]
        return _paginate(newest_first, {r["id"]: n for n, r in enumerate(newest_first)}, params, self)

    def _newest_first(self) -> tuple[list[Record], dict[str, int]]:
        """Every record, newest first, and each one's place in that list (kept until a change)."""
        if self._order is None or self._order[0] != self._changes:
            newest_first = list(self.records.values())[::-1]
            self._order = (self._changes, newest_first, {r["id"]: n for n, r in enumerate(newest_first)})
        return self._order[1], self._order[2]


def _paginate(newest_first: list[Record], place: dict[str, int], params: Params, collection: Collection) -> Record:
    """Stripe's list envelope over ``newest_first`` (``place``: each id's index in it), cut by
    ``limit`` and a ``starting_after`` or ``ending_before`` cursor (an object id, which must be in
    the list)."""
    limit = limit_of(params)
    exclusive(params, "starting_after", "ending_before")
    backwards = "ending_before" in params
    cursor_param = "ending_before" if backwards else "starting_after"
    cursor = params.text(cursor_param)
    if cursor is not None and cursor not in place:
        raise invalid(f"No such {collection.noun}: '{cursor}'", param=cursor_param, code="resource_missing")
    if backwards and cursor is not None:
        end = place[cursor]
        start = max(0, end - limit)
        more = start > 0
    else:
        start = 0 if cursor is None else place[cursor] + 1
        end = start + limit
        more = end < len(newest_first)
    return {"object": "list", "data": newest_first[start:end], "has_more": more, "url": collection.url}


# -- Endpoints ---------------------------------------------------------------------------------------


class Endpoint(NamedTuple):
    """One route of the API as an area declares it: ``POST /v1/customers/{id}`` and the handler
    that answers it (path parameters in Starlette's ``{name}`` form)."""

    method: str
    path: str
    handler: Handler


def retrieve(collection: Collection, call: Call) -> Record:
    """``GET <url>/{id}``: one record of the collection."""
    call.params.accept()
    return collection.get(call.id)


def page(collection: Collection, call: Call) -> Record:
    """``GET <url>``: a page of the collection's list."""
    return collection.page(call.params)


def created_within(params: Params) -> Callable[[Record], bool]:
    """``created`` as Stripe's lists take it: a Unix time (equal to it), or a hash of ``gt``, ``gte``,
    ``lt``, ``lte`` bounds (``created[gte]=1700000000``); every record when absent."""
    wanted = params.raw("created")
    if wanted is None:
        return everything
    bounds = wanted if isinstance(wanted, dict) else {"eq": wanted}
    tests = {"eq": int.__eq__, "gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}
    checks: list[tuple[Callable[[int, int], bool], int]] = []
    for name, text in bounds.items():
        if name not in tests or (name == "eq" and isinstance(wanted, dict)):
            raise invalid(f"Received unknown parameter: created[{name}]", param=f"created[{name}]",
                          code="parameter_unknown")
        if not isinstance(text, str) or not text.lstrip("-").isdigit():
            raise invalid(f"Invalid integer: {text}", param="created", code="parameter_invalid_integer")
        checks.append((tests[name], int(text)))
    return lambda record: all(test(int(record["created"]), bound) for test, bound in checks)


def reads(collection: Collection) -> list[Endpoint]:
    """The two reads most collections have, at the collection's URL: its list and one record by id."""
    return [Endpoint("GET", collection.url, partial(page, collection)),
            Endpoint("GET", f"{collection.url}/{{id}}", partial(retrieve, collection))]
