"""Artifacts by content hash (SHA-256) in PostgreSQL, linked to the saga step that made
them. Storing the same content twice stores it once; removing a step's artifacts drops
blobs no other step still references.

Removing a step's artifacts (its compensation) also marks the step undone, and storing
for an undone step is refused: an attempt still running when its step was compensated
(a cancel while it was in flight, handled by another replica) cannot leave artifacts
behind. Both take the same per-step lock, so one of them always sees the other."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

import asyncpg

from alphasaga_contracts.research import ArtifactRef


class ArtifactNotFound(LookupError):
    pass


class StepUndone(Exception):
    """The step was compensated: nothing more may be stored for it."""


# One lock per (saga, step), held until the transaction ends.
_STEP_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('alphasaga-step/' || $1::uuid::text || '/' || $2::text, 0))"


@dataclass(frozen=True, slots=True)
class ArtifactLink:
    saga_id: uuid.UUID
    step: str
    name: str
    ref: ArtifactRef


class ArtifactStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(
        self, saga_id: uuid.UUID, step: str, name: str, kind: str, content: bytes, media_type: str
    ) -> ArtifactRef:
        digest = hashlib.sha256(content).hexdigest()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_STEP_LOCK, saga_id, step)
            if await conn.fetchval("SELECT 1 FROM undone_steps WHERE saga_id = $1 AND step = $2", saga_id, step):
                raise StepUndone(f"step {step} of saga {saga_id} was compensated; {name} not stored")
            await conn.execute(
                "INSERT INTO artifact_blobs (sha256, media_type, size, content) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT (sha256) DO NOTHING",
                digest,
                media_type,
                len(content),
                content,
            )
            await conn.execute(
                "INSERT INTO artifacts (saga_id, step, name, kind, sha256) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (saga_id, step, name) DO UPDATE SET sha256 = excluded.sha256, kind = excluded.kind",
                saga_id,
                step,
                name,
                kind,
                digest,
            )
        return ArtifactRef(sha256=digest, kind=kind, media_type=media_type, size=len(content))

    async def get(self, sha256: str) -> bytes:
        async with self.pool.acquire() as conn:
            content = await conn.fetchval("SELECT content FROM artifact_blobs WHERE sha256 = $1", sha256)
        if content is None:
            raise ArtifactNotFound(f"no artifact with sha256 {sha256}")
        return bytes(content)

    async def media_type(self, sha256: str) -> str | None:
        async with self.pool.acquire() as conn:
            value = await conn.fetchval("SELECT media_type FROM artifact_blobs WHERE sha256 = $1", sha256)
        return None if value is None else str(value)

    async def list(self, saga_id: uuid.UUID) -> list[ArtifactLink]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT a.saga_id, a.step, a.name, a.kind, a.sha256, b.media_type, b.size"
                " FROM artifacts a JOIN artifact_blobs b USING (sha256)"
                " WHERE a.saga_id = $1 ORDER BY a.created_at, a.name",
                saga_id,
            )
        return [
            ArtifactLink(
                r["saga_id"],
                r["step"],
                r["name"],
                ArtifactRef(sha256=r["sha256"], kind=r["kind"], media_type=r["media_type"], size=r["size"]),
            )
            for r in rows
        ]

    async def remove_step(self, saga_id: uuid.UUID, step: str) -> int:
        """Unlink a step's artifacts, delete blobs nothing references any more, and mark
        the step undone. Idempotent: removing twice removes nothing the second time."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(_STEP_LOCK, saga_id, step)
            await conn.execute(
                "INSERT INTO undone_steps (saga_id, step) VALUES ($1, $2) ON CONFLICT DO NOTHING", saga_id, step
            )
            hashes = [
                r["sha256"]
                for r in await conn.fetch(
                    "DELETE FROM artifacts WHERE saga_id = $1 AND step = $2 RETURNING sha256", saga_id, step
                )
            ]
            if hashes:
                await conn.execute(
                    "DELETE FROM artifact_blobs b WHERE b.sha256 = ANY($1::text[])"
                    " AND NOT EXISTS (SELECT 1 FROM artifacts a WHERE a.sha256 = b.sha256)",
                    hashes,
                )
        return len(hashes)
