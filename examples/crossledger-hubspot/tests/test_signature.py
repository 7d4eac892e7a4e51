"""The signature check refuses a malformed timestamp as a forgery, not with a crash."""

import pytest
from crossledger.plugins.errors import SignatureError

from crossledger_hubspot.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@pytest.mark.parametrize("stamp", ["1708986599647²", "-1708986599647"])
def test_a_timestamp_that_is_not_ascii_digits_is_a_signature_error(stamp: str) -> None:
    # "²" passes str.isdigit(), and int() raises ValueError on it.
    headers = {SIGNATURE_HEADER: "c2lnbmF0dXJl", TIMESTAMP_HEADER: stamp}
    with pytest.raises(SignatureError):
        verify(headers, "https://www.example.com/webhook_uri", b"{}", ["secret"], now=1708986599.647)
