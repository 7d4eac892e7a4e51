"""A ConnectorError wrapping another exception names the field, the type and the status, never a value.

A ConnectorError's text is trusted as a reason (logs, dead letters, Sentry), so what a connector's
``classify`` or ``classify_http`` copies from the error it wraps goes through
:func:`crossledger.plugins.errors.exception_reason`. Each case here carries an e-mail in the text of
the wrapped error: a validation error quoting its input, a ``KeyError`` of a looked-up value, an
HTTP error whose URL and body echo it.
"""

from collections.abc import Iterator

import httpx
import pydantic
import pytest
from crossledger.plugins import load_plugins
from crossledger.plugins.connector import BaseConnector
from crossledger.plugins.emulator import ServerThread
from crossledger.plugins.errors import WITHHELD, Category, ConnectorError
from crossledger.plugins.http import classify_http
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

EMAIL = "dana.whitlock@privacy-probe.example"
MAILBOX = "dana.whitlock"  # how the e-mail shows in a URL too (with %40 for the @)


class Signup(pydantic.BaseModel):
    email: str = pydantic.Field(max_length=20)


def validation_error() -> pydantic.ValidationError:
    try:
        Signup.model_validate({"email": EMAIL})
    except pydantic.ValidationError as error:
        assert EMAIL in str(error)  # pydantic quotes the input
        return error
    raise AssertionError("the model took an e-mail longer than its limit")


@pytest.fixture(scope="module")
def echoing_server() -> Iterator[ServerThread]:
    """Answers 422 with a body that repeats the query, as many APIs' validation errors do."""
    async def customers(request: Request) -> JSONResponse:
        return JSONResponse({"error": f"no customer with e-mail {request.query_params.get('email')}"}, 422)

    server = ServerThread(Starlette(routes=[Route("/customers", customers)])).start()
    yield server
    server.stop()


def status_error(server: ServerThread) -> httpx.HTTPStatusError:
    response = httpx.get(f"{server.url}/customers", params={"email": EMAIL})
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as error:
        assert MAILBOX in str(error) and EMAIL in error.response.text
        return error
    raise AssertionError("the server answered a success")


def test_a_plugins_default_classify_keeps_the_field_of_a_validation_error_not_its_input() -> None:
    classified = BaseConnector().classify(validation_error())

    assert classified.category is Category.TRANSIENT
    assert classified.message == "ValidationError: email: String should have at most 20 characters"


@pytest.mark.parametrize(("key", "kept"), [("warehouse", "KeyError: 'warehouse'"), (EMAIL, f"KeyError: {WITHHELD}")])
def test_a_key_error_keeps_a_field_name_but_not_a_looked_up_value(key: str, kept: str) -> None:
    assert BaseConnector().classify(KeyError(key)).message == kept
    assert classify_http(KeyError(key), "shop").message == f"shop: {kept}"


def test_an_http_status_error_names_the_request_and_status_not_the_query_or_body(
        echoing_server: ServerThread) -> None:
    error = status_error(echoing_server)

    classified = classify_http(error, "shop")

    assert (classified.category, classified.status) == (Category.DATA, 422)
    assert classified.message == "shop: GET /customers: HTTP 422 Unprocessable Entity"
    assert BaseConnector().classify(error).message == "HTTPStatusError: GET /customers: HTTP 422 Unprocessable Entity"


def test_a_connection_failure_keeps_what_the_network_said() -> None:
    closed = ServerThread(Starlette()).start()
    closed.stop()
    try:
        httpx.get(f"{closed.url}/customers", params={"email": EMAIL})
    except httpx.ConnectError as error:
        classified = classify_http(error, "shop")
    assert classified.category is Category.TARGET_DOWN
    assert classified.message.startswith("shop: cannot connect: ConnectError: ") and WITHHELD not in classified.message


def test_no_built_in_connectors_classify_copies_a_value_into_its_reason(echoing_server: ServerThread) -> None:
    errors = [validation_error(), KeyError(EMAIL), ValueError(f"not an e-mail: {EMAIL}"), status_error(echoing_server)]
    for name, connector in load_plugins().connectors.items():
        for error in errors:
            classified = connector.classify(error)
            assert isinstance(classified, ConnectorError)
            assert MAILBOX not in str(classified), (name, type(error).__name__, str(classified))
