"""The hand-written pipeline ``crossledger bench`` measures the hub against: Stripe invoices to NetSuite.

What a competent engineer writes without crossledger for one flow, and nothing more: a Starlette
endpoint and a Dramatiq actor.

- **web**: ``POST /webhooks/stripe`` checks the ``Stripe-Signature`` header by hand (HMAC-SHA256 of
  ``"{t}.{body}"`` keyed by the endpoint secret, any ``v1`` may match, ``t`` at most 5 minutes old),
  takes each ``invoice.finalized`` event once by its id (Redis ``SET NX`` with a week's expiry, or
  SQLite ``INSERT OR IGNORE``), enqueues the invoice and answers 200; other event types are
  acknowledged and dropped.
- **worker**: the ``upsert_invoice`` actor looks up the NetSuite id of the invoice's customer (a
  hash in the same store, filled when the customers were created), maps the Stripe invoice to a
  NetSuite invoice (a line per Stripe line, then tax and discount lines) and ``PUT``\\s it to
  ``/record/v1/invoice/eid:invoice.stripe.{id}`` signed with OAuth 1.0a (oauthlib, HMAC-SHA256, realm =
  account); an error answer raises, and Dramatiq retries it.

It writes the same NetSuite invoice the hub writes for the same event (``tests/test_bench.py``
checks it): same external id, entity, number, dates, currency and lines.

Configured by the environment (the bench sets it): ``BASELINE_BROKER`` (``memory`` or a Redis URL),
``BASELINE_STORE`` (a Redis URL or ``sqlite:///path``), ``BASELINE_SECRET`` (the webhook secret) and
``BASELINE_NETSUITE`` (the NetSuite connector settings as JSON), and ``BASELINE_NAMESPACE`` (its keys'
prefix on Redis). Run it as:

- web: ``python -m crossledger.devtools.bench.baseline --port P`` (with a Redis broker);
- workers: ``dramatiq crossledger.devtools.bench.baseline:broker --processes 2 --threads 8``;
- all in one process (``BASELINE_BROKER=memory``): ``python -m crossledger.devtools.bench.baseline
  --port P --threads 8`` serves the app and runs a Dramatiq worker in-process.
"""

import argparse
import functools
import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote

import dramatiq
import httpx
import msgspec
import redis
import uvicorn
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from oauthlib import oauth1
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SIGNATURE_TOLERANCE_S = 300
DEDUPE_TTL_S = 7 * 86400
CURRENCIES = {"USD": "1", "GBP": "2", "CAD": "3", "EUR": "4", "JPY": "5", "KWD": "6"}
"""ISO code -> the NetSuite account's currency record (the sandbox's seeded list)."""
MINOR_UNITS = {"JPY": 0, "KWD": 3}
"""Decimal places where not 2."""
ITEM, TAX_ITEM, DISCOUNT_ITEM = "1", "2", "3"
_JSON = msgspec.json.Encoder(decimal_format="number")

# The broker is this module's own (``dramatiq crossledger.devtools.bench.baseline:broker``), not
# Dramatiq's global one, and the store and NetSuite client open on first use: importing the module
# (a test, the bench) changes nothing.
NAMESPACE = os.environ.get("BASELINE_NAMESPACE", "baseline")
broker = StubBroker() if os.environ.get("BASELINE_BROKER", "memory") == "memory" \
    else RedisBroker(url=os.environ["BASELINE_BROKER"], namespace=f"{NAMESPACE}:baseline")


class Store(Protocol):
    """What the pipeline keeps: the events it took, and the NetSuite id of each Stripe customer."""

    def first_time(self, event_id: str) -> bool: ...

    def customer(self, stripe_id: str) -> str | None: ...

    def save_customers(self, netsuite_ids: dict[str, str]) -> None: ...


class RedisStore:
    def __init__(self, url: str, namespace: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.prefix = f"{namespace}:baseline"

    def first_time(self, event_id: str) -> bool:
        return bool(self.client.set(f"{self.prefix}:event:{event_id}", 1, nx=True, ex=DEDUPE_TTL_S))

    def customer(self, stripe_id: str) -> str | None:
        found = self.client.hget(f"{self.prefix}:customers", stripe_id)
        return None if found is None else found.decode() if isinstance(found, bytes) else str(found)

    def save_customers(self, netsuite_ids: dict[str, str]) -> None:
        self.client.hset(f"{self.prefix}:customers", items=[part for pair in netsuite_ids.items() for part in pair])


class SqliteStore:
    """One connection per thread (sqlite3's rule), WAL and ``synchronous = NORMAL`` as the hub's."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        with self._db() as db:
            db.execute("CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, at REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS customers (stripe_id TEXT PRIMARY KEY, netsuite_id TEXT NOT NULL)")

    def _db(self) -> sqlite3.Connection:
        if not hasattr(self._local, "db"):
            db = sqlite3.connect(self.path, timeout=30)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            self._local.db = db
        connection: sqlite3.Connection = self._local.db
        return connection

    def first_time(self, event_id: str) -> bool:
        with self._db() as db:
            return db.execute("INSERT OR IGNORE INTO events VALUES (?, ?)", (event_id, time.time())).rowcount == 1

    def customer(self, stripe_id: str) -> str | None:
        row = self._db().execute("SELECT netsuite_id FROM customers WHERE stripe_id = ?", (stripe_id,)).fetchone()
        return None if row is None else str(row[0])

    def save_customers(self, netsuite_ids: dict[str, str]) -> None:
        with self._db() as db:
            db.executemany("INSERT OR REPLACE INTO customers VALUES (?, ?)", netsuite_ids.items())


def open_store(url: str, namespace: str) -> Store:
    """The store at ``url``; on Redis, its keys under ``{namespace}:baseline:``."""
    return SqliteStore(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else RedisStore(url, namespace)


# -- the webhook --------------------------------------------------------------------------------


def signature_valid(header: str, body: bytes, secret: str, now: float) -> bool:
    """Stripe's ``v1`` scheme: any ``v1`` equal to HMAC-SHA256(secret, ``"{t}.{body}"``), ``t`` recent."""
    pairs = [item.split("=", 1) for item in header.split(",") if "=" in item]
    timestamps = [value for name, value in pairs if name == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or int(timestamps[0]) < now - SIGNATURE_TOLERANCE_S:
        return False
    expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected.encode(), value.encode()) for name, value in pairs if name == "v1")


