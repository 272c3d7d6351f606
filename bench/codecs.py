"""The hot path off pydantic (issue #28), measured on one message before deciding: a step's
reply decoded from its entry's body, and a command encoded, by

- **pydantic as today**: the contract's model (``model_validate_json``, ``model_dump_json``);
- **pydantic-core, validator built once**: a ``TypeAdapter`` of the same model, made once;
- **msgspec**: a ``msgspec.Struct`` written to the same contract (the same fields, patterns,
  bounds, unknown fields refused), as the hot path would need beside every contract.

``ml.ModelTrained`` is the reply (two artifact references and the model's metrics, a
typical reply), measured all three ways; ``ml.TrainModel``, the largest command of
research v1 (the request, the hypothesis and two references: 1.2 kB), is measured as
pydantic builds it from the plan's values and encodes it, the most a command costs today.
Times are the best of five runs of 20,000 calls each, in µs a call, on one core; the
per-saga figure multiplies by the four replies and four commands of a saga's four steps.
"""

from __future__ import annotations

import timeit
import uuid
from typing import Annotated, Any

import msgspec
from pydantic import TypeAdapter

from alphasaga_contracts import steps as st
from alphasaga_contracts.research import ArtifactRef
from alphasaga_contracts.text import STORABLE_PATTERN

CALLS = 20_000
REPEATS = 5
PER_SAGA = 4  # four steps: four replies decoded, four commands encoded

Storable = Annotated[str, msgspec.Meta(pattern=STORABLE_PATTERN)]


class _Ref(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    sha256: Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
    kind: Storable
    media_type: Storable
    size: Annotated[int, msgspec.Meta(ge=0)]


class _Metrics(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    auc: float
    accuracy: float
    log_loss: float
    baseline_accuracy: float
    baseline_log_loss: float
    n_splits: int
    n_predictions: int
    feature_importance: dict[str, float] = {}


class _ModelTrained(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    saga_id: uuid.UUID
    step: Annotated[str, msgspec.Meta(pattern=st.STEP)]
    attempt: Annotated[int, msgspec.Meta(ge=1)]
    model: _Ref
    predictions: _Ref
    model_metrics: _Metrics


def _reply() -> st.ModelTrained:
    from tests.support.replies import METRICS

    ref = ArtifactRef(sha256="a" * 64, kind="model", media_type="application/octet-stream", size=1234)
    # The simulated workers' metrics, with the feature importances a real training reports.
    metrics = METRICS.model_copy(update={"feature_importance": {"mom_20": 0.6, "vol_20": 0.4}})
    saga_id = uuid.uuid4()
    return st.ModelTrained(saga_id=saga_id, step="ml", attempt=1, model=ref, predictions=ref, model_metrics=metrics)


def _largest_command() -> st.TrainModel:
    from alphasaga_contracts.research import ResearchRequest
    from tests.support.replies import HYPOTHESIS, REF

    return st.TrainModel(
        saga_id=uuid.uuid4(),
        step="ml",
        attempt=1,
        request=ResearchRequest(dataset="sp500"),
        hypothesis=HYPOTHESIS,
        dataset=REF,
        signals=REF,
    )


def _best_us(call: Any) -> float:
    return min(timeit.repeat(call, number=CALLS, repeat=REPEATS)) / CALLS * 1e6


def measure() -> dict[str, dict[str, float]]:
    reply = _reply()
    body = reply.model_dump_json()
    adapter = TypeAdapter(st.ModelTrained)
    as_struct = msgspec.json.decode(body, type=_ModelTrained)
    encoder = msgspec.json.Encoder()
    assert msgspec.json.decode(encoder.encode(as_struct)) == msgspec.json.decode(body), "the same document"
    command = _largest_command()
    values = command.model_dump()
    return {
        "pydantic as today, ml.TrainModel": {
            "decode": _best_us(lambda: st.TrainModel.model_validate(values)),
            "encode": _best_us(command.model_dump_json),
        },
        "pydantic as today": {
            "decode": _best_us(lambda: st.ModelTrained.model_validate_json(body)),
            "encode": _best_us(reply.model_dump_json),
        },
        "pydantic-core, validator built once": {
            "decode": _best_us(lambda: adapter.validate_json(body)),
            "encode": _best_us(lambda: adapter.dump_json(reply)),
        },
        "msgspec": {
            "decode": _best_us(lambda: msgspec.json.decode(body, type=_ModelTrained)),
            "encode": _best_us(lambda: encoder.encode(as_struct)),
        },
    }


def markdown(figures: dict[str, dict[str, float]]) -> str:
    today = figures["pydantic as today"]
    today_saga = (today["decode"] + today["encode"]) * PER_SAGA
    command = figures["pydantic as today, ml.TrainModel"]
    lines = [
        "## The hot path off pydantic: one reply decoded and one encoded (issue #28)\n",
        f"µs a call, best of {REPEATS} runs of {CALLS:,}; a saga makes {PER_SAGA} of each.\n",
        "| codec | decode `ml.ModelTrained` | encode it | both, per saga | saved per saga |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, f in figures.items():
        if f is command:
            continue
        saga = (f["decode"] + f["encode"]) * PER_SAGA
        lines.append(f"| {name} | {f['decode']:.1f} | {f['encode']:.1f} | {saga:.0f} µs | {today_saga - saga:.0f} µs |")
    lines.append(
        f"\nThe largest command, `ml.TrainModel`, with pydantic: built from the plan's values"
        f" {command['decode']:.1f} µs, encoded {command['encode']:.1f} µs; four such a saga:"
        f" {(command['decode'] + command['encode']) * PER_SAGA:.0f} µs.\n"
    )
    return "\n".join(lines) + "\n"
