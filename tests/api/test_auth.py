"""The auth matrix over every route: no token, a bad one, a revoked one (401),
the wrong scope or an app-limited token on an all-app resource (403), another
app's token on a session (403); tokens stored hashed."""

from __future__ import annotations

import json

import pytest

from ingest.api.routing import ROUTES
from tests.api.conftest import ADMIN
from tests.corpus import DATA

LOG = DATA / "parallelTest.eventlog"


def concrete(path: str) -> str:
    return path.replace("{id}", "nonexistent")


def lacking(scope: str) -> list[str]:
    """The scopes of a token that does not have ``scope``."""
    return {"read": ["write"], "write": ["read"], "admin": ["read", "write"]}[scope]


async def test_every_route_refuses_missing_bad_and_revoked_tokens(api):
    await api.token("doomed", ["admin"])
    status, listed = await api.call("GET", "/api/v1/tokens")
    doomed = next(t["id"] for t in listed["tokens"] if t["name"] == "doomed")
    assert (await api.call("DELETE", f"/api/v1/tokens/{doomed}"))[0] == 204
    checked = 0
    for route in ROUTES:
        path = concrete(route.path)
        if route.scope is None:
            status, _ = await api.call(route.method, path, who=None)
            assert status in (200, 503), (route.path, status)
            continue
        for headers in ({}, {"Authorization": "Bearer lp_nope_nope"},
                        {"Authorization": f"Basic {ADMIN}"},
                        {"Authorization": f"Bearer {api.tokens['doomed']}"}):
            status, body = await api.call(route.method, path, who=None, headers=headers)
            assert status == 401, (route.method, route.path, headers, status, body)
            checked += 1
    assert checked == 4 * sum(r.scope is not None for r in ROUTES)


async def test_every_route_refuses_the_wrong_scope_and_app_limited_tokens(api):
    for scopes in (["read"], ["write"], ["read", "write"]):
        await api.token("+".join(scopes), scopes)
    await api.token("limited", ["read", "write", "admin"], apps=["someapp"])
    for route in ROUTES:
        path = concrete(route.path)
        if route.scope in (None, "any"):
            continue
        who = "+".join(lacking(route.scope))
        status, body = await api.call(route.method, path, who=who)
        assert status == 403 and route.scope in body["error"], (route.path, who, status)
        status, body = await api.call(route.method, path, who="limited")
        if route.all_apps:
            assert status == 403, (route.path, status)
        else:   # past auth: the resource is looked up (absent, or a bad request)
            assert status not in (401, 403), (route.path, status, body)


@pytest.mark.parametrize("scopes", [["read"], ["write"], ["admin"]])
async def test_any_valid_token_reads_the_openapi_document(api, scopes):
    await api.token("t", scopes)
    status, doc = await api.call("GET", "/api/v1/openapi.json", who="t")
    assert status == 200 and doc["openapi"].startswith("3.")


