"""Request and response bodies of the API. The research request itself is the contract
model (``alphasaga_contracts.research.ResearchRequest``): its JSON Schema is the one the
services validate against."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    field: str = Field(description="Where, as body.constraints.min_sharpe or query.dataset")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem, the body of every error answer (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] | None = Field(None, description="Each field refused, on a 400 or 422")


class Started(BaseModel):
    status: Literal["started", "starting"]


class Check(BaseModel):
    status: Literal["ok", "failing"]
    latency_ms: float
    error: str | None = Field(None, description="The kind of failure, on a failing check")


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, Check]


class ForkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_step: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64, description="Run again from this step")
    set: dict[
        Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,7}$", max_length=200)], Any
    ] = Field(
        default_factory=dict,
        max_length=50,
        description="path -> value: request.<field>, or a value in the saga's context (model_kind)",
    )


class Submitted(BaseModel):
    saga_id: uuid.UUID
    message_id: str
    links: dict[str, str]


class SagaPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last")


class SagaDetail(BaseModel):
    saga: dict[str, Any]
    steps: list[dict[str, Any]]
    outcome: dict[str, Any] | None
    trace_id: str | None


class StateAt(BaseModel):
    saga_id: uuid.UUID
    version: int
    event: str
    recorded_at: str
    total_events: int
    state: dict[str, Any]
    changes: list[dict[str, Any]] = Field(description="What this event changed in the state before it")


class LoginBody(Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class RefreshBody(Body):
    # Long enough for anything a client may mistake for one (an access token is longer
    # than a refresh token): the answer is then 401, not a validation error.
    refresh_token: str = Field(min_length=1, max_length=4096)


class Tokens(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_at: dt.datetime


class NewUser(Body):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)
    role: Literal["viewer", "researcher", "admin"]


class UserStatus(Body):
    status: Literal["active", "disabled"]


class NewKey(Body):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "researcher", "admin"]
    username: str | None = Field(None, max_length=64, description="The user the key acts as, if any")


class CreatedKey(BaseModel):
    key_id: uuid.UUID
    key: str = Field(description="Shown this once; only its hash is kept")
    prefix: str
    name: str
    role: str
