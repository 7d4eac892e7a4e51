"""The operator console without a browser: sign-in, sessions, CSRF and roles, over real HTTP to an
embedded hub on loopback (its SQLite store holds the users; dead letters are written into it as the
hub writes them)."""

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import redis_url
from crossledger.actors import declare
from crossledger.core.console.chain import PAGE_SIZE
from crossledger.core.console.kpis import Figures, figures
from crossledger.core.console.queue import LISTED
from crossledger.core.console.sessions import COOKIE, Session, Signer
from crossledger.core.console.users import authenticate, new_user
from crossledger.core.hub.runtime import Runtime
from crossledger.core.ingress.app import create_app
from crossledger.core.processes.embedded import EmbeddedHub, wait_until
from crossledger.core.settings import HubSettings, Settings, load_settings
from crossledger.core.store import DeadLetter
from crossledger.core.store.base import (
    AuditRecord,
    FindingRecord,
    Golden,
    JourneyRecord,
    LoggedEvent,
    OutcomePart,
    OutcomeRecord,
    ReconciliationRun,
    StepRecord,
)
from crossledger.plugins import CrossledgerPluginManager, hookimpl
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.journey_definition import Journey, OnFailure, Step
from msgspec.structs import replace

from tests import test_journeys_billing as billing
from tests.conftest import CROSSLEDGER, System, start_system
from tests.test_journeys_ops import STEPS, stored
from tests.test_journeys_ops import plugins as journey_plugins

PASSWORD = "correct horse battery"


def letter(letter_id: str, *, age_s: float = 3600, target: str = "netsuite", category: str = "data") -> DeadLetter:
    return DeadLetter(id=letter_id, created_at=time.time() - age_s, actor="deliver", target=target,
                      category=category, reason="refused by the target: the customer Acme Ltd has no subsidiary",
                      event_id=f"ev-{letter_id}", correlation_id=f"corr-{letter_id}", message={"args": []}, attempts=1)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[EmbeddedHub]:
    settings = Settings(hub=HubSettings(store=f"sqlite:///{tmp_path}/hub.db", api_token="s3cret-token"))
    with EmbeddedHub(settings, threads=1) as running:
        store = running.runtime.store
        store.user_put(new_user("ann", "operator", PASSWORD))
        store.user_put(new_user("bob", "viewer", PASSWORD))
        store.dlq_add(letter("d1"))
        yield running


@contextmanager
def signed_in(url: str, name: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=10) as client:
        answer = client.post("/login", data={"name": name, "password": PASSWORD, "next": "/exceptions"})
        assert answer.status_code == 303 and answer.headers["location"] == "/exceptions", answer.text
        yield client


def csrf(client: httpx.Client, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get(path).text)
    assert found is not None
    return found.group(1)


def test_pages_need_a_session_and_a_wrong_password_signs_nobody_in(hub: EmbeddedHub) -> None:
    with httpx.Client(base_url=hub.url, timeout=10) as anonymous:
        for path in ("/flows", "/transactions", "/exceptions", "/exceptions/dead-letter:d1", "/reconciliation",
                     "/kpis", "/audit"):
            answer = anonymous.get(path)
            assert (answer.status_code, answer.headers["location"]) == (303, f"/login?next={path}"), path
        wrong = anonymous.post("/login", data={"name": "ann", "password": "not it"})
        unknown = anonymous.post("/login", data={"name": "nobody", "password": PASSWORD})
        assert wrong.status_code == unknown.status_code == 401 and COOKIE not in anonymous.cookies
        assert "do not match a user" in wrong.text
        away = anonymous.post("/login", data={"name": "ann", "password": PASSWORD, "next": "//evil.example/"})
        assert away.headers["location"] == "/"  # never sent off the site after signing in
        cookie = away.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        epoch = hub.runtime.store.user_get("ann").session_epoch  # type: ignore[union-attr]
        forged = Signer(b"another key").dump(Session("ann", "operator", "t", time.time(), epoch))
        anonymous.cookies.set(COOKIE, forged)
        assert anonymous.get("/exceptions").status_code == 303
    scripts = httpx.get(f"{hub.url}/v1/dead-letters")  # /v1 keeps its bearer token, session or not
    assert scripts.status_code == 401


