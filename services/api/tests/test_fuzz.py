"""A Schemathesis fuzz run of the API (issue #23): every operation of the committed OpenAPI
document, with valid and schema-breaking inputs, sent with an admin's key to
``python -m alphasaga_api`` as an operator runs it. No answer may be a 5xx, every answer
must match the document (status, media type, headers, body), and none may leak a
traceback, a server path or a setting's name; the server's log holds no traceback.
(Unknown query parameters are ignored, as HTTP APIs commonly do: Schemathesis's
``negative_data_rejection`` would want them refused, and is not run.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alphasaga_api import openapi
from alphasaga_shared.config import Settings

from .test_process import _admin_key, serving

# Examples per operation and mode (valid, schema-breaking), over some 30 operations: make
# test sends about 600 requests, make soak five times as many (docs/benchmarks.md).
EXAMPLES = 10
SOAK_EXAMPLES = 50
ROOT = str(Path(__file__).resolve().parents[3])
LEAKS = ("Traceback", 'File "', ROOT, "site-packages", "ALPHASAGA_", "asyncpg")
PROBES = ("/health/ready", "/health/startup")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def no_leaks(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> bool | None:
    # A 422 may name a field the fuzzer sent (``body.ALPHASAGA_X``): text from the request
    # itself, echoed, is no leak.
    sent = json.dumps([case.body, case.query, case.path_parameters, case.headers], default=str)
    found = [text for text in LEAKS if text in response.text and text not in sent]
    if found:
        raise AssertionError(f"the answer shows {found}")
    return None


@pytest.mark.parametrize("examples", [EXAMPLES, pytest.param(SOAK_EXAMPLES, marks=pytest.mark.slow)])
def test_the_api_against_its_committed_document(
    settings: Settings, env: dict[str, str], tmp_path: Path, examples: int
) -> None:
    schema = schemathesis.openapi.from_path(openapi.COMMITTED)
    limits = {"ALPHASAGA_API_LOGIN_PER_MINUTE": "100000", "ALPHASAGA_API_SUBMIT_PER_MINUTE": "100000",
              "ALPHASAGA_API_SUBMIT_IP_PER_MINUTE": "100000"}  # fmt: skip
    tried: dict[str, int] = {}
    with serving(settings, env, tmp_path / "api.log", **limits) as (proc, port):
        auth = {"Authorization": f"Bearer {asyncio.run(_admin_key(settings))}"}
        for result in schema.get_all_operations():
            operation = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                # No workers here: ready says 503, as documented.
                checks = [c for c in CHECKS if c is not not_a_server_error] if operation.path in PROBES else CHECKS
                tried[f"{operation.label} {mode.value}"] = fuzz(
                    operation, mode, checks, f"http://127.0.0.1:{port}", auth, examples
                )
    print(f"schemathesis: {sum(tried.values())} requests over {len(tried)} operations and modes")
    assert len(tried) >= 50 and sum(tried.values()) >= 20 * examples, tried
    log = proc.text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def fuzz(
    operation: Any, mode: GenerationMode, checks: list[Any], base_url: str, auth: dict[str, str], examples: int
) -> int:
    tried = 0

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        nonlocal tried
        tried += 1
        response = case.call(base_url=base_url, headers=auth, timeout=30)
        case.validate_response(response, checks=checks, additional_checks=[no_leaks])

    try:
        run()
    except Unsatisfiable:  # nothing to break: an operation without parameters or body
        assert mode is GenerationMode.NEGATIVE and tried == 0
    return tried
