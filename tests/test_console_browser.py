"""The operator console in a real headless browser: Debian's Chromium driven by Playwright, against a
hub that runs for real (Stripe and NetSuite sandboxes on loopback, an embedded hub between them).

Skipped, with the reason, where ``/usr/bin/chromium`` is missing, unless ``CI`` is set: CI installs
it (``.ci/run``), so there a missing browser fails. With ``CROSSLEDGER_SCREENSHOTS=<dir>`` the tests
also save the main pages as PNG there (``docs/console/`` holds the ones the README shows).
"""

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crossledger.core.console.users import new_user
from crossledger.core.processes.embedded import wait_until
from crossledger.devtools.demo.drivers import NetSuiteFinance
from playwright.sync_api import sync_playwright

from tests.conftest import System, start_system

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery"
SHOTS = os.environ.get("CROSSLEDGER_SCREENSHOTS")

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; CI installs it and fails without it)",
                allow_module_level=True)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield launched
        launched.close()


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[System]:
    system = start_system(tmp_path)
    store = system.hub.runtime.store
    store.user_put(new_user("olivia", "operator", PASSWORD))
    store.user_put(new_user("victor", "viewer", PASSWORD))
    yield system
    system.stop()


def signed_in(browser: Any, system: System, name: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(15_000)
    page.goto(f"{system.hub.url}/")
    assert page.url.endswith("/login?next=/flows")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/flows$"))
    return page


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def stuck_invoice(system: System) -> dict[str, Any]:
    """An invoice NetSuite refused until the hub gave up: dead-lettered, then NetSuite is well again."""
    customer = system.customer("Acme Ltd")
    system.settle(lambda: len(system.state("netsuite")["customer"]) == 1)
    store = system.hub.runtime.store
    system.fault("netsuite", mode="http_500", count=1000)
    invoice = system.invoice(customer["id"], [250_000, 30_700])
    assert wait_until(lambda: store.dlq_count() >= 1 and system.hub.idle(), 60), "the invoice was not dead-lettered"
    system.clear_fault("netsuite")
    return invoice


def test_an_operator_finds_a_stuck_invoice_by_its_stripe_id_retries_it_and_sees_it_resolve(
        browser: Any, hub: System) -> None:
    invoice = stuck_invoice(hub)
    page = signed_in(browser, hub, "olivia")
    page.goto(f"{hub.hub.url}/exceptions")
    assert page.locator("#exceptions tbody tr", has_text="netsuite").count() >= 1
    shot(page, "exceptions")
    page.goto(f"{hub.hub.url}/transactions")
    page.fill("input[name=q]", invoice["id"])
    page.click("form.search button")
    row = page.locator(f"#chains tbody tr[data-anchor='invoice/stripe/{invoice['id']}']")
    assert "2,807.00 USD" in row.inner_text()
    assert row.locator("td[data-step='invoice'] .state").first.inner_text() == "in step"
    assert row.locator("td[data-step='erp posting'] .state").first.inner_text() == "dead letter"
    # NetSuite refused the customer's update too (it was down): the chain is stuck there first.
    assert row.locator("td.stuck").inner_text().startswith("customer: cus_")
    shot(page, "transactions")
    row.locator("a").first.click()
    page.wait_for_selector("#timeline")
    assert "dead_letter" in page.inner_text("#timeline")
    shot(page, "timeline")
    retried = 0
    while page.locator("form[action$='/retry'] button").count():
        page.locator("form[action$='/retry'] button").first.click()
        page.wait_for_url(re.compile(r"/exceptions/dead-letter:"))
        assert page.inner_text("#item-state") == "resolved"
        retried += 1
        page.goto(f"{hub.hub.url}/transactions/{invoice['id']}")
    assert retried >= 1
    in_netsuite = f"invoice.stripe.{invoice['id']}"
    hub.settle(lambda: [r["externalId"] for r in hub.state("netsuite")["invoice"]] == [in_netsuite])
    page.goto(f"{hub.hub.url}/transactions?q={invoice['id']}")
    row = page.locator(f"#chains tbody tr[data-anchor='invoice/stripe/{invoice['id']}']")
    assert row.locator("td[data-step='erp posting'] .state").first.inner_text() == "in step"
    assert row.locator("td[data-step='payment'] .state").first.inner_text() == "awaiting"
    page.goto(f"{hub.hub.url}/audit")
    assert "retry" in page.inner_text("#audit") and "olivia" in page.inner_text("#audit")

    page.goto(f"{hub.hub.url}/flows")
    netsuite = page.inner_text("#flows tr[data-system=netsuite]")
    assert "closed" in netsuite and "HTTP 500" in netsuite  # well again, and the last failure's reason
    assert "stripe" in page.inner_text("#rules")
    shot(page, "flows")
    page.goto(f"{hub.hub.url}/kpis")
    assert page.locator("svg rect").count() > 0
    assert "invoice → ERP latency" in page.inner_text("#kpis")
    shot(page, "kpis")


def test_an_operator_runs_a_reconciliation_and_repairs_a_finding_after_a_dry_run(browser: Any, hub: System) -> None:
    customer = hub.customer("Acme Ltd")
    invoice = hub.invoice(customer["id"], [120_000])
    in_netsuite = f"invoice.stripe.{invoice['id']}"
    hub.settle(lambda: [r.get("externalId") for r in hub.state("netsuite")["invoice"]] == [in_netsuite])
    netsuite = NetSuiteFinance(hub.hub.runtime.settings.connectors["netsuite"])  # a person deletes it by hand
    netsuite.http.delete(f"/invoice/{netsuite.record('invoice', in_netsuite)['id']}").raise_for_status()

    page = signed_in(browser, hub, "olivia")
    page.goto(f"{hub.hub.url}/reconciliation")
    page.click("#run-full")
    page.wait_for_selector("#findings")
    missing = page.locator("#findings tbody tr", has_text=f"invoice/stripe/{invoice['id']}").filter(
        has_text="missing")
    assert missing.count() == 1 and "deliver → netsuite" in missing.inner_text()
    assert "1,200.00 USD" in page.inner_text("#balances")  # the month's invoices: billed, not booked
    shot(page, "reconciliation")
    missing.locator("td:nth-child(4) a").click()
    page.click("form[action$='/repair'] button")
    assert page.inner_text("#repair-count").startswith("1 repair(s) for 1 finding(s)")
    assert not [r for r in hub.state("netsuite")["invoice"] if r.get("externalId") == in_netsuite]  # a dry run
    page.click("text=Apply 1 repair(s)")
    page.wait_for_url(re.compile(r"/exceptions/finding:"))
    assert page.inner_text("#item-state") == "resolved"
    hub.settle(lambda: [r.get("externalId") for r in hub.state("netsuite")["invoice"]] == [in_netsuite])
    page.goto(f"{hub.hub.url}/reconciliation")
    page.click("#run-full")
    page.wait_for_selector("#findings")
    assert "The systems agree." in page.inner_text("#findings")


def test_a_viewer_sees_no_action_and_a_forged_post_is_refused(browser: Any, hub: System) -> None:
    stuck_invoice(hub)
    page = signed_in(browser, hub, "victor")
    page.goto(f"{hub.hub.url}/exceptions")
    assert page.locator("#exceptions tbody tr").count() >= 1
    assert page.locator("button", has_text="Bulk retry").count() == 0
    page.locator("#exceptions tbody tr td:nth-child(6) a").first.click()
    assert page.locator("form[action$='/retry'], form[action$='/discard']").count() == 0
    page.goto(f"{hub.hub.url}/reconciliation")
    assert page.locator("#run-full").count() == 0
    page.goto(f"{hub.hub.url}/transactions")
    assert "Acme Ltd" not in page.inner_text("#chains") and "A*** L**" in page.inner_text("#chains")
    token = page.locator("input[name=csrf]").first.get_attribute("value")
    letter = hub.hub.runtime.store.dlq_list()[0]
    forged = page.request.post(f"{hub.hub.url}/exceptions/dead-letter:{letter.id}/retry", form={"csrf": token})
    assert forged.status == 403 and "Your role is viewer" in forged.text()
    assert hub.hub.runtime.store.dlq_get(letter.id).state == "open"  # type: ignore[union-attr]


def test_a_post_without_the_csrf_token_is_refused(browser: Any, hub: System) -> None:
    page = signed_in(browser, hub, "olivia")
    forged = page.request.post(f"{hub.hub.url}/reconciliation/run", form={"full": "1"})
    assert forged.status == 403 and "security token" in forged.text()
    assert hub.hub.runtime.store.reconciliations() == []


def test_bulk_retry_counts_and_previews_first_then_retries_every_match(browser: Any, hub: System) -> None:
    invoice = stuck_invoice(hub)
    store = hub.hub.runtime.store
    stuck = store.dlq_count()
    page = signed_in(browser, hub, "olivia")
    page.goto(f"{hub.hub.url}/exceptions?system=netsuite&class=transient")
    page.click("text=Bulk retry these")
    assert page.inner_text("#bulk-count") == f"{stuck} dead letter(s) would be retried. Nothing has been sent yet."
    assert store.dlq_count() == stuck  # the dry run sent nothing
    page.click(f"text=Retry {stuck} now")
    assert page.inner_text("#bulk-count") == f"{stuck} dead letter(s) retried."
    in_netsuite = f"invoice.stripe.{invoice['id']}"
    hub.settle(lambda: store.dlq_count() == 0
               and [r["externalId"] for r in hub.state("netsuite")["invoice"]] == [in_netsuite])
    page.goto(f"{hub.hub.url}/exceptions?state=resolved")
    assert page.locator("#exceptions tbody tr[data-item]").count() == stuck
    assert [a.action for a in store.actions()] == ["retry"] * stuck
