"""Admin: dead letters, users and API keys."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from alphasaga_accounts import Principal

from . import models
from .security import authorize, role, runtime

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
Caller = Annotated[Principal, Depends(authorize)]
EntryId = Annotated[str, Path(pattern=r"^\d{1,20}-\d{1,20}$", description="The dead letter's entry id")]
Stream = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9:_.-]+$")]


@router.get("/dead-letters", openapi_extra=role("admin"))
async def dead_letters(request: Request, stream: Stream = None) -> list[dict[str, Any]]:
    """Dead letters of every stream, or of one (``cmd:reasoning``)."""
    return [d.as_json() for d in await runtime(request).client.dead_letters(stream)]


@router.get("/dead-letters/{entry_id}", openapi_extra=role("admin"))
async def dead_letter(request: Request, entry_id: EntryId, stream: Stream = None) -> dict[str, Any]:
    letter = await runtime(request).client.dead_letter(entry_id, stream)
    return {**letter.as_json(), "fields": letter.fields}


@router.post("/dead-letters/{entry_id}/redrive", openapi_extra=role("admin"))
async def redrive(request: Request, entry_id: EntryId, stream: Stream = None) -> dict[str, str]:
    """Send the dead letter back to its source stream, unchanged."""
    client = runtime(request).client
    letter = await client.dead_letter(entry_id, stream)
    return {"source_stream": letter.source_stream, "entry_id": await client.redrive(letter)}


@router.delete("/dead-letters/{entry_id}", status_code=204, openapi_extra=role("admin"))
async def purge(request: Request, entry_id: EntryId, stream: Stream = None) -> Response:
    client = runtime(request).client
    await client.purge([await client.dead_letter(entry_id, stream)])
    return Response(status_code=204)


def _user(u: Any) -> dict[str, Any]:
    return {
        "username": u.username,
        "role": u.role,
        "status": u.status,
        "created_at": u.created_at.isoformat(),
        "locked_until": u.locked_until.isoformat() if u.locked_until else None,
    }


@router.get("/users", openapi_extra=role("admin"))
async def users(request: Request) -> list[dict[str, Any]]:
    return [_user(u) for u in await runtime(request).accounts.users()]


@router.post("/users", status_code=201, openapi_extra=role("admin"))
async def create_user(request: Request, body: models.NewUser, who: Caller) -> dict[str, Any]:
    user = await runtime(request).accounts.create_user(body.username, body.password, body.role, actor=who.subject)
    return _user(user)


@router.patch("/users/{username}", openapi_extra=role("admin"))
async def set_user_status(
    request: Request, username: Annotated[str, Path(max_length=64)], body: models.UserStatus, who: Caller
) -> dict[str, Any]:
    """Disable a user (its sessions and keys stop working at once), or make it active again
    (which also lifts a lockout)."""
    return _user(await runtime(request).accounts.set_status(username, body.status, actor=who.subject))


@router.get("/keys", openapi_extra=role("admin"))
async def keys(request: Request) -> list[dict[str, Any]]:
    return [
        {
            "key_id": str(k.key_id),
            "prefix": k.prefix,
            "name": k.name,
            "role": k.role,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in await runtime(request).accounts.keys()
    ]


@router.post("/keys", status_code=201, response_model=models.CreatedKey, openapi_extra=role("admin"))
async def create_key(request: Request, body: models.NewKey, who: Caller) -> models.CreatedKey:
    """A new API key; the key itself is in this answer and nowhere else."""
    info, key = await runtime(request).accounts.create_key(
        body.name, body.role, username=body.username, actor=who.subject
    )
    return models.CreatedKey(key_id=info.key_id, key=key, prefix=info.prefix, name=info.name, role=info.role)


@router.delete("/keys/{key_id}", status_code=204, openapi_extra=role("admin"))
async def revoke_key(request: Request, key_id: uuid.UUID, who: Caller) -> Response:
    await runtime(request).accounts.revoke_key(key_id, actor=who.subject)
    return Response(status_code=204)
