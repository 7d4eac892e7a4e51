"""Text length limits of the target systems' fields, checked when a write is planned.

A value longer than its field takes is the source's mistake, and retrying cannot shorten it: the
write is refused before it is sent, as a ``data`` error that names the field, its length and the
limit, never the value (it may be personal data; the systems' own refusals quote it, Salesforce's
``STRING_TOO_LONG`` for one). Each connector keeps its system's limits next to its outbound mapping.
"""

from collections.abc import Mapping
from typing import Any

from crossledger.plugins.errors import Category, ConnectorError

Limits = Mapping[str, int]
"""Field name -> the most characters the system takes in it."""


def check_lengths(system: str, what: str, fields: Mapping[str, Any], limits: Limits) -> None:
    """Raise a ``data`` :class:`ConnectorError` for the first text in ``fields`` longer than its limit.

    ``what`` says which write it is (``customer customer/stripe/cus_1``), for the reason."""
    for name, limit in limits.items():
        value = fields.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise ConnectorError(Category.DATA, f"{system} {what}: {name} is {len(value)} characters long; "
                                                f"{system} takes at most {limit}")
