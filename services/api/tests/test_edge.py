"""What an outsider found at the API's edge (issue #23), each as a test: text PostgreSQL
cannot store, a request model as strict as the contract it publishes, ranges on every
number, ``data_path`` for admins only, an access token presented as a refresh token, and
conditional GETs of artifacts."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from alphasaga_shared.eventstore import ArtifactStore
from alphasaga_shared.wire import decode
from tests.support import edges
from tests.support.edges import JSON, wire_accepts

from .conftest import PASSWORD, Api


def problem_fields(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


@pytest.mark.parametrize(
    ("method", "url", "who", "body", "field"),
    [
        ("POST", "/v1/auth/login", "anonymous", '{"username": "a\\u0000b", "password": "x"}', "body.username"),
        ("POST", "/v1/auth/login", "anonymous", '{"username": "\\ud800", "password": "x"}', "body.username"),
        ("POST", "/v1/auth/login", "anonymous", '{"username": "ada", "password": "p\\u0000"}', "body.password"),
        ("GET", "/v1/sagas?dataset=a%00b", "viewer", None, "query.dataset"),
        ("GET", "/v1/sagas?workflow=a%00b", "viewer", None, "query.workflow"),
        ("PATCH", "/v1/users/a%00b", "admin", '{"status": "active"}', "path.username"),
        ("POST", "/v1/users", "admin", '{"username": "n\\u0000", "password": "x", "role": "viewer"}', "body.username"),
        ("POST", "/v1/keys", "admin", '{"name": "k\\u0000", "role": "viewer"}', "body.name"),
        ("POST", "/v1/research", "admin", '{"data_path": "a\\u0000.csv"}', "body.data_path"),
        ("POST", "/v1/research?workflow=research", "admin", '{"dataset": "sp500", "x\\u0000": 1}', "body.x\ufffd"),
    ],
)
async def test_text_postgresql_cannot_store_is_422_naming_the_field(
    api: Api, method: str, url: str, who: str, body: str | None, field: str
) -> None:
    r = await api.http.request(method, url, headers={**api.auth(who), **JSON}, content=body)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"] == "application/problem+json"
    assert field in problem_fields(problem), problem
    assert "\x00" not in r.text and "\\u0000" not in r.text  # the input is not echoed


def edge_cases() -> list[tuple[str, Any]]:
    return [(path, value) for path, schema in edges.leaf_fields().items() for value in edges.edges(schema)]


async def test_the_api_is_exactly_as_strict_as_the_contract_for_every_fields_edges(api: Api) -> None:
    """Every edge value of every field, sent to the API and checked against the contract as
    the orchestrator reads it: the API refuses exactly what the contract refuses, and what
    it accepts is recorded for the orchestrator's stream as a message it takes."""
    disagreements = []
    cases = edge_cases()
    assert len(cases) > 150
    for path, value in cases:
        request = edges.nest({"dataset": "sp500", path: value} if path != "dataset" else {path: value})
        text = edges.as_json(request)
        r = await api.http.post("/v1/research", content=text, headers={**api.auth("admin"), **JSON})
        assert r.status_code in (202, 422), (path, value, r.status_code, r.text)
        if (r.status_code == 202) != wire_accepts(text):
            disagreements.append((path, value, r.status_code))
        if r.status_code == 202:
            decode(await api.sent(r.json()["saga_id"]))  # what the API sent is what the orchestrator takes
    assert disagreements == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trials": 10**40}, "body.trials"),
        ({"trials": 10**7}, "body.trials"),
        ({"trial_sharpe_std": 1e308}, "body.trial_sharpe_std"),
        ({"seed": 2**63}, "body.seed"),
        ({"seed": -1}, "body.seed"),
        ({"start": "0001-01-01"}, "body.start"),
        ({"end": "9999-12-31"}, "body.end"),
        ({"constraints": {"min_sharpe": 1e6}}, "body.constraints.min_sharpe"),
        ({"constraints": {"min_sharpe": float("inf")}}, "body.constraints.min_sharpe"),
        ({"constraints": {"min_sharpe": float("-inf")}}, "body.constraints.min_sharpe"),
        ({"commission_bps": float("nan")}, "body.commission_bps"),
    ],
)
async def test_absurd_numbers_are_422_at_the_edge(api: Api, change: dict[str, Any], field: str) -> None:
    text = edges.as_json({"dataset": "sp500", **change})
    r = await api.http.post("/v1/research", content=text, headers={**api.auth("researcher"), **JSON})
    assert r.status_code == 422, r.text
    assert field in problem_fields(r.json()), r.json()


async def test_data_path_is_for_admins_and_its_refusal_names_no_server_path(api: Api) -> None:
    body = {"data_path": "prices.csv"}
    r = await api.http.post("/v1/research", json=body, headers=api.auth("researcher"))
    assert r.status_code == 403, r.text
    detail = r.json()["detail"]
    assert "data_path" in detail and "ALPHASAGA_" not in detail
    assert str(api.runtime.client.settings.data_dir) not in r.text and "/" not in detail
    r = await api.http.post("/v1/research", json=body, headers=api.auth("admin"))
    assert r.status_code == 202, r.text


async def test_an_access_token_presented_as_a_refresh_token_is_401(api: Api) -> None:
    tokens = (await api.http.post("/v1/auth/login", json={"username": "ada", "password": PASSWORD})).json()
    for token in (tokens["access_token"], "x" * 3000, "not-a-token"):
        r = await api.http.post("/v1/auth/refresh", json={"refresh_token": token})
        assert r.status_code == 401, r.text
        assert r.json()["type"].endswith("/unauthorized")


async def test_if_none_match_on_an_artifact_is_304(api: Api) -> None:
    store = await api.runtime.client.event_store()
    ref = await ArtifactStore(store.pool).put(uuid.uuid4(), "backtest", "report.json", "report", b"{}", "text/plain")
    url, etag = f"/v1/artifacts/{ref.sha256}", f'"{ref.sha256}"'
    first = await api.http.get(url, headers=api.auth("viewer"))
    assert first.status_code == 200 and first.headers["etag"] == etag
    for match in (etag, f'"other", {etag}', "*", f"W/{etag}"):
        again = await api.http.get(url, headers={**api.auth("viewer"), "If-None-Match": match})
        assert again.status_code == 304, (match, again.status_code)
        assert again.content == b"" and again.headers["etag"] == etag
    changed = await api.http.get(url, headers={**api.auth("viewer"), "If-None-Match": '"other"'})
    assert changed.status_code == 200 and changed.content == b"{}"
    # Conditions never lift the role: no credentials, no 304.
    assert (await api.http.get(url, headers={"If-None-Match": etag})).status_code == 401


def test_the_edge_cases_come_from_the_schema() -> None:
    """The fields the tests walk are the contract's, bounds included."""
    fields = edges.leaf_fields()
    assert {"trials", "seed", "start", "end", "constraints.min_sharpe", "out_of_sample_fraction"} <= fields.keys()
    assert 2**63 in edges.edges(fields["seed"]) and float("inf") in edges.edges(fields["commission_bps"])
    assert json.loads(edges.as_json({"x": float("inf")}), parse_constant=str) == {"x": "Infinity"}
