"""The explorer in this process (its pages over the api's app, no browser): signing in and
its cookie, the boundary between the cookie and the HTTP API, actions that need the
explorer's header, the list's filter in the URL and the new read-model filters. The
browser tests (tests/test_explorer_browser.py) drive it in Chromium over a real stack."""

from __future__ import annotations

import uuid

import jwt

from alphasaga_api.explorer import session
from alphasaga_contracts.research import ResearchRequest

from .conftest import PASSWORD, Api


async def _sign_in(api: Api, **form: str) -> None:
    r = await api.http.post("/explorer/login", data={**form, "next": "/explorer/"})
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/explorer/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/explorer" in cookie


async def test_pages_send_a_stranger_to_sign_in_and_actions_answer_401(api: Api) -> None:
    r = await api.http.get("/explorer/sagas/1234abcd?version=3")
    assert r.status_code == 303
    assert r.headers["location"] == "/explorer/login?next=%2Fexplorer%2Fsagas%2F1234abcd%3Fversion%3D3"
    r = await api.http.post("/explorer/sagas/1234abcd/cancel", headers={session.ACTION_HEADER: "1"})
    assert r.status_code == 401


async def test_the_campaign_pages_send_a_stranger_to_sign_in_and_name_a_missing_campaign(api: Api) -> None:
    campaign = uuid.uuid4()
    r = await api.http.get(f"/explorer/campaigns/{campaign}")
    assert r.status_code == 303
    assert r.headers["location"] == f"/explorer/login?next=%2Fexplorer%2Fcampaigns%2F{campaign}"
    await _sign_in(api, api_key=api.keys["viewer"])
    r = await api.http.get("/explorer/campaigns")
    assert r.status_code == 200 and "No campaign yet." in r.text
    r = await api.http.get(f"/explorer/campaigns/{campaign}")
    assert r.status_code == 404, r.text


async def test_a_wrong_password_is_refused_on_the_page(api: Api) -> None:
    r = await api.http.post("/explorer/login", data={"username": "ada", "password": "wrong"})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert "Sign in" in r.text


async def test_sign_in_never_sends_the_browser_elsewhere(api: Api) -> None:
    for target in ("https://evil.example/", "//evil.example/explorer/", "/explorer/\\\\evil", "/v1/users"):
        r = await api.http.post("/explorer/login", data={"username": "ada", "password": PASSWORD, "next": target})
        assert r.headers["location"] == "/explorer/", target


async def test_the_explorer_token_is_not_a_bearer_token_of_the_api(api: Api) -> None:
    await _sign_in(api, username="ada", password=PASSWORD)
    token = api.http.cookies[session.COOKIE]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == session.AUDIENCE
    r = await api.http.get("/v1/sagas", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, "its audience is the explorer's"
    r = await api.http.get("/explorer/")
    assert r.status_code == 200 and "user:ada" in r.text


async def test_logout_ends_the_session_at_once(api: Api) -> None:
    await _sign_in(api, username="ada", password=PASSWORD)
    kept = api.http.cookies[session.COOKIE]
    r = await api.http.post("/explorer/logout", headers={session.ACTION_HEADER: "1"})
    assert r.status_code == 204
    api.http.cookies.set(session.COOKIE, kept, path="/explorer")
    r = await api.http.get("/explorer/")
    assert r.status_code == 303, "the old cookie names a session that has ended"


async def test_an_action_without_the_explorers_header_is_refused(api: Api) -> None:
    await _sign_in(api, api_key=api.keys["admin"])
    r = await api.http.post("/explorer/research", json={"dataset": "sp500"})
    assert r.status_code == 403
    r = await api.http.post("/explorer/research", json={"dataset": "sp500"}, headers={session.ACTION_HEADER: "1"})
    assert r.status_code == 200, r.text
    assert uuid.UUID(r.json()["saga_id"])


async def test_a_viewer_may_not_submit_cancel_or_see_dead_letters(api: Api) -> None:
    await _sign_in(api, api_key=api.keys["viewer"])
    h = {session.ACTION_HEADER: "1"}
    assert (await api.http.post("/explorer/research", json={"dataset": "sp500"}, headers=h)).status_code == 403
    saga_id = uuid.uuid4()
    assert (await api.http.post(f"/explorer/sagas/{saga_id}/cancel", headers=h)).status_code == 403
    fork = {"from_step": "ml", "set": {}}
    assert (await api.http.post(f"/explorer/sagas/{saga_id}/fork", json=fork, headers=h)).status_code == 403
    assert (await api.http.post("/explorer/dead-letters/1-0/redrive", headers=h)).status_code == 403
    r = await api.http.get("/explorer/dead-letters")
    assert r.status_code == 200 and "needs the admin role" in r.text
    r = await api.http.get("/explorer/")
    assert "New research request" not in r.text and "Dead letters" not in r.text


async def test_bad_filters_are_named_not_dropped(api: Api) -> None:
    await _sign_in(api, api_key=api.keys["viewer"])
    r = await api.http.get("/explorer/?state=NOPE&min_sharpe=x&q=zz")
    assert r.status_code == 200
    for named in ("state: one of", "min sharpe: a number", "saga id: hex digits"):
        assert named in r.text, named


async def test_the_list_filters_by_id_prefix_and_counts_per_state(api: Api) -> None:
    client = api.runtime.client
    ids = [str((await client.submit(ResearchRequest(dataset="sp500"))).saga_id) for _ in range(2)]
    # No orchestrator runs here: the sagas stay PENDING, and the list holds no row yet.
    await _sign_in(api, api_key=api.keys["viewer"])
    r = await api.http.get(f"/explorer/?q={ids[0][:8]}")
    assert r.status_code == 200
    r = await api.http.get("/v1/saga-counts", headers=api.auth("viewer"))
    assert r.status_code == 200 and r.json() == {}
    r = await api.http.get("/v1/sagas?id_prefix=ZZ", headers=api.auth("viewer"))
    assert r.status_code == 422, "a prefix is lowercase hex digits and dashes"
