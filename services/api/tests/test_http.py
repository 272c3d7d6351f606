"""The HTTP layer over real Redis and PostgreSQL: every route against every role, problem
details, bad input of every kind, logins and their lockout, rate limits, the production
default, and the committed OpenAPI document."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from alphasaga_api import openapi
from alphasaga_api.app import create_app
from alphasaga_api.settings import ApiSettings
from alphasaga_shared.config import ConfigError, Settings

from .conftest import PASSWORD, Api

ROLES = ("anonymous", "viewer", "researcher", "admin")
RANK = {"public": -1, "viewer": 1, "researcher": 2, "admin": 3}
SAGA = str(uuid.uuid4())
SHA = "ab" * 32
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/research"): {"dataset": "sp500"},
    ("POST", "/v1/campaigns"): {"datasets": ["sp500"], "families": ["trend_following"], "budget": 1},
    ("POST", "/v1/sagas/{saga_id}/fork"): {"from_step": "ml", "set": {"model_kind": "linear"}},
    ("POST", "/v1/users"): {"username": "new-user", "password": PASSWORD, "role": "viewer"},
    ("PATCH", "/v1/users/{username}"): {"status": "active"},
    ("POST", "/v1/keys"): {"name": "k", "role": "viewer"},
    ("POST", "/v1/auth/login"): {"username": "nobody", "password": "x"},
    ("POST", "/v1/auth/refresh"): {"refresh_token": "x"},
}
PATH_VALUES = {"saga_id": SAGA, "sha256": SHA, "entry_id": "1-0", "username": "ada", "key_id": str(uuid.uuid4())}


def routes() -> list[tuple[str, str, str]]:
    doc = openapi.document()
    return [(m.upper(), p, op["x-role"]) for p, ops in doc["paths"].items() for m, op in ops.items()]


def test_the_committed_openapi_document_matches_the_code() -> None:
    assert openapi.COMMITTED.read_text() == openapi.render(), "run: python -m alphasaga_api.openapi"


def test_every_operation_states_a_known_role() -> None:
    found = routes()
    assert len(found) >= 25
    assert all(r in RANK for _, _, r in found), found


async def test_every_route_against_every_role(api: Api) -> None:
    """401 without credentials, 403 below the route's role, neither at or above it."""
    checked = 0
    for method, path, needed in routes():
        if path == "/v1/sagas/{saga_id}/stream":
            continue  # a 404 for an unknown saga arrives before any stream: checked in test_api_stack
        url = path.format(**PATH_VALUES)
        for who in ROLES:
            rank = 0 if who == "anonymous" else RANK[who]
            response = await api.http.request(method, url, headers=api.auth(who), json=BODIES.get((method, path)))
            if needed == "public":  # login and refresh may well say 401 to these credentials
                assert response.status_code != 403, (method, path, who, response.text)
            elif who == "anonymous":
                assert response.status_code == 401, (method, path, who, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
            elif rank < RANK[needed]:
                assert response.status_code == 403, (method, path, who, response.text)
            else:
                assert response.status_code not in (401, 403), (method, path, who, response.text)
            checked += 1
    assert checked >= 100


async def test_errors_are_problem_details(api: Api) -> None:
    r = await api.http.get(f"/v1/sagas/{SAGA}", headers=api.auth("viewer"))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == 404 and body["type"].endswith("/not-found") and SAGA in body["detail"]
    assert body["instance"] == f"/v1/sagas/{SAGA}"


async def test_a_bad_token_is_401_and_says_nothing_of_why(api: Api) -> None:
    for token in ("garbage", "ask_000000000000_nope", "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0."):
        r = await api.http.get("/v1/sagas", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
        assert "Traceback" not in r.text


async def test_malformed_json_is_400(api: Api) -> None:
    r = await api.http.post(
        "/v1/research",
        content=b'{"dataset": "sp500",',
        headers={**api.auth("researcher"), "content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["type"].endswith("/malformed-json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"dataset": "sp500", "colour": "blue"}, "body.colour"),
        ({"dataset": "sp500", "start": "2015-01-01", "end": "2010-01-01"}, "body"),
        ({"dataset": "sp500", "commission_bps": -5}, "body.commission_bps"),
        ({"dataset": "sp500", "slippage_bps": 1e12}, "body.slippage_bps"),
        ({"dataset": "sp500", "trials": 0}, "body.trials"),
        ({"dataset": "no-such-data"}, "body"),
        ({"dataset": "sp500", "constraints": {"max_drawdown": 7}}, "body.constraints.max_drawdown"),
        ([1, 2, 3], "body"),
    ],
)
async def test_absurd_requests_are_422_naming_the_field(api: Api, body: Any, field: str) -> None:
    r = await api.http.post("/v1/research", json=body, headers=api.auth("researcher"))
    assert r.status_code == 422, r.text
    problem = r.json()
    assert any(e["field"] == field for e in problem["errors"]), problem
    assert all(set(e) == {"field", "message"} for e in problem["errors"])  # never the input itself


