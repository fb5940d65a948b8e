"""The OpenAPI document: valid, and exactly the routes served; then
schemathesis against the running server (responses conform to it)."""

from __future__ import annotations

import asyncio

from ingest.api.openapi import document
from ingest.api.routing import ROUTES

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def documented(doc) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, item in doc["paths"].items()
            for m in item if m in METHODS}


def test_the_document_validates():
    from openapi_spec_validator import validate
    doc = document()
    validate(doc)
    # and by hand: every reference resolves, every operation answers something
    schemas = doc["components"]["schemas"]

    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)
    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for path, item in doc["paths"].items():
        for m, op in item.items():
            if m in METHODS:
                assert op["responses"] and op["summary"], (m, path)


def test_every_route_is_documented_and_every_documented_path_served():
    served = {(r.method, r.path) for r in ROUTES}
    assert len(served) == len(ROUTES)
    assert documented(document()) == served
    # the public ones say so, the others need the bearer scheme
    for r in ROUTES:
        op = document()["paths"][r.path][r.method.lower()]
        assert (op.get("security") == []) == (r.scope is None), r.path


async def test_the_served_document_is_the_routes_of_the_running_app(api):
    status, doc = await api.call("GET", "/api/v1/openapi.json")
    assert status == 200 and doc == document()
    app_routes = {(r.method, r.resource.canonical) for r in api.runner.app.router.routes()
                  if r.method != "HEAD"}
    assert app_routes == documented(doc)
    # every documented operation answers on the live server (not 404/405 for the route)
    for method, path in sorted(documented(doc)):
        status, _ = await api.call(method, path.replace("{id}", "x"))
        assert status != 405 and (status != 404 or "{id}" in path), (method, path, status)


async def test_schemathesis_against_the_running_server(api):
    """Generated requests for every operation; each answer must be a documented
    status with a body matching its schema, and no 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        response_schema_conformance,
        status_code_conformance,
    )
    schema = schemathesis.openapi.from_dict(document())
    base = api.url
    headers = api.auth("admin")
    failures: list = []

    def fuzz(operation):
        @settings(max_examples=15, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            if operation.method.upper() == "DELETE" and operation.path == "/api/v1/tokens/{id}":
                return     # keep the admin token
            response = case.call(base_url=base, headers=headers, timeout=30)
            for chk in (not_a_server_error, status_code_conformance,
                        response_schema_conformance):
                try:
                    case.validate_response(response, checks=(chk,))
                except Exception as exc:
                    failures.append((operation.method, operation.path, str(exc)[:300]))
        check()

    def run():
        for op in schema.get_all_operations():
            fuzz(op.ok())

    from ingest.api.state import COUNTERS
    counters = api.runner.app[COUNTERS]
    before = sum(counters.requests.values())
    await asyncio.to_thread(run)
    assert not failures, failures[:5]
    assert sum(counters.requests.values()) - before >= 5 * len(ROUTES)   # it did ask