def test_an_operator_acts_with_the_csrf_token_and_every_action_is_in_the_audit_log(hub: EmbeddedHub) -> None:
    with signed_in(hub.url, "ann") as ann:
        queue = ann.get("/exceptions")
        assert queue.status_code == 200 and "dead-letter:d1" in queue.text
        item = "/exceptions/dead-letter:d1"
        without = ann.post(f"{item}/note", data={"text": "looking"})
        assert without.status_code == 403 and "security token" in without.text
        token = csrf(ann, item)
        assert ann.post(f"{item}/assign", data={"csrf": token, "assignee": "bob"}).status_code == 303
        assert ann.post(f"{item}/state", data={"csrf": token, "state": "acknowledged"}).status_code == 303
        assert ann.post(f"{item}/note", data={"csrf": token, "text": "the subsidiary is missing"}).status_code == 303
        blank = ann.post(f"{item}/discard", data={"csrf": token, "reason": " "})
        assert blank.status_code == 409 and "reason is required" in blank.text
        shown = ann.get(item).text
        assert "acknowledged" in shown and "the subsidiary is missing" in shown and "bob" in shown
        dry = ann.post("/exceptions/bulk-retry", data={"csrf": token, "apply": "0", "state": "active"})
        assert "1 dead letter(s) would be retried" in dry.text
        assert hub.runtime.store.dlq_get("d1").state == "open"  # type: ignore[union-attr]
        discarded = ann.post(f"{item}/discard", data={"csrf": token, "reason": "booked by hand in NetSuite"})
        assert discarded.status_code == 303
        audit = ann.get("/audit").text
    assert hub.runtime.store.dlq_get("d1").state == "discarded"  # type: ignore[union-attr]
    assert [(a.user, a.action) for a in hub.runtime.store.actions()] == [
        ("ann", "discard"), ("ann", "note"), ("ann", "mark acknowledged"), ("ann", "assign")]
    assert "booked by hand in NetSuite" in audit


def test_a_viewer_sees_no_buttons_no_personal_data_and_a_forged_post_is_refused(hub: EmbeddedHub) -> None:
    with signed_in(hub.url, "bob") as bob:
        for path in ("/flows", "/transactions", "/exceptions", "/reconciliation", "/kpis", "/audit"):
            shown = bob.get(path)
            assert shown.status_code == 200 and "<button class=\"primary\"" not in shown.text, path
        unknown = bob.get("/transactions/in_nobody")
        assert unknown.status_code == 404 and "No transaction, entity or system id in_nobody" in unknown.text
        item = bob.get("/exceptions/dead-letter:d1").text
        assert "<button class=\"primary\">Retry" not in item and "/discard" not in item
        token = csrf(bob, "/exceptions")  # a viewer's own session token: the role still refuses
        forged = bob.post("/exceptions/dead-letter:d1/retry", data={"csrf": token})
        assert forged.status_code == 403 and "Your role is viewer" in forged.text
    assert hub.runtime.store.dlq_get("d1").state == "open"  # type: ignore[union-attr]
    assert hub.runtime.store.actions() == []


def test_a_demoted_operator_acts_no_more_with_the_session_they_had(hub: EmbeddedHub) -> None:
    with signed_in(hub.url, "ann") as ann:
        token = csrf(ann, "/exceptions/dead-letter:d1")
        hub.runtime.store.user_put(new_user("ann", "viewer", PASSWORD))  # added again: a new role, a new epoch
        demoted = ann.post("/exceptions/dead-letter:d1/note", data={"csrf": token, "text": "still here?"})
        assert demoted.status_code == 403 and "You are not signed in" in demoted.text
        assert ann.get("/exceptions").status_code == 303  # to the login page
        ann.post("/login", data={"name": "ann", "password": PASSWORD})
        again = ann.post("/exceptions/dead-letter:d1/note", data={"csrf": csrf(ann, "/exceptions"), "text": "?"})
        assert again.status_code == 403 and "Your role is viewer" in again.text
    assert hub.runtime.store.actions() == []


def test_a_cookie_copied_before_sign_out_is_refused_after_it(hub: EmbeddedHub) -> None:
    with signed_in(hub.url, "ann") as ann, signed_in(hub.url, "ann") as elsewhere:
        copied = ann.cookies[COOKIE]
        token = csrf(ann, "/exceptions")
        assert ann.post("/logout", data={"csrf": "wrong"}).status_code == 403  # a sign-out needs the token too
        assert ann.get("/exceptions").status_code == 200
        out = ann.post("/logout", data={"csrf": token})
        assert (out.status_code, out.headers["location"]) == (303, "/login") and COOKIE not in ann.cookies
        with httpx.Client(base_url=hub.url, timeout=10, cookies={COOKIE: copied}) as thief:
            assert thief.get("/exceptions").status_code == 303  # the copy is signed out too
            stolen = thief.post("/exceptions/dead-letter:d1/note", data={"csrf": token, "text": "mine now"})
            assert stolen.status_code == 403 and "You are not signed in" in stolen.text
        assert elsewhere.get("/exceptions").status_code == 303  # one sign-out ends the user's every session
    with signed_in(hub.url, "ann") as back:  # signing in again works, with a new session
        assert back.get("/exceptions").status_code == 200 and back.cookies[COOKIE] != copied
    assert hub.runtime.store.actions() == []