async def test_app_limited_tokens_see_and_write_only_their_apps(api, influxd, influx_database):
    data = LOG.read_bytes()
    await api.token("alpha", ["read", "write"], apps=["alpha"])
    await api.token("beta", ["read", "write"], apps=["beta"])
    await api.token("both", ["read", "write"], apps=["alpha", "beta"])
    # a one-app token's uploads carry its app; another app is refused
    status, a = await api.call("POST", "/api/v1/upload", who="alpha", data=data)
    assert status == 201 and a["app"] == "alpha"
    status, body = await api.call("POST", "/api/v1/upload", who="alpha", data=data,
                                  params={"app": "beta"})
    assert status == 403
    # a several-app token must say which
    status, body = await api.call("POST", "/api/v1/upload", who="both", data=data)
    assert status == 403 and "app" in body["error"]
    status, b = await api.call("POST", "/api/v1/upload", who="both", data=data,
                               params={"app": "beta", "host": "h2"})
    assert status == 201 and (b["app"], b["host"]) == ("beta", "h2")
    assert a["session"] == b["session"]   # the same run, by pid and wall clock
    # an unrestricted upload takes the program's name
    status, c = await api.call("POST", "/api/v1/upload", data=data)
    assert c["app"] not in ("alpha", "beta")
    # resumable uploads are checked the same way, and stay with their app
    status, up = await api.call("POST", "/api/v1/uploads", who="alpha")
    assert status == 201 and up["app"] == "alpha"
    for verb, suffix in (("GET", ""), ("PUT", "?offset=0"), ("POST", "/finish"), ("DELETE", "")):
        status, _ = await api.call(verb, f"/api/v1/uploads/{up['id']}{suffix}", who="beta",
                                   data=b"")
        assert status == 403, (verb, suffix)
    status, _ = await api.call("POST", "/api/v1/uploads", who="beta", params={"app": "alpha"})
    assert status == 403
    # listing: each sees its own apps only
    def apps(listing):
        return {a for s in listing["sessions"] for a in s["apps"]}
    status, seen = await api.call("GET", "/api/v1/sessions", who="alpha")
    assert apps(seen) == {"alpha"}
    status, seen = await api.call("GET", "/api/v1/sessions", who="both")
    assert apps(seen) == {"alpha", "beta"}
    status, seen = await api.call("GET", "/api/v1/sessions")
    assert apps(seen) == {"alpha", "beta", c["app"]}
    # one run uploaded for two apps: each token sees its own streams of it
    sid = a["session"]
    status, shown = await api.call("GET", f"/api/v1/sessions/{sid}", who="alpha")
    assert status == 200 and shown["apps"] == ["alpha"] and len(shown["streams"]) == 1
    status, shown = await api.call("GET", f"/api/v1/sessions/{sid}", who="beta")
    assert status == 200 and shown["apps"] == ["beta"] and shown["host"] == "h2"
    status, shown = await api.call("GET", f"/api/v1/sessions/{sid}")
    assert shown["apps"] == sorted(["alpha", "beta", c["app"]])
    # a session none of whose streams is of the token's apps: 403
    await api.token("gamma", ["read", "write"], apps=["gamma"])
    assert (await api.call("GET", f"/api/v1/sessions/{sid}", who="gamma"))[0] == 403
    assert (await api.call("DELETE", f"/api/v1/sessions/{sid}", who="gamma"))[0] == 403
    # deleting with beta's token drops beta's points only
    before = influxd.series(f"SELECT count(\"pause_ns\") FROM gc WHERE \"session\" = '{sid}' "
                            f"GROUP BY \"app\"", influx_database)
    assert len(before) == 3
    assert (await api.call("DELETE", f"/api/v1/sessions/{sid}", who="beta"))[0] == 204
    after = influxd.series(f"SELECT count(\"pause_ns\") FROM gc WHERE \"session\" = '{sid}' "
                           f"GROUP BY \"app\"", influx_database)
    assert sorted(s["tags"]["app"] for s in after) == sorted(["alpha", c["app"]])
    # beta's streams are forgotten; what is left of the session is not beta's
    status, shown = await api.call("GET", f"/api/v1/sessions/{sid}", who="beta")
    assert status == 403
    status, shown = await api.call("GET", f"/api/v1/sessions/{sid}")
    assert shown["apps"] == sorted(["alpha", c["app"]])
    # the all-app resources stay closed to limited tokens
    for path in ("/metrics", "/api/v1/connections"):
        assert (await api.call("GET", path, who="both"))[0] == 403


async def test_tokens_are_stored_hashed_and_listed_without_secrets(api, tmp_path):
    text = await api.token("reader", ["read"], apps=["x"])
    store = tmp_path / "state" / "api" / "tokens.json"
    raw = store.read_text()
    secret = text.split("_", 2)[2]
    assert secret not in raw and ADMIN not in raw
    entries = json.loads(raw)["tokens"]
    assert len(entries) == 2 and all(len(e["digest"]) == 64 and e["salt"] for e in entries)
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    status, listed = await api.call("GET", "/api/v1/tokens")
    assert status == 200
    dumped = json.dumps(listed)
    assert secret not in dumped and ADMIN not in dumped and "digest" not in dumped
    mine = next(t for t in listed["tokens"] if t["name"] == "reader")
    assert mine["scopes"] == ["read"] and mine["apps"] == ["x"]
    # the new token works, and stops working once revoked
    assert (await api.call("GET", "/api/v1/sessions", who="reader"))[0] == 200
    assert (await api.call("DELETE", f"/api/v1/tokens/{mine['id']}"))[0] == 204
    assert (await api.call("GET", "/api/v1/sessions", who="reader"))[0] == 401
    assert (await api.call("DELETE", f"/api/v1/tokens/{mine['id']}"))[0] == 404


@pytest.mark.parametrize("body", [{"name": "x", "scopes": []}, {"name": "x", "scopes": ["root"]},
                                  {"name": "", "scopes": ["read"]},
                                  {"name": "x", "scopes": ["read"], "apps": []}, [1, 2]])
async def test_bad_token_requests_are_refused(api, body):
    status, _ = await api.call("POST", "/api/v1/tokens", json=body)
    assert status in (400, 422)
