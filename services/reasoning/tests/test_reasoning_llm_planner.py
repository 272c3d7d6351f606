"""The LLM planner against a tiny OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from alphasaga_contracts.research import Hypothesis, Measurements, ResearchRequest
from alphasaga_reasoning.domain import (
    LLMConfig,
    PlannerError,
    form_hypothesis,
    in_sample_length,
    llm_planner,
    plan_hypothesis,
    plan_hypothesis_llm,
)

MEASURED = Measurements(
    n_bars=2500,
    hurst=0.47,
    variance_ratio=0.91,
    variance_ratio_pvalue=0.02,
    autocorr_lag1=-0.04,
    annual_volatility=0.19,
    garch_persistence=0.98,
    volatility_regime="normal",
)
REQUEST = ResearchRequest(dataset="sp500")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0


@dataclass
class FakeLLM:
    """What the fake server answers next, and what it was asked."""

    url: str
    reply: Reply = field(default_factory=Reply)
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    def answer(self, content: str) -> None:
        """Reply with a chat completion whose message content is ``content``."""
        body = {
            "id": "cmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }
        self.reply = Reply(body=json.dumps(body).encode())


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The timeout test hangs up before the reply is written; that broken pipe is expected.
        return


@pytest.fixture
def fake_llm() -> Iterator[FakeLLM]:
    state = FakeLLM(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, payload))
            reply = state.reply
            if reply.delay:
                time.sleep(reply.delay)
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            return

    server = _QuietServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _config(fake: FakeLLM, **extra: Any) -> LLMConfig:
    return LLMConfig(base_url=fake.url, model="test-model", timeout=5.0, **extra)


def _valid_answer() -> dict[str, Any]:
    """A schema-valid hypothesis that also misreports the measurements and planner."""
    answer = plan_hypothesis(REQUEST, MEASURED).model_dump(mode="json")
    answer["measurements"]["hurst"] = 0.99
    answer["planner"] = "rules"
    answer["rationale"] = "Hurst 0.47 and VR(5) 0.91 suggest fading stretches."
    return answer


def test_valid_answer_is_validated_and_forced(fake_llm: FakeLLM) -> None:
    fake_llm.answer("```json\n" + json.dumps(_valid_answer(), indent=2) + "\n```")
    h = plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm, api_key="sk-test"))
    assert isinstance(h, Hypothesis)
    assert h.planner == "llm"
    assert h.measurements == MEASURED
    assert h.rationale == "Hurst 0.47 and VR(5) 0.91 suggest fading stretches."
    assert h.family == "mean_reversion"

    headers, payload = fake_llm.requests[-1]
    assert headers["authorization"] == "Bearer sk-test"
    assert payload["model"] == "test-model"
    assert [m["role"] for m in payload["messages"]] == ["system", "user"]
    prompt = payload["messages"][1]["content"]
    assert '"hurst": 0.47' in prompt
    assert '"label_horizon"' in prompt  # the JSON Schema is included


def test_unfenced_answer_and_planner_callable(fake_llm: FakeLLM) -> None:
    fake_llm.answer(json.dumps(_valid_answer()))
    h = llm_planner(_config(fake_llm))(REQUEST, MEASURED)
    assert h.planner == "llm"
    headers, payload = fake_llm.requests[-1]
    assert "authorization" not in headers
    assert "response_format" not in payload


def test_form_hypothesis_with_llm_planner(fake_llm: FakeLLM) -> None:
    fake_llm.answer(json.dumps(_valid_answer()))
    h, df, _, _ = form_hypothesis(REQUEST, planner=llm_planner(_config(fake_llm)))
    assert h.planner == "llm"
    assert h.measurements.n_bars == in_sample_length(len(df), REQUEST.out_of_sample_fraction)
    assert h.measurements != MEASURED  # replaced by what was measured on the real data


def test_invalid_schema_answer_fails(fake_llm: FakeLLM) -> None:
    answer = _valid_answer()
    answer["family"] = "moonshot"
    del answer["exit_rule"]
    fake_llm.answer(json.dumps(answer))
    with pytest.raises(PlannerError, match="does not match the schema") as info:
        plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm))
    assert "family" in str(info.value) and "exit_rule" in str(info.value)


def test_domain_rule_violation_fails(fake_llm: FakeLLM) -> None:
    answer = _valid_answer()
    answer["signal"] = {"kind": "ma_crossover", "params": {"fast": 20, "slow": 100}}
    fake_llm.answer(json.dumps(answer))
    with pytest.raises(PlannerError, match=r"domain rules.*requires signal zscore_reversion"):
        plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm))


def test_garbage_answer_fails(fake_llm: FakeLLM) -> None:
    fake_llm.answer("Buy low, sell high. Trust me.")
    with pytest.raises(PlannerError, match="answer is not JSON"):
        plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm))


def test_json_that_is_not_an_object_fails(fake_llm: FakeLLM) -> None:
    fake_llm.answer("[1, 2, 3]")
    with pytest.raises(PlannerError, match="expected a JSON object, got list"):
        plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm))


def test_non_json_http_body_fails(fake_llm: FakeLLM) -> None:
    fake_llm.reply = Reply(body=b"<html>oops</html>")
    with pytest.raises(PlannerError, match="reply is not JSON"):
        plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm))


def test_reply_without_choices_fails(fake_llm: FakeLLM) -> None:
    fake_llm.reply = Reply(body=b'{"error": "nope"}')
    with pytest.raises(PlannerError, match=r"no choices\[0\]\.message\.content"):
        plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm))


def test_http_error_fails(fake_llm: FakeLLM) -> None:
    fake_llm.reply = Reply(status=500, body=b'{"error": "model overloaded"}')
    with pytest.raises(PlannerError, match=r"HTTP 500.*model overloaded"):
        plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm))


def test_timeout_fails(fake_llm: FakeLLM) -> None:
    fake_llm.answer(json.dumps(_valid_answer()))
    # The answer is valid but comes long after the timeout: only a timeout that works fails it.
    fake_llm.reply.delay = 10.0
    config = LLMConfig(base_url=fake_llm.url, model="m", timeout=0.2)
    with pytest.raises(PlannerError, match=r"within 0\.2s|timed out"):
        plan_hypothesis_llm(REQUEST, MEASURED, config)


def test_json_mode_is_sent_when_asked(fake_llm: FakeLLM) -> None:
    fake_llm.answer(json.dumps(_valid_answer()))
    plan_hypothesis_llm(REQUEST, MEASURED, _config(fake_llm, json_mode=True))
    assert fake_llm.requests[-1][1]["response_format"] == {"type": "json_object"}


def test_unreachable_endpoint_fails() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2.0)
    with pytest.raises(PlannerError, match="cannot reach"):
        plan_hypothesis_llm(REQUEST, MEASURED, config)


def test_only_http_urls_are_allowed() -> None:
    with pytest.raises(PlannerError, match="http or https"):
        plan_hypothesis_llm(REQUEST, MEASURED, LLMConfig(base_url="file:///etc", model="m"))
