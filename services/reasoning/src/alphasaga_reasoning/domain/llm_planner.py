"""An optional planner that asks a language model behind an OpenAI-compatible
chat-completions endpoint for the hypothesis.

The model only proposes; we validate. Its reply must be one JSON object matching the
``Hypothesis`` schema and the domain rules of ``planner.hypothesis_problems``. The
``measurements`` and ``planner`` fields are always overwritten with our own values, so a
model can never misreport the evidence. Any failure raises :class:`PlannerError`; there
is deliberately no fallback to the rule-based planner, because a silent switch would
make a run's provenance a lie.

Only the standard library is used (``urllib.request``): one POST, one timeout.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from alphasaga_contracts.research import Hypothesis, Measurements, ResearchRequest

from .measure import VR_LAG
from .planner import MAX_LABEL_HORIZON, Planner, PlannerError, hypothesis_problems

__all__ = ["LLMConfig", "PlannerError", "build_messages", "llm_planner", "plan_hypothesis_llm"]

_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_ERROR_BODY_CHARS = 300


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to call the model. ``base_url`` is the API root, e.g.
    ``http://127.0.0.1:11434/v1``; ``/chat/completions`` is appended."""

    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 60.0
    temperature: float = 0.0
    json_mode: bool = False
    """Send ``response_format: {"type": "json_object"}``; not every server accepts it."""


def build_messages(request: ResearchRequest, m: Measurements) -> list[dict[str, str]]:
    """The system and user prompts: the measurements, the request and the schema."""
    schema = json.dumps(Hypothesis.model_json_schema(), sort_keys=True)
    system = (
        "You are a quantitative researcher. You turn measured statistical properties of a "
        "daily price series into one testable trading hypothesis. Reply with a single JSON "
        "object and nothing else: no prose, no code fences."
    )
    user = "\n".join(
        [
            "Measurements of the data (VR is the Lo-MacKinlay variance ratio at lag "
            f"{VR_LAG}, with a heteroskedasticity-robust two-sided p-value):",
            json.dumps(m.model_dump(mode="json"), sort_keys=True),
            f"Research objective: {request.objective} (auto means: choose from the data; "
            "trend forces family trend_following; mean_reversion forces mean_reversion).",
            "Constraints: " + json.dumps(request.constraints.model_dump(mode="json")),
            "Rules:",
            "- family trend_following uses signal kind ma_crossover with integer params "
            "fast and slow (2 <= fast < slow);",
            "- family mean_reversion uses signal kind zscore_reversion with params window "
            "(integer >= 2), entry_z and exit_z (entry_z > exit_z >= 0);",
            "- 3 to 5 features, kinds sma_ratio, momentum, zscore, volatility or rsi, each "
            'with params {"window": integer >= 2}; unique names matching ^[a-z][a-z0-9_]*$;',
            f"- every window shorter than {m.n_bars // 4} bars; label_horizon between 1 and {MAX_LABEL_HORIZON};",
            "- entry_rule and exit_rule are one plain sentence each; rationale cites the measured numbers;",
            '- copy the measurements object unchanged; set planner to "llm".',
            "The JSON object must validate against this JSON Schema:",
            schema,
        ]
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _endpoint(config: LLMConfig) -> str:
    url = config.base_url.rstrip("/") + "/chat/completions"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise PlannerError(f"LLM planner: base_url must be http or https, got {config.base_url!r}")
    return url


def _post(config: LLMConfig, body: dict[str, Any]) -> bytes:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    url = _endpoint(config)
    req = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=config.timeout) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:_ERROR_BODY_CHARS].decode("utf-8", "replace")
        raise PlannerError(f"LLM planner: HTTP {exc.code} from {url}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise PlannerError(f"LLM planner: cannot reach {url}: {exc.reason}") from exc
    except TimeoutError as exc:
        raise PlannerError(f"LLM planner: no answer from {url} within {config.timeout}s") from exc
    except OSError as exc:
        raise PlannerError(f"LLM planner: connection to {url} failed: {exc}") from exc


def _content(raw: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions reply."""
    try:
        reply = json.loads(raw)
    except ValueError as exc:
        snippet = raw[:_ERROR_BODY_CHARS].decode("utf-8", "replace")
        raise PlannerError(f"LLM planner: the endpoint's reply is not JSON: {snippet!r}") from exc
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise PlannerError("LLM planner: the reply has no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise PlannerError("LLM planner: choices[0].message.content is not a string")
    return content


def parse_hypothesis(content: str, request: ResearchRequest, m: Measurements) -> Hypothesis:
    """Turn the model's message into a validated Hypothesis (fences stripped, our
    measurements and ``planner="llm"`` forced), or raise :class:`PlannerError`."""
    fenced = _FENCE.match(content)
    text = fenced.group(1) if fenced else content.strip()
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise PlannerError(f"LLM planner: the model's answer is not JSON: {text[:200]!r}") from exc
    if not isinstance(obj, dict):
        raise PlannerError(f"LLM planner: expected a JSON object, got {type(obj).__name__}")
    obj["measurements"] = m.model_dump(mode="json")
    obj["planner"] = "llm"
    try:
        hypothesis = Hypothesis.model_validate(obj)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors())
        raise PlannerError(f"LLM planner: the answer does not match the schema: {problems}") from exc
    domain = hypothesis_problems(hypothesis, request)
    if domain:
        raise PlannerError("LLM planner: the answer breaks the domain rules: " + "; ".join(domain))
    return hypothesis


def plan_hypothesis_llm(request: ResearchRequest, m: Measurements, config: LLMConfig) -> Hypothesis:
    """Ask the model once and return its validated hypothesis; never falls back."""
    body: dict[str, Any] = {
        "model": config.model,
        "messages": build_messages(request, m),
        "temperature": config.temperature,
    }
    if config.json_mode:
        body["response_format"] = {"type": "json_object"}
    return parse_hypothesis(_content(_post(config, body)), request, m)


def llm_planner(config: LLMConfig) -> Planner:
    """A planner callable (same shape as ``plan_hypothesis``) bound to ``config``."""

    def plan(request: ResearchRequest, m: Measurements) -> Hypothesis:
        return plan_hypothesis_llm(request, m, config)

    return plan