async def test_a_campaign_is_one_call_and_its_trial_count_is_never_the_callers(api: Api) -> None:
    """A campaign's children are told the trials the campaign measured: a body that gives
    ``trials`` or ``trial_sharpe_std`` is refused, not passed on."""
    spec = {"datasets": ["sp500", "nasdaq"], "families": ["trend_following"], "budget": 2}
    for extra in ({"trials": 50}, {"trial_sharpe_std": 0.1}):
        r = await api.http.post("/v1/campaigns", json={**spec, **extra}, headers=api.auth("researcher"))
        assert r.status_code == 422, r.text
        assert next(iter(extra)) in r.text
    r = await api.http.post("/v1/campaigns", json=spec, headers=api.auth("researcher"))
    assert r.status_code == 202, r.text
    campaign = r.json()["saga_id"]
    listed = await api.http.get(f"/v1/sagas/{campaign}", headers=api.auth("viewer"))
    saga = listed.json()["saga"]
    assert listed.status_code == 200 and saga["state"] == "PENDING"  # its start waits for an orchestrator
    assert saga["workflow"] == "campaign"


async def test_a_ten_megabyte_body_is_413(api: Api) -> None:
    big = b'{"dataset": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    r = await api.http.post(
        "/v1/research", content=big, headers={**api.auth("researcher"), "content-type": "application/json"}
    )
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"

    async def chunks() -> Any:  # no Content-Length: counted as it arrives
        for _ in range(160):
            yield b"x" * 65536

    r = await api.http.post("/v1/research", content=chunks(), headers=api.auth("researcher"))
    assert r.status_code == 413


INJECTIONS = ["' OR '1'='1", "x'; DROP TABLE events; --", "1) OR (1=1", '"; SELECT pg_sleep(5); --']


async def test_sql_injection_in_every_filter_finds_nothing_and_breaks_nothing(api: Api) -> None:
    await api.http.post("/v1/research", json={"dataset": "sp500"}, headers=api.auth("researcher"))
    for text in INJECTIONS:
        for name in ("state", "workflow", "version", "dataset", "verdict", "min_sharpe", "max_sharpe",
                     "created_after", "created_before", "sort", "limit", "cursor"):  # fmt: skip
            r = await api.http.get("/v1/sagas", params={name: text}, headers=api.auth("viewer"))
            if name in ("workflow", "dataset"):
                assert r.status_code == 200 and r.json()["items"] == [], (name, r.text)
            else:
                assert r.status_code == 422, (name, r.text)  # typed: refused before any query
    store = await api.runtime.client.event_store()  # the tables are all still there
    assert await store.pool.fetchval("SELECT count(*) FROM events") >= 0


async def test_path_traversal_in_the_artifact_id_is_refused(api: Api) -> None:
    for bad in ("..%2F..%2Fetc%2Fpasswd", "../../etc/passwd", "%2e%2e%2f" * 3 + "passwd", "A" * 64, SHA + "/../x"):
        r = await api.http.get(f"/v1/artifacts/{bad}", headers=api.auth("viewer"))
        assert r.status_code in (404, 422), (bad, r.status_code)
        assert "root:" not in r.text
    r = await api.http.get(f"/v1/artifacts/{SHA}", headers=api.auth("viewer"))
    assert r.status_code == 404 and r.json()["type"].endswith("/not-found")


