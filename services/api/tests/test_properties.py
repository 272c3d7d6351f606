"""Property tests (Hypothesis) of the API's edge, with requests made from the contract's own
schema (``tests/support/edges.py``): whatever a caller sends, the answer is a 4xx problem
or an accepted request that the orchestrator takes; never a 5xx. The same requests sent
straight onto the command stream, with the workers running: tests/test_edge_properties.py."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from alphasaga_contracts.saga import StartResearch
from alphasaga_shared.wire import decode
from tests.support import edges
from tests.support.edges import JSON, wire_accepts

from .conftest import Api

# Each a request to the app in this process: a few hundred take seconds.
SUBMITS = 200
FILTERS = 100


async def test_every_submit_is_a_problem_or_a_request_the_orchestrator_takes(api: Api) -> None:
    api.runtime.api.submit_per_minute = api.runtime.api.submit_ip_per_minute = 10**6

    async def check(request: dict[str, Any]) -> None:
        text = edges.as_json(request)
        r = await api.http.post("/v1/research", content=text, headers={**api.auth("admin"), **JSON})
        assert r.status_code in (202, 422), (r.status_code, r.text)
        assert (r.status_code == 202) == wire_accepts(text), (r.status_code, r.text)
        if r.status_code == 422:
            problem = r.json()
            assert r.headers["content-type"] == "application/problem+json"
            assert problem["errors"] and all(e["field"].startswith("body") for e in problem["errors"]), problem
        else:
            sent = await api.sent(r.json()["saga_id"])
            assert isinstance(decode(sent).message, StartResearch)

    tried = await edges.explore(edges.requests(), check, max_examples=SUBMITS)
    print(f"submit properties: {tried} examples")
    assert tried >= SUBMITS // 2


async def test_every_filter_is_answered_or_refused_never_a_5xx(api: Api) -> None:
    """Any text, NUL included, in every filter of the saga list. (A URL cannot carry a lone
    surrogate: its UTF-8 bytes are invalid, and arrive as U+FFFD.)"""
    names = ("dataset", "workflow", "state", "verdict", "cursor", "created_after", "sort", "min_sharpe")
    text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
    queries = st.dictionaries(st.sampled_from(names), text, min_size=1)

    async def check(params: dict[str, str]) -> None:
        r = await api.http.get("/v1/sagas", params=params, headers=api.auth("viewer"))
        assert r.status_code in (200, 422), (params, r.status_code, r.text)

    tried = await edges.explore(queries, check, max_examples=FILTERS)
    print(f"filter properties: {tried} examples")
    assert tried >= FILTERS // 2
