"""Salesforce outbound messages: the SOAP 1.1 notifications, the Ack that ends them, the fault.

An outbound message is a workflow (or flow) action on one object: when a record of it is created or
edited, Salesforce queues a *notification* and POSTs queued notifications, up to 100 per message,
to the configured URL::

    <soapenv:Envelope ...><soapenv:Body>
      <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
        <OrganizationId>00D...</OrganizationId> <ActionId>04k...</ActionId>
        <SessionId xsi:nil="true"/> <EnterpriseUrl>...</EnterpriseUrl> <PartnerUrl>...</PartnerUrl>
        <Notification>
          <Id>04l...</Id>
          <sObject xsi:type="sf:Account" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
            <sf:Id>001...</sf:Id> <sf:Name>Acme</sf:Name> ...

Only :data:`ACK` (HTTP 200, ``notificationsResponse/Ack`` = ``true``) ends a message: anything
else, a SOAP fault included, makes Salesforce retry it, backing off up to two hours apart, for 24
hours. A notification carries the record's data at the time it is *sent*, not at the time of the
change, and may arrive more than once (dedupe on its ``Id``).

Both sides live here: the connector parses notifications and answers :data:`ACK` or :func:`fault`;
the sandbox renders notifications and checks answers with :func:`is_ack`.

Parsing is defensive: bodies with a DTD are refused before the parser sees them (no entity
expansion, no external entities), and ElementTree never fetches anything.
"""

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
SOBJECT = "urn:sobject.enterprise.soap.sforce.com"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_TYPE = "text/xml; charset=utf-8"
MAX_NOTIFICATIONS = 100
#: An outbound message nests 6 elements deep (Envelope, Body, notifications, Notification, sObject, field).
MAX_DEPTH = 32

ACK = b"""<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" \
xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">
   <Ack>true</Ack>
  </notificationsResponse>
 </soapenv:Body>
</soapenv:Envelope>
"""
"""The acknowledgement Salesforce requires, byte for byte as in its documentation's example."""

_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


class SoapError(ValueError):
    """A body that is not a well-formed outbound message (or not a SOAP envelope at all)."""


class UnreadableXml(SoapError):
    """Not XML the hub reads at all (not well-formed, a DTD, not UTF-8), as opposed to readable XML
    that is not an outbound message."""


@dataclass(frozen=True)
class Notification:
    """One changed record: the notification's id, the sObject type and its fields (text, or None
    for ``xsi:nil``)."""

    id: str
    sobject: str
    fields: dict[str, str | None]


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str
    session_id: str | None
    enterprise_url: str
    partner_url: str
    notifications: list[Notification]


def parse_xml(body: bytes) -> ET.Element:
    """The document's root element; :class:`UnreadableXml` for a DTD or malformed XML."""
    try:
        text = body.decode("utf-8")  # outbound messages are UTF-8; another encoding could hide a DTD
    except UnicodeDecodeError:
        raise UnreadableXml("outbound messages are UTF-8; this body is not") from None
    if _DTD.search(text.encode()) or re.search(r"encoding=[\"'](?!utf-8)", text[:200], re.IGNORECASE):
        raise UnreadableXml("XML with a DTD, or in an encoding other than UTF-8, is refused")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as error:
        raise UnreadableXml(f"not well-formed XML: {error}") from error
    pending = [(root, 1)]  # iterative: a deep document must not exhaust the stack
    while pending:
        element, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise UnreadableXml(f"XML nested more than {MAX_DEPTH} elements deep")
        pending.extend((child, depth + 1) for child in element)
    return root


def _body_child(root: ET.Element, tag: str) -> ET.Element:
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapError(f"the root element is {root.tag}, not a SOAP 1.1 Envelope")
    found = root.find(f"{{{SOAP_ENV}}}Body/{{{OUTBOUND}}}{tag}")
    if found is None:
        raise SoapError(f"the SOAP Body holds no {tag} element")
    return found


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _nil(element: ET.Element) -> bool:
    return element.get(f"{{{XSI}}}nil") == "true"


def _text(parent: ET.Element, name: str, *, required: bool = True) -> str | None:
    element = parent.find(f"{{{OUTBOUND}}}{name}")
    if element is None or _nil(element):
        if required:
            raise SoapError(f"{name} is missing")
        return None
    return (element.text or "").strip()