def test_a_viewer_sees_findings_with_names_masked_and_cannot_search_by_name(hub: EmbeddedHub) -> None:
    store = hub.runtime.store
    run = ReconciliationRun(id="run-1", started_at=time.time() - 60, state="done", finished_at=time.time())
    records = {"stripe": {"id": "cus_1", "values": {"name": "Beta Corp"}},
               "netsuite": {"id": "7", "values": {"name": "Beta Corporation"}}}
    store.reconciliation_put(run, [FindingRecord(
        id="f1", run_id="run-1", cls="field_drift", entity="customer", subject="customer/stripe/cus_1",
        system="netsuite", records=records, rule="customer.profile: stripe is the system of record",
        detail="name differs (name: stripe 'Beta Corp', netsuite 'Beta Corporation')", first_seen=time.time())])
    with signed_in(hub.url, "bob") as bob:
        for path in ("/reconciliation", "/exceptions", "/exceptions/finding:f1"):
            shown = bob.get(path).text
            assert "Beta Corp" not in shown and "B*** C***" in shown, path
    with signed_in(hub.url, "ann") as ann:
        assert "Beta Corporation" in ann.get("/reconciliation").text  # an operator sees the values


def test_the_queue_filters_by_system_class_age_and_state(hub: EmbeddedHub) -> None:
    store = hub.runtime.store
    store.dlq_add(letter("d2", age_s=60, target="zendesk", category="transient"))
    store.dlq_add(letter("d3", age_s=7200, category="policy"))  # refused by an ownership rule: a conflict
    store.dlq_add(replace(letter("d4"), state="replayed"))

    def shown(**query: str) -> list[str]:
        page = ann.get("/exceptions", params=query)
        assert page.status_code == 200, page.text
        return re.findall(r'data-item="dead-letter:(\w+)"', page.text)

    with signed_in(hub.url, "ann") as ann:
        assert shown() == ["d3", "d1", "d2"]  # the longest waiting first; the replayed one is resolved
        assert shown(system="zendesk") == ["d2"] and shown(**{"class": "policy"}) == ["d3"]
        assert shown(age="1.5") == ["d3"] and shown(state="resolved") == ["d4"]
        assert shown(state="all") == ["d3", "d1", "d4", "d2"]
        assert ">conflict<" in ann.get("/exceptions", params={"class": "policy"}).text
        wrong = ann.get("/exceptions", params={"age": "soon"})
        assert wrong.status_code == 400 and "number of hours" in wrong.text


def test_the_queue_lists_the_longest_waiting_open_letters_and_says_when_there_are_more(hub: EmbeddedHub) -> None:
    store = hub.runtime.store
    for n in range(LISTED + 9):  # newer and newer open letters, then as many replayed ones newer still
        store.dlq_add(letter(f"open{n}", age_s=100_000 - n))
        store.dlq_add(replace(letter(f"done{n}", age_s=1_000 - n), state="replayed"))
    with signed_in(hub.url, "ann") as ann:
        page = ann.get("/exceptions").text
        listed = re.findall(r'data-item="dead-letter:(\w+)"', page)
        assert listed == [f"open{n}" for n in range(LISTED)]  # the oldest, not the newest of every state
        assert f"{LISTED + 10} dead letters are open" in page  # d1 and these
        assert re.findall(r'data-item="dead-letter:(\w+)"', ann.get("/exceptions", params={"state": "resolved"}).text
                          )[:2] == ["done0", "done1"]


def test_kpis_count_success_open_exceptions_and_time_to_resolve(hub: EmbeddedHub) -> None:
    store = hub.runtime.store
    now = time.time()
    for n, (outcome, target) in enumerate([("delivered", "netsuite"), ("delivered", "netsuite"), ("noop", None),
                                           ("dead_letter", "netsuite")]):
        part = OutcomePart(outcome=outcome, target=target)  # type: ignore[arg-type]
        store.outcome_open(OutcomeRecord(correlation_id=f"c{n}", source="stripe", received_at=now - 60,
                                         updated_at=now, parts={f"{target}|e{n}": part}))
    with signed_in(hub.url, "ann") as ann:
        token = csrf(ann, "/exceptions/dead-letter:d1")
        ann.post("/exceptions/dead-letter:d1/state", data={"csrf": token, "state": "resolved"})
        cards = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", ann.get("/kpis").text))
    assert "75.0 % sync success rate" in cards
    assert "0 open exceptions" in cards  # d1, resolved by hand
    assert "1 h median time to resolve" in cards  # it had waited an hour
    assert "0 · 0 · 0 SLA breaches" in cards
    assert "not in the ERP within 15 min" in cards and "entitlements within 5 min" in cards  # the defaults
    assert "the latest 4 messages, received since" in cards  # what the latency figures cover, said


