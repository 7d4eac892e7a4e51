"""Salesforce record ids: 15 case-sensitive characters, or 18 case-insensitive ones.

An id is ``{key prefix}{pod}{reserved}{unique}``: three characters naming the object (``001``
Account, ``003`` Contact, ``00D`` the org itself, ``a0…`` custom objects), then twelve that make the
record unique. The API answers with the 18-character form: the 15 characters plus a three-character
checksum of their letter case, so that tools which ignore case (spreadsheets, SQL collations) still
tell ``001…aB`` from ``001…Ab``. Both forms name the same record; :func:`normalize` maps either onto
the 18-character one, which is what the connector stores and compares.
"""

import re
import secrets

SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
"""The checksum characters: each encodes which of five characters are upper-case letters."""

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
"""In ASCII order, so ids minted in sequence also sort in sequence."""

_SHAPE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-5]{3})?")


def checksum(id15: str) -> str:
    """The three case-checksum characters of a 15-character id."""
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << offset for offset, char in enumerate(id15[chunk * 5: chunk * 5 + 5]) if "A" <= char <= "Z")
        suffix += SUFFIX_ALPHABET[bits]
    return suffix


def normalize(value: str) -> str | None:
    """The 18-character form of an id given in either form; None when ``value`` is not id-shaped.

    An 18-character id may arrive with its case lost (that is what the checksum is for), so the case
    of its first 15 characters is restored from the checksum before it is compared.
    """
    if not _SHAPE.fullmatch(value):
        return None
    if len(value) == 15:
        return value + checksum(value)
    suffix = value[15:].upper()
    restored = "".join(
        char.upper() if SUFFIX_ALPHABET.index(suffix[index // 5]) >> (index % 5) & 1 else char.lower()
        for index, char in enumerate(value[:15])
    )
    return restored + checksum(restored)


def same(first: str, second: str) -> bool:
    """Whether two ids (either form) name the same record."""
    one = normalize(first)
    return one is not None and one == normalize(second)


class IdFactory:
    """Mints 18-character ids for one org, in creation order within each key prefix.

    The unique part starts at a random point, so two sandboxes never hand out the same ids, unless
    ``start`` says where.
    """

    def __init__(self, pod: str = "5g", start: int | None = None) -> None:
        self._pod = pod
        self._next = secrets.randbelow(62**6) if start is None else start

    def new(self, key_prefix: str) -> str:
        self._next += 1
        unique, number = "", self._next
        while number:
            number, digit = divmod(number, 62)
            unique = BASE62[digit] + unique
        id15 = f"{key_prefix}{self._pod}0{unique.rjust(9, '0')}"
        return id15 + checksum(id15)