async def stripe_webhook(request: Request) -> JSONResponse:
    body = await request.body()
    header = request.headers.get("stripe-signature", "")
    if not signature_valid(header, body, os.environ["BASELINE_SECRET"], time.time()):
        return JSONResponse({"error": "bad signature"}, status_code=400)
    event = json.loads(body)
    if event.get("type") == "invoice.finalized" and store().first_time(event["id"]):
        upsert_invoice.send(event["data"]["object"])
    return JSONResponse({"received": True})


# -- the worker ---------------------------------------------------------------------------------


def amount(minor_units: int, currency: str) -> Decimal:
    """Stripe's integer minor units as NetSuite's decimal amount (``1999`` USD -> ``19.99``)."""
    return Decimal(minor_units).scaleb(-MINOR_UNITS.get(currency, 2))


def day(epoch: int | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).date().isoformat()


def netsuite_invoice(invoice: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """The NetSuite invoice body for a Stripe invoice whose customer is ``customer_id`` in NetSuite."""
    currency = invoice["currency"].upper()

    def line(item: str, minor_units: int, description: str, quantity: int = 1) -> dict[str, Any]:
        return {"item": {"id": item}, "description": description, "quantity": quantity,
                "amount": amount(minor_units, currency)}

    lines = [line(ITEM, entry["amount"], entry.get("description") or "", entry.get("quantity") or 1)
             for entry in invoice["lines"]["data"]]
    tax = sum(entry["amount"] for entry in invoice.get("total_taxes") or [])
    discount = sum(entry["amount"] for entry in invoice.get("total_discount_amounts") or [])
    if tax > 0:
        lines.append(line(TAX_ITEM, tax, "Tax"))
    if discount > 0:
        lines.append(line(DISCOUNT_ITEM, -discount, "Discount"))
    body = {
        "externalId": f"invoice.stripe.{invoice['id']}",
        "entity": {"id": customer_id},
        "tranId": invoice.get("number"),
        "tranDate": day((invoice.get("status_transitions") or {}).get("finalized_at")),
        "dueDate": day(invoice.get("due_date")),
        "currency": {"id": CURRENCIES[currency]},
        "item": {"items": lines},
    }
    return {name: value for name, value in body.items() if value is not None}


class NetSuite:
    """SuiteTalk REST with token-based auth: one httpx client for all threads, a fresh signature a request."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.root = settings["base_url"].rstrip("/") + "/services/rest/record/v1"
        self.settings = settings
        self.http = httpx.Client(timeout=30)

    def authorization(self, method: str, url: str) -> str:
        client = oauth1.Client(self.settings["consumer_key"], client_secret=self.settings["consumer_secret"],
                               resource_owner_key=self.settings["token_id"],
                               resource_owner_secret=self.settings["token_secret"],
                               signature_method=oauth1.SIGNATURE_HMAC_SHA256, realm=self.settings["account_id"])
        return str(client.sign(url, http_method=method)[1]["Authorization"])

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        url = self.root + path
        headers = {"Authorization": self.authorization(method, url), "Content-Type": "application/json"}
        response = self.http.request(method, url, headers=headers,
                                     content=None if body is None else _JSON.encode(body))
        response.raise_for_status()
        return response

    def upsert(self, record_type: str, external_id: str, body: dict[str, Any]) -> None:
        """``PUT`` by external id, the sublists sent replacing those there (a repeat lands the same)."""
        self.request("PUT", f"/{record_type}/eid:{quote(external_id, safe='')}?replace=item", body)

    def internal_id(self, record_type: str, external_id: str) -> str:
        return str(self.request("GET", f"/{record_type}/eid:{quote(external_id, safe='')}").json()["id"])


@dramatiq.actor(broker=broker, queue_name="invoices", max_retries=8, min_backoff=500)
def upsert_invoice(invoice: dict[str, Any]) -> None:
    """Write one Stripe invoice to NetSuite; an unknown customer or an error answer raises (retried)."""
    customer_id = store().customer(invoice["customer"])
    if customer_id is None:
        raise LookupError(f"invoice {invoice['id']}: customer {invoice['customer']} is not in NetSuite yet")
    netsuite().upsert("invoice", f"invoice.stripe.{invoice['id']}", netsuite_invoice(invoice, customer_id))


# -- wiring -------------------------------------------------------------------------------------
app = Starlette(routes=[Route("/webhooks/stripe", stripe_webhook, methods=["POST"])])


@functools.cache
def store() -> Store:
    return open_store(os.environ["BASELINE_STORE"], NAMESPACE)


@functools.cache
def netsuite() -> NetSuite:
    return NetSuite(json.loads(os.environ["BASELINE_NETSUITE"]))


def main() -> None:
    parser = argparse.ArgumentParser(description="The baseline's web process (and, on a memory broker, its worker).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    worker = None
    if isinstance(broker, StubBroker):
        worker = dramatiq.Worker(broker, worker_threads=args.threads)
        worker.start()
    try:
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
    finally:
        if worker is not None:
            worker.stop()


if __name__ == "__main__":
    main()
