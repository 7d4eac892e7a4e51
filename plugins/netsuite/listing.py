"""NetSuite's records as reconciliation lists them: SuiteQL, one request a page.

The record service's collection (``GET /record/v1/invoice``) lists ids only, so reading a
document's total would cost one more request per record. SuiteQL
(``POST /query/v1/suiteql?limit=&offset=`` with ``Prefer: transient``) answers the few columns
reconciliation compares, up to 1,000 rows a request.

NetSuite pages a result set with ``limit`` (at most 1,000) and an ``offset``, and no further than
its first 100,000 results. So each page is a query of its own, ordered by ``id`` and starting after
the last id the page before it read (``WHERE id > {last}``, keyset paging): no result set is paged
past that limit, and the last id read is the cursor an interrupted listing resumes from. Changed
since a moment is NetSuite's own filter, ``lastmodifieddate >= TO_TIMESTAMP(...)`` (the field the
vendor names for incremental sync); creating a record sets it too. A row is handed on named as the
record service names the field (``foreigntotal`` as ``total``, the currency as a reference with its
ISO code as ``refName``), so :meth:`NetSuiteConnector.project` reads a listed row and a fetched
record alike.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from crossledger.plugins.errors import Category, ConnectorError
from crossledger.plugins.netsuite.inbound import SQL_TIMESTAMP
from crossledger.plugins.netsuite.settings import MAX_PAGE_SIZE

Query = Callable[[str, int], dict[str, Any]]
"""Runs a query, answering its first ``limit`` rows."""


@dataclass(frozen=True)
class Listing:
    """What one canonical entity type is read from: a SuiteQL table (a transaction type of it) and
    the columns compared, each with the record field it stands for."""

    table: str
    type_code: str | None
    columns: tuple[tuple[str, str], ...]

    def query(self, after: int, since: datetime | None = None) -> str:
        """The rows with an id above ``after`` (changed at or after ``since``), by id."""
        selected = ", ".join(expression if expression == name.lower() else f"{expression} AS {name.lower()}"
                             for name, expression in self.columns)
        where = f"type = '{self.type_code}' AND " if self.type_code else ""
        if since is not None:
            moment = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            where += f"lastmodifieddate >= TO_TIMESTAMP('{moment}', '{SQL_TIMESTAMP}') AND "
        return f"SELECT id, externalid, {selected} FROM {self.table} WHERE {where}id > {after} ORDER BY id"


_MODIFIED = ("lastModifiedDate", f"TO_CHAR(lastmodifieddate, '{SQL_TIMESTAMP}')")
_DOCUMENT = (("tranId", "tranid"), ("tranDate", "TO_CHAR(trandate, 'YYYY-MM-DD')"), ("currency", "currency"),
             ("total", "foreigntotal"), _MODIFIED)

LISTED = {
    "customer": Listing("customer", None, (("companyName", "companyname"), ("email", "email"),
                                           ("currency", "currency"), _MODIFIED)),
    "invoice": Listing("transaction", "CustInvc", (*_DOCUMENT, ("amountRemaining", "foreignamountremaining"))),
    "payment": Listing("transaction", "CustPymt", _DOCUMENT),
    "creditmemo": Listing("transaction", "CustCred", _DOCUMENT),
    "refund": Listing("transaction", "CustRfnd", _DOCUMENT),
}
"""What :meth:`NetSuiteConnector.records` lists, by canonical entity type."""

_FIELD_NAMES = {name.lower(): name for listing in LISTED.values() for name, _ in listing.columns}
"""A row's column (SuiteQL answers in lower case) -> the record field it stands for."""


def listed_page(listing: Listing, cursor: str | None, since: datetime | None, page_size: int | None,
                query: Query) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``listing``: at most ``page_size`` rows (1,000) after the id ``cursor``, and
    the cursor of the next page (the last id read; None when NetSuite says ``hasMore`` is false)."""
    if cursor is not None and not cursor.isdigit():
        raise ConnectorError(Category.DATA, f"a netsuite listing cursor is the last row id read, not {cursor!r}")
    answered = query(listing.query(int(cursor or 0), since), min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE))
    rows = list(answered.get("items", []))
    return rows, (str(rows[-1]["id"]) if answered.get("hasMore") and rows else None)


def as_record(row: dict[str, Any], currency_code: Callable[[str], str]) -> dict[str, Any]:
    """A SuiteQL row named as the record service names its fields (the row's ``links`` left out)."""
    record: dict[str, Any] = {"id": row["id"], "externalId": row.get("externalid")}
    for column, value in row.items():
        name = _FIELD_NAMES.get(column)
        if name == "currency":
            record[name] = {"id": value, "refName": currency_code(str(value))}
        elif name is not None:
            record[name] = value
    return record