def kpi_settings(tmp_path: Path, store: str = "sqlite:///hub.db") -> Settings:
    """Invoices due in the ERP within 30 s, payments entitled within 2 min; NetSuite the ERP the
    invoices are meant for (never called here)."""
    config = tmp_path / "crossledger.toml"
    netsuite = "".join(f'{key} = "x"\n' for key in ("account_id", "consumer_key", "consumer_secret", "token_id",
                                                       "token_secret"))
    config.write_text(f'[hub]\nstore = "{store}"\n\n[kpis]\ninvoice_posted_within_s = 30\n'
                      'payment_entitled_within_s = 120\n\n[connectors.netsuite]\nbase_url = "http://127.0.0.1:9"\n'
                      + netsuite)
    return load_settings(config, environ={})


def test_the_kpis_count_breaches_of_the_slas_the_settings_name(tmp_path: Path) -> None:
    settings = kpi_settings(tmp_path)
    assert (settings.kpis.invoice_posted_within_s, settings.kpis.payment_entitled_within_s) == (30, 120)
    now = time.time()
    runtime = Runtime(settings)
    server = ServerThread(create_app(runtime)).start()
    try:
        store = runtime.store
        store.user_put(new_user("ann", "operator", PASSWORD))
        for n, (ago, outcome) in enumerate([(10, "delivered"), (60, "delivered"), (90, "dead_letter")]):
            part = OutcomePart(outcome=outcome, target="netsuite")  # type: ignore[arg-type]
            store.outcome_open(OutcomeRecord(correlation_id=f"c{n}", source="stripe", received_at=now - ago,
                                             updated_at=now, parts={f"netsuite|e{n}": part}))  # concluded now
            store.audit(AuditRecord(at=now - ago, correlation_id=f"c{n}", step="ingest", status="ok",
                                    subject=f"invoice/stripe/in_{n}"))
        for n, (event_type, finished_after) in enumerate([("payment.settled", 30.0), ("payment.settled", 300.0),
                                                           ("payment.settled", None), ("subscription.amended", None)]):
            store.log_event(LoggedEvent(id=f"ev{n}", type=event_type, source="stripe", subject="customer/stripe/c",
                                        correlation_id=f"j{n}", occurred_at=now - 600, envelope={}))
            support = StepRecord(status="done", finished_at=now - 600 + finished_after) if finished_after else (
                StepRecord(status="running"))
            store.journey_start(JourneyRecord(
                id=f"reinstatement:{n}", name="reinstatement", version=1, key=str(n), subject="customer/stripe/c",
                state="completed" if finished_after else "running", correlation_id=f"j{n}", started_at=now - 600,
                updated_at=now, steps={"support": support}, trigger=f"ev{n}"))
        with signed_in(server.url, "ann") as ann:
            cards = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", ann.get("/kpis").text))
    finally:
        server.stop()
        runtime.close()
    # Invoices: one posted late (60 s), one never (90 s and counting); payments: one entitled late, one not yet
    # (the subscription's run is no payment's).
    assert "2 · 2 · 0 SLA breaches" in cards, cards
    assert "not in the ERP within 30 s" in cards and "entitlements within 2 min" in cards


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_the_kpis_know_an_invoice_by_its_outcome_entry_reading_no_audit_trail(tmp_path: Path, backend: str) -> None:
    """What each message is about, its outcome entry says: the page reads no message's audit trail,
    so it costs the store as many round trips for 40 messages as for 4 (reading each trail of a
    message meant for the ERP was a round trip each). Entries of an earlier release, which do not
    say, are judged by their trails: the test above."""
    store = "sqlite:///hub.db" if backend == "sqlite" else f"{redis_url(8)}?namespace=kpis-{uuid.uuid4().hex[:8]}"
    runtime, now = Runtime(kpi_settings(tmp_path, store)), time.time()

    def message(n: int, about: str, ago: float, outcome: str = "delivered") -> None:
        """A message as the hub leaves it: its outcome entry, concluded now, and its trail."""
        part, subject = OutcomePart(outcome=outcome, target="netsuite"), f"{about}/stripe/x{n}"  # type: ignore[arg-type]
        runtime.store.outcome_open(OutcomeRecord(correlation_id=f"c{n}", source="stripe", received_at=now - ago,
                                                 updated_at=now, parts={f"netsuite|e{n}": part}, subjects=[subject]))
        runtime.store.audit(AuditRecord(at=now - ago, correlation_id=f"c{n}", step="ingest", status="routed",
                                        subject=subject))

    def page() -> tuple[Figures, int]:
        before = runtime.store.round_trips.count
        shown, _ = figures(runtime, now)
        return shown, runtime.store.round_trips.count - before

    try:
        # All meant for the ERP: an invoice posted in 10 s, one in 60 s (late), a customer, a payment dead.
        for n, (about, ago, outcome) in enumerate([("invoice", 10, "delivered"), ("invoice", 60, "delivered"),
                                                   ("customer", 60, "delivered"), ("payment", 90, "dead_letter")]):
            message(n, about, ago, outcome)
        few, round_trips = page()
        for n in range(4, 40):
            message(n, "invoice" if n % 2 else "customer", 10)
        many, more_round_trips = page()
    finally:
        runtime.close()
    assert more_round_trips == round_trips, f"{round_trips} round trips for 4 messages, {more_round_trips} for 40"
    assert (few.messages, few.invoices, few.sla_breaches, few.latency_p95) == (4, 2, 1, pytest.approx(60, abs=1))
    assert (many.messages, many.invoices, many.sla_breaches) == (40, 20, 1)


