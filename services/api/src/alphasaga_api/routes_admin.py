"""Admin: dead letters, users and API keys, each route over its use case
(``alphasaga_client.usecases.admin``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from alphasaga_client.usecases import admin

from . import models
from .security import Acting, authorize, role

router = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])
EntryId = Annotated[str, Path(pattern=r"^\d{1,20}-\d{1,20}$", description="The dead letter's entry id")]
Stream = Annotated[str | None, Query(max_length=200, pattern=r"^[A-Za-z0-9:_.-]+$")]


@router.get("/dead-letters", openapi_extra=role("admin"))
async def dead_letters(who: Acting, stream: Stream = None) -> list[dict[str, Any]]:
    """Dead letters of every stream, or of one (``cmd:reasoning``)."""
    return [d.as_json() for d in await admin.dead_letters(who, stream)]


@router.get("/dead-letters/{entry_id}", openapi_extra=role("admin"))
async def dead_letter(who: Acting, entry_id: EntryId, stream: Stream = None) -> dict[str, Any]:
    letter = await admin.dead_letter(who, entry_id, stream)
    return {**letter.as_json(), "fields": letter.fields}


@router.post("/dead-letters/{entry_id}/redrive", openapi_extra=role("admin"))
async def redrive(who: Acting, entry_id: EntryId, stream: Stream = None) -> dict[str, str]:
    """Send the dead letter back to its source stream, unchanged."""
    letter, new_entry_id = await admin.redrive(who, entry_id, stream)
    return {"source_stream": letter.source_stream, "entry_id": new_entry_id}


@router.delete("/dead-letters/{entry_id}", status_code=204, openapi_extra=role("admin"))
async def purge(who: Acting, entry_id: EntryId, stream: Stream = None) -> Response:
    await admin.purge(who, entry_id, stream)
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
async def users(who: Acting) -> list[dict[str, Any]]:
    return [_user(u) for u in await admin.users(who)]


@router.post("/users", status_code=201, openapi_extra=role("admin"))
async def create_user(body: models.NewUser, who: Acting) -> dict[str, Any]:
    return _user(await admin.create_user(who, body.username, body.password, body.role))


@router.patch("/users/{username}", openapi_extra=role("admin"))
async def set_user_status(
    username: Annotated[str, Path(max_length=64)], body: models.UserStatus, who: Acting
) -> dict[str, Any]:
    """Disable a user (its sessions and keys stop working at once), or make it active again
    (which also lifts a lockout)."""
    return _user(await admin.set_user_status(who, username, body.status))


@router.get("/keys", openapi_extra=role("admin"))
async def keys(who: Acting) -> list[dict[str, Any]]:
    return [
        {
            "key_id": str(k.key_id),
            "prefix": k.prefix,
            "name": k.name,
            "role": k.role,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
        }
        for k in await admin.keys(who)
    ]


@router.post("/keys", status_code=201, response_model=models.CreatedKey, openapi_extra=role("admin"))
async def create_key(body: models.NewKey, who: Acting) -> models.CreatedKey:
    """A new API key; the key itself is in this answer and nowhere else."""
    info, key = await admin.create_key(who, body.name, body.role, body.username)
    return models.CreatedKey(key_id=info.key_id, key=key, prefix=info.prefix, name=info.name, role=info.role)


@router.delete("/keys/{key_id}", status_code=204, openapi_extra=role("admin"))
async def revoke_key(key_id: uuid.UUID, who: Acting) -> Response:
    await admin.revoke_key(who, key_id)
    return Response(status_code=204)