async def test_an_idempotency_key_names_one_saga(api: Api) -> None:
    headers = {**api.auth("researcher"), "Idempotency-Key": "run-42"}
    first = await api.http.post("/v1/research", json={"dataset": "sp500"}, headers=headers)
    again = await api.http.post("/v1/research", json={"dataset": "sp500"}, headers=headers)
    other = await api.http.post("/v1/research", json={"dataset": "sp500"}, headers=api.auth("researcher"))
    assert first.status_code == again.status_code == 202
    assert first.json()["saga_id"] == again.json()["saga_id"] != other.json()["saga_id"]
    # Another caller's identical key is another saga.
    admin = await api.http.post("/v1/research", json={"dataset": "sp500"}, headers={**api.auth("admin"),
                                "Idempotency-Key": "run-42"})  # fmt: skip
    assert admin.json()["saga_id"] != first.json()["saga_id"]


async def test_login_refresh_reuse_and_logout(api: Api) -> None:
    r = await api.http.post("/v1/auth/login", json={"username": "ada", "password": PASSWORD})
    assert r.status_code == 200, r.text
    tokens = r.json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await api.http.get("/v1/sagas", headers=bearer)).status_code == 200
    assert (await api.http.get("/v1/users", headers=bearer)).status_code == 403  # a researcher
    r = await api.http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    r = await api.http.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    # The reuse ended the session: its access tokens too, not only the refresh tokens.
    assert (await api.http.get("/v1/sagas", headers=bearer)).status_code == 401
    assert (
        await api.http.post("/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    ).status_code == 401

    fresh = (await api.http.post("/v1/auth/login", json={"username": "ada", "password": PASSWORD})).json()
    bearer = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert (await api.http.post("/v1/auth/logout", headers=bearer)).status_code == 204
    assert (await api.http.get("/v1/sagas", headers=bearer)).status_code == 401
    actions = {(r.action, r.outcome) for r in await api.runtime.accounts.audit.recent(100)}
    assert {("login", "ok"), ("session.revoke", "refresh token reused"), ("logout", "ok")} <= actions


async def test_lockout_after_five_failures_and_unlock_after_the_window(api: Api) -> None:
    wrong = {"username": "ada", "password": "not the password"}
    for _ in range(5):
        assert (await api.http.post("/v1/auth/login", json=wrong)).status_code == 401
        api.clock.advance(minutes=1)
    r = await api.http.post("/v1/auth/login", json={"username": "ada", "password": PASSWORD})
    assert r.status_code == 423 and 25 * 60 < int(r.headers["retry-after"]) <= 30 * 60
    api.clock.advance(minutes=30)
    r = await api.http.post("/v1/auth/login", json={"username": "ada", "password": PASSWORD})
    assert r.status_code == 200, r.text


async def test_a_password_never_reaches_a_response_or_the_audit_log(api: Api) -> None:
    secret = "hunter2-very-secret-password"
    r = await api.http.post("/v1/auth/login", json={"username": "ada", "password": secret, "extra": 1})
    assert r.status_code == 422 and secret not in r.text
    r = await api.http.post("/v1/auth/login", json={"username": "ada", "password": secret})
    assert r.status_code == 401 and secret not in r.text
    records = await api.runtime.accounts.audit.recent(100)
    assert secret not in json.dumps([x.as_json() for x in records])


async def test_mutating_calls_are_audited_and_the_chain_verifies(api: Api) -> None:
    r = await api.http.post("/v1/research", json={"dataset": "sp500"}, headers=api.auth("researcher"))
    assert r.status_code == 202
    assert (await api.http.post("/v1/research", json={"dataset": "sp500"})).status_code == 401
    records = await api.runtime.accounts.audit.recent(20, action="POST /v1/research")
    # The call without credentials did nothing and is not recorded.
    assert [(r.outcome, r.actor.split(":")[0]) for r in records] == [("202", "key")]
    assert (await api.runtime.accounts.verify_audit()).ok


async def test_logins_from_one_address_are_rate_limited(api: Api) -> None:
    api.runtime.api.login_per_minute = 3
    codes = [
        (await api.http.post("/v1/auth/login", json={"username": "x", "password": "y"})).status_code for _ in range(5)
    ]
    assert codes[:3] == [401] * 3 and codes[3:] == [429] * 2
    r = await api.http.post("/v1/auth/login", json={"username": "x", "password": "y"})
    assert 1 <= int(r.headers["retry-after"]) <= 61 and r.json()["type"].endswith("/rate-limited")


async def test_submits_are_rate_limited_per_caller(api: Api) -> None:
    api.runtime.api.submit_per_minute = 2
    codes = [
        (await api.http.post("/v1/research", json={"dataset": "sp500"}, headers=api.auth("researcher"))).status_code
        for _ in range(3)
    ]
    assert codes == [202, 202, 429]
    # Another caller has its own allowance.
    r = await api.http.post("/v1/research", json={"dataset": "sp500"}, headers=api.auth("admin"))
    assert r.status_code == 202


def test_production_refuses_to_start_without_a_signing_key(settings: Settings) -> None:
    production = settings.model_copy(update={"env": "production"})
    with pytest.raises(ConfigError, match="ALPHASAGA_API_SIGNING_KEY"):
        create_app(production, ApiSettings(signing_key=None))
    with pytest.raises(ConfigError, match="at least"):
        create_app(production, ApiSettings(signing_key="short and public"))  # type: ignore[arg-type]


async def test_production_answers_only_health_without_credentials(settings: Settings) -> None:
    production = settings.model_copy(update={"env": "production"})
    app = create_app(production, ApiSettings(signing_key="s" * 40), with_mcp=False)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        for method, path, needed in routes():
            r = await http.request(method, path.format(**PATH_VALUES), json=BODIES.get((method, path)))
            if path.startswith("/health/"):
                assert r.status_code in (200, 503), path
            elif needed == "public":  # login and refresh: credentials of their own
                assert r.status_code in (401, 422), (path, r.text)
            else:
                assert r.status_code == 401, (method, path, r.status_code)


async def test_dead_letters_listed_read_redriven_and_deleted(api: Api, redis: Any, settings: Settings) -> None:
    """As the bus leaves them (a source stream's ``:dlq`` with the original fields and the
    error); the api finds, redrives and deletes them through the client API."""
    source = settings.streams.commands("ml")
    fields = {
        "type": "ml.TrainModel",
        "message_id": "m-1",
        "body": "{}",
        "dlq_error": "boom",
        "dlq_delivery_count": "5",
        "dlq_source_stream": source,
    }
    first = (await redis.xadd(f"{source}:dlq", fields)).decode()
    second = (await redis.xadd(f"{source}:dlq", {**fields, "message_id": "m-2"})).decode()
    admin = api.auth("admin")
    listed = (await api.http.get("/v1/dead-letters", headers=admin)).json()
    assert [d["entry_id"] for d in listed] == [first, second] and listed[0]["error"] == "boom"
    one = await api.http.get(f"/v1/dead-letters/{first}", headers=admin)
    assert one.status_code == 200 and one.json()["message_id"] == "m-1"
    redriven = await api.http.post(f"/v1/dead-letters/{first}/redrive", headers=admin)
    assert redriven.status_code == 200 and redriven.json()["source_stream"] == source
    back = await redis.xrange(source)
    assert [e[1][b"message_id"] for e in back] == [b"m-1"] and b"dlq_error" not in back[0][1]
    assert (await api.http.delete(f"/v1/dead-letters/{second}", headers=admin)).status_code == 204
    assert (await api.http.get("/v1/dead-letters", headers=admin)).json() == []
    assert (await api.http.get(f"/v1/dead-letters/{second}", headers=admin)).status_code == 404


async def test_a_fork_of_no_saga_is_not_found_and_a_bad_change_is_refused(api: Api) -> None:
    missing = await api.http.post(f"/v1/sagas/{SAGA}/fork", json={"from_step": "ml"}, headers=api.auth("researcher"))
    assert missing.status_code == 404, missing.text
    bad = await api.http.post(
        f"/v1/sagas/{SAGA}/fork", json={"from_step": "ml", "set": {"Not A Path": 1}}, headers=api.auth("researcher")
    )
    assert bad.status_code == 422 and "set" in bad.text, bad.text