def test_a_parked_journey_run_is_in_the_queue_and_resumed_or_cancelled_from_it(tmp_path: Path) -> None:
    runtime = Runtime(Settings(hub=HubSettings(store=f"sqlite:///{tmp_path}/hub.db")), plugins=journey_plugins())
    declare(runtime)  # the memory broker takes messages only for declared actors
    server = ServerThread(create_app(runtime)).start()
    try:
        runtime.store.user_put(new_user("ann", "operator", PASSWORD))
        failed = {**{name: StepRecord(status="done") for name in STEPS[:2]}, "support": StepRecord(status="failed")}
        resumed = stored(runtime, "stuck", state="parked", steps=failed)
        cancelled = stored(runtime, "other", state="parked", steps=failed)
        with signed_in(server.url, "ann") as ann:
            listed = ann.get("/exceptions").text
            assert f"journey:{resumed.id}" in listed and "(failed step: support)" in listed
            token = csrf(ann, f"/exceptions/journey:{resumed.id}")
            assert ann.post(f"/exceptions/journey:{resumed.id}/retry", data={"csrf": token}).status_code == 303
            assert ann.post(f"/exceptions/journey:{cancelled.id}/discard",
                            data={"csrf": token, "reason": "provisioned by hand"}).status_code == 303
            assert f"journey:{resumed.id}" not in ann.get("/exceptions").text  # no longer waiting for anyone
            done = ann.get("/exceptions", params={"state": "all"}).text
        assert runtime.store.journey_get(resumed.id).state != "parked"  # type: ignore[union-attr]
        assert runtime.store.journey_get(cancelled.id).state == "cancelled"  # type: ignore[union-attr]
    finally:
        server.stop()
        runtime.close()
    row = r'">(?:(?!</tr>).)*'  # within the item's own row
    assert re.search(rf"journey:{resumed.id}{row}state resolved", done, re.S)
    assert re.search(rf"journey:{cancelled.id}{row}state ignored", done, re.S)


def test_passwords_are_salted_scrypt_hashes_checked_whole(hub: EmbeddedHub) -> None:
    store = hub.runtime.store
    ann = store.user_get("ann")
    assert ann is not None and PASSWORD not in ann.password_hash and len(ann.salt) == 32
    assert new_user("ann", "operator", PASSWORD).password_hash != ann.password_hash  # a new salt each time
    assert authenticate(store, "ann", PASSWORD) == ann
    assert authenticate(store, "ann", PASSWORD[:-1]) is None and authenticate(store, "ghost", PASSWORD) is None


def test_user_add_reads_the_password_from_stdin_and_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    env = {"CROSSLEDGER_STORE": f"sqlite:///{tmp_path}/hub.db", "PATH": ""}

    def add(*args: str, password: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CROSSLEDGER, "user", "add", *args], input=password + "\n", capture_output=True,
                              text=True, timeout=60, env=env)

    added = add("carol", "--role", "operator", password=PASSWORD)
    assert added.returncode == 0 and added.stdout.strip() == "added carol (operator)", added.stderr
    short = add("dave", password="short")
    role = add("dave", "--role", "admin", password=PASSWORD)
    name = add("da ve", password=PASSWORD)
    for refused in (short, role, name):
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "at least 8 characters" in short.stderr and "viewer or operator" in role.stderr


