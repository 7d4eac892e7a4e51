"""``crossledger.testing.specs`` on a small spec made for the purpose: finding operations and
response schemas, validating with ``$ref`` and OpenAPI 3.0.0's ``nullable``, accepted departures,
errata, loading, and recording and checking what a served app answers."""

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from crossledger.plugins.emulator import ServerThread
from crossledger.testing.specs.answers import Exchange, Recorder
from crossledger.testing.specs.openapi import OpenAPISpec
from crossledger.testing.specs.problems import Problem
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route


def _json(ref: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


SPEC: dict[str, Any] = {
    "openapi": "3.0.0",
    "paths": {
        "/v1/things/{thing}": {"get": {"responses": {"200": _json("thing"), "default": _json("error")}}},
        "/v1/things/search": {"get": {"responses": {"200": _json("thing")}}},
        "/v1/things": {"post": {"responses": {"4XX": _json("error"), "204": {"description": "no body"}}}},
        "/v1/things/{thing}/owner": {"get": {"responses": {"200": {"$ref": "#/components/responses/owner"}}}},
    },
    "components": {"schemas": {
        "thing": {
            "type": "object",
            "required": ["id", "object", "owner", "size"],
            "properties": {
                "id": {"type": "string"},
                "object": {"type": "string", "enum": ["thing"]},
                "owner": {"anyOf": [{"type": "string"}, {"$ref": "#/components/schemas/owner"}], "nullable": True},
                "size": {"type": "string", "enum": ["s", "m"], "nullable": True},
                "label": {"type": "string"},
                "count": {"type": "integer", "format": "int32"},
                "secret": {"type": "string", "writeOnly": True},
            },
        },
        "owner": {"type": "object", "required": ["id", "name"],
                  "properties": {"id": {"type": "string"}, "name": {"type": "string"}}},
        "error": {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
    }, "responses": {
        "owner": {"description": "an owner", **_json("owner")},
    }},
}


@pytest.fixture(scope="module")
def spec() -> OpenAPISpec:
    return OpenAPISpec(SPEC)


def thing(**fields: Any) -> dict[str, Any]:
    return {"id": "t_1", "object": "thing", "owner": None, "size": None, **fields}


def test_operations_are_found_literal_segments_first(spec: OpenAPISpec) -> None:
    assert spec.operation("GET", "/v1/things/search") == "/v1/things/search"
    assert spec.operation("get", "/v1/things/t_1") == "/v1/things/{thing}"
    assert spec.operation("POST", "/v1/things/t_1") is None  # no such method there
    assert spec.operation("GET", "/v1/things/t_1/more") is None


def test_response_schemas_by_status_then_range_then_default(spec: OpenAPISpec) -> None:
    pointer = spec.response_pointer("GET", "/v1/things/t_1", 200)
    assert pointer == "/paths/~1v1~1things~1{thing}/get/responses/200/content/application~1json/schema"
    assert "/responses/default/" in spec.response_pointer("GET", "/v1/things/t_1", 404)
    assert "/responses/4XX/" in spec.response_pointer("POST", "/v1/things", 422)
    assert spec.response_pointer("GET", "/v1/things/t_1/owner", 200) == \
        "/components/responses/owner/content/application~1json/schema"  # a response by $ref
    assert spec.check("GET", "/v1/things/t_1/owner", 200, {"id": "o_1", "name": "Olga"}) == []
    with pytest.raises(KeyError, match="no application/json schema"):
        spec.response_pointer("POST", "/v1/things", 204)
    with pytest.raises(KeyError, match="no response for status 500"):
        spec.response_pointer("POST", "/v1/things", 500)
    with pytest.raises(KeyError, match="no operation"):
        spec.check("GET", "/v2/nothing", 200, {})


def test_conforming_documents_pass_nullable_in_the_3_0_0_sense(spec: OpenAPISpec) -> None:
    """``nullable`` lets null through an ``anyOf`` and an ``enum``, which the 3.0.3 reading would not."""
    assert spec.check("GET", "/v1/things/t_1", 200, thing()) == []
    assert spec.check("GET", "/v1/things/t_1", 200, thing(owner="o_1", size="m", label="x")) == []
    assert spec.check("GET", "/v1/things/t_1", 200, thing(owner={"id": "o_1", "name": "Olga"})) == []
    assert spec.check_component("error", {"message": "no"}) == []


def test_departures_are_named_where_they_are(spec: OpenAPISpec) -> None:
    bad = {"id": "t_1", "object": "thing", "size": "xl", "label": None}
    problems = spec.check("GET", "/v1/things/t_1", 200, bad)
    assert {(p.location, p.keyword, p.name) for p in problems} == {
        ((), "required", "owner"), (("size",), "enum", "size"), (("label",), "type", "label")}
    assert str(Problem(("label",), "type", "None for not nullable")) == "label: None for not nullable [type]"
    answered = spec.check("GET", "/v1/things/t_1", 200, thing(count=2**40, secret="s"))  # read as a response
    assert {(p.location, p.keyword) for p in answered} == {(("count",), "format"), (("secret",), "writeOnly")}
    error = spec.check("GET", "/v1/things/t_1", 404, {"message": None})
    assert [(p.location, p.keyword) for p in error] == [(("message",), "type")]  # two messages, one problem


def test_an_expanded_object_is_judged_as_the_object(spec: OpenAPISpec) -> None:
    problems = spec.check("GET", "/v1/things/t_1", 200, thing(owner={"id": "o_1"}))
    assert [(p.location, p.keyword, p.name) for p in problems] == [(("owner",), "required", "name")]


def test_accepted_departures_are_dropped_even_inside_any_of(spec: OpenAPISpec) -> None:
    def nameless_owners(document: Any, problem: Problem) -> bool:
        return bool(problem.keyword == "required" and problem.name == "name")

    assert spec.check("GET", "/v1/things/t_1", 200, thing(owner={"id": "o_1"}), nameless_owners) == []
    left = spec.check("GET", "/v1/things/t_1", 200, thing(owner={"id": 7}), nameless_owners)
    assert [(p.location, p.keyword) for p in left] == [(("owner", "id"), "type")]


def test_specs_load_from_json_gzipped_json_or_yaml_and_must_be_3_0(tmp_path: Path) -> None:
    plain, packed, written = tmp_path / "spec.json", tmp_path / "spec.json.gz", tmp_path / "spec.yaml"
    plain.write_text(json.dumps(SPEC))
    packed.write_bytes(gzip.compress(json.dumps(SPEC).encode()))
    # YAML 1.2, as Zendesk writes it: an unquoted "=" is a plain string (YAML 1.1's obsolete value tag)
    written.write_text(yaml.safe_dump(SPEC) + "x-operators: [=, '!=']\n")
    for path in (plain, packed, written):
        assert OpenAPISpec.load(path).operation("GET", "/v1/things/search") == "/v1/things/search"
    assert OpenAPISpec.load(written).document["x-operators"] == ["=", "!="]
    with pytest.raises(ValueError, match=r"not an OpenAPI 3\.0 description"):
        OpenAPISpec({"swagger": "2.0", "paths": {}})
    with pytest.raises(ValueError, match=r"spec\.txt: not a description this reads"):
        OpenAPISpec.load(tmp_path / "spec.txt")


def test_errata_replace_what_a_description_gets_wrong() -> None:
    label = "#/components/schemas/thing/properties/label"
    corrected = OpenAPISpec(SPEC, errata={label: {"type": "string", "nullable": True}})
    assert corrected.check("GET", "/v1/things/t_1", 200, thing(label=None)) == []
    assert OpenAPISpec(SPEC).check("GET", "/v1/things/t_1", 200, thing(label=None))  # the description is kept
    with pytest.raises(KeyError, match="where the description has nothing"):
        OpenAPISpec(SPEC, errata={"#/components/schemas/thing/properties/lable": {}})


def test_the_recorder_keeps_every_exchange_of_the_app_it_wraps() -> None:
    async def echo(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["thing"]}, status_code=201)

    recorder = Recorder(Starlette(routes=[Route("/v1/things/{thing}", echo, methods=["POST"])]))
    server = ServerThread(recorder).start()
    try:
        httpx.post(f"{server.url}/v1/things/t_9?expand[]=owner")
        httpx.get(f"{server.url}/v1/nothing")
    finally:
        server.stop()
    [made, missing] = recorder.exchanges
    assert (made.method, made.path, made.query, made.status, made.json()) == \
        ("POST", "/v1/things/t_9", "expand[]=owner", 201, {"id": "t_9"})
    assert (missing.method, missing.path, missing.status, missing.is_json) == ("GET", "/v1/nothing", 404, False)
    assert recorder.departures == []  # nothing to check against


def test_every_exchange_is_checked_as_it_is_answered_under_a_mount(spec: OpenAPISpec) -> None:
    async def thing_of(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["thing"], "size": "xl"})

    def check(exchange: Exchange) -> list[str]:
        if exchange.path == "/v1/nothing":
            raise KeyError("no operation")
        found = spec.check(exchange.method, exchange.path, exchange.status, exchange.json())
        return [f"{exchange}: {problem}" for problem in found]

    recorder = Recorder(Starlette(routes=[Route("/v1/things/{thing}", thing_of)]), check)
    server = ServerThread(Starlette(routes=[Mount("/stripe", app=recorder)])).start()
    try:
        httpx.get(f"{server.url}/stripe/v1/things/t_1")
        httpx.get(f"{server.url}/stripe/v1/nothing")
    finally:
        server.stop()
    assert recorder.take_departures() == [
        "GET /v1/things/t_1 200: (root): 'object' is a required property [required]",
        "GET /v1/things/t_1 200: (root): 'owner' is a required property [required]",
        "GET /v1/things/t_1 200: size: 'xl' is not one of ['s', 'm'] [enum]",
        "GET /v1/nothing 404: the check itself failed: KeyError('no operation')",
    ]
    assert recorder.departures == []  # taken