def organization_id(body: bytes) -> str | None:
    """The ``OrganizationId`` an outbound message claims to come from (None when it names none)."""
    return _text(_body_child(parse_xml(body), "notifications"), "OrganizationId", required=False) or None


def parse(body: bytes) -> OutboundMessage:
    """An outbound message's notifications; :class:`SoapError` unless it has 1 to 100 of them."""
    notifications = _body_child(parse_xml(body), "notifications")
    items = [_notification(element) for element in notifications.findall(f"{{{OUTBOUND}}}Notification")]
    if not 1 <= len(items) <= MAX_NOTIFICATIONS:
        raise SoapError(f"an outbound message holds 1 to {MAX_NOTIFICATIONS} notifications, not {len(items)}")
    return OutboundMessage(
        organization_id=_text(notifications, "OrganizationId") or "",
        action_id=_text(notifications, "ActionId") or "",
        session_id=_text(notifications, "SessionId", required=False),
        enterprise_url=_text(notifications, "EnterpriseUrl", required=False) or "",
        partner_url=_text(notifications, "PartnerUrl", required=False) or "",
        notifications=items,
    )


def _notification(element: ET.Element) -> Notification:
    sobject = element.find(f"{{{OUTBOUND}}}sObject")
    if sobject is None:
        raise SoapError("a Notification has no sObject")
    declared = sobject.get(f"{{{XSI}}}type", "")
    sobject_type = declared.partition(":")[2] or declared
    if not sobject_type:
        raise SoapError("an sObject has no xsi:type")
    fields = {_local(field.tag): None if _nil(field) else (field.text or "") for field in sobject if len(field) == 0}
    if not fields.get("Id"):
        raise SoapError(f"an sObject of type {sobject_type} has no Id")
    return Notification(id=_text(element, "Id") or "", sobject=sobject_type, fields=fields)


def render(message: OutboundMessage) -> bytes:
    """The SOAP request Salesforce POSTs for ``message`` (null fields as ``xsi:nil``)."""

    def element(name: str, value: str | None, prefix: str = "") -> str:
        if value is None:
            return f"<{prefix}{name} xsi:nil=\"true\"/>"
        return f"<{prefix}{name}>{escape(value)}</{prefix}{name}>"

    notifications = "".join(
        f"\n   <Notification>\n    {element('Id', item.id)}"
        f"\n    <sObject xsi:type=\"sf:{item.sobject}\" xmlns:sf=\"{SOBJECT}\">"
        + "".join(f"\n     {element(name, value, 'sf:')}" for name, value in item.fields.items())
        + "\n    </sObject>\n   </Notification>"
        for item in message.notifications
    )
    header = "".join(f"\n   {element(name, value)}" for name, value in (
        ("OrganizationId", message.organization_id), ("ActionId", message.action_id),
        ("SessionId", message.session_id), ("EnterpriseUrl", message.enterprise_url),
        ("PartnerUrl", message.partner_url)))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="{XSI}">\n <soapenv:Body>\n'
        f'  <notifications xmlns="{OUTBOUND}">{header}{notifications}\n  </notifications>\n'
        " </soapenv:Body>\n</soapenv:Envelope>\n"
    ).encode()


def is_ack(body: bytes) -> bool:
    """Whether an answer is the acknowledgement: ``notificationsResponse/Ack`` holding ``true``."""
    try:
        response = _body_child(parse_xml(body), "notificationsResponse")
    except SoapError:
        return False
    return _text(response, "Ack", required=False) == "true"


def fault(reason: str, *, sender_at_fault: bool = True) -> bytes:
    """A SOAP 1.1 fault, shaped like the one in Salesforce's examples: Salesforce shows
    ``faultstring`` in the outbound message queue and retries the message."""
    code = "soapenv:Client" if sender_at_fault else "soapenv:Server"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
        'envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-'
        'instance">\n <soapenv:Body>\n  <soapenv:Fault>\n'
        f"   <faultcode>{code}</faultcode>\n   <faultstring>{escape(reason)}</faultstring>\n   <detail />\n"
        "  </soapenv:Fault>\n </soapenv:Body>\n</soapenv:Envelope>\n"
    ).encode()