# -- the order-to-cash chain --------------------------------------------------------------------------
def chain_cells(html: str, anchor: str) -> dict[str, str]:
    """The chain row of ``anchor`` as text: each step's cell, and ``stuck``."""
    row = re.search(rf'<tr data-anchor="{re.escape(anchor)}">(.*?)</tr>', html, re.S)
    assert row is not None, f"no chain row for {anchor}"
    text = {step: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", cell)).strip()
            for step, cell in re.findall(r'data-step="([^"]+)">(.*?)</td>', row.group(1), re.S)}
    stuck = re.search(r'<td class="stuck">(.*?)</td>', row.group(1), re.S)
    return {**text, "stuck": stuck.group(1).strip() if stuck else ""}


def test_a_customer_and_an_invoice_are_each_one_chain_row_stuck_where_the_erp_refused(tmp_path: Path) -> None:
    system = start_system(tmp_path)
    try:
        store = system.hub.runtime.store
        store.user_put(new_user("ann", "operator", PASSWORD))
        store.user_put(new_user("bob", "viewer", PASSWORD))
        customer = system.customer("Acme Ltd")
        system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
        paid = system.invoice(customer["id"], [10_000], pay=True)
        system.settle(lambda: len(system.state("netsuite")["invoice"]) == 1)
        system.fault("netsuite", mode="http_500", count=1000)
        refused = system.invoice(customer["id"], [250_000, 30_700])
        assert wait_until(lambda: store.dlq_count() >= 1 and system.hub.idle(), 60), "no dead letter"
        system.clear_fault("netsuite")
        anchor = f"customer/stripe/{customer['id']}"
        with signed_in(system.hub.url, "ann") as ann:
            whole = chain_cells(ann.get("/transactions", params={"q": customer["id"]}).text, anchor)
            one = chain_cells(ann.get("/transactions", params={"q": refused["id"]}).text,
                              f"invoice/stripe/{refused['id']}")
            other = chain_cells(ann.get("/transactions", params={"q": paid["id"]}).text,
                                f"invoice/stripe/{paid['id']}")
            timeline_page = ann.get(f"/transactions/{refused['id']}").text
            [dead] = [letter for letter in store.dlq_list() if refused["id"] in letter.reason]
            token = csrf(ann, "/exceptions")
            assert ann.post(f"/exceptions/dead-letter:{dead.id}/discard",
                            data={"csrf": token, "reason": "posted by hand"}).status_code == 303
            discarded = chain_cells(ann.get("/transactions", params={"q": refused["id"]}).text,
                                    f"invoice/stripe/{refused['id']}")
        with signed_in(system.hub.url, "bob") as bob:
            seen = bob.get("/transactions", params={"q": customer["id"]}).text
    finally:
        system.stop()
    # The customer's chain: both invoices, the ERP posting stuck on the refused one.
    assert whole["customer"].startswith("in step") and customer["id"] in whole["customer"] and "Acme Ltd" in whole[
        "customer"]
    assert whole["subscription"].startswith("none") and "no subscription" in whole["subscription"]
    assert whole["invoice"].startswith("in step") and paid["id"] in whole["invoice"] and refused["id"] in whole[
        "invoice"]
    assert whole["erp posting"].startswith("dead letter") and refused["id"] in whole["erp posting"]
    assert whole["stuck"].startswith(f"erp posting: {refused['id']} netsuite: dead letter")
    assert whole["payment"].startswith("awaiting") and f"awaiting payment of {refused['id']}" in whole["payment"]
    # One invoice's chain: its own customer and posting.
    assert one["customer"].startswith("in step") and "2,807.00 USD" in one["invoice"]
    assert one["erp posting"].startswith("dead letter") and one["stuck"].startswith("erp posting:")
    assert other["erp posting"].startswith("in step") and other["stuck"] == ""
    # Its dead letter discarded, the invoice is still not in NetSuite: absent downstream.
    assert discarded["erp posting"].startswith("absent") and discarded["stuck"] == (
        f"erp posting: {refused['id']} not in netsuite")
    assert "Order-to-cash chain" in timeline_page and f'data-anchor="invoice/stripe/{refused["id"]}"' in timeline_page
    # A viewer sees the chain with the customer's name masked.
    assert f'data-anchor="{anchor}"' in seen and "Acme Ltd" not in seen and "A*** L**" in seen


