"""Who a customer is: validating an identity, and the keys that find the same company twice.

Onboarding refuses an identity it cannot bill or book: a name, a way to reach the customer (an
e-mail address or a website), a well-formed tax id when one is given, an address that names its
country when one is given, and, where the policy requires a billing address, one complete enough
for an invoice (line 1, city, country).

The same company is found by, in order: its tax id (normalized: letters and digits, upper case;
the legal names are compared and a difference is reported, not trusted over the tax id), its web
domain (from the website, else from the e-mail address unless that is a free mail provider's), its
e-mail address.
"""

import re
from urllib.parse import urlsplit

from crossledger.canonical.entities import Customer

TAX_ID = re.compile(r"^[A-Z]{2}[A-Z0-9]{2,13}$|^[0-9]{2}-?[0-9]{7}$|^[A-Z0-9]{5,20}$")
"""An EU-style VAT number (country prefix), a US EIN (12-3456789), or another registry's 5-20
letters and digits; separators (spaces, dots, dashes) are dropped before matching."""
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
FREE_MAIL = frozenset({"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "yahoo.com",
                       "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.de", "web.de"})


def normalized_tax_id(tax_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", tax_id).upper()


def problems(customer: Customer, *, require_address: bool) -> list[str]:
    """What keeps ``customer`` from being onboarded; empty when nothing does."""
    found = []
    if not customer.name.strip():
        found.append("the name is empty")
    if not customer.email and not customer.website:
        found.append("neither an e-mail address nor a website is given")
    if customer.email and not EMAIL.match(customer.email):
        found.append(f"the e-mail address {customer.email!r} is malformed")
    if customer.tax_id and not TAX_ID.match(normalized_tax_id(customer.tax_id)):
        found.append(f"the tax id {customer.tax_id!r} is malformed")
    address = customer.address
    required = ("line1", "city", "country") if require_address else ("country",)
    if address is None and require_address:
        found.append("the billing address is missing")
    elif address is not None:
        missing = [name for name in required if not getattr(address, name)]
        if missing:
            found.append(f"the billing address lacks {', '.join(missing)}")
    return found


def domain_of(customer: Customer) -> str | None:
    if customer.website:
        raw = customer.website if "//" in customer.website else f"//{customer.website}"
        host = (urlsplit(raw).hostname or "").lower().removeprefix("www.")
        if host:
            return host
    if customer.email and "@" in customer.email:
        domain = customer.email.rsplit("@", 1)[1].lower()
        if domain not in FREE_MAIL:
            return domain
    return None


def keys(customer: Customer) -> list[tuple[str, str]]:
    """The identity keys of ``customer``, strongest first."""
    found = []
    if customer.tax_id:
        found.append(("tax-id", normalized_tax_id(customer.tax_id)))
    domain = domain_of(customer)
    if domain:
        found.append(("domain", domain))
    if customer.email:
        found.append(("email", customer.email.lower()))
    return found


def same_name(first: str, second: str) -> bool:
    """Legal names compared without case, punctuation or a trailing company form."""
    def bare(name: str) -> str:
        words = re.sub(r"[^a-z0-9 ]", " ", name.lower()).split()
        forms = {"inc", "ltd", "llc", "gmbh", "ag", "sa", "sas", "bv", "plc", "corp", "co", "kk", "limited"}
        return " ".join(word for word in words if word not in forms)

    return bare(first) == bare(second)