def test_a_subscription_whose_entitlement_journey_is_parked_is_stuck_at_entitlement(hub: EmbeddedHub) -> None:
    store = hub.runtime.store
    customer, subscription = "customer/stripe/cus_9", "subscription/stripe/sub_9"
    store.golden_put(Golden(canonical_id=customer, entity_type="customer", version=1,
                            data={"id": customer, "name": "Zed Corp", "email": "ops@zed.example"}))
    store.golden_put(Golden(canonical_id=subscription, entity_type="subscription", version=1,
                            data={"id": subscription, "customer_id": customer, "status": "active"}))
    steps = {"account": StepRecord(status="done"), "enrich": StepRecord(status="done"),
             "erp": StepRecord(status="done"), "entitlement": StepRecord(status="failed")}
    store.journey_start(JourneyRecord(
        id="subscription-change:ev9", name="subscription-change", version=1, key="ev9", subject=subscription,
        state="parked", correlation_id="corr-9", started_at=time.time(), updated_at=time.time(), steps=steps,
        reason="zendesk refused the organization of Zed Corp"))
    with signed_in(hub.url, "ann") as ann:
        cells = chain_cells(ann.get("/transactions", params={"q": subscription}).text, customer)
    with signed_in(hub.url, "bob") as bob:
        seen = chain_cells(bob.get("/transactions", params={"q": subscription}).text, customer)
    assert cells["subscription"].startswith("in step") and "sub_9" in cells["subscription"]
    assert cells["entitlement"].startswith("parked")
    assert cells["stuck"] == ("entitlement: sub_9 journey subscription-change parked at entitlement: "
                              "zendesk refused the organization of Zed Corp")
    # A viewer reads where it is stuck with the name masked, there too.
    assert seen["stuck"] == cells["stuck"].replace("Zed Corp", "Z** C***") and "Zed Corp" not in str(seen)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[System]:
    """The reference topology: Salesforce, Stripe, NetSuite and Zendesk sandboxes around one hub."""
    yield from billing.billing_topology(tmp_path)


def test_a_subscribed_customer_s_chain_runs_through_to_the_support_entitlement(topology: System) -> None:
    """A closed-won account onboarded, subscribed in Stripe, its tier shown in Zendesk (the
    subscription journey writes it onto the organization): the chain follows it to the entitlement."""
    topology.hub.runtime.store.user_put(new_user("ann", "operator", PASSWORD))
    _, canonical_id, stripe_id = billing.subscribed_customer(topology)
    with signed_in(topology.hub.url, "ann") as ann:
        cells = chain_cells(ann.get("/transactions", params={"q": stripe_id}).text, canonical_id)
    for step in ("customer", "subscription", "payment", "entitlement"):
        assert cells[step].startswith("in step"), (step, cells)
    assert "Pied Piper Inc" in cells["customer"] and "zendesk" in cells["entitlement"] and cells["stuck"] == ""


CHAIN_ROUND_TRIPS = 12
"""The budget of a search by a customer's Stripe id with its chain: the session, the search (the id
looked up in every system, one round trip for the record ids), then the chain's records listed (a
query per kind) and read in batches (records, their messages' outcomes, their events): the same
whatever the number of records."""


def test_a_customer_s_chain_costs_the_store_a_few_round_trips_whatever_its_size(tmp_path: Path) -> None:
    system = start_system(tmp_path, poll_interval_s=3600)  # no poll in the counts
    try:
        store = system.hub.runtime.store
        store.user_put(new_user("ann", "operator", PASSWORD))
        customer = system.customer("Acme Ltd")
        anchor = f"customer/stripe/{customer['id']}"
        system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
        costs = []
        with signed_in(system.hub.url, "ann") as ann:
            for invoices in (1, 4):
                for n in range(invoices - len(system.state("netsuite")["invoice"])):
                    system.invoice(customer["id"], [1_000 + n], pay=n == 0)
                system.settle(lambda wanted=invoices: len(system.state("netsuite")["invoice"]) == wanted)
                before = store.round_trips.count
                cells = chain_cells(ann.get("/transactions", params={"q": customer["id"]}).text, anchor)
                costs.append(store.round_trips.count - before)
                assert cells["invoice"].startswith("in step") and cells["erp posting"].startswith("in step"), cells
    finally:
        system.stop()
    print(f"store round trips of the search and chain: {costs[0]} with 1 invoice, {costs[1]} with 4")
    assert costs[0] == costs[1] <= CHAIN_ROUND_TRIPS, costs


def test_a_customer_with_more_records_than_a_page_shows_them_all_a_page_at_a_time(hub: EmbeddedHub) -> None:
    store = hub.runtime.store
    customer = "customer/stripe/cus_big"
    store.golden_put(Golden(canonical_id=customer, entity_type="customer", version=1, data={"name": "Big Corp"}))
    for n in range(PAGE_SIZE + 5):
        store.golden_put(Golden(canonical_id=f"invoice/stripe/in_{n:03}", entity_type="invoice", version=1,
                                data={"customer_id": customer, "status": "paid"}))
    with signed_in(hub.url, "ann") as ann:
        listing = ann.get("/transactions", params={"q": customer}).text
        first = ann.get(f"/transactions/{customer}").text
        second = ann.get(f"/transactions/{customer}", params={"page": 2}).text
        refused = [ann.get(f"/transactions/{customer}", params={"page": page}) for page in ("0", "²", "x", "10001")]

    def invoices(html: str) -> list[str]:
        return re.findall(r'<tr data-subject="invoice/stripe/(in_\d+)">', html)

    assert f'class="more" href="/transactions/{customer}?page=2"' in listing  # no silent cut
    assert invoices(first) == [f"in_{n:03}" for n in range(PAGE_SIZE)] and "(page 1)" in first
    assert invoices(second) == [f"in_{n:03}" for n in range(PAGE_SIZE, PAGE_SIZE + 5)]
    assert f'href="/transactions/{customer}?page=1">earlier' in second and 'class="more"' not in second
    assert all(answer.status_code == 400 and "page must be a whole number" in answer.text for answer in refused)


def test_an_operator_finds_a_customer_by_any_word_of_its_name_or_email(hub: EmbeddedHub) -> None:
    """Golden records written straight to the store, no event logged: found by the store's index,
    not by a scan of recent events; a viewer cannot search by name, and sees no name either."""
    store = hub.runtime.store
    for key, name, email in (("c1", "Acme Widgets Ltd", "billing@acme.example"),
                             ("c2", "Acme Tools", "ap@tools.example"), ("c3", "Zed Corp", "ops@zed.example")):
        store.golden_put(Golden(canonical_id=f"customer/stripe/{key}", entity_type="customer", version=1,
                                data={"id": f"customer/stripe/{key}", "name": name, "email": email}))

    def found(client: httpx.Client, query: str) -> list[str]:
        return re.findall(r'<tr data-anchor="customer/stripe/(c\d)">', client.get("/transactions",
                                                                                   params={"q": query}).text)

    with signed_in(hub.url, "ann") as ann:
        assert found(ann, "acme") == ["c1", "c2"]
        assert found(ann, "Acme wid") == ["c1"] and found(ann, "billing@acme") == ["c1"]
        assert found(ann, "zed.example") == ["c3"] and found(ann, "cme") == []
    with signed_in(hub.url, "bob") as bob:
        assert found(bob, "acme") == []


DESK = Journey(name="desk-access", version=1, steps=(
    Step("grant", lambda run: None, on_failure=OnFailure.PARK, entitles=True),
    Step("support", lambda run: None, on_failure=OnFailure.PARK)))
"""A third party's journey: its ``grant`` step writes the entitlement; its ``support`` step does not."""


class DeskPlugin:
    @hookimpl
    def crossledger_journeys(self) -> list[Journey]:
        return [DESK]


def test_the_chain_reads_which_step_writes_the_entitlement_from_the_journey(tmp_path: Path) -> None:
    manager = CrossledgerPluginManager()
    manager.register_builtins()
    manager.register(DeskPlugin(), name="desk")
    runtime = Runtime(Settings(hub=HubSettings(store=f"sqlite:///{tmp_path}/hub.db")), plugins=manager)
    server = ServerThread(create_app(runtime)).start()
    try:
        store = runtime.store
        store.user_put(new_user("ann", "operator", PASSWORD))
        cells = {}
        for key, stopped_at in (("granting", "grant"), ("notifying", "support")):
            customer, subscription = f"customer/stripe/{key}", f"subscription/stripe/sub_{key}"
            store.golden_put(Golden(canonical_id=customer, entity_type="customer", version=1, data={"name": key}))
            store.golden_put(Golden(canonical_id=subscription, entity_type="subscription", version=1,
                                    data={"customer_id": customer, "status": "active"}))
            steps = {name: StepRecord(status="failed" if name == stopped_at else "done")
                     for name in ("grant", "support")}
            store.journey_start(JourneyRecord(
                id=f"desk-access:{key}", name="desk-access", version=1, key=key, subject=subscription, state="parked",
                correlation_id=f"corr-{key}", started_at=time.time(), updated_at=time.time(), steps=steps))
            with signed_in(server.url, "ann") as ann:
                cells[key] = chain_cells(ann.get("/transactions", params={"q": subscription}).text, customer)
    finally:
        server.stop()
        runtime.close()
    assert cells["granting"]["entitlement"].startswith("parked")
    assert cells["granting"]["stuck"].startswith("entitlement: sub_granting journey desk-access parked at grant")
    # Stopped at a step named like the built-in journeys' (``support``), yet not declared: not the entitlement's.
    assert not cells["notifying"]["entitlement"].startswith("parked")
    assert cells["notifying"]["stuck"].startswith("subscription: sub_notifying journey desk-access parked at support")
